"""The podcast inbox: which dropped files are complete and new, and how an episode becomes an evaluation set.

A file is taken once its size and modification time are unchanged between two scans (a copy still in progress keeps
changing them); it is then identified by the SHA-256 of its bytes, so a renamed or re-copied file is not taken twice,
while changed bytes are a new episode. The scan state is a small JSON cursor (the Dagster sensor keeps it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from emojudge_models.episodes import EPISODE_SUFFIXES
from emojudge_models.episodes.ingest import episode_set_name
from emojudge_models.ingest.audio import file_sha256
from emojudge_models.store.warehouse import query_df, sql_text

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


def episode_files(folder: Path) -> list[Path]:
    """Audio files directly in ``folder`` (hidden files and sidecars left out), by name."""
    if not folder.is_dir():
        return []
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in EPISODE_SUFFIXES
    )


def scan_inbox(folder: Path, cursor: str | None) -> InboxScan:
    """Compare ``folder`` with the previous scan's ``cursor`` (JSON, or None on the first scan)."""
    state = json.loads(cursor) if cursor else {}
    previous: dict[str, list] = state.get("files", {})
    seen: list[str] = state.get("seen", [])
    known = set(seen)
    files: dict[str, list] = {}
    scan = InboxScan()
    for path in episode_files(folder):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        size_mtime = [stat.st_size, stat.st_mtime_ns]
        before = previous.get(path.name)
        if before is None or before[:2] != size_mtime:
            files[path.name] = [*size_mtime, None]
            scan.waiting.append(path)
            continue
        sha = before[2] or file_sha256(path)
        files[path.name] = [*size_mtime, sha]
        if before[2] is None and sha not in known:
            known.add(sha)
            seen.append(sha)
            scan.ready.append((path, sha))
    scan.cursor = json.dumps({"files": files, "seen": seen[-SEEN_LIMIT:]}, sort_keys=True)
    return scan


def register_episode(con: duckdb.DuckDBPyConnection, path: Path, sha256: str, speakers_hint: int | None = None) -> str:
    """Record ``path`` as the evaluation set of its bytes (format 'episode'); returns the set's name.

    The same bytes registered again keep their first registration (and speaker hint).
    """
    name = episode_set_name(sha256)
    con.execute(sql_text("episodes/register_episode.sql"), [name, str(path.resolve()), speakers_hint])
    return name


def inbox_episodes(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every registered episode with its state (pending, scored, rejected), segments and speakers."""
    return query_df(con, "episodes/inbox_episodes.sql")


def stale_episodes(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Episodes whose predictions came from a model older than the newest registered of its kind and task."""
    return [row[0] for row in con.execute(sql_text("episodes/stale_episodes.sql")).fetchall()]
