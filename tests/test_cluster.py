"""The cluster for real (``make cluster-test``): PostgreSQL, Redis and two Celery workers on loopback.

A worker SIGKILLed in the middle of a step: the step is delivered to the other worker, the run succeeds, and every
table equals a clean single-machine run's; a read-only DuckDB session on the lake stays open through the run. The
PostgreSQL server (Dagster's storage and the lake's catalog) restarted in the middle of a step: the run waits and
goes on, or fails in one line and its rerun completes; the tables equal the clean run's either way. Two processes
replacing different partitions of one lake table at once, many times: no row lost or duplicated, no partial view.
Skipped only where the PostgreSQL server binaries or redis-server are absent.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from batch_api_server import FakeOpenAIServer
from test_parallel_sets import partition_keys
from tiny_models import demo_training_env

from emojudge_models.judge.journal import JudgeJournal, journal_location
from emojudge_models.settings import Settings
from emojudge_models.store import lake, warehouse
from emojudge_pipeline import cli, sensors
from emojudge_pipeline.cluster import servers
from emojudge_pipeline.cluster.audit import audit
from emojudge_pipeline.cluster.demo import cluster, second_set
from emojudge_pipeline.resources import WarehouseResource

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
if servers.postgres_bin() is None or shutil.which("redis-server") is None:
    pytestmark.append(pytest.mark.skip(reason="needs the PostgreSQL server binaries (initdb) and redis-server"))

KILLED_STEP = "audio_features"
SETTINGS = {"EMOJUDGE_AUDIO_POOLING": "meanstd", "EMOJUDGE_LOG_LEVEL": "WARNING", "EMOJUDGE_CELERY_REDELIVERY_S": "15"}


def kill_worker_in_step(running, step: str, done: threading.Event, killed: list[str]) -> None:
    """SIGKILL the worker whose process started ``step`` (its STEP_START pid), once, within the run."""
    import dagster as dg

    from emojudge_pipeline.instance import instance

    inst = instance(running.settings())
    pids = {worker.process.pid: name for name, worker in running.workers.items()}
    while not done.wait(0.2) and not killed:
        for record in inst.get_event_records(dg.EventRecordsFilter(dg.DagsterEventType.STEP_START), limit=100):
            event = record.event_log_entry.dagster_event
            if event.step_key == step and event.pid in pids:
                time.sleep(0.5)  # inside the step
                running.workers[pids[event.pid]].kill()
                killed.append(pids[event.pid])
                return


@pytest.fixture(scope="module")
def judge_api():
    with FakeOpenAIServer(max_lifetime_s=1800) as api:
        yield api


@pytest.fixture(scope="module")
def single_machine(tmp_path_factory: pytest.TempPathFactory, judge_api):
    """(the sets' manifests, the runs' settings, each set's tables from a clean single-machine run: the file
    warehouse, in-process), shared by the module's cluster runs."""
    root = tmp_path_factory.mktemp("single")
    manifest, training = demo_training_env(root / "corpus")
    sets = {"demo": manifest, "holdout": second_set(manifest)}
    base = {**training, **SETTINGS, "EMOJUDGE_JUDGE_BASE_URL": judge_api.base_url}
    home = root / "single"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**base, "EMOJUDGE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}.items():
            patch.setenv(name, value)
        for name, path in sets.items():
            cli.add_eval_set(name, path, "manifest", Settings.from_env())
            cli.materialize(name, train=name == "demo", settings=Settings.from_env())
        expected = {name: partition_keys(home, name) for name in sets}
    return sets, base, expected


def assert_tables_equal(got: dict, expected: dict) -> None:
    """Every compared table of each set equal; metrics are float sums over model outputs computed on a worker and
    in one process (other thread counts): equal to 1e-6, their last digits free."""
    for name in expected:
        got_tables, expected_tables = dict(got[name]), dict(expected[name])
        got_metrics, expected_metrics = got_tables.pop("metrics"), expected_tables.pop("metrics")
        assert got_tables == expected_tables, name
        assert [row[:-1] for row in got_metrics] == [row[:-1] for row in expected_metrics], name
        assert [row[-1] for row in got_metrics] == pytest.approx([row[-1] for row in expected_metrics], abs=1e-6)


def journaled_answers(running) -> int:
    """Paid answers in the cluster's judge journal (PostgreSQL, the lake's catalog database)."""
    import psycopg2

    with psycopg2.connect(running.env["EMOJUDGE_LAKE_CATALOG"]) as con, con.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM judge_answers WHERE stored = 1")
        return cursor.fetchone()[0]


def stored_judgments(running) -> int:
    with warehouse.connect(running.home, read_only=True) as con:
        return con.execute("SELECT count(DISTINCT custom_id) FROM llm_judgments").fetchone()[0]


def test_killed_worker_step_retried_and_tables_equal_single_machine(tmp_path: Path, single_machine) -> None:
    sets, base, expected = single_machine
    with cluster(tmp_path / "cluster", base) as running:
        done, killed = threading.Event(), []
        killer = threading.Thread(target=kill_worker_in_step, args=(running, KILLED_STEP, done, killed))
        killer.start()
        reader = None
        try:
            runs = []
            for name, path in sets.items():
                running.add_eval_set(name, path)
                if reader is None:  # an analyst's read-only session on the lake, open through the runs
                    reader = lake.attach(lake.from_settings(running.settings()), read_only=True)
                    before = reader.execute("SELECT count(*) FROM eval_sets").fetchone()[0]
                runs.append(running.materialize(name, train=name == "demo"))
            after = reader.execute("SELECT count(*) FROM lake.utterances").fetchone()[0]
        finally:
            done.set()
            killer.join(timeout=30)
        assert killed, f"no worker was running {KILLED_STEP}"
        assert before >= 1 and after > 0
        reader.close()
        shell = subprocess.run(  # make sql PROFILE=cluster: the DuckDB CLI on the lake, read-only
            [sys.executable, "-m", "emojudge_pipeline.cli", "sql"],
            input="SELECT count(*) AS sets FROM eval_sets; CREATE TABLE nope (x INTEGER);",
            env={**os.environ, **running.env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "│     2 │" in shell.stdout, shell.stdout + shell.stderr
        assert "read-only" in shell.stderr.lower() or "read only" in shell.stderr.lower(), shell.stderr
        steps = running.steps_per_worker(runs)
        assert all(count > 0 for count in steps.values()), steps
        lake.configure(running.settings())
        got = {name: partition_keys(running.home, name) for name in sets}
        assert audit(running.home, sets) == (0, 0, 0)
        assert journaled_answers(running) == stored_judgments(running) > 0
        assert not (running.home / "judge" / "journal.sqlite").exists(), "a worker kept the journal in SQLite"
    assert_tables_equal(got, expected)


RESTARTED_STEP = "audio_features"
RESTART_DOWN_S = 3.0
"""Seconds with no server: longer than a fast restart takes, within Dagster's own connection retries (~6 s)."""


def restart_postgres_in_step(running, step: str, restarted: list[float], release: threading.Event) -> None:
    """Restart the cluster's PostgreSQL once, as ``step`` starts (its worker is writing the step's first events and
    opening its first lake session); ``release`` ends the watch."""
    import dagster as dg

    from emojudge_pipeline.instance import instance

    inst = instance(running.settings())
    while not release.wait(0.2) and not restarted:
        records = inst.get_event_records(dg.EventRecordsFilter(dg.DagsterEventType.STEP_START), limit=100)
        if any(record.event_log_entry.dagster_event.step_key == step for record in records):
            started = time.monotonic()
            running.postgres.restart(RESTART_DOWN_S)
            restarted.append(time.monotonic() - started)


def test_postgres_restarted_mid_run_run_goes_on_or_reruns_and_tables_equal(tmp_path: Path, single_machine) -> None:
    """The demo set (training and scoring) with the server restarted under one of its steps: the run waits and goes
    on, or fails with a one-line error and a rerun completes; either way its tables equal the clean run's."""
    sets, base, expected = single_machine
    release, restarted, outcome = threading.Event(), [], []
    with cluster(tmp_path / "cluster", base) as running:
        restarter = threading.Thread(
            target=restart_postgres_in_step, args=(running, RESTARTED_STEP, restarted, release)
        )
        restarter.start()
        try:
            running.add_eval_set("demo", sets["demo"])
            try:
                running.materialize("demo", train=True)
                outcome.append("went on")
            except RuntimeError as error:
                assert "\n" not in str(error) and ", step " in str(error), str(error)
                outcome.append(f"failed: {error}")
                running.materialize("demo", train=True)
            assert restarted, f"PostgreSQL was not restarted: no {RESTARTED_STEP} step started"
            lake.configure(running.settings())
            got = {"demo": partition_keys(running.home, "demo")}
            assert audit(running.home, {"demo": sets["demo"]}) == (0, 0, 0)
        finally:
            release.set()
            restarter.join(timeout=60)
    print(f"PostgreSQL restarted ({restarted[0]:.1f} s) in {RESTARTED_STEP}: the run {outcome[0]}")
    assert_tables_equal(got, {"demo": expected["demo"]})


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory):
    """A PostgreSQL server and an empty lake (schema created) on it; (the server, the lake)."""
    postgres_root = Path(tempfile.mkdtemp(prefix="emojudge-postgres-"))  # a folder the postgres user can reach
    os.chmod(postgres_root, 0o755)
    postgres = servers.Postgres(postgres_root).start(["lake"])
    found = lake.Lake(postgres.conninfo("lake"), tmp_path_factory.mktemp("catalog") / "data")
    with lake.connect(found):
        pass
    yield postgres, found
    postgres.server.stop()
    shutil.rmtree(postgres_root, ignore_errors=True)


ROUNDS, ROWS = 12, 300


def predictions_frame(eval_set: str, round_index: int, rows: int) -> pd.DataFrame:
    ids = [f"{eval_set}-{round_index:03d}-{row:05d}" for row in range(rows)]
    return pd.DataFrame(
        {
            "utterance_id": ids,
            "fused_label": "neutral",
            "final_label": "neutral",
            "changed": False,
            "run_id": f"r{round_index}",
        }
    )


def replace_repeatedly(found: lake.Lake, eval_set: str, rounds: int, rows: int) -> int:
    """A writer process: replace ``eval_set``'s predictions ``rounds`` times, each in its own session, and read
    each round back in a new session; the rounds whose rows were exactly that round's."""
    exact = 0
    for round_index in range(rounds):
        frame = predictions_frame(eval_set, round_index, rows)
        with lake.connect(found) as con:
            warehouse.replace_partition(con, "predictions", eval_set, frame)
        with lake.connect(found, read_only=True) as con:
            ids = con.execute("SELECT utterance_id FROM predictions WHERE eval_set = ?", [eval_set]).fetchall()
        exact += sorted(row[0] for row in ids) == sorted(frame["utterance_id"])
    return exact


def test_scoring_jobs_send_their_steps_to_the_cluster(tmp_path: Path) -> None:
    """With the Celery executor selected, the scoring jobs (in one process on one machine) use it too."""
    from emojudge_pipeline.definitions import build_definitions

    defs = build_definitions(Settings(home=tmp_path, executor="celery"))
    for job in (sensors.SCORE_JOB, sensors.RESCORE_JOB, "materialize_eval_set"):
        assert defs.resolve_job_def(job).executor_def.name == "celery"


def test_rescoring_reads_the_lake(catalog, tmp_path: Path) -> None:
    """On a cluster there is no warehouse file: the daemon's rescore sensor and schedule read the lake, and request
    the episode scored by an older model (once per set of latest models), not the one scored by the newest."""
    _, found = catalog
    home = tmp_path / "home"
    lake.register(home, found)
    resource = WarehouseResource(home=str(home))
    try:
        with lake.connect(found) as con:
            con.execute(
                "INSERT INTO eval_sets (name, format, path) VALUES "
                "('ep-stale', 'episode', '/inbox/a.mp3'), ('ep-fresh', 'episode', '/inbox/b.mp3')"
            )
            for key, created in (("model-old", "2026-01-01"), ("model-new", "2026-02-01")):
                con.execute(
                    "INSERT INTO model_registry (model_key, kind, task, train_eval_sets, hyperparameters, "
                    "dev_metric_name, path, run_id, created_at, trained_on) VALUES "
                    "(?, 'audio_head', 'categorical', ['train'], '{}', 'f1_macro', '/m', 'r', ?, 'sets:train')",
                    [key, created],
                )
            con.execute(
                "INSERT INTO logits (eval_set, utterance_id, modality, task, model_key, logits, run_id) VALUES "
                "('ep-stale', 'u1', 'audio', 'categorical', 'model-old', [0.0], 'r'), "
                "('ep-fresh', 'u1', 'audio', 'categorical', 'model-new', [0.0], 'r')"
            )
        assert not resource.path.exists()
        keyed = sensors._stale_requests(resource, keyed=True)
        assert [request.partition_key for request in keyed] == ["ep-stale"]
        assert keyed[0].run_key.startswith("ep-stale:")
        assert [request.run_key for request in sensors._stale_requests(resource, keyed=False)] == [None]
    finally:
        with lake.connect(found) as con:
            con.execute("DELETE FROM logits WHERE eval_set IN ('ep-stale', 'ep-fresh')")
            con.execute("DELETE FROM model_registry WHERE model_key IN ('model-old', 'model-new')")
            con.execute("DELETE FROM eval_sets WHERE name IN ('ep-stale', 'ep-fresh')")
        lake.register(home, None)


PROMPTS = [f"prompt-{index:04d}" for index in range(400)]


def judge_on_host(conninfo: str, host: str, seed: int) -> list[str]:
    """A judge on ``host``: claim the prompts in its own order, ten at a time, and answer every one it got."""

    journal = JudgeJournal(conninfo, owner=f"run-on-{host}")
    journal.host = host
    order = PROMPTS[:]
    random.Random(seed).shuffle(order)
    answered = []
    with journal.heartbeat():
        for start in range(0, len(order), 10):
            for custom_id in journal.claim(order[start : start + 10]).mine:
                journal.record("cluster-set", {"custom_id": custom_id, "host": host}, final=True)
                answered.append(custom_id)
    return answered


def test_judge_claims_hold_across_hosts(catalog) -> None:
    """The cluster's judge journal is in PostgreSQL (the lake's catalog database): two hosts judging the same prompts
    at once answer each exactly once, and an answer given on one host is what the other gets."""
    _, found = catalog
    settings = Settings.from_env({"EMOJUDGE_WAREHOUSE": "ducklake", "EMOJUDGE_LAKE_CATALOG": found.catalog})
    assert journal_location(settings) == found.catalog
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pending = [pool.apply_async(judge_on_host, (found.catalog, f"host-{index}", index)) for index in (1, 2)]
        answered = [result.get(timeout=300) for result in pending]
    assert all(answered), "one host answered nothing: the race was not run"
    assert sorted(answered[0] + answered[1]) == PROMPTS
    late = JudgeJournal(found.catalog, owner="run-late")
    claims = late.claim(PROMPTS)
    assert claims.mine == [] and len(claims.answered) == len(PROMPTS)
    assert {row["host"] for row in claims.answered.values()} == {"host-1", "host-2"}
    assert len(late.unstored("cluster-set")) == len(PROMPTS)


def test_a_judge_claim_on_another_host_holds_for_its_lease_across_a_catalog_restart(catalog) -> None:
    postgres, found = catalog
    holder = JudgeJournal(found.catalog, owner="run-holder", lease_s=2.0)
    holder.host = "worker-gone"  # on another host: only the lease speaks for it
    assert holder.claim(["held-prompt"]).mine == ["held-prompt"]
    postgres.restart()
    other = JudgeJournal(found.catalog, owner="run-other")
    assert other.claim(["held-prompt"]).held == {"held-prompt": "run-holder"}
    time.sleep(2.2)
    assert other.claim(["held-prompt"]).mine == ["held-prompt"]


def test_two_processes_replacing_partitions_of_one_table_lose_and_duplicate_nothing(catalog) -> None:
    _, found = catalog
    sets = ("set-a", "set-b")
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pending = [pool.apply_async(replace_repeatedly, (found, name, ROUNDS, ROWS)) for name in sets]
        views = []  # a reader's views of each partition while the writers commit: one round's rows, never a mix
        with lake.connect(found, read_only=True) as reader:
            while not all(result.ready() for result in pending):
                views += reader.execute(
                    "SELECT eval_set, count(*), count(DISTINCT run_id) FROM predictions GROUP BY eval_set"
                ).fetchall()
                time.sleep(0.05)
        exact = [result.get(timeout=600) for result in pending]
    assert exact == [ROUNDS, ROUNDS]
    assert views and all(count == ROWS and rounds == 1 for _, count, rounds in views), views[:5]
    with lake.connect(found, read_only=True) as con:
        rows = con.execute("SELECT eval_set, utterance_id, run_id FROM predictions").fetchall()
    assert len(rows) == len(set(rows)) == 2 * ROWS
    assert sorted(rows) == sorted(
        (name, utterance_id, f"r{ROUNDS - 1}")
        for name in sets
        for utterance_id in predictions_frame(name, ROUNDS - 1, ROWS)["utterance_id"]
    )


def test_lake_write_survives_catalog_restart(catalog) -> None:
    """A partition replacement whose catalog connection the restart cut commits once, and a session opened while
    the server is down waits for it; the server restarted by a thread outlives that thread."""
    postgres, found = catalog
    frame = predictions_frame("restart", 0, ROWS)
    with lake.connect(found) as con:
        con.execute("BEGIN")
        con.execute("DELETE FROM predictions WHERE eval_set = 'restart'")
        warehouse.insert_frame(con, "predictions", frame.assign(eval_set="restart"))
        postgres.restart()
        con.execute("COMMIT")
    postgres.server.stop()

    def serve_later() -> None:
        time.sleep(RESTART_DOWN_S)
        postgres.restart()

    server = threading.Thread(target=serve_later)
    server.start()
    try:
        with lake.connect(found, read_only=True) as con:
            ids = con.execute("SELECT utterance_id FROM predictions WHERE eval_set = 'restart'").fetchall()
    finally:
        server.join(timeout=60)
    assert sorted(row[0] for row in ids) == sorted(frame["utterance_id"])
    time.sleep(1.0)  # a parent-death signal would have arrived by now
    assert postgres.server.alive() and postgres._ready()
