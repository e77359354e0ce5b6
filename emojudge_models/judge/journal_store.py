"""Where the judge journal lives: one SQLite file per home (one machine), or a PostgreSQL database (a cluster).

Both run the statements of ``sql/judge/journal/``; PostgreSQL takes ``%s`` placeholders and has no ``json_each``,
so the statements whose text differs there have a PostgreSQL form under ``sql/judge/journal/postgres/``. Every
session opens its own connection and is one transaction, so a server restart costs at most the session it cut.
A SQLite file on shared storage (NFS) is not safe for several hosts: its locks do not cross them, which is why a
cluster keeps the journal in PostgreSQL (:func:`emojudge_models.judge.journal.journal_location`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from emojudge_models.store.warehouse import sql_file, sql_text

Run = Callable[..., list[tuple]]
"""``run(statement_name, params=())``: the rows of one journal statement (empty for writes)."""


class JournalStore(Protocol):
    errors: tuple[type[BaseException], ...]
    """What a busy, restarting or unreachable store raises (a heartbeat logs it and tries again)."""

    def describe(self) -> str: ...

    def session(self, exclusive: bool = False) -> Iterator[Run]:
        """One transaction; ``exclusive``: serialised with every other exclusive session (read-then-claim)."""
        ...


class SqliteStore:
    """The journal in one SQLite file: WAL, ``synchronous=FULL``, ``BEGIN IMMEDIATE`` for exclusive sessions."""

    errors = (sqlite3.Error,)

    def __init__(self, path: Path, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def describe(self) -> str:
        return str(self.path)

    @contextmanager
    def session(self, exclusive: bool = False) -> Iterator[Run]:
        con = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")
            con.execute("BEGIN IMMEDIATE" if exclusive else "BEGIN")
            try:
                yield lambda name, params=(): con.execute(sql_text(f"judge/journal/{name}.sql"), params).fetchall()
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        finally:
            con.close()

    def create(self) -> None:
        con = sqlite3.connect(self.path, timeout=self.busy_timeout_s)
        try:
            con.executescript(sql_text("judge/journal/schema.sql"))
        finally:
            con.close()


def postgres_statement(name: str) -> str:
    """The PostgreSQL text of journal statement ``name``: its own form where one exists, else the shared one with
    ``%s`` placeholders."""
    own = f"judge/journal/postgres/{name}.sql"
    if sql_file(own).is_file():
        return sql_text(own)
    return sql_text(f"judge/journal/{name}.sql").replace("?", "%s")


class PostgresStore:
    """The journal in a PostgreSQL database (libpq connection string or URL), shared by every host of a cluster;
    exclusive sessions take one transaction-scoped advisory lock."""

    def __init__(self, conninfo: str, connect_timeout_s: int = 10) -> None:
        import psycopg2

        self.conninfo = conninfo
        self.connect_timeout_s = connect_timeout_s
        self.errors = (psycopg2.Error,)

    def describe(self) -> str:
        return f"PostgreSQL {self.conninfo}"

    @contextmanager
    def session(self, exclusive: bool = False) -> Iterator[Run]:
        import psycopg2

        con = psycopg2.connect(self.conninfo, connect_timeout=self.connect_timeout_s)
        try:
            with con, con.cursor() as cursor:  # one transaction: committed at the block's end, rolled back on error

                def run(name: str, params: Sequence[Any] = ()) -> list[tuple]:
                    cursor.execute(postgres_statement(name), tuple(params) or None)
                    return cursor.fetchall() if cursor.description else []

                if exclusive:
                    run("lock")
                yield run
        finally:
            con.close()

    def create(self) -> None:
        with self.session(exclusive=True) as run:  # two hosts creating the tables at once would collide
            run("schema")


def open_store(location: Path | str) -> SqliteStore | PostgresStore:
    """A path: the SQLite file; a string: a PostgreSQL connection string (``dbname=... host=...`` or a URL)."""
    if isinstance(location, Path):
        return SqliteStore(location)
    return PostgresStore(location)
