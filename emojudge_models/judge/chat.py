"""The ``openai-chat`` backend: one chat-completion call per request against any OpenAI-compatible endpoint.

Given several base URLs (the local judge's llama.cpp servers, one per slot), each worker thread keeps to one of them
in turn, so with ``max_workers`` equal to their number every server has one request in flight at a time.

Every attempt has a total deadline, ``timeout_s`` for connect, send and the whole body together: httpx's timeouts
bound each read, so a server that trickles a byte every 20 s would otherwise hold a request for ever. Each worker
thread runs its calls on its own event loop, where ``asyncio.wait_for`` cancels an attempt that overruns and closes
its connection. Attempts that time out, fail to connect or get 408/409/429/5xx are retried with exponential backoff
(0.5 s doubling, at most 8 s, up to 25% jitter; a ``Retry-After`` of at most 60 s is honoured); other HTTP errors
and the last failure become the request's error row.

A judge that is down is said so once, not by every request in turn: after ``unavailable_after`` requests in a row
end without any response (every attempt refused, reset or timed out), or as soon as ``alive`` reports the server
gone (the local judge's llama.cpp process died), the judge is :attr:`ChatJudge.unavailable` and the requests not yet
sent fail at once with that reason, costing nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime

import openai

from emojudge_models.judge.client import api_key_from_env, make_async_client
from emojudge_models.judge.gate import UNAVAILABLE
from emojudge_models.judge.requests import JudgeRequest
from emojudge_models.judge.result import JudgeResult, describe_error, result_from_completion, result_from_error

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
MAX_RETRY_AFTER_S = 60.0


class _Unanswered(Exception):
    """One attempt ended without a response (refused, reset, timed out): retryable, and evidence of an outage."""


class ChatJudge:
    """Judges requests with bounded concurrency; a failed or malformed answer becomes that request's error.

    ``timeout_s`` is each attempt's total deadline; ``max_retries`` extra attempts follow a retryable failure.
    ``alive`` (optional) returns None while the endpoint's server runs, else why it is gone.
    """

    def __init__(
        self,
        base_url: str | Sequence[str] | None = None,
        *,
        max_workers: int = 4,
        max_retries: int = 4,
        timeout_s: float = 60.0,
        require_api_key: bool = True,
        unavailable_after: int = 3,
        alive: Callable[[], str | None] | None = None,
        backoff_s: float = BACKOFF_S,
    ) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        urls = [base_url] if base_url is None or isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ValueError("ChatJudge needs at least one base URL (or None for api.openai.com)")
        api_key_from_env(required=require_api_key)  # a missing key is refused now, not by every request
        self.urls = urls
        self.base_url = urls[0] if len(urls) == 1 else ", ".join(urls)
        self.max_workers = max_workers
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self.require_api_key = require_api_key
        self.unavailable_after = unavailable_after
        self.alive = alive
        self.backoff_s = backoff_s
        self.unavailable: str | None = None
        """Why the judge could not be reached (``judge-unavailable: ...``); None while it answers."""
        self._failures_in_row = 0
        self._state = threading.Lock()
        self._turns = itertools.count()
        self._thread = threading.local()
        self._loops: list[tuple[asyncio.AbstractEventLoop, openai.AsyncOpenAI]] = []

    def __repr__(self) -> str:
        return f"ChatJudge(base_url={self.base_url!r}, max_workers={self.max_workers})"

    def __call__(self, requests: Sequence[JudgeRequest], **callbacks) -> list[JudgeResult]:
        return self.judge(requests, **callbacks)

    def judge(
        self,
        requests: Sequence[JudgeRequest],
        on_result: Callable[[JudgeResult], None] | None = None,
        on_answer: Callable[[JudgeResult], None] | None = None,
    ) -> list[JudgeResult]:
        """One result per request, in the same order.

        ``on_answer`` is called in the worker thread with each result that got a response, before that worker sends
        its next request (make it durable there: a kill then loses only the requests in flight); it must be
        thread-safe. ``on_result`` is called with each result as soon as it arrives, in this thread (calls never
        overlap), so a caller can store answers before the rest come in; if either raises, requests not yet started
        are cancelled.
        """
        if not requests:
            return []
        pool = ThreadPoolExecutor(max_workers=min(self.max_workers, len(requests)))
        try:
            futures = {pool.submit(self._judge_one, r, on_answer): index for index, r in enumerate(requests)}
            by_index: dict[int, JudgeResult] = {}
            for future in as_completed(futures):
                result = future.result()
                by_index[futures[future]] = result
                if on_result is not None:
                    on_result(result)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self._close_loops()
        results = [by_index[index] for index in range(len(requests))]
        failed = sum(result.error is not None for result in results)
        log.info("judged %d requests at %s: %d with errors", len(results), self.base_url or "api.openai.com", failed)
        return results

    # --- one request --------------------------------------------------------------------------------------------

    def _judge_one(self, request: JudgeRequest, on_answer: Callable[[JudgeResult], None] | None) -> JudgeResult:
        requested_at = datetime.now(UTC)
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            if (down := self._down()) is not None:
                return result_from_error(request, down, requested_at, datetime.now(UTC))
            try:
                result = self._attempt(request, requested_at)
            except _Unanswered as error:
                last = str(error)
                if attempt < self.max_retries:
                    self._sleep_before_retry(attempt, None)
                continue
            except openai.APIStatusError as error:
                if error.status_code in RETRYABLE_STATUS and attempt < self.max_retries:
                    log.info("judge request %s got HTTP %d: retrying", request.custom_id, error.status_code)
                    self._sleep_before_retry(attempt, error.response.headers.get("retry-after"))
                    continue
                log.warning("judge request %s failed with HTTP %d", request.custom_id, error.status_code)
                self._answered_somehow()
                return result_from_error(
                    request,
                    f"HTTP {error.status_code}: {describe_error(error.body) if error.body else error.message}",
                    requested_at,
                    datetime.now(UTC),
                    response_json=error.response.text,
                )
            except openai.APIError as error:
                log.warning("judge request %s failed: %s", request.custom_id, type(error).__name__)
                self._answered_somehow()
                return result_from_error(request, f"{type(error).__name__}: {error}", requested_at, datetime.now(UTC))
            self._answered_somehow()
            if on_answer is not None:
                on_answer(result)
            log.debug("judge request %s answered; error=%s", request.custom_id, result.error)
            return result
        self._no_response(last)
        log.warning("judge request %s got no answer: %s", request.custom_id, last)
        return result_from_error(request, self._down() or last, requested_at, datetime.now(UTC))

    def _attempt(self, request: JudgeRequest, requested_at: datetime) -> JudgeResult:
        """One call within the total deadline; a response (any 2xx body) becomes a result."""
        loop, client = self._loop_and_client()
        call = client.chat.completions.with_raw_response.create(**request.body)
        try:
            response = loop.run_until_complete(asyncio.wait_for(call, self.timeout_s))
        except (TimeoutError, openai.APITimeoutError):
            raise _Unanswered(f"APITimeoutError: no complete answer within {self.timeout_s:g} s") from None
        except openai.APIConnectionError as error:
            raise _Unanswered(f"{type(error).__name__}: {error}") from None
        return result_from_completion(request, response.text, requested_at, datetime.now(UTC))

    def _loop_and_client(self):
        """This worker thread's event loop and client: the endpoints are dealt out to threads in turn."""
        if getattr(self._thread, "client", None) is None:
            loop = asyncio.new_event_loop()
            url = self.urls[next(self._turns) % len(self.urls)]
            client = make_async_client(
                url, require_api_key=self.require_api_key, max_retries=0, timeout_s=self.timeout_s
            )
            with self._state:
                self._loops.append((loop, client))
            self._thread.loop, self._thread.client = loop, client
        return self._thread.loop, self._thread.client

    def _close_loops(self) -> None:
        with self._state:
            loops, self._loops = self._loops, []
        for loop, client in loops:
            try:
                loop.run_until_complete(client.close())
            finally:
                loop.close()
        self._thread = threading.local()

    def _sleep_before_retry(self, attempt: int, retry_after: str | None) -> None:
        delay = min(self.backoff_s * 2**attempt, MAX_BACKOFF_S) * (1 + random.uniform(0, 0.25))
        if retry_after is not None:
            with contextlib.suppress(ValueError):
                delay = min(max(float(retry_after), 0.0), MAX_RETRY_AFTER_S)
        time.sleep(delay)

    # --- is the judge there at all -------------------------------------------------------------------------------

    def _down(self) -> str | None:
        """Why requests should stop being sent, if they should: a dead server or too many unanswered in a row."""
        if self.unavailable is None and self.alive is not None and (gone := self.alive()) is not None:
            self._mark_unavailable(gone)
        return self.unavailable

    def _answered_somehow(self) -> None:
        with self._state:
            self._failures_in_row = 0

    def _no_response(self, last: str) -> None:
        with self._state:
            self._failures_in_row += 1
            tripped = self._failures_in_row >= self.unavailable_after
        if tripped:
            self._mark_unavailable(
                f"{self.unavailable_after} requests in a row got no answer from {self.base_url or 'api.openai.com'}"
                f" (last: {last})"
            )
        elif self.alive is not None:
            self._down()

    def _mark_unavailable(self, why: str) -> None:
        with self._state:
            if self.unavailable is not None:
                return
            self.unavailable = f"{UNAVAILABLE}: {why}"
        log.error("%s; the requests not yet sent are not sent", self.unavailable)
