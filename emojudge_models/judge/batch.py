"""The ``openai-batch`` backend (the paper's path): JSONL files through the OpenAI Batch API.

Flow of :meth:`BatchJudge.run`: resume the ledger's open batches that hold any of the requested custom_ids;
split the rest at the per-file limits, upload each file (purpose ``batch``), create a batch on
``/v1/chat/completions`` with a 24h window and record it in the ledger before polling; poll with backoff;
download output and error files; resubmit only requests that failed retryably or expired, up to
``max_attempts`` submissions each. Batches are marked collected once every request has a result.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import openai

from emojudge_models.judge.client import make_client, redact
from emojudge_models.judge.ledger import BatchLedger, BatchRecord
from emojudge_models.judge.requests import BATCH_URL, JudgeRequest
from emojudge_models.judge.result import JudgeResult, describe_error, result_from_completion, result_from_error

log = logging.getLogger(__name__)

MAX_REQUESTS_PER_FILE = 50_000
MAX_BYTES_PER_FILE = 200_000_000
COMPLETION_WINDOW = "24h"
TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
RETRYABLE_HTTP = frozenset({408, 409, 429})


class BatchApiError(RuntimeError):
    """A Batch API call failed after the SDK's retries; the message is redacted."""


class BatchesStillRunning(RuntimeError):
    """``max_wait_s`` passed with batches still open; they stay in the ledger and the next run resumes them."""

    def __init__(self, batch_ids: Sequence[str]) -> None:
        super().__init__(f"judge batches still running after the wait limit: {', '.join(batch_ids)}")
        self.batch_ids = tuple(batch_ids)


@dataclass(frozen=True)
class _Failure:
    request: JudgeRequest
    error: str
    response_json: str | None
    retryable: bool


def chunk_requests(
    requests: Sequence[JudgeRequest], max_requests: int, max_bytes: int
) -> tuple[list[list[tuple[JudgeRequest, bytes]]], list[JudgeRequest]]:
    """Requests grouped into input files within both limits, and those whose single line exceeds ``max_bytes``."""
    chunks: list[list[tuple[JudgeRequest, bytes]]] = []
    oversized: list[JudgeRequest] = []
    current: list[tuple[JudgeRequest, bytes]] = []
    current_bytes = 0
    for request in requests:
        line = request.batch_line()
        if len(line) > max_bytes:
            oversized.append(request)
            continue
        if current and (len(current) >= max_requests or current_bytes + len(line) > max_bytes):
            chunks.append(current)
            current, current_bytes = [], 0
        current.append((request, line))
        current_bytes += len(line)
    if current:
        chunks.append(current)
    return chunks, oversized


def _timestamp(seconds: int | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds else None


class BatchJudge:
    """Judges requests through the Batch API; see the module doc for the flow."""

    def __init__(
        self,
        ledger: BatchLedger,
        base_url: str | None = None,
        *,
        max_requests_per_file: int = MAX_REQUESTS_PER_FILE,
        max_bytes_per_file: int = MAX_BYTES_PER_FILE,
        poll_interval_s: float = 30.0,
        max_poll_interval_s: float = 600.0,
        poll_backoff: float = 1.5,
        max_wait_s: float = 26 * 3600.0,
        max_attempts: int = 3,
        max_retries: int = 4,
        timeout_s: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_requests_per_file < 1 or max_bytes_per_file < 1 or max_attempts < 1:
            raise ValueError("max_requests_per_file, max_bytes_per_file and max_attempts must be at least 1")
        if poll_interval_s <= 0 or poll_backoff < 1 or max_wait_s < 0:
            raise ValueError("need poll_interval_s > 0, poll_backoff >= 1 and max_wait_s >= 0")
        self.ledger = ledger
        self.base_url = base_url
        self.max_requests_per_file = max_requests_per_file
        self.max_bytes_per_file = max_bytes_per_file
        self.poll_interval_s = poll_interval_s
        self.max_poll_interval_s = max(max_poll_interval_s, poll_interval_s)
        self.poll_backoff = poll_backoff
        self.max_wait_s = max_wait_s
        self.max_attempts = max_attempts
        self._sleep = sleep
        self._clock = clock
        self._client = make_client(base_url, require_api_key=True, max_retries=max_retries, timeout_s=timeout_s)

    def __repr__(self) -> str:
        return f"BatchJudge(base_url={self.base_url!r}, max_attempts={self.max_attempts})"

    unavailable: str | None = None
    """Always None: an unreachable Batch API raises (:class:`BatchApiError`) instead of answering nothing."""

    def __call__(
        self,
        requests: Sequence[JudgeRequest],
        on_result: Callable[[JudgeResult], None] | None = None,
        on_answer: Callable[[JudgeResult], None] | None = None,
    ) -> list[JudgeResult]:
        """:meth:`run`, with ``on_answer`` (see :meth:`ChatJudge.judge`) called on each responded result first."""

        def emit(result: JudgeResult) -> None:
            if on_answer is not None and result.responded:
                on_answer(result)
            if on_result is not None:
                on_result(result)

        return self.run(requests, on_result=emit)

    def run(
        self, requests: Sequence[JudgeRequest], on_result: Callable[[JudgeResult], None] | None = None
    ) -> list[JudgeResult]:
        """One result per request, in the same order; raises :class:`BatchesStillRunning` past ``max_wait_s``.

        ``on_result`` is called with each final result as soon as its batch is collected, before the batch is
        marked collected, so results reach storage even when a later batch is still running.
        """
        by_id = {request.custom_id: request for request in requests}
        if len(by_id) != len(requests):
            raise ValueError("judge requests have duplicate custom_ids")
        results: dict[str, JudgeResult] = {}

        def emit(result: JudgeResult) -> None:
            results[result.custom_id] = result
            if on_result is not None:
                on_result(result)

        owner: dict[str, BatchRecord] = {}
        resumed = self._resume(by_id, owner)
        owning = set(owner.values())
        active = [record for record in resumed if record in owning]
        fresh = [request for request in requests if request.custom_id not in owner]
        active += self._submit(fresh, 1, owner, emit)
        touched = [record.batch_id for record in resumed + active]
        deadline = self._clock() + self.max_wait_s
        while active:
            for record, batch in self._wait_for_terminal(active, deadline):
                active.remove(record)
                retry = self._collect(record, batch, by_id, owner, emit)
                new_records = self._submit(retry, record.attempt + 1, owner, emit)
                active += new_records
                touched += [new.batch_id for new in new_records]
        for batch_id in dict.fromkeys(touched):
            self.ledger.mark_collected(batch_id)
        return [results[request.custom_id] for request in requests]

    def cancel_open_batches(self) -> list[str]:
        """Ask the API to cancel every open batch in the ledger; returns their ids."""
        cancelled = []
        for record in self.ledger.open_batches():
            batch = self._call("cancel batch", self._client.batches.cancel, record.batch_id)
            self.ledger.update_status(record.batch_id, batch.status, batch.output_file_id, batch.error_file_id)
            cancelled.append(record.batch_id)
        return cancelled

    def _call(self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except openai.APIError as error:
            raise BatchApiError(redact(f"{what} failed: {type(error).__name__}: {error}")) from None

    def _resume(self, by_id: dict[str, JudgeRequest], owner: dict[str, BatchRecord]) -> list[BatchRecord]:
        """Open ledger batches holding requested ids; each id is owned by its latest attempt only."""
        resumed = [r for r in self.ledger.open_batches() if any(cid in by_id for cid in r.custom_ids)]
        for record in sorted(resumed, key=lambda r: r.attempt):
            for cid in record.custom_ids:
                if cid in by_id:
                    owner[cid] = record
            log.info("resuming judge batch %s (attempt %d, status %s)", record.batch_id, record.attempt, record.status)
        return resumed

    def _submit(
        self,
        requests: Sequence[JudgeRequest],
        attempt: int,
        owner: dict[str, BatchRecord],
        emit: Callable[[JudgeResult], None],
    ) -> list[BatchRecord]:
        chunks, oversized = chunk_requests(requests, self.max_requests_per_file, self.max_bytes_per_file)
        now = datetime.now(UTC)
        for request in oversized:
            error = f"request line is over the {self.max_bytes_per_file}-byte input file limit"
            emit(result_from_error(request, error, now, now))
        records = []
        for chunk in chunks:
            data = b"".join(line for _, line in chunk)
            uploaded = self._call(
                "upload batch input",
                self._client.files.create,
                file=("emojudge-judge-requests.jsonl", data, "application/jsonl"),
                purpose="batch",
            )
            batch = self._call(
                "create batch",
                self._client.batches.create,
                input_file_id=uploaded.id,
                endpoint=BATCH_URL,
                completion_window=COMPLETION_WINDOW,
                metadata={"source": "emojudge", "attempt": str(attempt)},
            )
            custom_ids = tuple(request.custom_id for request, _ in chunk)
            self.ledger.record_submitted(batch.id, uploaded.id, custom_ids, attempt)
            record = BatchRecord(batch.id, uploaded.id, custom_ids, attempt, batch.status)
            for cid in custom_ids:
                owner[cid] = record
            records.append(record)
            log.info(
                "submitted judge batch %s: %d requests, %d bytes, attempt %d", batch.id, len(chunk), len(data), attempt
            )
        return records

    def _wait_for_terminal(self, active: list[BatchRecord], deadline: float) -> list[tuple[BatchRecord, Any]]:
        """Poll until at least one active batch is terminal, backing off between rounds."""
        interval = self.poll_interval_s
        seen = {record.batch_id: record.status for record in active}
        while True:
            terminal = []
            for record in active:
                batch = self._call("retrieve batch", self._client.batches.retrieve, record.batch_id)
                if batch.status != seen[record.batch_id]:
                    seen[record.batch_id] = batch.status
                    self.ledger.update_status(batch.id, batch.status, batch.output_file_id, batch.error_file_id)
                    log.info("judge batch %s is %s", batch.id, batch.status)
                if batch.status in TERMINAL_STATUSES:
                    terminal.append((record, batch))
            if terminal:
                return terminal
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise BatchesStillRunning([record.batch_id for record in active])
            self._sleep(min(interval, remaining))
            interval = min(interval * self.poll_backoff, self.max_poll_interval_s)

    def _read_lines(self, file_id: str | None) -> dict[str, dict[str, Any]]:
        if not file_id:
            return {}
        content = self._call("download batch file", self._client.files.content, file_id)
        lines: dict[str, dict[str, Any]] = {}
        for number, text in enumerate(content.text.splitlines(), start=1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
            except json.JSONDecodeError:
                log.warning("batch file %s line %d is not JSON; its request counts as missing", file_id, number)
                continue
            if isinstance(line, dict) and isinstance(line.get("custom_id"), str):
                lines[line["custom_id"]] = line
        return lines

    def _collect(
        self,
        record: BatchRecord,
        batch: Any,
        by_id: dict[str, JudgeRequest],
        owner: dict[str, BatchRecord],
        emit: Callable[[JudgeResult], None],
    ) -> list[JudgeRequest]:
        """Store results for the ids this batch owns; return the requests to resubmit."""
        owned = [by_id[cid] for cid in record.custom_ids if cid in by_id and owner.get(cid) is record]
        outputs = self._read_lines(batch.output_file_id)
        errors = self._read_lines(batch.error_file_id)
        requested_at = _timestamp(batch.created_at) or datetime.now(UTC)
        completed_at = _timestamp(
            batch.completed_at or batch.expired_at or batch.failed_at or batch.cancelled_at
        ) or datetime.now(UTC)
        batch_error = self._batch_error(batch)
        failures = []
        for request in owned:
            line = outputs.get(request.custom_id) or errors.get(request.custom_id)
            failure = self._line_failure(request, line, batch.status, batch_error)
            if failure is None:
                body = json.dumps(line["response"]["body"], ensure_ascii=False)
                emit(result_from_completion(request, body, requested_at, completed_at, batch_id=batch.id))
            else:
                failures.append(failure)
        retry = []
        for failure in failures:
            if failure.retryable and record.attempt < self.max_attempts:
                retry.append(failure.request)
                continue
            plural = "s" if record.attempt > 1 else ""
            suffix = f" (gave up after {record.attempt} submission{plural})" if failure.retryable else ""
            emit(
                result_from_error(
                    failure.request,
                    failure.error + suffix,
                    requested_at,
                    completed_at,
                    response_json=failure.response_json,
                    batch_id=batch.id,
                )
            )
        log.info(
            "judge batch %s %s: %d answered, %d failed, %d to resubmit",
            batch.id,
            batch.status,
            len(owned) - len(failures),
            len(failures),
            len(retry),
        )
        return retry

    @staticmethod
    def _batch_error(batch: Any) -> str:
        errors = getattr(batch, "errors", None)
        data = getattr(errors, "data", None) or []
        details = "; ".join(describe_error(error.model_dump()) for error in data)
        return f"batch {batch.id} {batch.status}" + (f": {details}" if details else "")

    @staticmethod
    def _line_failure(
        request: JudgeRequest, line: dict[str, Any] | None, batch_status: str, batch_error: str
    ) -> _Failure | None:
        """None for a 200 answer; otherwise why the request failed and whether resubmitting may help."""
        if line is None:
            return _Failure(request, f"no result for this request ({batch_error})", None, retryable=True)
        response = line.get("response")
        if isinstance(response, dict):
            status = response.get("status_code")
            body = response.get("body")
            if status == 200 and isinstance(body, dict):
                return None
            body_error = body.get("error") if isinstance(body, dict) else None
            error = f"HTTP {status}: {describe_error(body_error or line.get('error') or 'no body')}"
            retryable = isinstance(status, int) and (status in RETRYABLE_HTTP or status >= 500)
            return _Failure(request, error, json.dumps(body) if body is not None else None, retryable)
        return _Failure(request, describe_error(line.get("error") or batch_status), None, retryable=True)
