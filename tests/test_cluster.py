"""The cluster for real (``make cluster-test``): PostgreSQL, Redis and two Celery workers on loopback.

A worker SIGKILLed in the middle of a step: the step is delivered to the other worker, the run succeeds, and every
table equals a clean single-machine run's; a read-only DuckDB session on the lake stays open through the run.
Skipped only where the PostgreSQL server binaries or redis-server are absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from batch_api_server import FakeOpenAIServer
from test_parallel_sets import partition_keys
from tiny_models import demo_training_env

from emojudge_models.settings import Settings
from emojudge_models.store import lake
from emojudge_pipeline import cli
from emojudge_pipeline.cluster import servers
from emojudge_pipeline.cluster.audit import audit
from emojudge_pipeline.cluster.demo import cluster, second_set

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


def test_killed_worker_step_retried_and_tables_equal_single_machine(tmp_path: Path, monkeypatch) -> None:
    manifest, training = demo_training_env(tmp_path / "corpus")
    holdout = second_set(manifest)
    sets = {"demo": manifest, "holdout": holdout}
    with FakeOpenAIServer(max_lifetime_s=900) as api:
        base = {**training, **SETTINGS, "EMOJUDGE_JUDGE_BASE_URL": api.base_url}
        # the clean single-machine run: the file warehouse, in-process
        single = tmp_path / "single"
        for name, value in {**base, "EMOJUDGE_HOME": str(single), "DAGSTER_HOME": str(single / "dagster")}.items():
            monkeypatch.setenv(name, value)
        for name, path in sets.items():
            cli.add_eval_set(name, path, "manifest", Settings.from_env())
            cli.materialize(name, train=name == "demo", settings=Settings.from_env())
        expected = {name: partition_keys(single, name) for name in sets}

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
    for name in sets:
        # Metrics are float sums over model outputs computed on a worker and in one process (other thread counts):
        # equal to 1e-6, their last digits free. Every other table, keys and labels, is equal exactly.
        got_metrics, expected_metrics = got[name].pop("metrics"), expected[name].pop("metrics")
        assert got[name] == expected[name], name
        assert [row[:-1] for row in got_metrics] == [row[:-1] for row in expected_metrics], name
        assert [row[-1] for row in got_metrics] == pytest.approx([row[-1] for row in expected_metrics], abs=1e-6)
