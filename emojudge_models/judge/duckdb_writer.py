"""Judgments written to ``llm_judgments`` as they arrive, in small groups, each in its own short transaction.

A run killed while judging keeps every answer already written, so the next run reuses them and asks only the rest
(no second call, no second charge). A group is written when it holds ``max_rows`` results or ``max_wait_s`` after
its first result, whichever comes first. Each write opens its own connection, so the warehouse is not held open
while the judge is waited on. A write replaces only the rows of the custom_ids it writes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pandas as pd

from emojudge_models.judge.duckdb_ledger import Connect
from emojudge_models.judge.result import JudgeResult
from emojudge_models.store.warehouse import insert_frame, sql_text


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
    ) -> None:
        if max_rows < 1 or max_wait_s < 0:
            raise ValueError("need max_rows >= 1 and max_wait_s >= 0")
        self.connect = connect
        self.eval_set = eval_set
        self.to_row = to_row
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
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
        row = self.to_row(result)
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
        self._pending = []
