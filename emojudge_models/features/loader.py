"""Background decoding: the next batches' audio is decoded by worker threads while the model runs.

A feeder thread submits each planned batch to a decoding thread pool and queues the pending results; the queue
is bounded, so at most ``prefetch + 2`` batches of decoded audio exist at any time (queued, being submitted,
being encoded), whatever the partition size.
Decoding (libsndfile, soxr) releases the GIL, so threads decode in parallel with the model's forward pass.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from emojudge_models.ingest.audio import AudioRejected, stable_text

Item = TypeVar("Item")

_DONE = object()


def failure_reason(error: BaseException) -> str:
    """Words a person can act on: the rejection reason, or the exception type and message (on one line, without
    object addresses, so the same fault always gives the same reason)."""
    if isinstance(error, AudioRejected):
        return error.reason
    return stable_text(f"{type(error).__name__}: {error}")


@dataclass
class LoadedBatch(Generic[Item]):
    """The items of one batch that decoded, their waves (same order), and those that did not with a reason."""

    items: list[Item] = field(default_factory=list)
    waves: list[np.ndarray] = field(default_factory=list)
    failures: list[tuple[Item, str]] = field(default_factory=list)


class BackgroundLoader(Generic[Item]):
    """Iterate over ``LoadedBatch`` objects in plan order; use as a context manager so threads always stop."""

    def __init__(
        self,
        batches: Iterable[list[Item]],
        load: Callable[[Item], np.ndarray],
        workers: int = 2,
        prefetch: int = 2,
    ) -> None:
        if workers < 1 or prefetch < 1:
            raise ValueError(f"workers and prefetch must be >= 1, got {workers} and {prefetch}")
        self._load = load
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="audio-decode")
        self._pending: queue.Queue = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._feeder = threading.Thread(target=self._feed, args=(batches,), name="audio-feeder", daemon=True)
        self._feeder.start()

    def _put(self, entry: object) -> bool:
        """Queue ``entry``, waiting for room; False once the consumer has stopped."""
        while not self._stop.is_set():
            try:
                self._pending.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _feed(self, batches: Iterable[list[Item]]) -> None:
        try:
            for batch in batches:
                futures = [self._pool.submit(self._load, item) for item in batch]
                if not self._put((batch, futures)):
                    for future in futures:
                        future.cancel()
                    return
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which re-raises it
            self._put(error)
            return
        self._put(_DONE)

    def __iter__(self) -> Iterator[LoadedBatch[Item]]:
        while True:
            entry = self._pending.get()
            if entry is _DONE:
                return
            if isinstance(entry, BaseException):
                raise entry
            batch, futures = entry
            yield self._collect(batch, futures)

    @staticmethod
    def _collect(batch: list[Item], futures: list[Future]) -> LoadedBatch[Item]:
        loaded: LoadedBatch[Item] = LoadedBatch()
        for item, future in zip(batch, futures, strict=True):
            error = future.exception()
            if error is None:
                loaded.items.append(item)
                loaded.waves.append(future.result())
            else:
                loaded.failures.append((item, failure_reason(error)))
        return loaded

    def close(self) -> None:
        """Stop feeding, drop queued batches and wait for the threads."""
        self._stop.set()
        while True:
            try:
                entry = self._pending.get_nowait()
            except queue.Empty:
                break
            if isinstance(entry, tuple):
                for future in entry[1]:
                    future.cancel()
        self._feeder.join()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> BackgroundLoader[Item]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
