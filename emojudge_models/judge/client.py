"""The one place an ``openai.OpenAI`` client is built, with the key taken from the environment."""

from __future__ import annotations

import openai

from emojudge_models.judge.redaction import api_key_from_env


def make_client(base_url: str | None, *, require_api_key: bool, max_retries: int, timeout_s: float) -> openai.OpenAI:
    """A client for ``base_url`` (None: api.openai.com).

    The SDK retries 408/409/429/5xx, connection errors and timeouts up to ``max_retries`` times with
    exponential backoff (0.5 s doubling, capped at 8 s, up to 25% jitter) and honours ``Retry-After``.
    """
    return openai.OpenAI(
        base_url=base_url,
        api_key=api_key_from_env(required=require_api_key),
        max_retries=max_retries,
        timeout=timeout_s,
    )
