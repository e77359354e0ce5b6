"""Decoded episodes on disk: an episode is decoded once, and every step process on this machine (or a worker on the
shared root) maps the same file instead of decoding it again.

One file per episode and channel, ``<sha256>-mix.f32`` (or ``-c2.f32`` for channel 2 of a split episode): raw 16 kHz
mono little-endian float32, written under a temporary name and renamed, so a reader never maps half a file, and
mapped read-only (``numpy.memmap``): a segment read touches only its own pages, and the page cache is shared by the
processes of a run. Whoever needs an episode that is not there yet decodes it under a per-episode lock, so two step
processes asking at once decode it once. Every decode appends a line to ``decodes.log`` (what the benchmark and the
tests count). Files unused for :data:`KEEP_S` (their mtime is refreshed on every use) are removed when an episode is
stored: the retention rule.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from emojudge_models.processes import pid_alive
from emojudge_models.sample_rate import SAMPLE_RATE_HZ

log = logging.getLogger(__name__)

KEEP_S = 7 * 24 * 3600.0
"""A decoded episode not used for a week is removed (a rescoring within the week maps it; a later one decodes)."""
DECODES_LOG = "decodes.log"


class DecodedEpisodes:
    """The decoded-episode files under ``root`` (``$EMOJUDGE_HOME/episodes/decoded`` in the pipeline)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path_of(self, sha256: str, channel: int | None) -> Path:
        return self.root / f"{sha256}-{'mix' if channel is None else f'c{channel}'}.f32"

    def open(self, sha256: str, channel: int | None) -> np.memmap | None:
        """The episode's samples mapped read-only, or None when it was never stored (or was pruned)."""
        path = self.path_of(sha256, channel)
        try:
            if path.stat().st_size == 0:
                return None
            os.utime(path)
        except FileNotFoundError:
            return None
        return np.memmap(path, dtype="<f4", mode="r")

    def store(self, sha256: str, channel: int | None, wave: np.ndarray) -> Path:
        """Write ``wave`` as the episode's file (temporary name, then rename); prune files unused for too long."""
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.path_of(sha256, channel)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        np.asarray(wave, dtype="<f4").tofile(partial)
        os.replace(partial, target)
        self.prune()
        return target

    def get(self, sha256: str, channel: int | None, decode: Callable[[], np.ndarray], *, source: str = "") -> np.memmap:
        """The mapped episode, decoding it with ``decode()`` first when no process has stored it yet (one decoder at
        a time per episode: the others wait and map its file)."""
        found = self.open(sha256, channel)
        if found is not None:
            return found
        with self._locked(sha256, channel):
            found = self.open(sha256, channel)
            if found is not None:
                return found
            started = time.monotonic()
            wave = decode()
            self.store(sha256, channel, wave)
            self.record_decode(sha256, channel, source, len(wave) / SAMPLE_RATE_HZ, time.monotonic() - started)
        mapped = self.open(sha256, channel)
        assert mapped is not None
        return mapped

    def record_decode(self, sha256: str, channel: int | None, source: str, duration_s: float, took_s: float) -> None:
        """One line in ``decodes.log`` per decode of an episode (ingest's and any later one)."""
        self.root.mkdir(parents=True, exist_ok=True)
        line = {"sha256": sha256, "channel": channel, "source": source, "pid": os.getpid(), "at": time.time()}
        with (self.root / DECODES_LOG).open("a") as out:
            out.write(json.dumps({**line, "duration_s": round(duration_s, 3), "took_s": round(took_s, 3)}) + "\n")
        log.info("decoded episode %s (%.0f s of audio in %.1f s) into %s", sha256[:12], duration_s, took_s, self.root)

    def decodes(self, sha256: str | None = None) -> int:
        """How many decodes ``decodes.log`` records (of one episode when ``sha256`` is given)."""
        try:
            lines = (self.root / DECODES_LOG).read_text().splitlines()
        except FileNotFoundError:
            return 0
        return sum(1 for line in lines if sha256 is None or json.loads(line)["sha256"] == sha256)

    def prune(self, keep_s: float = KEEP_S) -> list[Path]:
        """Remove decoded files unused for ``keep_s`` and temporary files of writers that died."""
        removed = []
        cutoff = time.time() - keep_s
        for path in self.root.glob("*.f32"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed.append(path)
            except FileNotFoundError:
                continue
        for partial in self.root.glob(".*.partial"):
            pid = partial.name.rsplit(".", 2)[-2]
            if pid.isdigit() and not pid_alive(int(pid)):
                partial.unlink(missing_ok=True)
                removed.append(partial)
        return removed

    @contextmanager
    def _locked(self, sha256: str, channel: int | None) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        lock = self.path_of(sha256, channel).with_suffix(".lock")
        with lock.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
