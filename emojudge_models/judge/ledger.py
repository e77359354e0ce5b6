"""Where judge work is remembered, so a killed run never pays twice: submitted batches and arrived judgments.

Batches: :class:`BatchLedger`, implemented over the ``judge_batches`` table by :class:`DuckDBBatchLedger` (one
ledger per eval set and judge key; each call opens its own short connection, so the warehouse is not held open while
a batch runs for hours); :class:`InMemoryBatchLedger` is the reference implementation used by tests.

Judgments: :class:`JudgmentWriter` writes them to ``llm_judgments`` as they arrive, in small groups, each in its own
short transaction. Every paid answer is durable in the judge journal (:mod:`emojudge_models.judge.journal`) before
it reaches the writer, so a run killed while judging loses no answer: the next run stores what the journal holds,
reuses it and asks only the rest (no second call, no second charge). A group is written when it holds ``max_rows``
results or ``max_wait_s`` after its first result, whichever comes first. Each write opens its own connection, so the
warehouse is not held open while the judge is waited on. A write replaces only the rows of the custom_ids it writes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import pandas as pd

from emojudge_models.judge.result import JudgeResult
from emojudge_models.store.warehouse import Connect, insert_frame, sql_text


@dataclass(frozen=True)
class BatchRecord:
    batch_id: str
    input_file_id: str
    custom_ids: tuple[str, ...]
    attempt: int
    status: str
    output_file_id: str | None = None
    error_file_id: str | None = None


class BatchLedger(Protocol):
    def record_submitted(self, batch_id: str, input_file_id: str, custom_ids: Sequence[str], attempt: int) -> None:
        """Persist a created batch (status ``validating``); called before the first poll."""

    def update_status(self, batch_id: str, status: str, output_file_id: str | None, error_file_id: str | None) -> None:
        """Persist a status change seen while polling."""

    def mark_collected(self, batch_id: str) -> None:
        """The batch's results were handed back to the caller; it is no longer open."""

    def open_batches(self) -> list[BatchRecord]:
        """Batches recorded but not yet collected, whatever their API status."""


class InMemoryBatchLedger:
    """A thread-safe :class:`BatchLedger` held in memory."""

    def __init__(self) -> None:
        self._records: dict[str, BatchRecord] = {}
        self._collected: set[str] = set()
        self._lock = threading.Lock()

    def record_submitted(self, batch_id: str, input_file_id: str, custom_ids: Sequence[str], attempt: int) -> None:
        with self._lock:
            self._records[batch_id] = BatchRecord(batch_id, input_file_id, tuple(custom_ids), attempt, "validating")

    def update_status(self, batch_id: str, status: str, output_file_id: str | None, error_file_id: str | None) -> None:
        with self._lock:
            record = self._records[batch_id]
            self._records[batch_id] = replace(
                record, status=status, output_file_id=output_file_id, error_file_id=error_file_id
            )

    def mark_collected(self, batch_id: str) -> None:
        with self._lock:
            self._collected.add(batch_id)

    def open_batches(self) -> list[BatchRecord]:
        with self._lock:
            return [r for batch_id, r in self._records.items() if batch_id not in self._collected]

    def all_batches(self) -> list[BatchRecord]:
        with self._lock:
            return list(self._records.values())


class DuckDBBatchLedger:
    """Implements :class:`emojudge_models.judge.ledger.BatchLedger` on ``judge_batches``."""

    def __init__(self, connect: Connect, eval_set: str, judge_key: str, run_id: str) -> None:
        self.connect = connect
        self.eval_set = eval_set
        self.judge_key = judge_key
        self.run_id = run_id

    def record_submitted(self, batch_id: str, input_file_id: str, custom_ids: Sequence[str], attempt: int) -> None:
        with self.connect() as con:
            con.execute(
                sql_text("judge/record_batch.sql"),
                [batch_id, self.eval_set, self.judge_key, input_file_id, list(custom_ids), attempt, self.run_id],
            )

    def update_status(self, batch_id: str, status: str, output_file_id: str | None, error_file_id: str | None) -> None:
        with self.connect() as con:
            con.execute(sql_text("judge/update_batch.sql"), [status, output_file_id, error_file_id, batch_id])

    def mark_collected(self, batch_id: str) -> None:
        with self.connect() as con:
            con.execute(sql_text("judge/collect_batch.sql"), [batch_id])

    def open_batches(self) -> list[BatchRecord]:
        with self.connect() as con:
            rows = con.execute(sql_text("judge/open_batches.sql"), [self.eval_set, self.judge_key]).fetchall()
        return [
            BatchRecord(batch_id, input_file_id, tuple(custom_ids), attempt, status, output_id, error_id)
            for batch_id, input_file_id, custom_ids, attempt, status, output_id, error_id in rows
        ]


class JudgmentWriter:
    """Collects ``llm_judgments`` rows (``to_row(result)``, without eval_set) and writes them in groups.

    Use as a context manager: leaving it writes what is still pending, also when judging failed part-way.
    """

    def __init__(
        self,
        connect: Connect,
        eval_set: str,
        to_row: Callable[[JudgeResult], dict[str, Any]],
        *,
        max_rows: int = 8,
        max_wait_s: float = 2.0,
        after_write: Callable[[list[str]], None] | None = None,
    ) -> None:
        if max_rows < 1 or max_wait_s < 0:
            raise ValueError("need max_rows >= 1 and max_wait_s >= 0")
        self.connect = connect
        self.eval_set = eval_set
        self.to_row = to_row
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self.after_write = after_write
        """Called with the custom_ids of each group once its transaction committed (the journal marks them stored)."""
        self.rows: list[dict[str, Any]] = []
        """Every row written so far, in arrival order."""
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._error: BaseException | None = None

    def __enter__(self) -> JudgmentWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.flush()

    def add(self, result: JudgeResult) -> None:
        """Queue one result's row; writes the group when it is full (the timer writes a partial one)."""
        self.add_row(self.to_row(result))

    def add_row(self, row: dict[str, Any]) -> None:
        """Queue a row made elsewhere (an answer another run paid for, or one recovered from the journal)."""
        with self._lock:
            self._raise_timer_error()
            self._pending.append(row)
            if len(self._pending) >= self.max_rows:
                self._write_pending()
            elif self._timer is None:
                self._timer = threading.Timer(self.max_wait_s, self._write_on_timer)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        """Write what is pending now; raises a write error the timer met."""
        with self._lock:
            self._raise_timer_error()
            self._write_pending()

    def _write_on_timer(self) -> None:
        with self._lock:
            try:
                self._write_pending()
            except Exception as error:  # noqa: BLE001 - handed to the judging thread, re-raised by add or flush
                self._error = error

    def _raise_timer_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _write_pending(self) -> None:
        """Replace the pending custom_ids' rows and insert the pending rows in one transaction (lock held)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        frame = pd.DataFrame(self._pending).assign(eval_set=self.eval_set)
        with self.connect() as con:
            con.execute("BEGIN")
            try:
                con.execute(sql_text("judge/delete_judgments.sql"), [frame["custom_id"].tolist()])
                insert_frame(con, "llm_judgments", frame)
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise
        self.rows.extend(self._pending)
        written, self._pending = [row["custom_id"] for row in self._pending], []
        if self.after_write is not None:
            self.after_write(written)
