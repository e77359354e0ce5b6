"""Temporary files a killed or out-of-space process left in the home, removed by the next write session.

Snapshot copies (``.emojudge.read.duckdb.<pid>.partial``) are written only while their process holds the warehouse's
write lock, so one whose process is gone (or that is older than :data:`STALE_AFTER_S`, for a pid reused since) is
a leftover, as is a timeline picture's (``episodes/timelines/.<episode>.png.<pid>.partial``); so is a feature
shard's ``.shard-*.parquet.partial`` older than :data:`STALE_AFTER_S` (shards carry no
pid, and no shard takes that long to write).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from emojudge_models.home import HomeLayout
from emojudge_models.processes import pid_alive

log = logging.getLogger(__name__)

STALE_AFTER_S = 3600.0
"""A temporary file older than this is a leftover whoever wrote it."""


def _older_than(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime < cutoff
    except FileNotFoundError:
        return False


def stale_files(home: Path, now: float | None = None) -> list[Path]:
    """The leftover temporary files of ``home`` (see the module's docstring)."""
    layout = HomeLayout(home)
    cutoff = (time.time() if now is None else now) - STALE_AFTER_S
    stale = [
        path
        for path in (*layout.root.glob(f".{layout.snapshot.name}.*.partial"), *layout.timelines.glob(".*.partial"))
        if _writer_gone(path) or _older_than(path, cutoff)
    ]
    stale.extend(path for path in layout.features.glob("*/.*.partial") if _older_than(path, cutoff))
    return sorted(stale)


def _writer_gone(path: Path) -> bool:
    """Whether the pid in ``.<name>.<pid>.partial`` names no running process."""
    pid = path.name.rsplit(".", 2)[-2]
    return pid.isdigit() and not pid_alive(int(pid))


_SWEPT: set[Path] = set()
"""Homes this process has swept: once per process is enough (a leftover's writer died before it started), and
write sessions are many (one per feature shard)."""


def remove_stale_files(home: Path) -> list[Path]:
    """Remove :func:`stale_files` of ``home``, once per process, logging one line when there were any; returns
    them."""
    home = Path(home).resolve()
    if home in _SWEPT:
        return []
    _SWEPT.add(home)
    removed = []
    for path in stale_files(home):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    if removed:
        log.info("removed %d temporary file(s) left by an earlier run: %s", len(removed), ", ".join(map(str, removed)))
    return removed
