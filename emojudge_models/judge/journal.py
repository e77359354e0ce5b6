"""The judge journal: each prompt is paid for at most once, whatever runs at once and whenever a run dies.

Two promises, kept in one SQLite file per home (``$EMOJUDGE_HOME/judge/journal.sqlite``, WAL mode, every write its
own short transaction, so any number of processes share it and a commit is durable in about a millisecond; the
warehouse cannot be that file, since each of its write sessions republishes the readers' snapshot), or, on a
cluster, in PostgreSQL, so a claim holds across hosts (:func:`journal_location`, :mod:`.journal_store`):

- **Claims.** A run claims a prompt (its custom_id) before sending it: a lease with the owner run, host, pid and an
  expiry that a heartbeat renews while the run judges. A second run of the same set gets only the unclaimed
  prompts; it waits for the others and takes their answers from the journal when they arrive. A claim whose owner
  died (its pid gone on this host, or its lease expired elsewhere) is free again at once.
- **Answers.** Every paid answer (a response with a body, valid or not) is recorded here by the worker that got it,
  before that worker sends its next request; a kill therefore loses at most the requests in flight. The warehouse
  rows are written in groups afterwards and marked stored; a run that finds unstored answers of its set (its
  predecessor died in between) writes them to the warehouse before asking anything.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from emojudge_models.home import HomeLayout
from emojudge_models.judge.journal_store import JournalStore, open_store
from emojudge_models.processes import pid_alive

log = logging.getLogger(__name__)

LEASE_S = 60.0
"""How long a claim lives without renewal; the owner renews it every third of that while it judges."""
KEEP_STORED_S = 7 * 24 * 3600.0
"""Stored answers are kept this long (a week) for runs of other sets waiting on them, then pruned."""
_TIMESTAMPS = ("requested_at", "completed_at")


def journal_path(home: Path) -> Path:
    return HomeLayout(home).judge_journal


def journal_location(settings: Any) -> Path | str:
    """Where the settings keep the journal: ``EMOJUDGE_JUDGE_JOURNAL`` (a PostgreSQL connection string) when set,
    else the lake's PostgreSQL catalog database on a cluster (``EMOJUDGE_WAREHOUSE=ducklake``: every host must see
    one journal, and a SQLite file's locks do not cross hosts), else the home's SQLite file."""
    if settings.judge_journal:
        return settings.judge_journal
    if settings.warehouse == "ducklake":
        return settings.lake_catalog
    return journal_path(settings.home)


@dataclass(frozen=True)
class Claims:
    """What :meth:`JudgeJournal.claim` found: prompts now ours, answered already, or held by a live run."""

    mine: list[str]
    answered: dict[str, dict[str, Any]]
    held: dict[str, str]
    """custom_id -> owner run id of a live claim."""


def _row_to_json(row: dict[str, Any]) -> str:
    return json.dumps(row, default=lambda value: value.isoformat() if isinstance(value, datetime) else str(value))


def _row_from_json(text: str) -> dict[str, Any]:
    row = json.loads(text)
    for column in _TIMESTAMPS:
        if isinstance(row.get(column), str):
            row[column] = datetime.fromisoformat(row[column])
    return row


class JudgeJournal:
    """Claims and paid answers of one owner (a run) in the journal at ``path``; thread-safe."""

    def __init__(self, location: Path | str, owner: str, *, lease_s: float = LEASE_S) -> None:
        if lease_s <= 0:
            raise ValueError(f"lease_s must be positive, got {lease_s}")
        self.store: JournalStore = open_store(location)
        self.owner = owner
        self.lease_s = lease_s
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.store.create()
        now = time.time()
        with self.store.session() as run:
            run("prune_answers", [now - KEEP_STORED_S])
            run("prune_claims", [now - KEEP_STORED_S])

    def _live(self, owner: str, host: str, pid: int, expires_at: float, now: float) -> bool:
        """Whether another owner's claim still stands."""
        if owner == self.owner or expires_at < now:
            return False
        return host != self.host or pid_alive(pid)

    def claim(self, custom_ids: Sequence[str]) -> Claims:
        """Claim every prompt of ``custom_ids`` that has no final answer and no live claim by another run."""
        ids = list(dict.fromkeys(custom_ids))
        if not ids:
            return Claims([], {}, {})
        now = time.time()
        with self.store.session(exclusive=True) as run:
            answered = {custom_id: _row_from_json(text) for custom_id, text in run("final_answers", [json.dumps(ids)])}
            held = {
                custom_id: owner
                for custom_id, owner, host, pid, expires_at in run("claims_of", [json.dumps(ids)])
                if custom_id not in answered and self._live(owner, host, pid, expires_at, now)
            }
            mine = [custom_id for custom_id in ids if custom_id not in answered and custom_id not in held]
            for custom_id in mine:
                run("claim", [custom_id, self.owner, self.host, self.pid, now + self.lease_s])
        return Claims(mine, answered, held)

    def renew(self) -> None:
        with self.store.session() as run:
            run("renew_claims", [time.time() + self.lease_s, self.owner])

    def release(self, custom_ids: Iterable[str] | None = None) -> None:
        """Give up this owner's claims on ``custom_ids`` (all of them when None)."""
        with self.store.session() as run:
            if custom_ids is None:
                run("release_owner", [self.owner])
            else:
                run("release_claims", [self.owner, json.dumps(list(custom_ids))])

    def record(self, eval_set: str, row: dict[str, Any], final: bool) -> None:
        """Keep one paid answer's ``llm_judgments`` row (durable when this returns)."""
        with self.store.session() as run:
            run("record_answer", [row["custom_id"], eval_set, int(final), _row_to_json(row), time.time()])

    def unstored(self, eval_set: str) -> list[dict[str, Any]]:
        """Rows of ``eval_set`` answered but not yet marked stored in the warehouse, oldest first."""
        with self.store.session() as run:
            found = run("unstored_answers", [eval_set])
        return [_row_from_json(text) for _, text in found]

    def mark_stored(self, custom_ids: Sequence[str]) -> None:
        if custom_ids:
            with self.store.session() as run:
                run("mark_stored", [json.dumps(list(custom_ids))])

    @contextmanager
    def heartbeat(self) -> Iterator[None]:
        """Renew this owner's claims every third of the lease while the block runs; release them all at its end."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.lease_s / 3):
                try:
                    self.renew()
                except self.store.errors as error:  # busy or restarting: the next beat tries again, within the lease
                    log.warning("judge journal %s: claims not renewed this time (%s)", self.store.describe(), error)

        thread = threading.Thread(target=beat, name="judge-claims-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self.release()
