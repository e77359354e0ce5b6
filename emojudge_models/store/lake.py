"""The cluster's warehouse: DuckLake, its catalog in PostgreSQL and its data as Parquet under a shared root.

Selected by settings (``EMOJUDGE_WAREHOUSE=ducklake``, ``EMOJUDGE_LAKE_CATALOG``, ``EMOJUDGE_LAKE_DATA``):
:func:`register` makes :func:`emojudge_models.store.warehouse.connect` open a :class:`LakeSession` for that home, so
every asset, the feature store and the CLI keep calling ``connect`` and see the same tables and views (created from
the same ``schema.sql`` and ``views.sql``). Many processes on many hosts may read and write at once; a reader never
blocks a writer, so there is no readers' snapshot to publish.

What differs from the single file, and how it is bridged:

- DuckLake has no primary keys: the schema is created without them, keys are kept by the writers (partitions
  replaced in one transaction; the packaged upserts replaced by the MERGE forms under ``sql/store/lake/``).
- Concurrent commits to one table can conflict (DuckLake's optimistic concurrency: "another transaction has deleted
  from it"). A conflicting COMMIT is rolled back and the transaction's statements replayed, with backoff; the
  writes the code base makes in a transaction (partition replacement, judgment groups) depend only on their own
  inputs, so a replay writes exactly what the first attempt would have. A transaction whose catalog connection the
  server cut (a restart) is replayed the same way, and an ATTACH waits for a server that refuses connections.
- Extensions are loaded from the PyPI packages' files (``duckdb-extension-ducklake``, ``-postgres``), never
  downloaded.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import random
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from emojudge_models.home import HomeLayout
from emojudge_models.store import warehouse
from emojudge_models.store.warehouse import SCHEMA_VERSION, current_version, migrate, sql_file, sql_text

EXTENSIONS = {"duckdb_extension_postgres": "postgres_scanner", "duckdb_extension_ducklake": "ducklake"}
"""PyPI package -> the name DuckDB loads it by (the postgres one's entry point is ``postgres_scanner``)."""
CATALOG_ALIAS = "lake"
COMMIT_ATTEMPTS = 30
"""Replays of a transaction whose commit conflicted with another writer's, before the error is raised."""
CONNECT_WAIT_S = 60.0
"""How long an ATTACH waits, with backoff, for a catalog server that refuses connections (restarting, failing over)
before the error is raised."""
_UNREACHABLE = "Unable to connect to Postgres"
_PRIMARY_KEY = re.compile(r",\s*PRIMARY KEY\s*\([^)]*\)|\s+PRIMARY KEY\b", re.IGNORECASE)
_CONFLICT = ("Transaction conflict", "conflict", "Failed to commit DuckLake transaction")
_DISCONNECTED = ('Failed to execute query "ROLLBACK"', "server closed the connection", "terminating connection")
"""A catalog connection cut under an open transaction (the server restarted): nothing of it was committed."""


@dataclass(frozen=True)
class Lake:
    """Where the lake lives: ``catalog`` is a libpq connection string of the PostgreSQL catalog database
    (``dbname=emojudge_lake host=db port=5432 user=emojudge``; the password from ``PGPASSWORD`` or ``~/.pgpass``),
    ``data_path`` the shared root of its Parquet files (a local or NFS path)."""

    catalog: str
    data_path: Path


def from_settings(settings: Any) -> Lake | None:
    """The lake the settings select, or None for the single file (``EMOJUDGE_WAREHOUSE=duckdb``)."""
    if settings.warehouse != "ducklake":
        return None
    return Lake(settings.lake_catalog, settings.lake_data or HomeLayout(settings.home).lake)


def register(home: Path, lake: Lake | None) -> None:
    """Make ``warehouse.connect(home)`` open sessions on ``lake`` (None: the single file again)."""
    key = Path(home).resolve()
    if lake is None:
        warehouse.OTHER_STORES.pop(key, None)
    else:
        warehouse.OTHER_STORES[key] = functools.partial(connect, lake)


def configure(settings: Any) -> Lake | None:
    """:func:`register` the lake the settings select for their home (the one call at process start)."""
    lake = from_settings(settings)
    register(settings.home, lake)
    return lake


@functools.cache
def extension_directory() -> Path:
    """A DuckDB extension directory holding the packaged extensions under ``v<version>/<platform>/``.

    DuckDB looks extensions up by name in that layout; the packages ship them elsewhere (and the postgres one under
    another name), so they are copied once per process user into the temporary folder (written then renamed).
    """
    platform = duckdb.connect().execute("PRAGMA platform").fetchone()[0]
    root = Path(tempfile.gettempdir()) / f"emojudge-duckdb-extensions-{os.getuid()}"
    target = root / f"v{duckdb.__version__}" / platform
    target.mkdir(parents=True, exist_ok=True)
    for package, name in EXTENSIONS.items():
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError(f"the cluster warehouse needs the {package} package: pip install 'emojudge[cluster]'")
        shipped = Path(next(iter(spec.submodule_search_locations))) / "extensions" / f"v{duckdb.__version__}"
        source = next(shipped.glob("*.duckdb_extension"))
        destination = target / f"{name}.duckdb_extension"
        if not destination.exists() or destination.stat().st_size != source.stat().st_size:
            partial = destination.with_name(f".{destination.name}.{os.getpid()}")
            shutil.copyfile(source, partial)
            os.replace(partial, destination)
    return root


def _quoted(value: str) -> str:
    return value.replace("'", "''")


def attach_statement(lake: Lake, read_only: bool) -> str:
    """The ``ATTACH`` of the lake as ``lake`` (ATTACH takes no bound parameters: the values are quoted here)."""
    return sql_text("store/lake/attach.sql").format(
        catalog=_quoted(lake.catalog),
        data_path=_quoted(str(lake.data_path).rstrip("/") + "/"),
        options=", READ_ONLY" if read_only else "",
    )


def cli_init(lake: Lake) -> str:
    """What the DuckDB CLI (``duckdb -init FILE``) runs to read the lake as the pipeline does: the packaged extensions
    loaded from :func:`extension_directory` (nothing downloaded), the lake attached read-only and in use."""
    lines = [
        f"SET extension_directory = '{_quoted(str(extension_directory()))}';",
        "SET autoinstall_known_extensions = false;",
        "SET autoload_known_extensions = false;",
        *(f"LOAD {name};" for name in EXTENSIONS.values()),
        attach_statement(lake, read_only=True) + ";",
        f"USE {CATALOG_ALIAS};",
    ]
    return "\n".join(lines) + "\n"


def attach(lake: Lake, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the lake attached as ``lake`` and in use."""
    con = duckdb.connect(
        config={
            "extension_directory": str(extension_directory()),
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
    )
    try:
        for name in EXTENSIONS.values():
            con.execute(f"LOAD {name}")
        _attach_waiting(con, attach_statement(lake, read_only))
        con.execute(f"USE {CATALOG_ALIAS}")
    except BaseException:
        con.close()
        raise
    return con


def _attach_waiting(con: duckdb.DuckDBPyConnection, statement: str) -> None:
    """Run the ATTACH, waiting up to :data:`CONNECT_WAIT_S` while the catalog server refuses connections (an
    attached session needs no such wait: the postgres extension reconnects after a restart by itself)."""
    deadline = time.monotonic() + CONNECT_WAIT_S
    attempt = 0
    while True:
        try:
            con.execute(statement)
            return
        except duckdb.IOException as error:
            if _UNREACHABLE not in str(error) or time.monotonic() > deadline:
                raise
        _backoff(attempt)
        attempt += 1


@functools.cache
def lake_forms() -> dict[str, str]:
    """Packaged statement text -> its DuckLake form, for every file under ``sql/store/lake/<domain>/``."""
    forms = {}
    for domain in sql_file("store/lake").iterdir():
        if not domain.is_dir():
            continue
        for resource in domain.iterdir():
            if resource.name.endswith(".sql"):
                name = f"{domain.name}/{resource.name}"
                forms[sql_text(name)] = sql_text(f"store/lake/{name}")
    return forms


def lake_statement(sql: str) -> str:
    """``sql`` as the lake runs it: a packaged upsert becomes its MERGE form, DDL loses its primary keys."""
    if (form := lake_forms().get(sql)) is not None:
        return form
    if "CREATE TABLE" in sql.upper():
        return _PRIMARY_KEY.sub("", sql)
    return sql


def _is_conflict(error: duckdb.Error) -> bool:
    """A commit to replay: another writer's conflicting commit, or the catalog server restarted under it."""
    return any(marker in str(error) for marker in (*_CONFLICT, *_DISCONNECTED))


def _backoff(attempt: int) -> None:
    time.sleep(min(0.05 * 2**attempt, 2.0) * (0.5 + random.random()))


@dataclass
class LakeSession:
    """A DuckDB connection to the lake with the warehouse's dialect bridged (see the module doc).

    Statements, ``register``/``unregister`` of frames and explicit transactions (``execute("BEGIN")`` ...
    ``execute("COMMIT")``) behave as on the file; everything else is the underlying connection's.
    """

    con: duckdb.DuckDBPyConnection
    _log: list[tuple[str, tuple]] | None = field(default=None, init=False)
    """Calls since BEGIN, replayed when the COMMIT conflicts; None outside an explicit transaction."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.con, name)

    def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> duckdb.DuckDBPyConnection:
        keyword = sql.strip().rstrip(";").upper()
        if keyword in ("BEGIN", "BEGIN TRANSACTION"):
            self._log = []
            return self.con.execute("BEGIN")
        if keyword in ("COMMIT", "END"):
            return self._commit()
        if keyword == "ROLLBACK":
            self._log = None
            return self.con.execute("ROLLBACK")
        return self._call("execute", lake_statement(sql), parameters)

    def executemany(self, sql: str, parameters: Sequence[Sequence[Any]]) -> duckdb.DuckDBPyConnection:
        return self._call("executemany", lake_statement(sql), parameters)

    def register(self, name: str, frame: Any) -> duckdb.DuckDBPyConnection:
        return self._call("register", name, frame)

    def unregister(self, name: str) -> duckdb.DuckDBPyConnection:
        return self._call("unregister", name)

    def begin(self) -> duckdb.DuckDBPyConnection:
        return self.execute("BEGIN")

    def commit(self) -> duckdb.DuckDBPyConnection:
        return self.execute("COMMIT")

    def rollback(self) -> duckdb.DuckDBPyConnection:
        return self.execute("ROLLBACK")

    def _call(self, method: str, *args: Any) -> duckdb.DuckDBPyConnection:
        if self._log is not None:
            self._log.append((method, args))
            return getattr(self.con, method)(*args)
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                return getattr(self.con, method)(*args)
            except duckdb.Error as error:
                if not _is_conflict(error) or attempt == COMMIT_ATTEMPTS - 1:
                    raise
                _backoff(attempt)
        raise AssertionError("unreachable")

    def _commit(self) -> duckdb.DuckDBPyConnection:
        log, self._log = self._log or [], None
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                return self.con.execute("COMMIT")
            except duckdb.Error as error:
                if not _is_conflict(error) or attempt == COMMIT_ATTEMPTS - 1:
                    raise
            _backoff(attempt)
            self.con.execute("BEGIN")
            for method, args in log:
                getattr(self.con, method)(*args)
        raise AssertionError("unreachable")


_schema_ready: set[Lake] = set()
_schema_lock = threading.Lock()


def _ensure_schema(session: LakeSession, lake: Lake) -> None:
    """Create (or migrate) the schema once per process and lake; views are written only then, since every
    ``CREATE OR REPLACE VIEW`` is a catalog commit that would conflict with other workers' writes. Two processes
    creating it at once conflict at COMMIT; the replay finds the tables there (``IF NOT EXISTS``)."""
    with _schema_lock:
        if lake not in _schema_ready and current_version(session) != SCHEMA_VERSION:
            migrate(session)
        _schema_ready.add(lake)


@contextmanager
def connect(lake: Lake, read_only: bool = False, **_file_options: Any) -> Iterator[LakeSession]:
    """One short session on the lake (``warehouse.connect``'s options for the file, lock wait and publish, do not
    apply: DuckLake writers never lock readers out, and readers always see the latest committed snapshot)."""
    con = attach(lake, read_only=read_only)
    session = LakeSession(con)
    try:
        if read_only:
            if current_version(session) == 0:
                raise FileNotFoundError(f"no warehouse in the lake {lake.catalog!r}: materialise an asset first")
        else:
            _ensure_schema(session, lake)
        yield session
    finally:
        con.close()
