"""Reading the API key from the environment, and scrubbing it from any text we log or store."""

from __future__ import annotations

import os

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
