"""Where submitted batches are remembered, so a killed run resumes them instead of paying twice.

The pipeline implements :class:`BatchLedger` over the ``judge_batches`` table (one ledger per eval set and
judge key); :class:`InMemoryBatchLedger` is the reference implementation used by tests.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol


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
