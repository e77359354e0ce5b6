"""The DuckDB warehouse: one file, schema from ``sql/store/schema.sql``, versioned migrations, partition writes.

Readers may open the file read-only while no run is writing; writers go through :func:`connect`, which
creates or migrates the schema first. A writer kept waiting by another process's lock says who holds it (a warning,
which the CLI prints and a run's log keeps); a full disk is raised as :class:`~emojudge_models.disk.DiskFull`; a
damaged readers' snapshot is rebuilt from the main file, which it opens read-only.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pandas as pd

from emojudge_models.disk import disk_full
from emojudge_models.home import HomeLayout
from emojudge_models.store.leftovers import remove_stale_files
from emojudge_models.store.lock_holder import lock_holder

log = logging.getLogger(__name__)

SCHEMA_VERSION = 13
"""Version created by ``sql/store/schema.sql``; ``sql/store/migrations/NNN_*.sql`` bring older files up to it."""

PARTITIONED_TABLES = frozenset(
    {
        "utterances",
        "rejected_inputs",
        "feature_index",
        "logits",
        "fused_predictions",
        "prosody",
        "llm_judgments",
        "predictions",
        "judge_gate_evidence",
        "metrics",
        "confusion_matrices",
        "episode_emotions",
        "speakers",
    }
)
"""Tables keyed by ``eval_set``, whose partition rows :func:`replace_partition` swaps atomically."""

_MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
_NEWER_STORAGE = re.compile(r"version number (\d+), but we can only read versions between (\d+) and (\d+)")


class WarehouseTooNew(RuntimeError):
    """The warehouse file was written by a newer DuckDB (a storage version this one cannot read)."""


def sql_root() -> Traversable:
    """The folder holding every SQL file, by domain: the checkout's top-level ``sql/``, which the build configuration
    (pyproject.toml) ships inside the wheel as ``emojudge_models/sql/`` (read through importlib.resources, so wheels
    and zip installs work as well as a checkout)."""
    shipped = files("emojudge_models").joinpath("sql")
    if shipped.is_dir():
        return shipped
    return Path(str(files("emojudge_models"))).parent / "sql"


def sql_file(name: str) -> Traversable:
    """The SQL file (or folder) ``<domain>/<rest>`` under :func:`sql_root`, e.g. ``store/schema.sql``."""
    domain, _, rest = name.partition("/")
    if not domain.isidentifier():
        raise ValueError(f"SQL name must be '<domain>/<file>.sql', got {name!r}")
    return sql_root().joinpath(domain, *rest.split("/")) if rest else sql_root().joinpath(domain)


def sql_text(name: str) -> str:
    """The text of the SQL file ``<domain>/<rest>``; SQL lives in files, not in Python strings."""
    resource = sql_file(name)
    if not name.endswith(".sql") or not resource.is_file():
        raise FileNotFoundError(f"SQL file not found under sql/: {name}")
    return resource.read_text()


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """Schema version of an open warehouse; 0 for an empty file."""
    has_table = con.execute(sql_text("store/meta/has_schema_version.sql")).fetchone()[0]
    if not has_table:
        return 0
    version = con.execute(sql_text("store/meta/schema_version.sql")).fetchone()[0]
    return int(version or 0)


def migrations() -> list[tuple[int, str]]:
    """The migrations in ``sql/store/migrations`` as (version, SQL name), ordered by version."""
    found = []
    for resource in sql_file("store/migrations").iterdir():
        match = _MIGRATION_NAME.match(resource.name)
        if match:
            found.append((int(match.group(1)), f"store/migrations/{resource.name}"))
    return sorted(found)


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Create the schema in an empty file, or apply each pending migration in order, then (re)create the views.

    Returns the final version.
    """
    version = current_version(con)
    if version == 0:
        con.execute("BEGIN")
        con.execute(sql_text("store/schema.sql"))
        con.execute(sql_text("store/meta/record_schema_version.sql"), [SCHEMA_VERSION])
        con.execute(sql_text("store/views.sql"))
        con.execute("COMMIT")
        return SCHEMA_VERSION
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"warehouse schema version {version} is newer than this code ({SCHEMA_VERSION}); upgrade emojudge"
        )
    for target, name in migrations():
        if target <= version:
            continue
        con.execute("BEGIN")
        con.execute(sql_text(name))
        con.execute(sql_text("store/meta/record_schema_version.sql"), [target])
        con.execute("COMMIT")
        version = target
    con.execute(sql_text("store/schema.sql"))
    con.execute(sql_text("store/views.sql"))
    return version


def warehouse_path(home: Path) -> Path:
    return HomeLayout(home).warehouse


def snapshot_path(home: Path) -> Path:
    """The readers' copy of the warehouse, republished after every write session (see :func:`connect`)."""
    return HomeLayout(home).snapshot


LOCK_WAIT_S = 600.0
"""How long a writer waits for another process's write session (or a stray reader of the main file) to end."""
Opened = TypeVar("Opened")
WAIT_REPORT_FIRST_S = 5.0
"""A writer still waiting this long says who holds the file (write sessions of runs are shorter than this)."""
WAIT_REPORT_EVERY_S = 60.0
"""... and says it again this often while it waits."""


def _is_lock_conflict(error: duckdb.Error) -> bool:
    return "Could not set lock" in str(error) or "Conflicting lock" in str(error)


def _too_new(path: Path, error: duckdb.Error) -> WarehouseTooNew | None:
    newer = _NEWER_STORAGE.search(str(error))
    if newer is None:
        return None
    found, low, high = newer.groups()
    return WarehouseTooNew(
        f"{path} was written by a newer DuckDB (storage version {found}; duckdb {duckdb.__version__} reads "
        f"{low}-{high}): move it away and run `emojudge materialize NAME` for each set to rebuild it "
        "(features are cached in Parquet)"
    )


def _waiting_for_lock(path: Path, lock_wait_s: float, attempt: Callable[[], Opened]) -> Opened:
    """``attempt()`` (which opens ``path``), retried with backoff while another process holds a conflicting lock;
    after :data:`WAIT_REPORT_FIRST_S` and then every :data:`WAIT_REPORT_EVERY_S` a warning names the holder, and
    after ``lock_wait_s`` :class:`WarehouseBusyError` does. A file from a newer DuckDB becomes one line saying how
    to rebuild it."""
    started = time.monotonic()
    deadline = started + lock_wait_s
    report_at = started + WAIT_REPORT_FIRST_S
    delay = 0.05
    readers = snapshot_path(path.parent).name
    while True:
        try:
            return attempt()
        except duckdb.IOException as error:
            if (too_new := _too_new(path, error)) is not None:
                raise too_new from None
            if not _is_lock_conflict(error):
                raise
            holder = lock_holder(str(error))
            now = time.monotonic()
            if now >= deadline:
                raise WarehouseBusyError(
                    f"{path}: still locked after {lock_wait_s:.0f} s by {holder}, which holds it {holder.mode}; "
                    f"end that process's session (readers should open {readers} or use `make sql`)"
                ) from error
            if now >= report_at:
                log.warning(
                    "waiting for %s holding %s %s for %.0f s; readers should open %s",
                    holder,
                    path,
                    holder.mode,
                    now - started,
                    readers,
                )
                report_at = now + WAIT_REPORT_EVERY_S
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def _open(path: Path, read_only: bool, lock_wait_s: float) -> duckdb.DuckDBPyConnection:
    """Open ``path``, waiting as :func:`_waiting_for_lock` says while another process holds a conflicting lock."""
    return _waiting_for_lock(path, lock_wait_s, lambda: duckdb.connect(str(path), read_only=read_only))


class WarehouseBusyError(RuntimeError):
    """Another process kept the warehouse file locked for longer than the writer waits."""


def _wal_state(path: Path) -> tuple[int, int]:
    wal = path.with_name(path.name + ".wal")
    return (path.stat().st_mtime_ns if path.exists() else 0, wal.stat().st_size if wal.exists() else 0)


def _partial_snapshot(home: Path) -> Path:
    """Where this process writes a new snapshot before renaming it (a leftover of a killed one is swept later)."""
    return home / f".{snapshot_path(home).name}.{os.getpid()}.partial"


def _publish_snapshot(con: duckdb.DuckDBPyConnection, home: Path) -> None:
    """Checkpoint, then copy the (now self-contained) file to a temporary name and rename it over the snapshot.

    The caller holds the only write connection, so nothing changes the file during the copy; readers keep the
    snapshot they opened (the rename gives new readers a new file, never a half-copied one). A copy that fails
    (a full disk) is removed.
    """
    con.execute("CHECKPOINT")
    partial = _partial_snapshot(home)
    try:
        shutil.copyfile(warehouse_path(home), partial)
        os.replace(partial, snapshot_path(home))
    finally:
        partial.unlink(missing_ok=True)


def rebuild_snapshot(home: Path, lock_wait_s: float = LOCK_WAIT_S) -> None:
    """Write the readers' snapshot anew from the main file, opened read-only (a reader never takes the writer's
    lock): an in-memory DuckDB copies every table, view and sequence into a temporary file renamed over it. Waits,
    like a writer, while a write session holds the main file."""
    source = warehouse_path(home)
    if not source.exists():
        raise FileNotFoundError(f"no warehouse at {source}: materialise an asset first (make demo)")
    partial = _partial_snapshot(home)
    script = sql_text("store/snapshot/rebuild.sql").format(source=_quoted(str(source)), target=_quoted(str(partial)))

    def copy() -> None:
        partial.unlink(missing_ok=True)
        with duckdb.connect() as con:
            con.execute(script)

    try:
        _waiting_for_lock(source, lock_wait_s, copy)
        os.replace(partial, snapshot_path(home))
    except Exception as error:
        if (full := disk_full(error, home)) is not None:
            raise full from error
        raise
    finally:
        partial.unlink(missing_ok=True)


def _quoted(value: str) -> str:
    return value.replace("'", "''")


def _open_snapshot(home: Path, lock_wait_s: float) -> duckdb.DuckDBPyConnection:
    """The readers' snapshot, opened read-only; one that DuckDB cannot read (damaged bytes, a truncated copy) is
    rebuilt from the main file with one warning."""
    snapshot = snapshot_path(home)
    con = None
    try:
        con = _open(snapshot, read_only=True, lock_wait_s=lock_wait_s)
        current_version(con)  # reads the catalog: a damaged file fails here if it opened at all
        return con
    except duckdb.Error as error:
        if con is not None:
            con.close()
        cause = str(error).split("\n", 1)[0]
        log.warning("%s is damaged (%s); rebuilding it from %s", snapshot, cause, warehouse_path(home).name)
    rebuild_snapshot(home, lock_wait_s)
    return _open(snapshot, read_only=True, lock_wait_s=lock_wait_s)


def check_storage_version(home: Path) -> None:
    """Raise :class:`WarehouseTooNew` now, before a run starts, when the file is from a newer DuckDB.

    Any other failure to open (no file, a writer's lock) is left to the run itself.
    """
    path = warehouse_path(home)
    if not path.exists():
        return
    try:
        _open(path, read_only=True, lock_wait_s=0).close()
    except (duckdb.Error, WarehouseBusyError):
        return


Connect = Callable[..., AbstractContextManager[duckdb.DuckDBPyConnection]]
"""Opens one short warehouse session, e.g. ``functools.partial(connect, home)`` or ``WarehouseResource.connect``
(keyword ``publish=False`` accepted, see :func:`connect`)."""

OTHER_STORES: dict[Path, Connect] = {}
"""Homes whose warehouse is not the file: the cluster's DuckLake, registered by ``store/lake.py`` from the settings;
:func:`connect` hands their sessions to it."""


@contextmanager
def connect(
    home: Path, read_only: bool = False, lock_wait_s: float = LOCK_WAIT_S, publish: bool = True
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the warehouse of ``home``.

    Writers open ``emojudge.duckdb`` (creating or migrating the schema first), waiting with backoff while another
    process writes; keep write sessions short (compute outside them). When a write session that changed
    anything ends, the file is republished as ``emojudge.read.duckdb``. Readers (``read_only=True``: the CLI's
    read commands, sensors, checks, notebooks, ``make sql``) open that snapshot, so they never hold the writer's
    lock and never make a run fail; they see new rows when they reconnect. Before the first write session has
    ended there is no snapshot and readers open the main file read-only.

    ``publish=False`` skips the republish for intermediate writes readers do not need on their own (the feature
    store's per-shard vectors): the next publishing session carries them, and the file copy is not paid per shard.
    """
    if (other := OTHER_STORES.get(Path(home).resolve())) is not None:
        with other(read_only=read_only) as con:
            yield con
        return
    path = warehouse_path(home)
    if read_only:
        if snapshot_path(home).exists():
            con = _open_snapshot(home, lock_wait_s)
        elif path.exists():
            con = _open(path, read_only=True, lock_wait_s=lock_wait_s)
        else:
            raise FileNotFoundError(f"no warehouse at {path}: materialise an asset first (make demo)")
        try:
            yield con
        finally:
            con.close()
        return
    try:
        with _write_session(home, lock_wait_s, publish) as con:
            yield con
    except Exception as error:
        if (full := disk_full(error, home)) is not None:
            raise full from error
        raise


@contextmanager
def _write_session(home: Path, lock_wait_s: float, publish: bool) -> Iterator[duckdb.DuckDBPyConnection]:
    """The write half of :func:`connect`: the lock, the schema, the leftovers of killed sessions, the republish."""
    path = warehouse_path(home)
    home.mkdir(parents=True, exist_ok=True)
    con = _open(path, read_only=False, lock_wait_s=lock_wait_s)
    try:
        remove_stale_files(home)
        upgraded = current_version(con) != SCHEMA_VERSION
        migrate(con)
        before = _wal_state(path)
        try:
            yield con
        except BaseException:
            # Still publish what earlier transactions of this session committed; the failed one is rolled back.
            with suppress(duckdb.Error):
                con.rollback()
            with suppress(duckdb.Error, OSError):
                _publish_snapshot(con, home)
            raise
        if upgraded or not snapshot_path(home).exists() or (publish and _wal_state(path) != before):
            _publish_snapshot(con, home)
    finally:
        con.close()


def _check_table(table: str) -> None:
    if table not in PARTITIONED_TABLES:
        raise ValueError(f"{table!r} is not a partitioned warehouse table")


@dataclass(frozen=True)
class PartitionWrite:
    """One table's new rows for a partition: ``where`` (a value or a tuple of values per column) narrows the rows
    replaced to part of the partition (one stage's rejections, say)."""

    table: str
    frame: pd.DataFrame
    where: dict[str, Any] | None = None


def write_partitions(
    con: duckdb.DuckDBPyConnection,
    eval_set: str,
    writes: Sequence[PartitionWrite],
    statements: Sequence[tuple[str, Sequence[Any]]] = (),
) -> list[int]:
    """Replace each table's rows of ``eval_set`` (narrowed by its ``where``) with its frame, all in ONE transaction,
    so readers see every table of the partition before or after, never a mix; returns the rows written per table.
    ``statements`` (packaged SQL name, parameters) run in the same transaction (the set's own row in eval_sets).

    Columns absent from a frame take their defaults; reruns therefore never duplicate rows.
    """
    for write in writes:
        _check_table(write.table)
    con.execute("BEGIN")
    try:
        for write in writes:
            conditions = ["eval_set = ?"]
            params: list[Any] = [eval_set]
            for column, value in (write.where or {}).items():
                if isinstance(value, tuple):
                    conditions.append(f'"{column}" IN ({", ".join("?" for _ in value)})')
                    params.extend(value)
                else:
                    conditions.append(f'"{column}" = ?')
                    params.append(value)
            con.execute(f'DELETE FROM "{write.table}" WHERE {" AND ".join(conditions)}', params)
            if len(write.frame):
                insert_frame(con, write.table, write.frame.assign(eval_set=eval_set))
        for name, params in statements:
            con.execute(sql_text(name), list(params))
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return [len(write.frame) for write in writes]


def replace_partition(
    con: duckdb.DuckDBPyConnection,
    table: str,
    eval_set: str,
    frame: pd.DataFrame,
    where: dict[str, Any] | None = None,
) -> int:
    """:func:`write_partitions` for one table."""
    return write_partitions(con, eval_set, [PartitionWrite(table, frame, where)])[0]


def insert_frame(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    """Insert a DataFrame by column name (columns not in ``frame`` take their defaults)."""
    columns = ", ".join(f'"{c}"' for c in frame.columns)
    con.register("_emojudge_frame", frame)
    try:
        con.execute(f'INSERT INTO "{table}" ({columns}) SELECT {columns} FROM _emojudge_frame')
    finally:
        con.unregister("_emojudge_frame")


def query_df(con: duckdb.DuckDBPyConnection, relative_sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
    """Run the parameterised statement in the packaged SQL file ``relative_sql`` and return a DataFrame."""
    return con.execute(sql_text(relative_sql), list(params)).df()


def scalar(con: duckdb.DuckDBPyConnection, relative_sql: str, params: Sequence[Any] = ()) -> Any:
    """The first column of the first row of the packaged SQL ``relative_sql``, or None; the result is consumed."""
    rows = con.execute(sql_text(relative_sql), list(params)).fetchall()
    return rows[0][0] if rows else None
