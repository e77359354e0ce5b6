"""Whether a folder setting can be used: checked without touching it (settings), then by writing (commands that do).

A home that is a file (``EMOJUDGE_HOME=/etc/passwd``), a device (``DAGSTER_HOME=/dev/null``) or that cannot be created
or written (``/proc/nope``, a read-only mount) is refused at start in one line instead of failing deep inside a run.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def _kind(path: Path) -> str:
    mode = path.stat().st_mode
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def not_a_folder(path: Path) -> str | None:
    """Why ``path`` can never be a folder (it, or the nearest existing path above it, is a file or a device), or
    None; reads only."""
    for part in (path, *path.parents):
        try:
            if part.is_dir():
                return None
            if part.exists() and part == path:
                return f"is {_kind(part)}, not a folder"
            if part.exists():
                return f"cannot be a folder: {part} is {_kind(part)}"
        except OSError as error:
            return f"cannot be read ({error.strerror})"
    return None


def unwritable(path: Path) -> str | None:
    """Create ``path`` when missing and write and remove a probe file in it; why that failed, or None."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".emojudge-probe-", dir=path)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        return f"cannot create or write this folder ({error.strerror or error})"
    return None
