"""The ``openai-chat`` backend: one chat-completion call per request against any OpenAI-compatible endpoint."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
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

    def judge(
        self, requests: Sequence[JudgeRequest], on_result: Callable[[JudgeResult], None] | None = None
    ) -> list[JudgeResult]:
        """One result per request, in the same order.

        ``on_result`` is called with each result as soon as it arrives, in this thread (calls never overlap), so a
        caller can store answers before the rest come in; if it raises, requests not yet started are cancelled.
        """
        if not requests:
            return []
        pool = ThreadPoolExecutor(max_workers=min(self.max_workers, len(requests)))
        try:
            futures = {pool.submit(self._judge_one, request): index for index, request in enumerate(requests)}
            by_index: dict[int, JudgeResult] = {}
            for future in as_completed(futures):
                result = future.result()
                by_index[futures[future]] = result
                if on_result is not None:
                    on_result(result)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        results = [by_index[index] for index in range(len(requests))]
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
