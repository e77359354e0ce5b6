"""Readers never block or fail a writer: they read the published snapshot, and see new rows on reconnect."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from emojudge_models.store import warehouse

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parents[1]


def utterance_rows(eval_set: str, n: int, run_id: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "eval_set": eval_set,
            "utterance_id": [f"u{i:04d}" for i in range(n)],
            "audio_path": "x.wav",
            "audio_sha256": [f"{i:064d}" for i in range(n)],
            "duration_s": 1.0,
            "sample_rate_hz": 16000,
            "channels": 1,
            "run_id": run_id,
        }
    )


def write_partition(home: Path, eval_set: str, n: int, run_id: str) -> None:
    with warehouse.connect(home) as con:
        warehouse.replace_partition(con, "utterances", eval_set, utterance_rows(eval_set, n, run_id))


def start_python(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(process: subprocess.Popen, expected: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.strip() == expected:
            return
        if process.poll() is not None:
            break
    process.kill()
    raise AssertionError(f"reader never printed {expected!r}: {process.stderr.read()[-2000:]}")


def test_a_reader_holding_a_session_open_never_blocks_writes(tmp_path: Path) -> None:
    write_partition(tmp_path, "a", 10, "r1")
    reader = start_python(
        """
        import sys, time
        from pathlib import Path
        from emojudge_models.store import warehouse
        with warehouse.connect(Path(sys.argv[1]), read_only=True) as con:
            print(con.execute("SELECT count(*) FROM utterances").fetchone()[0], flush=True)
            print("holding", flush=True)
            time.sleep(30)
        """,
        str(tmp_path),
    )
    try:
        assert reader.stdout.readline().strip() == "10"
        wait_for_line(reader, "holding")
        started = time.monotonic()
        for run in range(5):
            write_partition(tmp_path, "a", 20 + run, f"r{run + 2}")
        assert time.monotonic() - started < 20
        assert reader.poll() is None, "the reader was disturbed by the writes"
    finally:
        reader.kill()
        reader.wait(timeout=10)
    with warehouse.connect(tmp_path, read_only=True) as con:
        assert con.execute("SELECT count(*), any_value(run_id) FROM utterances").fetchone() == (24, "r6")


@pytest.mark.slow_fault
def test_a_polling_reader_never_sees_a_half_written_partition(tmp_path: Path, fault_ledger) -> None:
    write_partition(tmp_path, "a", 300, "r0")
    # The reader polls for at least 3 s and until it has seen both sizes (bounded); the writer starts once the
    # reader is polling and stops when it is done, so a slow start on a loaded machine cannot leave it nothing to see.
    poller = start_python(
        """
        import sys, time
        from pathlib import Path
        from emojudge_models.store import warehouse
        seen = set()
        announced = False
        started = time.monotonic()
        while time.monotonic() - started < float(sys.argv[2]):
            with warehouse.connect(Path(sys.argv[1]), read_only=True) as con:
                seen.add(con.execute("SELECT count(*), count(DISTINCT run_id) FROM utterances").fetchone())
            if not announced:
                print("polling", flush=True)
                announced = True
            if len(seen) >= 2 and time.monotonic() - started > 3:
                break
            time.sleep(0.05)
        print(sorted(seen), flush=True)
        """,
        str(tmp_path),
        "60",
    )
    wait_for_line(poller, "polling")
    sizes = [500, 300]
    writes = 0
    deadline = time.monotonic() + 60
    while poller.poll() is None and time.monotonic() < deadline:
        write_partition(tmp_path, "a", sizes[writes % 2], f"w{writes}")
        writes += 1
    out, err = poller.communicate(timeout=60)
    assert poller.returncode == 0, err[-2000:]
    seen = ast.literal_eval(out.strip().splitlines()[-1])
    assert writes >= 1
    fault_ledger.record(rows_lost=sum(1 for count, _ in seen if count < 300))
    assert set(seen) <= {(300, 1), (500, 1)} and len(seen) >= 2


@pytest.mark.slow_fault
def test_a_stray_writer_lock_is_waited_for_then_reported_in_one_line(tmp_path: Path) -> None:
    write_partition(tmp_path, "a", 1, "r1")
    holder = start_python(
        """
        import sys, time, duckdb
        con = duckdb.connect(sys.argv[1])
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
        """,
        str(warehouse.warehouse_path(tmp_path)),
        "2",
    )
    try:
        wait_for_line(holder, "locked")
        started = time.monotonic()
        write_partition(tmp_path, "a", 2, "r2")  # waits for the holder to finish, then succeeds
        assert 0.5 < time.monotonic() - started < 30
    finally:
        holder.wait(timeout=30)
    holder = start_python(
        "import sys, time, duckdb\ncon = duckdb.connect(sys.argv[1])\nprint('locked', flush=True)\ntime.sleep(30)",
        str(warehouse.warehouse_path(tmp_path)),
    )
    try:
        wait_for_line(holder, "locked")
        busy = pytest.raises(warehouse.WarehouseBusyError, match=r"emojudge\.duckdb: still locked after 1 s by")
        with busy, warehouse.connect(tmp_path, lock_wait_s=1.0):
            pass
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_snapshot_opens_in_plain_duckdb_read_only(tmp_path: Path) -> None:
    write_partition(tmp_path, "b", 3, "r1")
    con = duckdb.connect(str(warehouse.snapshot_path(tmp_path)), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM v_predictions").fetchone()[0] == 3
    finally:
        con.close()


def test_an_unpublished_write_reaches_readers_with_the_next_published_session(tmp_path: Path) -> None:
    write_partition(tmp_path, "a", 3, "r1")
    with warehouse.connect(tmp_path, publish=False) as con:
        warehouse.replace_partition(con, "utterances", "b", utterance_rows("b", 4, "r2"))
    with warehouse.connect(tmp_path, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM utterances").fetchone()[0] == 3
    write_partition(tmp_path, "c", 1, "r3")
    with warehouse.connect(tmp_path, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM utterances").fetchone()[0] == 8
