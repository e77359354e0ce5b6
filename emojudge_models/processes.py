"""Whether a process of this host is alive: the one test behind every "is its owner gone?" (judge claims, temporary
files of writers, decoded-episode partials, dead Dagster runs)."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
