"""The podcast inbox: which dropped files are complete and new, and how an episode becomes an evaluation set.

A file is taken once its size and modification time have held still for the settle time (the rule of
:mod:`emojudge_models.episodes.admission`, which ``emojudge inbox add`` applies too; a copy still in progress keeps
changing them); it is then identified by the SHA-256 of its bytes, so a renamed or re-copied file is not taken twice,
while changed bytes are a new episode. The scan state is a small JSON cursor (the Dagster sensor keeps it): per file
its size, mtime, hash once taken, and when it was first seen with that size and mtime.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from emojudge_models.episodes import EPISODE_SUFFIXES
from emojudge_models.episodes.admission import DEFAULT_SETTLE_S, FileState, is_settled, quiet_s
from emojudge_models.episodes.ingest import episode_set_name
from emojudge_models.episodes.speakers import NO_HINT, SpeakerHint
from emojudge_models.ingest.audio import file_sha256
from emojudge_models.ingest.corpus import Rejection
from emojudge_models.store.warehouse import query_df, sql_text

MISSING_STAGE = "missing"
"""The ``rejected_inputs`` stage that marks an episode whose file was gone when a run came to ingest it (state
``missing`` in :func:`inbox_episodes`); the next run that finds the file replaces it."""
SEEN_LIMIT = 10_000
"""Hashes remembered in the cursor (the newest); older ones are still known to the warehouse as registered sets."""


@dataclass
class InboxScan:
    """One scan: files that just became ready (stable and with bytes not seen before), files still changing, and
    the cursor to keep for the next scan."""

    ready: list[tuple[Path, str]] = field(default_factory=list)
    """(path, SHA-256) of each file to register, in name order."""
    waiting: list[Path] = field(default_factory=list)
    cursor: str = ""
    settles_in_s: float | None = None
    """Seconds until the first waiting file settles if it holds still (None: nothing is waiting)."""


def episode_files(folder: Path) -> list[Path]:
    """Audio files directly in ``folder`` (hidden files and sidecars left out), by name."""
    if not folder.is_dir():
        return []
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in EPISODE_SUFFIXES
    )


def scan_inbox(
    folder: Path, cursor: str | None, settle_s: float = DEFAULT_SETTLE_S, now: float | None = None
) -> InboxScan:
    """Compare ``folder`` with the previous scan's ``cursor`` (JSON, or None on the first scan) at wall-clock time
    ``now`` (default: the current time); a file becomes ready once settled for ``settle_s``."""
    now = time.time() if now is None else now
    state = json.loads(cursor) if cursor else {}
    previous: dict[str, list] = state.get("files", {})
    seen: list[str] = state.get("seen", [])
    known = set(seen)
    files: dict[str, list] = {}
    scan = InboxScan()
    for path in episode_files(folder):
        current = FileState.of(path)
        if current is None:
            continue
        before = previous.get(path.name)
        unchanged = before is not None and before[:2] == [current.size, current.mtime_ns]
        since = before[3] if unchanged and len(before) > 3 and before[3] is not None else now
        sha = before[2] if unchanged else None
        if sha is None and is_settled(current, since, now, settle_s):
            sha = _hash_if_unchanged(path, current)
            if sha is not None and sha not in known:
                known.add(sha)
                seen.append(sha)
                scan.ready.append((path, sha))
        files[path.name] = [current.size, current.mtime_ns, sha, since]
        if sha is None:
            scan.waiting.append(path)
            left = max(0.0, settle_s - quiet_s(current, since, now))
            scan.settles_in_s = left if scan.settles_in_s is None else min(scan.settles_in_s, left)
    scan.cursor = json.dumps({"files": files, "seen": seen[-SEEN_LIMIT:]}, sort_keys=True)
    return scan


def _hash_if_unchanged(path: Path, state: FileState) -> str | None:
    """SHA-256 of ``path``, or None when it was written to (or removed) while being hashed: not settled after all."""
    try:
        sha = file_sha256(path)
    except OSError:
        return None
    return sha if FileState.of(path) == state else None


def register_episode(con: duckdb.DuckDBPyConnection, path: Path, sha256: str, speakers: SpeakerHint = NO_HINT) -> str:
    """Record ``path`` as the evaluation set of its bytes (format 'episode') with its speaker hints; returns the
    set's name.

    The same bytes registered again keep their first registration (and speaker hints), except that an episode whose
    registered file is gone (state ``missing``) is pointed at ``path``, so adding the bytes again brings it back.
    """
    name = episode_set_name(sha256)
    here = str(path.resolve())
    con.execute(
        sql_text("episodes/register_episode.sql"), [name, here, speakers.count, speakers.minimum, speakers.maximum]
    )
    [registered] = con.execute(sql_text("episodes/episode_path.sql"), [name]).fetchone()
    if registered != here and not Path(registered).is_file():
        con.execute(sql_text("episodes/repoint_episode.sql"), [here, name])
    return name


def missing_rejection(path: Path) -> Rejection:
    """The row that marks the episode at ``path`` missing."""
    return Rejection(None, str(path), MISSING_STAGE, "file not found (moved or deleted after it was registered)")


def inbox_episodes(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every registered episode with its state (pending, scored, rejected), segments and speakers."""
    return query_df(con, "episodes/inbox_episodes.sql")


def stale_episodes(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Episodes whose predictions came from a model older than the newest registered of its kind and task."""
    return [row[0] for row in con.execute(sql_text("episodes/stale_episodes.sql")).fetchall()]
