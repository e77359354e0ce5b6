"""The ``openai-chat`` backend: one chat-completion call per request against any OpenAI-compatible endpoint.

Given several base URLs (the local judge's llama.cpp servers, one per slot), each worker thread keeps to one of them
in turn, so with ``max_workers`` equal to their number every server has one request in flight at a time.
"""

from __future__ import annotations

import itertools
import logging
import threading
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
        base_url: str | Sequence[str] | None = None,
        *,
        max_workers: int = 4,
        max_retries: int = 4,
        timeout_s: float = 60.0,
        require_api_key: bool = True,
    ) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        urls = [base_url] if base_url is None or isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ValueError("ChatJudge needs at least one base URL (or None for api.openai.com)")
        self.base_url = urls[0] if len(urls) == 1 else ", ".join(urls)
        self.max_workers = max_workers
        self._clients = [
            make_client(url, require_api_key=require_api_key, max_retries=max_retries, timeout_s=timeout_s)
            for url in urls
        ]
        self._turns = itertools.count()
        self._thread = threading.local()

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

    def _client(self):
        """This worker thread's client: the endpoints are dealt out to threads in turn."""
        client = getattr(self._thread, "client", None)
        if client is None:
            client = self._thread.client = self._clients[next(self._turns) % len(self._clients)]
        return client

    def _judge_one(self, request: JudgeRequest) -> JudgeResult:
        requested_at = datetime.now(UTC)
        try:
            response = self._client().chat.completions.with_raw_response.create(**request.body)
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
