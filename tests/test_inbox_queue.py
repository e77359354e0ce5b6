"""The inbox is a queue that cannot jam: a file is taken only once it held still for the settle time (the sensor and
`emojudge inbox add` share the rule), an episode whose file vanished is marked missing and skipped, `inbox list`
only reads, and `inbox add` says what is wrong with a path in one line.

Files are written by real processes (a writer appending in bursts), and no model is needed: nothing here is scored.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import soundfile as sf
from conftest import tone
from test_cli import REPO

from emojudge_models.episodes.admission import FileState, StillChanging, is_settled, wait_until_settled
from emojudge_models.episodes.inbox import scan_inbox
from emojudge_models.settings import Settings
from emojudge_models.store import warehouse
from emojudge_pipeline import cli, launch
from emojudge_pipeline.resources import InboxResource, WarehouseResource
from emojudge_pipeline.sensors import inbox_sensor

SETTLE_S = 1.0
"""Three times the writer's pause between bursts: margin for a writer delayed on a busy machine."""

WRITER = """
import sys, time
source, target, chunks, pause = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
data = open(source, "rb").read()
step = -(-len(data) // chunks)
with open(target, "wb") as out:
    for start in range(0, len(data), step):
        out.write(data[start : start + step])
        out.flush()
        print(start, flush=True)
        time.sleep(pause)
"""
"""Copies a file in ``chunks`` bursts ``pause`` seconds apart, as a slow download or network copy does."""


def _slow_copy(source: Path, target: Path, chunks: int, pause_s: float) -> subprocess.Popen:
    """Start the writer process and return once the first burst is on disk."""
    target.parent.mkdir(parents=True, exist_ok=True)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(source), str(target), str(chunks), str(pause_s)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None and writer.stdout.readline().strip() == "0"
    return writer


def _episode(path: Path, seconds: float = 12.0, level: float = 0.2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(seconds, level=level), 16_000)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cli_lines(argv: list[str]) -> list[str]:
    """What the command printed, less the "home: ..." line every command that touches the home opens with."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli.main(argv)
    return [line for line in out.getvalue().splitlines() if not line.startswith("home: ")]


def _episode_sets(home: Path) -> list[tuple[str, str]]:
    with warehouse.connect(home, read_only=True) as con:
        return con.execute("SELECT name, path FROM eval_sets WHERE format = 'episode' ORDER BY name").fetchall()


# --- the settle rule ------------------------------------------------------------------------------------------------


def test_a_file_is_settled_by_its_old_mtime_or_by_a_sighting_settle_s_ago() -> None:
    state = FileState(size=100, mtime_ns=1_000 * 10**9)
    assert is_settled(state, None, now=1_010.0, settle_s=10.0), "untouched for 10 s by its own mtime"
    assert not is_settled(state, None, now=1_009.0, settle_s=10.0)
    assert not is_settled(state, 1_008.0, now=1_009.0, settle_s=10.0)
    future = FileState(size=100, mtime_ns=2_000 * 10**9)  # another machine's clock: its mtime proves nothing
    assert not is_settled(future, 1_000.0, now=1_005.0, settle_s=10.0)
    assert is_settled(future, 1_000.0, now=1_010.0, settle_s=10.0), "the same size and mtime seen 10 s ago"


def test_wait_until_settled_returns_at_once_for_an_old_file_and_refuses_a_changing_one(tmp_path: Path) -> None:
    clock = [time.time()]
    old = tmp_path / "old.wav"
    old.write_bytes(b"x" * 10)
    os.utime(old, (clock[0] - 60.0, clock[0] - 60.0))

    def never(seconds: float) -> None:
        raise AssertionError(f"waited {seconds} s for a file untouched for a minute")

    assert wait_until_settled(old, 10.0, clock=lambda: clock[0], sleep=never) == FileState.of(old)

    changing = tmp_path / "changing.wav"
    changing.write_bytes(b"")

    def write_meanwhile(seconds: float) -> None:  # a write lands every 9 s: never 10 s of quiet
        clock[0] += min(seconds, 9.0)
        with changing.open("ab") as handle:
            handle.write(b"more")
        os.utime(changing, (clock[0], clock[0]))

    with pytest.raises(StillChanging, match=r"changing\.wav: still being written"):
        wait_until_settled(changing, 10.0, max_wait_s=60.0, clock=lambda: clock[0], sleep=write_meanwhile)


# --- the sensor and inbox add, against a real writer -----------------------------------------------------------------


@pytest.mark.slow_fault
@pytest.mark.reliability
def test_sensor_takes_a_file_written_in_bursts_once_complete(tmp_path: Path) -> None:
    """Ticks every 0.05 s while a process writes the file in bursts 0.3 s apart: the old two-equal-ticks rule took the
    partial file between two bursts (and the complete one later, a second episode); now only the complete file."""
    home, inbox = tmp_path / "home", tmp_path / "inbox"
    full = _episode(tmp_path / "source" / "show.wav")
    instance = dg.DagsterInstance.ephemeral()
    resources = {
        "warehouse_db": WarehouseResource(home=str(home)),
        "inbox": InboxResource(folder=str(inbox), settle_s=SETTLE_S),
    }
    writer = _slow_copy(full, inbox / "show.wav", chunks=6, pause_s=0.3)
    cursor, requests = None, []
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline and not (writer.poll() is not None and requests):
        context = dg.build_sensor_context(cursor=cursor, instance=instance, resources=resources)
        result = inbox_sensor(context)
        if isinstance(result, dg.SensorResult):
            cursor = result.cursor
            requests += result.run_requests
        else:
            cursor = context.cursor
        time.sleep(0.05)
    assert writer.wait() == 0
    sha = _sha(full)
    assert [(r.run_key, r.partition_key) for r in requests] == [(sha, f"ep-{sha[:12]}")]
    assert _episode_sets(home) == [(f"ep-{sha[:12]}", str((inbox / "show.wav").resolve()))]


@pytest.mark.slow_fault
@pytest.mark.reliability
def test_inbox_add_waits_for_a_file_still_being_written_and_registers_it_once(
    emojudge_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """`inbox add` of a file a process is still writing used to register the partial bytes at once (and the sensor
    then took the complete file as a second episode); now it waits until the file holds still, copies it whole."""
    monkeypatch.setenv("EMOJUDGE_INBOX_SETTLE_S", str(SETTLE_S))
    full = _episode(tmp_path / "source" / "show.wav")
    growing = tmp_path / "download" / "show.wav"
    writer = _slow_copy(full, growing, chunks=5, pause_s=0.3)
    [line] = _cli_lines(["inbox", "add", str(growing)])
    assert writer.wait() == 0
    assert "waiting for" in capsys.readouterr().err
    name, target = line.split()
    sha = _sha(full)
    assert name == f"ep-{sha[:12]}" and _sha(Path(target)) == sha
    assert _episode_sets(emojudge_home) == [(name, target)]

    ticks = dg.DagsterInstance.ephemeral()
    resources = {
        "warehouse_db": WarehouseResource(home=str(emojudge_home)),
        "inbox": InboxResource(folder=str(emojudge_home / "inbox"), settle_s=SETTLE_S),
    }
    context = dg.build_sensor_context(instance=ticks, resources=resources)
    result = inbox_sensor(context)
    assert {r.partition_key for r in result.run_requests} == {name}, "the sensor finds the same episode, not another"
    assert _episode_sets(emojudge_home) == [(name, target)]
    assert sorted(p.name for p in (emojudge_home / "inbox").iterdir()) == ["show.wav"], "no partial copy left"


@pytest.mark.slow_fault
@pytest.mark.reliability
def test_inbox_add_refuses_a_file_that_never_stops_changing_in_one_line(
    emojudge_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("EMOJUDGE_INBOX_SETTLE_S", "0.4")  # waits at most 12 settle times: 4.8 s
    full = _episode(tmp_path / "source" / "show.wav", seconds=30.0)
    growing = tmp_path / "download" / "show.wav"
    writer = _slow_copy(full, growing, chunks=150, pause_s=0.1)
    try:
        with pytest.raises(SystemExit) as refused:
            cli.main(["inbox", "add", str(growing)])
    finally:
        writer.kill()
        writer.wait()
    err = capsys.readouterr().err.strip().splitlines()
    assert refused.value.code == 2
    assert err[-1].startswith(f"error: {growing}: still being written") and "EMOJUDGE_INBOX_SETTLE_S" in err[-1]
    assert not warehouse.warehouse_path(emojudge_home).exists(), "nothing registered"
    assert list((emojudge_home / "inbox").iterdir()) == [], "no partial copy left in the inbox"


@pytest.mark.reliability
def test_inbox_add_of_a_directory_says_it_is_a_directory(
    emojudge_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "x.mp3").mkdir()
    for path, cause in (
        (tmp_path / "x.mp3", "is a directory, not an episode file"),
        (tmp_path / "y.mp3", "file not found"),
    ):
        with pytest.raises(SystemExit) as refused:
            cli.main(["inbox", "add", str(path)])
        assert refused.value.code == 2
        assert capsys.readouterr().err.strip() == f"error: {path}: {cause}"


def test_the_scan_keeps_its_old_cursor_entries_working(tmp_path: Path) -> None:
    """A cursor written before the settle time (size, mtime, hash) still names the files it took."""
    path = tmp_path / "old.flac"
    path.write_bytes(b"abc")
    state = FileState.of(path)
    cursor = f'{{"files": {{"old.flac": [{state.size}, {state.mtime_ns}, "{_sha(path)}"]}}, "seen": ["{_sha(path)}"]}}'
    scan = scan_inbox(tmp_path, cursor, settle_s=SETTLE_S)
    assert scan.ready == [] and scan.waiting == []


# --- a vanished file ------------------------------------------------------------------------------------------------


@pytest.mark.slow_fault
@pytest.mark.reliability
def test_an_episode_whose_file_vanished_is_marked_missing_skipped_and_back_once_re_added(
    emojudge_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Deleted after `inbox add`, an episode failed every later `inbox run` (FileNotFoundError, exit 2); now the run
    marks it missing (rejected_inputs stage 'missing', state 'missing') with one log line, later runs skip it without
    a Dagster run and exit 0, and adding the same bytes again brings it back."""
    monkeypatch.setenv("EMOJUDGE_INBOX_SETTLE_S", "0.2")
    source = _episode(tmp_path / "drop" / "quiet.wav", level=0.0)  # all silence: rejected without any model
    keep = tmp_path / "keep" / "quiet.wav"
    keep.parent.mkdir()
    keep.write_bytes(source.read_bytes())
    [added] = _cli_lines(["inbox", "add", str(source)])
    name, target = added.split()
    Path(target).unlink()

    ran = _cli_lines(["inbox", "run"])
    missing = f"{name}  missing: {target}: file not found (moved or deleted after it was registered); skipped"
    assert missing in ran
    assert "missing: file not found" in capsys.readouterr().err, "the run's one log line"
    with warehouse.connect(emojudge_home, read_only=True) as con:
        rows = con.execute("SELECT eval_set, audio_path, stage FROM rejected_inputs").fetchall()
    assert rows == [(name, target, "missing")]
    listed = _cli_lines(["inbox", "list"])
    assert listed[1].split()[:2] == [name, "missing"], listed

    runs = launch.instance(Settings.from_env()).get_runs_count()
    assert _cli_lines(["inbox", "run"]) == [missing, "no pending episodes"]
    assert launch.instance(Settings.from_env()).get_runs_count() == runs, "skipped: no run launched"

    [again] = _cli_lines(["inbox", "add", str(keep)])
    assert again.split()[0] == name and _episode_sets(emojudge_home) == [(name, target)]
    assert _cli_lines(["inbox", "run"])[-1] == f"{name}  rejected: all silence (peak below -80 dBFS)"
    with warehouse.connect(emojudge_home, read_only=True) as con:
        assert con.execute("SELECT stage FROM rejected_inputs").fetchall() == [("ingest",)]


# --- inbox list only reads --------------------------------------------------------------------------------------------


@pytest.mark.reliability
def test_inbox_list_creates_no_warehouse_and_answers_while_the_main_file_is_held(
    emojudge_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`inbox list` opened a write connection: it created a warehouse where there was none, and waited for any writer
    holding the main file (3-10 s during a run, here a process holding it for a minute). It reads the snapshot now."""
    assert _cli_lines(["inbox", "list"])[0].startswith("no episodes registered")
    assert not emojudge_home.exists(), "a read created nothing"

    monkeypatch.setenv("EMOJUDGE_INBOX_SETTLE_S", "0.2")
    [added] = _cli_lines(["inbox", "add", str(_episode(tmp_path / "drop" / "talk.wav"))])
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('holding', flush=True); time.sleep(60)",
            str(warehouse.warehouse_path(emojudge_home)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        listed = subprocess.run(
            [sys.executable, "-m", "emojudge_pipeline.cli", "inbox", "list"],
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=45,
        )
    finally:
        holder.kill()
        holder.wait()
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[2].split()[:2] == [added.split()[0], "pending"], listed.stdout
