"""Prosody for many clips, inline or spread over worker processes with a bounded number of clips in flight."""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Hashable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from os import PathLike
from typing import TypeVar

import numpy as np

from emojudge_models.episodes.sources import SegmentSource, load_audio
from emojudge_models.ingest.audio import DEFAULT_MAX_DURATION_S, AudioRejected
from emojudge_models.prosody.features import ProsodyValues, compute_prosody
from emojudge_models.prosody.pitch import DEFAULT_TRACKER, PITCH_TRACKERS, PitchTracker

Key = TypeVar("Key", bound=Hashable)
AudioSource = np.ndarray | str | PathLike[str] | SegmentSource
"""A 16 kHz mono wave, or a path or episode segment that ``emojudge_models.episodes.sources.load_audio`` decodes
(preferred: cheap to send)."""


@dataclass(frozen=True)
class ProsodyFailed:
    """Why one clip has no prosody values (goes to ``rejected_inputs.reason``)."""

    reason: str


def compute_many(
    items: Iterable[tuple[Key, AudioSource, str | None]],
    tracker: PitchTracker = DEFAULT_TRACKER,
    processes: int = 1,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
) -> Iterator[tuple[Key, ProsodyValues | ProsodyFailed]]:
    """Yield ``(key, values or failure)`` for each ``(key, wave or path, transcript)``, in input order.

    ``processes=1`` runs inline; more spreads clips over spawned worker processes, reading ``items`` lazily and
    keeping at most four clips per process in flight, so memory stays bounded however large the partition is.
    Episode segments are cut here and sent as waves: a worker given the segment would decode the whole episode
    again (an hour: 20 s per worker).
    """
    if tracker not in PITCH_TRACKERS:
        raise ValueError(f"unknown pitch tracker {tracker!r}; choose one of {PITCH_TRACKERS}")
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    if processes == 1:
        for key, source, transcript in items:
            yield key, _compute_one(source, transcript, tracker, max_duration_s)
        return
    pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"))
    pending: deque[tuple[Key, Future[ProsodyValues | ProsodyFailed]]] = deque()
    try:
        for key, source, transcript in items:
            pending.append((key, _submit(pool, source, transcript, tracker, max_duration_s)))
            if len(pending) >= 4 * processes:
                done_key, future = pending.popleft()
                yield done_key, future.result()
        while pending:
            done_key, future = pending.popleft()
            yield done_key, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _submit(
    pool: ProcessPoolExecutor, source: AudioSource, transcript: str | None, tracker: PitchTracker, max_duration_s: float
) -> Future[ProsodyValues | ProsodyFailed]:
    if isinstance(source, SegmentSource):
        try:
            source = load_audio(source, max_duration_s)
        except AudioRejected as rejected:
            failed: Future[ProsodyValues | ProsodyFailed] = Future()
            failed.set_result(ProsodyFailed(rejected.reason))
            return failed
    return pool.submit(_compute_one, source, transcript, tracker, max_duration_s)


def _compute_one(
    source: AudioSource, transcript: str | None, tracker: PitchTracker, max_duration_s: float
) -> ProsodyValues | ProsodyFailed:
    """Values for one clip, or the reason it failed: one bad clip must not stop a partition."""
    try:
        wave = source if isinstance(source, np.ndarray) else load_audio(source, max_duration_s)
        return compute_prosody(wave, transcript, tracker)
    except AudioRejected as rejected:
        return ProsodyFailed(rejected.reason)
    except Exception as error:  # noqa: BLE001 - reported per clip with its type; the caller records the reason
        return ProsodyFailed(f"prosody failed: {type(error).__name__}: {error}")
