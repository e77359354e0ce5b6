"""The warehouse's home under faults, through the real command: a held main file, a damaged snapshot, leftovers of
killed sessions, read commands on a fresh or busy home, and a disk that fills (a real tmpfs)."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import soundfile as sf
from conftest import tone

from emojudge_models.store import warehouse

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parents[1]
EMOJUDGE = [sys.executable, "-m", "emojudge_pipeline.cli"]
HOLD = "import sys, time, duckdb\ncon = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == 'ro')\nprint('held', flush=True)\ntime.sleep(60)"  # noqa: E501
"""A stray session on the main file (the DuckDB CLI opened on it instead of the snapshot), read-only or writing."""


def cli_env(home: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("EMOJUDGE_")}
    return {**env, "EMOJUDGE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"), "PYTHONPATH": str(REPO)}


def emojudge(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*EMOJUDGE, *args], env=cli_env(home), capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A three-clip manifest corpus."""
    root = tmp_path / "corpus"
    root.mkdir()
    for index in range(3):
        sf.write(root / f"c{index}.wav", tone(1.0 + index * 0.2), 16_000)
    manifest = root / "manifest.csv"
    manifest.write_text("path,emotion\nc0.wav,angry\nc1.wav,sad\nc2.wav,happy\n")
    return manifest


@pytest.fixture
def holder(tmp_path: Path) -> Iterator:
    """Start processes holding a file with DuckDB (``mode`` 'ro' or 'rw'); each is killed at teardown."""
    started: list[subprocess.Popen] = []

    def hold(path: Path, mode: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(path), mode], stdout=subprocess.PIPE, text=True, env=cli_env(tmp_path)
        )
        started.append(process)
        assert process.stdout.readline().strip() == "held"
        return process

    yield hold
    for process in started:
        process.kill()
        process.wait(timeout=30)
        process.stdout.close()


def stderr_lines_until(process: subprocess.Popen, pattern: str, timeout_s: float) -> tuple[float, list[str]]:
    """Read ``process``'s stderr until a line matches ``pattern``: (seconds since called, the lines read)."""
    started = time.monotonic()
    lines: list[str] = []
    while time.monotonic() - started < timeout_s:
        ready, _, _ = select.select([process.stderr], [], [], 0.5)
        if not ready:
            continue
        line = process.stderr.readline()
        if not line and process.poll() is not None:
            break
        lines.append(line.rstrip("\n"))
        if re.search(pattern, line):
            return time.monotonic() - started, lines
    raise AssertionError(f"no line matching {pattern!r} within {timeout_s} s: {lines[-20:]}")


@pytest.mark.slow_fault
def test_a_held_main_file_is_reported_within_10_s_naming_the_holder(tmp_path: Path, corpus: Path, holder) -> None:
    """The DuckDB CLI (here: python) holding emojudge.duckdb used to leave a writer silent for 600 s."""
    home = tmp_path / "home"
    assert emojudge(home, "eval-set", "add", "a", str(corpus)).returncode == 0
    held = holder(warehouse.warehouse_path(home), "ro")
    adding = subprocess.Popen(
        [*EMOJUDGE, "eval-set", "add", "b", str(corpus)], env=cli_env(home), stderr=subprocess.PIPE, text=True
    )
    try:
        waited, lines = stderr_lines_until(adding, r"waiting for pid", 30)
        assert waited < 10 + 5, f"first report after {waited:.1f} s (python start-up included)"
        line = lines[-1]
        assert f"waiting for pid {held.pid} (" in line and HOLD.split("\n")[0] in line
        assert f"holding {warehouse.warehouse_path(home)} read-only" in line
        assert line.endswith("readers should open emojudge.read.duckdb")
        assert adding.poll() is None, "still waiting, not failed"
    finally:
        held.kill()
        held.wait(timeout=30)
    assert adding.wait(timeout=60) == 0, adding.stderr.read()
    assert "-readonly" not in adding.stderr.read()


@pytest.mark.parametrize("mode", ["ro", "rw"])
def test_the_busy_error_names_the_holder_and_its_mode(tmp_path: Path, holder, mode: str) -> None:
    """DuckDB's own text advised ``-readonly`` to a holder that already was read-only."""
    with warehouse.connect(tmp_path):
        pass
    held = holder(warehouse.warehouse_path(tmp_path), mode)
    with pytest.raises(warehouse.WarehouseBusyError) as raised, warehouse.connect(tmp_path, lock_wait_s=1.0):
        pass
    message = str(raised.value)
    assert f"still locked after 1 s by pid {held.pid} (" in message
    assert f"which holds it {'read-only' if mode == 'ro' else 'for writing'}" in message
    assert "-readonly" not in message and "\n" not in message


@pytest.mark.slow_fault
def test_a_materialize_waiting_for_a_held_file_says_so_on_the_console(tmp_path: Path, corpus: Path, holder) -> None:
    """The wait happens inside the Dagster run of `emojudge materialize`; its warning reaches the console."""
    home = tmp_path / "home"
    assert emojudge(home, "eval-set", "add", "a", str(corpus)).returncode == 0
    holder(warehouse.warehouse_path(home), "rw")
    running = subprocess.Popen(
        [*EMOJUDGE, "materialize", "a", "--no-train"], env=cli_env(home), stderr=subprocess.PIPE, text=True
    )
    try:
        _, lines = stderr_lines_until(running, r"waiting for pid \d+ .* holding .*emojudge\.duckdb for writing", 240)
        assert lines[-1].endswith("readers should open emojudge.read.duckdb")
    finally:
        running.send_signal(signal.SIGTERM)
        running.wait(timeout=60)
        running.stderr.close()


@pytest.mark.slow_fault
def test_a_damaged_snapshot_is_rebuilt_from_the_main_file_with_one_warning(tmp_path: Path, corpus: Path) -> None:
    """Garbage in emojudge.read.duckdb used to be a traceback in `eval-set list`."""
    home = tmp_path / "home"
    assert emojudge(home, "eval-set", "add", "a", str(corpus)).returncode == 0
    main_before = warehouse.warehouse_path(home).stat().st_mtime_ns
    warehouse.snapshot_path(home).write_bytes(os.urandom(300_000))
    listed = emojudge(home, "eval-set", "list")
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^\s*a\s+manifest\s", listed.stdout, re.M)
    warnings = listed.stderr.strip().splitlines()
    assert len(warnings) == 1 and "emojudge.read.duckdb is damaged" in warnings[0], listed.stderr
    assert "rebuilding it from emojudge.duckdb" in warnings[0]
    assert warehouse.warehouse_path(home).stat().st_mtime_ns == main_before, "the main file was not written"
    with duckdb.connect(str(warehouse.snapshot_path(home)), read_only=True) as con:
        assert con.execute("SELECT name FROM eval_sets").fetchall() == [("a",)]
        assert con.execute("SELECT count(*) FROM v_predictions").fetchone() == (0,)
    again = emojudge(home, "eval-set", "list")
    assert again.returncode == 0 and again.stderr == ""
    assert not list(home.glob(".*.partial"))


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=30)
    return process.pid


@pytest.mark.slow_fault
def test_leftover_partial_files_are_removed_at_the_next_write_session(tmp_path: Path, corpus: Path) -> None:
    """A kill or a full disk during a snapshot copy or a shard write used to leave its temporary file for ever."""
    home = tmp_path / "home"
    assert emojudge(home, "eval-set", "add", "a", str(corpus)).returncode == 0
    hour_ago = time.time() - 2 * 3600
    dead = home / f".emojudge.read.duckdb.{dead_pid()}.partial"
    old = home / f".emojudge.read.duckdb.{os.getpid()}.partial"  # a live pid, but older than the bound
    live = home / f".emojudge.read.duckdb.{os.getppid()}.partial"  # a live writer's copy in progress
    shards = home / "features" / "enc-key"
    shards.mkdir(parents=True)
    old_shard, new_shard = shards / ".shard-1.parquet.partial", shards / ".shard-2.parquet.partial"
    for path in (dead, old, live, old_shard, new_shard):
        path.write_bytes(b"x" * 1000)
    for path in (old, old_shard):
        os.utime(path, (hour_ago, hour_ago))
    listed = emojudge(home, "eval-set", "list")
    assert listed.returncode == 0 and all(p.exists() for p in (dead, old, old_shard)), "a read removes nothing"
    added = emojudge(home, "eval-set", "add", "b", str(corpus))
    assert added.returncode == 0, added.stderr
    assert [p.exists() for p in (dead, old, live, old_shard, new_shard)] == [False, False, True, False, True]
    assert "removed 3 temporary file(s) left by an earlier run" in added.stderr


def test_a_killed_writers_timeline_picture_is_a_leftover_and_a_running_ones_is_not(tmp_path: Path) -> None:
    """A kill during save_picture left ``<episode>.png.partial`` under episodes/timelines/ for ever: the temporary
    file now carries the writer's pid, and the next write session's sweep takes it once that process is gone."""
    from emojudge_models.episodes.timeline import save_picture
    from emojudge_models.home import HomeLayout
    from emojudge_models.store.leftovers import stale_files

    timelines = HomeLayout(tmp_path).timelines
    saved = save_picture(b"\x89PNG picture", timelines / "ep-1.png")
    assert saved.read_bytes() == b"\x89PNG picture" and sorted(timelines.iterdir()) == [saved]
    killed = timelines / f".ep-2.png.{dead_pid()}.partial"
    writing = timelines / f".ep-3.png.{os.getpid()}.partial"
    for path in (killed, writing):
        path.write_bytes(b"\x89PNG half")
    assert stale_files(tmp_path) == [killed]


@pytest.mark.slow_fault
def test_read_commands_create_nothing_and_never_open_the_main_file_for_writing(
    tmp_path: Path, corpus: Path, holder
) -> None:
    """`inbox list` used to open a write connection (3-10 s during a run)."""
    home = tmp_path / "home"
    for command in (("eval-set", "list"), ("inbox", "list")):
        done = emojudge(home, *command)
        assert done.returncode == 0, done.stderr
    assert not home.exists(), "a read created the home"
    assert emojudge(home, "eval-set", "add", "a", str(corpus)).returncode == 0
    holder(warehouse.warehouse_path(home), "rw")  # a writer's session: a write connection would wait for it
    for command in (("eval-set", "list"), ("inbox", "list")):
        started = time.monotonic()
        done = emojudge(home, *command, timeout=60)
        assert done.returncode == 0 and done.stderr == "", done.stderr
        assert time.monotonic() - started < 30
    assert not list(home.glob("*.wal"))


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 20 MiB tmpfs, unmounted at teardown (skipped where mounting is not permitted)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def warehouse_contents(home: Path) -> list[tuple]:
    with duckdb.connect(str(warehouse.snapshot_path(home)), read_only=True) as con:
        return con.execute("SELECT name, format, path FROM eval_sets ORDER BY name").fetchall()


@pytest.mark.parametrize(
    "free_bytes",
    [
        450_000,
        pytest.param(1_900_000, marks=pytest.mark.slow_fault),  # the same rule at two more fill levels
        pytest.param(2_800_000, marks=pytest.mark.slow_fault),
    ],
)
def test_a_full_disk_is_reported_with_the_free_bytes_and_the_next_run_equals_a_clean_one(
    tmp_path: Path, corpus: Path, small_disk: Path, free_bytes: int
) -> None:
    """A disk full during the checkpoint, the snapshot copy or Dagster's SQLite storage used to be a traceback ("disk
    I/O error", no word of space) and leave a .partial copy behind."""
    home = small_disk / "home"
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (20 * 1024 * 1024 - free_bytes))
    full = emojudge(home, "eval-set", "add", "a", str(corpus))
    assert full.returncode == 2, full.stderr[-2000:]
    assert re.fullmatch(rf"error: no space left on {re.escape(str(home))} \(\d+ bytes free\)\n", full.stderr), (
        full.stderr
    )
    assert not list(home.glob(".*.partial"))
    filler.unlink()  # a larger disk
    again = emojudge(home, "eval-set", "add", "a", str(corpus))
    assert again.returncode == 0, again.stderr[-2000:]
    clean = tmp_path / "clean"
    assert emojudge(clean, "eval-set", "add", "a", str(corpus)).returncode == 0
    assert warehouse_contents(home) == warehouse_contents(clean)
    assert sorted(p.name for p in home.iterdir()) == sorted(p.name for p in clean.iterdir())
    assert partitions(home) == partitions(clean) == ["a"]


def partitions(home: Path) -> list[str]:
    import dagster as dg

    from emojudge_pipeline.partitions import EVAL_SETS_PARTITION

    with dg.DagsterInstance.from_config(str(home / "dagster")) as inst:
        return inst.get_dynamic_partitions(EVAL_SETS_PARTITION)
