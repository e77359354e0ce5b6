"""When a file may enter the podcast inbox: once its size and modification time have held still for a settle time.

One rule for both doors, the inbox sensor (which sees a file on each tick) and ``emojudge inbox add`` (which waits
for the file, bounded, before copying it): a file still being written is never registered, so the partial bytes
never become an episode and the complete file never becomes a second one.

The evidence that a file has not changed for ``settle_s`` seconds is either its own modification time (at least
``settle_s`` in the past: every write moves it) or an earlier sighting of the same size and mtime at least
``settle_s`` ago (which also covers an mtime set by another machine's clock; one in the future proves nothing).
"""

from __future__ import annotations

import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from emojudge_models.settings import default

DEFAULT_SETTLE_S: float = default("inbox_settle_s")
ADD_WAIT_SETTLES = 12
"""``inbox add`` waits for a changing file at most this many settle times (2 minutes at the default), then refuses."""


@dataclass(frozen=True)
class FileState:
    """What a file's metadata says about its contents: any write changes one of these."""

    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileState | None:
        """The state of the regular file at ``path``; None when it is gone or not a regular file."""
        try:
            found = path.stat()
        except OSError:
            return None
        return cls(found.st_size, found.st_mtime_ns) if stat.S_ISREG(found.st_mode) else None


def quiet_s(state: FileState, seen_since: float | None, now: float) -> float:
    """Seconds the file is known to have held ``state``: since its mtime (when that is in the past) or since
    ``seen_since``, the wall-clock time it was first seen in this state (None: not seen before)."""
    quiet = max(0.0, now - state.mtime_ns / 1e9)
    if seen_since is not None:
        quiet = max(quiet, now - seen_since)
    return quiet


def is_settled(state: FileState, seen_since: float | None, now: float, settle_s: float) -> bool:
    """Whether a file in ``state`` may be admitted: unchanged for at least ``settle_s`` (see the module doc)."""
    return quiet_s(state, seen_since, now) >= settle_s


class StillChanging(Exception):
    """A file that kept changing for the whole wait; the message is one line naming it."""


def wait_until_settled(
    path: Path,
    settle_s: float = DEFAULT_SETTLE_S,
    max_wait_s: float | None = None,
    on_wait: Callable[[Path], None] | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> FileState:
    """Wait until ``path`` is settled and return its state; ``on_wait`` is called once if that takes any waiting.

    Raises :class:`StillChanging` after ``max_wait_s`` (default :data:`ADD_WAIT_SETTLES` settle times) and
    :class:`FileNotFoundError` when the file disappears meanwhile.
    """
    limit = ADD_WAIT_SETTLES * settle_s if max_wait_s is None else max_wait_s
    started = clock()
    seen: tuple[FileState, float] | None = None
    waited = False
    while True:
        now = clock()
        state = FileState.of(path)
        if state is None:
            raise FileNotFoundError(f"{path}: file disappeared while waiting for it to be complete")
        if seen is None or seen[0] != state:
            seen = (state, now)
        if is_settled(state, seen[1], now, settle_s):
            return state
        if now - started >= limit:
            raise StillChanging(
                f"{path}: still being written (its size or mtime changed within {settle_s:g} s for {limit:g} s, "
                "EMOJUDGE_INBOX_SETTLE_S); add it once it is complete"
            )
        if on_wait is not None and not waited:
            on_wait(path)
        waited = True
        sleep(min(settle_s - quiet_s(state, seen[1], now), limit - (now - started)) + 0.01)
