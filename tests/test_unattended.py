"""Unattended operation with real processes and signals: the pinned DuckDB and its CLI, dead runs that must not
block the next one, signals that end a waiting run, and a judge server that dies with its parent."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from emojudge_models.store import warehouse

REPO = Path(__file__).resolve().parents[1]
PINNED_DUCKDB = "1.5.5"


def duckdb_cli() -> str | None:
    """The DuckDB CLI (package duckdb-cli) beside this interpreter, else on PATH."""
    beside = Path(sys.executable).with_name("duckdb")
    return str(beside) if beside.is_file() else shutil.which("duckdb")


def set_storage_version(path: Path, version: int) -> None:
    """Rewrite the storage version in a DuckDB file's main header (and its checksum), as a newer DuckDB writes it.

    Header layout: 8-byte checksum, then 4088 bytes (magic ``DUCK`` at 8, version number at 12); the checksum is
    5381 XOR the product of each little-endian uint64 with 0xbf58476d1ce4e5b9 (DuckDB's checksum.cpp).
    """
    with path.open("r+b") as handle:
        header = bytearray(handle.read(4096))
        assert header[8:12] == b"DUCK"
        struct.pack_into("<Q", header, 12, version)
        checksum = 5381
        for offset in range(8, 4096, 8):
            (word,) = struct.unpack_from("<Q", header, offset)
            checksum ^= (word * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        struct.pack_into("<Q", header, 0, checksum)
        handle.seek(0)
        handle.write(header)


def test_duckdb_is_the_pinned_version() -> None:
    assert duckdb.__version__ == PINNED_DUCKDB
    assert f'"duckdb=={PINNED_DUCKDB}"' in (REPO / "pyproject.toml").read_text()
    assert f'"duckdb-cli=={PINNED_DUCKDB}"' in (REPO / "pyproject.toml").read_text()


def test_make_sql_runs_an_example_query_read_only_in_the_duckdb_cli(tmp_path: Path) -> None:
    cli = duckdb_cli()
    if cli is None:
        pytest.skip("the DuckDB CLI is not installed (pip install duckdb-cli==1.5.5, part of the dev extra)")
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    version = subprocess.run([cli, "--version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith(f"v{PINNED_DUCKDB}")
    home = tmp_path / "home"
    with warehouse.connect(home) as con:
        con.execute(
            "INSERT INTO rejected_inputs (eval_set, audio_path, stage, reason, run_id) VALUES "
            "('s1', 'a.wav', 'ingest', 'file is empty (0 bytes)', 'r1'), "
            "('s1', 'b.wav', 'ingest', 'file is empty (0 bytes)', 'r1')"
        )
    example = warehouse.sql_file("store/examples/rejected_inputs.sql").read_text()
    write = "INSERT INTO eval_sets (name, format, path) VALUES ('refused', 'manifest', '/nowhere');"
    done = subprocess.run(
        ["make", "-s", "-C", str(REPO), "-o", "install", "sql", f"BIN={Path(cli).parent}", f"EMOJUDGE_HOME={home}"],
        input=f".mode csv\n{example}\n{write}\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.splitlines() == [
        "eval_set,stage,reason,n,example_path",
        "s1,ingest,file is empty (0 bytes),2,a.wav",
    ], done.stdout + done.stderr
    # read-only: the write after the example is refused and the warehouse is unchanged
    assert "read-only" in done.stderr.lower()
    with warehouse.connect(home, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM eval_sets").fetchone()[0] == 0


def test_a_warehouse_from_a_newer_duckdb_is_a_one_line_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with warehouse.connect(home):
        pass
    path = warehouse.warehouse_path(home)
    set_storage_version(path, 69)
    for read_only in (True, False):
        with pytest.raises(warehouse.WarehouseTooNew) as caught, warehouse.connect(home, read_only=read_only):
            pass
        message = str(caught.value)
        assert "\n" not in message
        assert str(path) in message and "storage version 69" in message
        assert "emojudge materialize" in message
    with pytest.raises(warehouse.WarehouseTooNew):
        warehouse.check_storage_version(home)


def test_materialize_reports_a_newer_warehouse_in_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with warehouse.connect(home):
        pass
    set_storage_version(warehouse.warehouse_path(home), 69)
    env = {"EMOJUDGE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "emojudge_pipeline.cli", "materialize", "demo"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "storage version 69" in last and "Traceback" not in done.stderr
