"""The one place an ``openai.OpenAI`` client is built, with the API key read from the environment, and the scrubbing
of that key from any text we log or store."""

from __future__ import annotations

import os

import openai

API_KEY_ENV = "OPENAI_API_KEY"
REDACTED = "[redacted]"
MIN_SECRET_CHARS = 8
NO_KEY = "no-key"
"""Placeholder sent to endpoints that need no key (the local llama.cpp server); the SDK requires one."""


class MissingApiKeyError(RuntimeError):
    pass


def api_key_from_env(required: bool) -> str:
    """The key in ``$OPENAI_API_KEY``; when unset, raises if ``required``, else returns a placeholder."""
    key = os.environ.get(API_KEY_ENV, "").strip()
    if key:
        return key
    if required:
        raise MissingApiKeyError(f"set {API_KEY_ENV} in the environment to use this judge backend")
    return NO_KEY


def redact(text: str | None) -> str | None:
    """``text`` with the current API key replaced by ``[redacted]``.

    Keys shorter than 8 characters (placeholders for keyless local servers) are left alone, since replacing
    them would corrupt ordinary text.
    """
    key = os.environ.get(API_KEY_ENV, "").strip()
    if text is None or len(key) < MIN_SECRET_CHARS:
        return text
    return text.replace(key, REDACTED)


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


def make_async_client(
    base_url: str | None, *, require_api_key: bool, max_retries: int, timeout_s: float
) -> openai.AsyncOpenAI:
    """The asynchronous client :class:`~emojudge_models.judge.chat.ChatJudge` runs each attempt on, so that an
    attempt can be cancelled at its total deadline (see :func:`make_client` for the key and the retries)."""
    return openai.AsyncOpenAI(
        base_url=base_url,
        api_key=api_key_from_env(required=require_api_key),
        max_retries=max_retries,
        timeout=timeout_s,
    )
