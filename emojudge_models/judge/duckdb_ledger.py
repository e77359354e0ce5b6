"""The batch ledger over the warehouse table ``judge_batches``: one ledger per evaluation set and judge key.

Each call opens its own short connection, so the warehouse is not held open while a batch runs for hours.
"""

from __future__ import annotations

from collections.abc import Sequence

from emojudge_models.judge.ledger import BatchRecord
from emojudge_models.store.warehouse import Connect, sql_text


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
