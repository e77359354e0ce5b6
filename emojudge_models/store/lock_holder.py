"""Who holds the warehouse file: the process DuckDB names in its lock error, and whether it only reads.

DuckDB's ``Could not set lock`` error names the holder's executable and PID, and adds "you would be able to open this
database in read-only mode" when the holder's lock is a reader's. Its own advice (``-readonly``) is for the process
that failed to open the file, so the waiting writer shows this instead: the holder's full command line (from
``/proc/<pid>/cmdline``) and the mode it holds the file in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_HOLDER = re.compile(
    r"Conflicting lock is held in (?P<executable>.+?) \(PID (?P<pid>\d+)\)|Conflicting lock is held in (?P<bare>\S+)"
)
_READER_LOCK = "open this database in read-only mode"
COMMAND_CHARS = 160
"""A holder's command line is cut to this length (a ``python -c`` holder can be a whole script)."""


@dataclass(frozen=True)
class LockHolder:
    """The process holding a DuckDB file's lock, as far as the error and /proc tell."""

    pid: int | None
    command: str
    read_only: bool

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.command})" if self.pid is not None else self.command

    @property
    def mode(self) -> str:
        return "read-only" if self.read_only else "for writing"


def command_line(pid: int) -> str | None:
    """``/proc/<pid>/cmdline`` as one line, cut to :data:`COMMAND_CHARS`; None when it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    line = " ".join(raw.decode(errors="replace").replace("\0", " ").split())
    return line if len(line) <= COMMAND_CHARS else line[: COMMAND_CHARS - 3] + "..."


def lock_holder(message: str) -> LockHolder:
    """The holder named in DuckDB's lock-conflict ``message``."""
    match = _HOLDER.search(message)
    pid = int(match.group("pid")) if match and match.group("pid") else None
    executable = (match.group("executable") or match.group("bare")).rstrip(".") if match else "another process"
    command = (command_line(pid) if pid is not None else None) or executable
    return LockHolder(pid, command, _READER_LOCK in message)
