"""The DuckDB warehouse: one file, schema from ``sql/schema.sql``, versioned migrations, partition writes.

Readers may open the file read-only while no run is writing; writers go through :func:`connect`, which
creates or migrates the schema first.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

SQL_DIR = Path(__file__).resolve().parents[1] / "sql"
SCHEMA_VERSION = 3
"""Version created by ``sql/schema.sql``; ``sql/migrations/NNN_*.sql`` bring older files up to it."""

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
        "metrics",
        "confusion_matrices",
        "episode_emotions",
    }
)
"""Tables keyed by ``eval_set``, whose partition rows :func:`replace_partition` swaps atomically."""

_MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def sql_text(relative: str) -> str:
    """The text of ``sql/<relative>``; SQL lives in files, not in Python strings."""
    path = SQL_DIR / relative
    if not path.is_file():
        raise FileNotFoundError(f"SQL file not found: {path}")
    return path.read_text()


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """Schema version of an open warehouse; 0 for an empty file."""
    has_table = con.execute(sql_text("meta/has_schema_version.sql")).fetchone()[0]
    if not has_table:
        return 0
    version = con.execute(sql_text("meta/schema_version.sql")).fetchone()[0]
    return int(version or 0)


def migrations() -> list[tuple[int, Path]]:
    """The migration files in ``sql/migrations``, ordered by their version number."""
    found = []
    for path in sorted((SQL_DIR / "migrations").glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return found


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Create the schema in an empty file, or apply each pending migration in order, then (re)create the views.

    Returns the final version.
    """
    version = current_version(con)
    if version == 0:
        con.execute("BEGIN")
        con.execute(sql_text("schema.sql"))
        con.execute(sql_text("meta/record_schema_version.sql"), [SCHEMA_VERSION])
        con.execute(sql_text("views.sql"))
        con.execute("COMMIT")
        return SCHEMA_VERSION
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"warehouse schema version {version} is newer than this code ({SCHEMA_VERSION}); upgrade emojudge"
        )
    for target, path in migrations():
        if target <= version:
            continue
        con.execute("BEGIN")
        con.execute(path.read_text())
        con.execute(sql_text("meta/record_schema_version.sql"), [target])
        con.execute("COMMIT")
        version = target
    con.execute(sql_text("schema.sql"))
    con.execute(sql_text("views.sql"))
    return version


def warehouse_path(home: Path) -> Path:
    return home / "emojudge.duckdb"


@contextmanager
def connect(home: Path, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open ``$EMOJUDGE_HOME/emojudge.duckdb``; a writable connection creates or migrates the schema first."""
    path = warehouse_path(home)
    if read_only:
        if not path.exists():
            raise FileNotFoundError(f"no warehouse at {path}: materialise an asset first (make demo)")
        con = duckdb.connect(str(path), read_only=True)
    else:
        home.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(path))
        migrate(con)
    try:
        yield con
    finally:
        con.close()


def _check_table(table: str) -> None:
    if table not in PARTITIONED_TABLES:
        raise ValueError(f"{table!r} is not a partitioned warehouse table")


def replace_partition(
    con: duckdb.DuckDBPyConnection,
    table: str,
    eval_set: str,
    frame: pd.DataFrame,
    where: dict[str, Any] | None = None,
) -> int:
    """Delete ``table``'s rows for ``eval_set`` (and ``where``: a value or a tuple of values per column) and insert
    ``frame``, in one transaction.

    Columns absent from ``frame`` take their defaults; reruns therefore never duplicate rows.
    """
    _check_table(table)
    conditions = ["eval_set = ?"]
    params: list[Any] = [eval_set]
    for column, value in (where or {}).items():
        if isinstance(value, tuple):
            conditions.append(f'"{column}" IN ({", ".join("?" for _ in value)})')
            params.extend(value)
        else:
            conditions.append(f'"{column}" = ?')
            params.append(value)
    con.execute("BEGIN")
    try:
        con.execute(f'DELETE FROM "{table}" WHERE {" AND ".join(conditions)}', params)
        if len(frame):
            insert_frame(con, table, frame.assign(eval_set=eval_set))
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return len(frame)


def insert_frame(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    """Insert a DataFrame by column name (columns not in ``frame`` take their defaults)."""
    columns = ", ".join(f'"{c}"' for c in frame.columns)
    con.register("_emojudge_frame", frame)
    try:
        con.execute(f'INSERT INTO "{table}" ({columns}) SELECT {columns} FROM _emojudge_frame')
    finally:
        con.unregister("_emojudge_frame")


def query_df(con: duckdb.DuckDBPyConnection, relative_sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
    """Run the parameterised statement in ``sql/<relative_sql>`` and return a DataFrame."""
    return con.execute(sql_text(relative_sql), list(params)).df()


def scalar(con: duckdb.DuckDBPyConnection, relative_sql: str, params: Sequence[Any] = ()) -> Any:
    """The first column of the first row of ``sql/<relative_sql>``, or None; the result is fully consumed."""
    rows = con.execute(sql_text(relative_sql), list(params)).fetchall()
    return rows[0][0] if rows else None
