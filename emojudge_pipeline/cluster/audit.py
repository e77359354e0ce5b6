"""What the demo's line reports: rows lost, duplicate rows and judge calls repeated, read from the warehouse."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

import duckdb
import pandas as pd

from emojudge_models.store import warehouse


def primary_keys() -> dict[str, list[str]]:
    """Each warehouse table's key columns, from the single file's schema (DuckLake keeps no constraints)."""
    con = duckdb.connect()
    try:
        con.execute(warehouse.sql_text("store/schema.sql"))
        return dict(con.execute(warehouse.sql_text("store/audit/primary_keys.sql")).fetchall())
    finally:
        con.close()


def duplicate_rows(con: duckdb.DuckDBPyConnection) -> int:
    """Rows beyond one per key, over every keyed table."""
    total = 0
    for table, columns in primary_keys().items():
        key = ", ".join(f'"{column}"' for column in columns)
        total += con.execute(f'SELECT count(*) - count(DISTINCT ({key})) FROM "{table}"').fetchone()[0]
    return total


def _utterance_ids(manifest: Path) -> list[str]:
    with open(manifest, newline="") as handle:
        return [
            row.get("utterance_id") or Path(row["path"]).with_suffix("").as_posix() for row in csv.DictReader(handle)
        ]


def audit(home: Path, manifests: Mapping[str, Path]) -> tuple[int, int, int]:
    """(rows lost, duplicate rows, judge calls repeated) in the warehouse of ``home`` for the sets' manifests."""
    with warehouse.connect(home, read_only=True) as con:
        lost = 0
        for name, manifest in manifests.items():
            con.register("_emojudge_expected", pd.DataFrame({"utterance_id": _utterance_ids(manifest)}))
            lost += warehouse.scalar(con, "store/audit/lost_rows.sql", [name])
            con.unregister("_emojudge_expected")
        return lost, duplicate_rows(con), int(warehouse.scalar(con, "store/audit/repeated_calls.sql"))
