"""One judged request as both backends return it: the raw answer, the validated judgment or the error, tokens."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from emojudge_models.judge.client import redact
from emojudge_models.judge.requests import JudgeRequest
from emojudge_models.judge.schema import Decision, Judgment, decide, parse_judgment

MAX_ANSWER_ATTEMPTS = 3
"""Responses a judgment may get before an invalid one is final: the judgment stays an error row, not asked again."""


@dataclass(frozen=True)
class JudgeResult:
    """Exactly one of ``judgment`` and ``error`` is set; ``response_json`` is the raw body, key redacted.

    ``answered`` is True only for a valid judgment. ``responded`` is True when the endpoint returned a body with
    status 200 (a paid call), valid or not: an invalid one (an HTML error page, an out-of-set label, confidence
    5.0, no choices) is an error to ask again, at most :data:`MAX_ANSWER_ATTEMPTS` times. Results without a
    response (HTTP errors, timeouts, expiry) cost nothing and are asked again on every run.
    """

    request: JudgeRequest
    response_json: str | None
    judgment: Judgment | None
    error: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    requested_at: datetime
    completed_at: datetime | None
    answered: bool
    responded: bool
    batch_id: str | None = None

    @property
    def custom_id(self) -> str:
        return self.request.custom_id

    def decide(self, threshold: float) -> Decision:
        """The acceptance rule applied to this result against the request's fused label."""
        return decide(self.request.fused_label, self.judgment if self.judgment is not None else self.error, threshold)


def describe_error(error: Any) -> str:
    """``code: message`` of an API error object, or its string form."""
    if isinstance(error, dict):
        inner = error.get("error", error)
        if isinstance(inner, dict):
            parts = (inner.get("code"), inner.get("message"))
            return ": ".join(str(part) for part in parts if part) or "error"
    return str(error)


def _answer_text(completion: dict[str, Any]) -> tuple[str | None, str | None]:
    """(content, problem) from a chat completion; ``problem`` explains a missing or refused answer."""
    choices = completion.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None, "response has no choices"
    message = choices[0].get("message") or {}
    if message.get("refusal"):
        return None, f"model refused: {message['refusal']}"
    content = message.get("content")
    if not isinstance(content, str):
        return None, "response has no message content"
    if choices[0].get("finish_reason") == "length":
        return content, "answer truncated at max_tokens"
    return content, None


def _usage(completion: dict[str, Any]) -> tuple[int | None, int | None]:
    usage = completion.get("usage") or {}
    prompt, completion_tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return (
        prompt if isinstance(prompt, int) else None,
        completion_tokens if isinstance(completion_tokens, int) else None,
    )


def result_from_completion(
    request: JudgeRequest,
    raw_response: str,
    requested_at: datetime,
    completed_at: datetime | None,
    batch_id: str | None = None,
) -> JudgeResult:
    """Validate a raw chat-completion body received with status 200; never raises for a bad answer."""
    raw_response = redact(raw_response) or ""
    prompt_tokens = completion_tokens = None
    try:
        completion = json.loads(raw_response)
    except json.JSONDecodeError as error:
        outcome: Judgment | str = f"response body is not JSON: {error.msg}"
    else:
        if isinstance(completion, dict):
            prompt_tokens, completion_tokens = _usage(completion)
            content, problem = _answer_text(completion)
            outcome = parse_judgment(content) if content is not None else str(problem)
            if isinstance(outcome, str) and problem and content is not None:
                outcome = f"{outcome} ({problem})"
        else:
            outcome = "response body is not a JSON object"
    return JudgeResult(
        request=request,
        response_json=raw_response,
        judgment=outcome if isinstance(outcome, Judgment) else None,
        error=redact(outcome) if isinstance(outcome, str) else None,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        requested_at=requested_at,
        completed_at=completed_at,
        answered=isinstance(outcome, Judgment),
        responded=True,
        batch_id=batch_id,
    )


def result_from_error(
    request: JudgeRequest,
    error: str,
    requested_at: datetime,
    completed_at: datetime | None,
    response_json: str | None = None,
    batch_id: str | None = None,
) -> JudgeResult:
    """A request that got no answer (HTTP error, expiry, exhausted retries); the fused label will stand."""
    return JudgeResult(
        request=request,
        response_json=redact(response_json),
        judgment=None,
        error=redact(error) or "unknown error",
        prompt_tokens=None,
        completion_tokens=None,
        requested_at=requested_at,
        completed_at=completed_at,
        answered=False,
        responded=False,
        batch_id=batch_id,
    )
