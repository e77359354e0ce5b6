"""Chat-completion requests for the judge, their ``custom_id`` and the judgment identity used for reuse.

``custom_id`` is ``{eval_set}:{utterance_id}:{judgment_key[:16]}``. The hash covers the judgment identity
(eval_set, utterance_id, prompt_sha256, judge model, temperature) rather than the prompt alone, so the same
prompt sent to another model or at another temperature gets another custom_id (``llm_judgments`` is keyed on
it). It is at most 64 characters (the Batch API limit other providers document; OpenAI's reference gives
none, so we keep to the stricter one): a longer ``eval_set:utterance_id`` head is cut and suffixed with a
hash of the whole head, which keeps ids unique.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from emojudge_models.judge.cost import LOCAL_JUDGE_MODEL
from emojudge_models.judge.prompt import TEMPLATE_SHA256, JudgeInput, prompt_sha256, render_messages
from emojudge_models.judge.schema import DEFAULT_THRESHOLD, ResponseFormat, answer_format_fields

CUSTOM_ID_MAX_CHARS = 64
BATCH_URL = "/v1/chat/completions"
DEFAULT_BATCH_MODEL = "gpt-4o-2024-08-06"
DEFAULT_TEMPERATURE = 0.3

Scope = Literal["all", "disagreements"]
BACKENDS = ("local", "openai-chat", "openai-batch")


@dataclass(frozen=True)
class JudgeConfig:
    """What makes up a judge: backend, model and sampling, threshold, and the answer format requested."""

    backend: str = "openai-batch"
    model: str = DEFAULT_BATCH_MODEL
    temperature: float = DEFAULT_TEMPERATURE
    threshold: float = DEFAULT_THRESHOLD
    response_format: ResponseFormat = ResponseFormat.JSON_SCHEMA
    max_tokens: int = 256

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold {self.threshold!r} is not in [0, 1]")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature {self.temperature!r} is not in [0, 2]")
        object.__setattr__(self, "response_format", ResponseFormat(self.response_format))

    @classmethod
    def for_backend(
        cls,
        backend: str,
        model: str | None = None,
        temperature: float = DEFAULT_TEMPERATURE,
        threshold: float = DEFAULT_THRESHOLD,
        response_format: ResponseFormat | str | None = None,
    ) -> JudgeConfig:
        """Defaults per backend: ``local`` is Gemma 270M with the schema as a grammar, the OpenAI ones GPT-4o
        with strict structured outputs (an ``openai-chat`` endpoint without it wants ``json_object``)."""
        if backend not in BACKENDS:
            raise ValueError(f"unknown judge backend {backend!r}; expected one of {', '.join(BACKENDS)}")
        local = backend == "local"
        default_format = ResponseFormat.JSON_OBJECT_SCHEMA if local else ResponseFormat.JSON_SCHEMA
        return cls(
            backend=backend,
            model=model or (LOCAL_JUDGE_MODEL if local else DEFAULT_BATCH_MODEL),
            temperature=temperature,
            threshold=threshold,
            response_format=ResponseFormat(response_format or default_format),
        )

    @property
    def judge_key(self) -> str:
        """Hash of backend, model, temperature and prompt template (``judge_batches.judge_key``)."""
        spec = [self.backend, self.model, repr(float(self.temperature)), TEMPLATE_SHA256]
        return hashlib.sha256("\n".join(spec).encode()).hexdigest()


@dataclass(frozen=True)
class JudgeRequest:
    """One chat-completion request; ``body`` is exactly what is sent and stored (it never holds credentials)."""

    custom_id: str
    eval_set: str
    utterance_id: str
    fused_label: str
    prompt_sha256: str
    judgment_key: str
    body: dict[str, Any] = field(repr=False)

    @property
    def request_json(self) -> str:
        return json.dumps(self.body, ensure_ascii=False, sort_keys=True)

    def batch_line(self) -> bytes:
        """This request as one line of a Batch API input file, newline included."""
        line = {"custom_id": self.custom_id, "method": "POST", "url": BATCH_URL, "body": self.body}
        return (json.dumps(line, ensure_ascii=False) + "\n").encode()


def judgment_key(eval_set: str, utterance_id: str, prompt_sha: str, judge_model: str, temperature: float) -> str:
    """SHA-256 of the judgment identity: the same key means a stored answer can be reused."""
    identity = json.dumps([eval_set, utterance_id, prompt_sha, judge_model, float(temperature)])
    return hashlib.sha256(identity.encode()).hexdigest()


def custom_id(eval_set: str, utterance_id: str, key: str) -> str:
    """``{eval_set}:{utterance_id}:{key[:16]}``, shortened to at most 64 characters (see module doc)."""
    head = f"{eval_set}:{utterance_id}"
    head_max = CUSTOM_ID_MAX_CHARS - 17
    if len(head) > head_max:
        head = f"{head[: head_max - 13]}~{hashlib.sha256(head.encode()).hexdigest()[:12]}"
    return f"{head}:{key[:16]}"


def build_request(judge_input: JudgeInput, config: JudgeConfig) -> JudgeRequest:
    messages = render_messages(judge_input, config.threshold)
    prompt_sha = prompt_sha256(messages)
    key = judgment_key(judge_input.eval_set, judge_input.utterance_id, prompt_sha, config.model, config.temperature)
    body = {
        "model": config.model,
        "messages": messages,
        "temperature": config.temperature,
        "max_tokens": config.max_tokens,
        **answer_format_fields(config.response_format),
    }
    return JudgeRequest(
        custom_id=custom_id(judge_input.eval_set, judge_input.utterance_id, key),
        eval_set=judge_input.eval_set,
        utterance_id=judge_input.utterance_id,
        fused_label=judge_input.fused_label,
        prompt_sha256=prompt_sha,
        judgment_key=key,
        body=body,
    )


def build_requests(inputs: Iterable[JudgeInput], config: JudgeConfig) -> list[JudgeRequest]:
    """One request per input; raises on duplicate (eval_set, utterance_id) since custom_ids must be unique."""
    requests = [build_request(judge_input, config) for judge_input in inputs]
    seen: set[str] = set()
    for request in requests:
        if request.custom_id in seen:
            raise ValueError(f"duplicate utterance {request.eval_set}/{request.utterance_id} in judge inputs")
        seen.add(request.custom_id)
    return requests


def select_for_scope(inputs: Iterable[JudgeInput], scope: Scope) -> list[JudgeInput]:
    """``all`` inputs (the paper), or only ``disagreements`` where the audio and text labels differ."""
    if scope == "all":
        return list(inputs)
    if scope == "disagreements":
        return [
            i
            for i in inputs
            if i.audio_label is not None and i.text_label is not None and i.audio_label != i.text_label
        ]
    raise ValueError(f"unknown judge scope {scope!r}; expected 'all' or 'disagreements'")
