"""A full disk, said as such: ``no space left on <path> (<free> bytes free)``.

Out of space reaches the pipeline in several dresses: an ``OSError`` with errno ENOSPC (file copies, Parquet shards),
a DuckDB ``IOException`` or ``FatalException`` whose text says "No space left on device" (a write or a checkpoint), or
SQLite's "database or disk is full" from Dagster's run storage. :func:`disk_full` recognises each anywhere in an
exception's chain, so the CLI and the warehouse can report one line naming the place and what is left there.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from pathlib import Path

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
FULL_MESSAGES = ("No space left on device", "database or disk is full", "Disk quota exceeded")
"""How DuckDB, SQLite and the C library word an exhausted disk or quota."""


class DiskFull(OSError):
    """The disk holding ``path`` is full; ``str()`` is the one line to show."""

    def __init__(self, path: Path) -> None:
        super().__init__(errno.ENOSPC, f"no space left on {path} ({free_bytes(path)} bytes free)")
        self.path = path

    def __str__(self) -> str:
        return self.strerror

    def __reduce__(self) -> tuple[type, tuple[Path]]:
        return type(self), (self.path,)


def free_bytes(path: Path) -> int:
    """Bytes free for this user on the file system of ``path`` (or of its nearest existing folder)."""
    path = Path(path)
    for folder in (path, *path.parents):
        if folder.exists():
            return shutil.disk_usage(folder).free
    return 0


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` or an exception it came from says the disk (or quota) is full."""
    return any(
        (isinstance(link, OSError) and link.errno in FULL_ERRNOS) or any(text in str(link) for text in FULL_MESSAGES)
        for link in _chain(error)
    )


def disk_full(error: BaseException, path: Path) -> DiskFull | None:
    """``error`` as a :class:`DiskFull` naming ``path`` when it says the disk is full (its own when it already is
    one), else None; ``path`` is what the caller was writing under (a home, a folder)."""
    for link in _chain(error):
        if isinstance(link, DiskFull):
            return link
    return DiskFull(path) if is_disk_full(error) else None
