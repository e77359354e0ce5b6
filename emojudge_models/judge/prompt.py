"""The judge prompt: a versioned template file rendered into chat messages, and the hashes that identify it.

``TEMPLATE_SHA256`` identifies the template file; ``prompt_sha256`` identifies one rendered prompt (system and
user messages), so a changed template, input or threshold is a new judgment.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import unicodedata
from dataclasses import dataclass
from importlib.resources import files
from string import Template

from emojudge_models.labels import EMOTIONS

TEMPLATE_NAME = "judge_v2.txt"
TEMPLATE_BYTES: bytes = files("emojudge_models.judge").joinpath("templates", TEMPLATE_NAME).read_bytes()
TEMPLATE_SHA256: str = hashlib.sha256(TEMPLATE_BYTES).hexdigest()

_SYSTEM_MARKER = "=== system ===\n"
_USER_MARKER = "=== user ===\n"


@dataclass(frozen=True)
class JudgeInput:
    """Everything the judge sees about one utterance; free text here is untrusted data."""

    eval_set: str
    utterance_id: str
    transcript: str | None
    speaker_id: str | None
    gender: str | None
    prosody_description: str
    fused_label: str
    fused_probability: float | None
    """Shown to the judge only when given: small judges were measured to echo it as their own confidence."""
    audio_label: str | None = None
    text_label: str | None = None

    def __post_init__(self) -> None:
        where = f"{self.eval_set}/{self.utterance_id}"
        if self.fused_label not in EMOTIONS:
            raise ValueError(f"{where}: fused_label {self.fused_label!r} is not one of {', '.join(EMOTIONS)}")
        for name in ("audio_label", "text_label"):
            value = getattr(self, name)
            if value is not None and value not in EMOTIONS:
                raise ValueError(f"{where}: {name} {value!r} is not one of {', '.join(EMOTIONS)}")
        probability = self.fused_probability
        if probability is not None and not (math.isfinite(probability) and 0.0 <= probability <= 1.0):
            raise ValueError(f"{where}: fused_probability {self.fused_probability!r} is not in [0, 1]")


def _split_template(text: str) -> tuple[Template, Template]:
    if not text.startswith(_SYSTEM_MARKER) or _USER_MARKER not in text:
        raise ValueError(f"template {TEMPLATE_NAME} must start with {_SYSTEM_MARKER!r} and contain {_USER_MARKER!r}")
    system, user = text[len(_SYSTEM_MARKER) :].split(_USER_MARKER, 1)
    return Template(system.strip()), Template(user.strip())


_SYSTEM_TEMPLATE, _USER_TEMPLATE = _split_template(TEMPLATE_BYTES.decode("utf-8"))


def neutralise(text: str) -> str:
    """Escape ``&``, ``<`` and ``>`` so untrusted text cannot close or open the ``<transcript>`` delimiters.

    NFKC first folds look-alikes (fullwidth ``＜``, small ``﹤``) into the ASCII characters that are then escaped.
    """
    return html.escape(unicodedata.normalize("NFKC", text), quote=False)


def _speaker(speaker_id: str | None, gender: str | None) -> str:
    who = f"speaker {neutralise(speaker_id)}" if speaker_id else "unknown speaker"
    return f"{who}, {neutralise(gender)}" if gender else f"{who}, gender unknown"


def _model_labels(audio_label: str | None, text_label: str | None) -> str:
    audio = audio_label or "not available"
    text = text_label or "not available"
    return f"Audio model alone: {audio}. Text model alone: {text}."


def render_messages(judge_input: JudgeInput, threshold: float) -> list[dict[str, str]]:
    """The system and user chat messages for one utterance."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold {threshold!r} is not in [0, 1]")
    fields = {
        "classes": ", ".join(EMOTIONS),
        "threshold": f"{threshold:.2f}",
        "speaker": _speaker(judge_input.speaker_id, judge_input.gender),
        "prosody": neutralise(judge_input.prosody_description.strip() or "no description"),
        "fused_label": judge_input.fused_label,
        "fused_probability": ""
        if judge_input.fused_probability is None
        else f" (probability {judge_input.fused_probability:.2f})",
        "model_labels": _model_labels(judge_input.audio_label, judge_input.text_label),
        "transcript": neutralise((judge_input.transcript or "").strip()) or "(no transcript)",
    }
    return [
        {"role": "system", "content": _SYSTEM_TEMPLATE.substitute(fields)},
        {"role": "user", "content": _USER_TEMPLATE.substitute(fields)},
    ]


def prompt_sha256(messages: list[dict[str, str]]) -> str:
    """SHA-256 of the rendered messages in a canonical JSON form (role and content only)."""
    canonical = [{"role": m["role"], "content": m["content"]} for m in messages]
    return hashlib.sha256(json.dumps(canonical, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()
