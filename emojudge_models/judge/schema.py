"""The judge's answer: its JSON schema, the ``response_format`` sent to each backend, strict validation, and the
acceptance rule applied to it.

Every answer is validated here whatever the backend promised, so a transcript that talks the model into an
out-of-set label or an impossible confidence yields an error, never a label. The acceptance rule (:func:`decide`)
is applied in code rather than trusted to the model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from emojudge_models.labels import EMOTIONS
from emojudge_models.settings import default

JUDGMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": list(EMOTIONS)},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "rationale": {"type": "string"},
    },
    "required": ["label", "confidence", "rationale"],
    "additionalProperties": False,
}


class ResponseFormat(StrEnum):
    """How the answer's shape is requested; ``parse_judgment`` validates it in every case."""

    JSON_SCHEMA = "json_schema"
    """OpenAI structured outputs (strict JSON schema): OpenAI, vLLM, llama.cpp's C++ server, Ollama."""
    JSON_OBJECT_SCHEMA = "json_object_schema"
    """JSON mode with the schema attached as ``schema``: llama-cpp-python's server (grammar-constrained)."""
    JSON_OBJECT = "json_object"
    """Plain JSON mode, for endpoints that accept no schema."""
    GRAMMAR = "grammar"
    """llama.cpp's ``llama-server``: :data:`JUDGMENT_GRAMMAR` as the request's ``grammar`` field. Its own JSON-schema
    conversion bounds no number, and Gemma 3 270M wrote a confidence above 1 in a third of its answers under it."""


def _grammar() -> str:
    """GBNF of exactly the valid answers: the label one of EMOTIONS, the confidence 0-1 with at most two decimals."""
    labels = " | ".join(f'"\\"{label}\\""' for label in EMOTIONS)
    return "\n".join(
        [
            'root ::= "{" ws "\\"label\\":" ws label "," ws "\\"confidence\\":" ws confidence "," ws '
            '"\\"rationale\\":" ws string ws "}"',
            f"label ::= {labels}",
            'confidence ::= "0" ("." [0-9] [0-9]?)? | "1" ("." "0" "0"?)?',
            'string ::= "\\"" ([^"\\\\\\x7F\\x00-\\x1F] | "\\\\" ["\\\\/bfnrt])* "\\""',
            'ws ::= " "?',
        ]
    )


JUDGMENT_GRAMMAR = _grammar()
"""The answer's shape for llama-server (:attr:`ResponseFormat.GRAMMAR`)."""


def response_format(mode: ResponseFormat | str) -> dict[str, Any]:
    """The ``response_format`` request field for ``mode``."""
    mode = ResponseFormat(mode)
    if mode is ResponseFormat.JSON_SCHEMA:
        return {
            "type": "json_schema",
            "json_schema": {"name": "emotion_judgment", "strict": True, "schema": JUDGMENT_SCHEMA},
        }
    if mode is ResponseFormat.JSON_OBJECT_SCHEMA:
        return {"type": "json_object", "schema": JUDGMENT_SCHEMA}
    if mode is ResponseFormat.GRAMMAR:
        raise ValueError("the grammar answer format is sent as the request's grammar field, not a response_format")
    return {"type": "json_object"}


def answer_format_fields(mode: ResponseFormat | str) -> dict[str, Any]:
    """The request body's fields that ask for the answer's shape: ``response_format``, or for llama-server's grammar
    the ``grammar`` field (as ``extra_body``, which the OpenAI SDK merges into the JSON body)."""
    if ResponseFormat(mode) is ResponseFormat.GRAMMAR:
        return {"extra_body": {"grammar": JUDGMENT_GRAMMAR}}
    return {"response_format": response_format(mode)}


@dataclass(frozen=True)
class Judgment:
    """A validated answer: ``label`` is in EMOTIONS and ``confidence`` in [0, 1]."""

    label: str
    confidence: float
    rationale: str


def _strip_code_fence(text: str) -> str:
    """Remove one surrounding Markdown code fence, which JSON-mode-less endpoints sometimes add."""
    if text.startswith("```") and text.endswith("```") and len(text) >= 6:
        inner = text[3:-3]
        first_line, _, rest = inner.partition("\n")
        return rest if first_line.strip().isalpha() or not first_line.strip() else inner
    return text


def parse_judgment(raw_text: str | None) -> Judgment | str:
    """A :class:`Judgment`, or an error string saying why ``raw_text`` is not a valid answer."""
    if raw_text is None or not raw_text.strip():
        return "empty answer"
    try:
        answer = json.loads(_strip_code_fence(raw_text.strip()))
    except json.JSONDecodeError as error:
        return f"answer is not valid JSON: {error.msg} at position {error.pos}"
    if not isinstance(answer, dict):
        return f"answer is JSON {type(answer).__name__}, not an object"
    missing = [key for key in JUDGMENT_SCHEMA["required"] if key not in answer]
    if missing:
        return f"answer lacks {', '.join(missing)}"
    extra = sorted(set(answer) - set(JUDGMENT_SCHEMA["properties"]))
    if extra:
        return f"answer has unexpected keys {', '.join(extra)}"
    label, confidence, rationale = answer["label"], answer["confidence"], answer["rationale"]
    if not isinstance(label, str) or label.strip().lower() not in EMOTIONS:
        return f"label {label!r:.80} is not one of {', '.join(EMOTIONS)}"
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        return f"confidence {confidence!r:.80} is not a number"
    if not (math.isfinite(confidence) and 0.0 <= confidence <= 1.0):
        return f"confidence {confidence!r} is outside [0, 1]"
    if not isinstance(rationale, str):
        return f"rationale {rationale!r:.80} is not a string"
    return Judgment(label=label.strip().lower(), confidence=float(confidence), rationale=rationale.strip())


DEFAULT_THRESHOLD: float = default("judge_threshold")


class Decision(NamedTuple):
    """``accepted`` is True only when the judge's different label replaced the fused one."""

    final_label: str
    accepted: bool
    error: str | None


def decide(fused_label: str, judgment: Judgment | str | None, threshold: float = DEFAULT_THRESHOLD) -> Decision:
    """Final label for one utterance.

    The label changes only if the judge's label differs from the fused one and its confidence is at least
    ``threshold``; an error string (or no judgment) keeps the fused label and is carried into ``error``.
    """
    if fused_label not in EMOTIONS:
        raise ValueError(f"fused label {fused_label!r} is not one of {', '.join(EMOTIONS)}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold {threshold!r} is not in [0, 1]")
    if judgment is None:
        return Decision(fused_label, False, "no judgment")
    if isinstance(judgment, str):
        return Decision(fused_label, False, judgment)
    if judgment.label not in EMOTIONS or not 0.0 <= judgment.confidence <= 1.0:
        return Decision(fused_label, False, f"invalid judgment {judgment!r}")
    if judgment.label != fused_label and judgment.confidence >= threshold:
        return Decision(judgment.label, True, None)
    return Decision(fused_label, False, None)
