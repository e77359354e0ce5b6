"""The ``openai-chat`` backend: one chat-completion call per request against any OpenAI-compatible endpoint."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import openai

from emojudge_models.judge.client import make_client
from emojudge_models.judge.requests import JudgeRequest
from emojudge_models.judge.result import JudgeResult, describe_error, result_from_completion, result_from_error

log = logging.getLogger(__name__)


class ChatJudge:
    """Judges requests with bounded concurrency; a failed or malformed answer becomes that request's error.

    Retries (429, 5xx, timeouts, connection errors) are the SDK's: ``max_retries`` extra attempts with
    exponential backoff and jitter, each attempt bounded by ``timeout_s``.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        max_workers: int = 4,
        max_retries: int = 4,
        timeout_s: float = 60.0,
        require_api_key: bool = True,
    ) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        self.base_url = base_url
        self.max_workers = max_workers
        self._client = make_client(
            base_url, require_api_key=require_api_key, max_retries=max_retries, timeout_s=timeout_s
        )

    def __repr__(self) -> str:
        return f"ChatJudge(base_url={self.base_url!r}, max_workers={self.max_workers})"

    def judge(self, requests: Sequence[JudgeRequest]) -> list[JudgeResult]:
        """One result per request, in the same order."""
        if not requests:
            return []
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(requests))) as pool:
            results = list(pool.map(self._judge_one, requests))
        failed = sum(result.error is not None for result in results)
        log.info("judged %d requests at %s: %d with errors", len(results), self.base_url or "api.openai.com", failed)
        return results

    def _judge_one(self, request: JudgeRequest) -> JudgeResult:
        requested_at = datetime.now(UTC)
        try:
            response = self._client.chat.completions.with_raw_response.create(**request.body)
        except openai.APIStatusError as error:
            log.warning("judge request %s failed with HTTP %d", request.custom_id, error.status_code)
            return result_from_error(
                request,
                f"HTTP {error.status_code}: {describe_error(error.body) if error.body else error.message}",
                requested_at,
                datetime.now(UTC),
                response_json=error.response.text,
            )
        except openai.APIError as error:
            log.warning("judge request %s failed: %s", request.custom_id, type(error).__name__)
            return result_from_error(request, f"{type(error).__name__}: {error}", requested_at, datetime.now(UTC))
        result = result_from_completion(request, response.text, requested_at, datetime.now(UTC))
        log.debug("judge request %s answered; error=%s", request.custom_id, result.error)
        return result
