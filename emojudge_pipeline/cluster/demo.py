"""``make cluster-demo``: a real cluster on loopback in a temporary folder, two evaluation sets through it.

PostgreSQL (Dagster's storage and the DuckLake catalog), Redis (Celery's broker) and two Celery workers, each its own
process group, are started; this process registers the sets and runs ``materialize_eval_set`` for each through
Dagster with the Celery executor, so every step runs on one of the workers. It prints one line::

    cluster: workers 2, steps worker-1 N worker-2 M, sets 2, rows lost 0, duplicate rows 0, paid calls repeated 0

then stops everything it started. The temporary folder is the shared root (EMOJUDGE_HOME: feature shards, models,
the lake's Parquet data); ``--keep`` leaves it (and prints the analyst's ATTACH) instead of deleting it.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import os
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from emojudge_pipeline.cluster import servers
from emojudge_pipeline.cluster.audit import audit

LAKE_DB = "emojudge_lake"
DAGSTER_DB = "dagster"
DEMO_SETTINGS = {
    "EMOJUDGE_PROFILE": "acoustic",
    "EMOJUDGE_MAX_EPOCHS": "3",
    "EMOJUDGE_PATIENCE": "1",
    "EMOJUDGE_JUDGE_SLOTS": "1",
    "EMOJUDGE_JUDGE_MAX_CALLS": "8",
    "EMOJUDGE_LOG_LEVEL": "WARNING",
}
"""What keeps the demo to a few minutes on 2 cores: librosa frames, short head training, a capped local judge."""


@dataclass
class Cluster:
    """The servers and settings of one cluster under ``root``; :meth:`materialize` runs a set through it."""

    root: Path
    env: dict[str, str]
    postgres: servers.Postgres | None = None
    """Dagster's storage and the lake's catalog (``postgres.restart()``: the catalog restarted under the runs)."""
    workers: dict[str, servers.Server] = field(default_factory=dict)
    stack: ExitStack = field(default_factory=ExitStack)

    @property
    def home(self) -> Path:
        return Path(self.env["EMOJUDGE_HOME"])

    def start_worker(self, name: str) -> servers.Server:
        worker = servers.start_worker(name, {**os.environ, **self.env}, self.root / "logs")
        self.stack.callback(worker.stop)
        self.workers[name] = worker
        return worker

    def settings(self):
        from emojudge_models.settings import Settings

        return Settings.from_env(self.env)

    def add_eval_set(self, name: str, manifest: Path) -> None:
        from emojudge_models.store import lake
        from emojudge_pipeline import cli

        settings = self.settings()
        lake.configure(settings)
        cli.add_eval_set(name, manifest, "manifest", settings)

    def materialize(self, name: str, train: bool) -> str:
        """Run every asset of ``name`` (training too with ``train``) through Dagster on the workers; the run id.

        Raises when the run fails, in one line: the run, its first failed step and that step's error's first line
        (a rerun replaces every partition the failed run wrote)."""
        import dagster as dg
        from dagster._core.definitions.reconstruct import ReconstructableRepository

        from emojudge_pipeline.definitions import MATERIALIZE_JOB, build_definitions
        from emojudge_pipeline.instance import instance

        settings = self.settings()
        graph = build_definitions(settings).resolve_asset_graph()
        selection = [key for key in graph.get_all_asset_keys() if train or graph.get(key).is_partitioned]
        repository = ReconstructableRepository.for_module("emojudge_pipeline.definitions", "defs")
        job = repository.get_reconstructable_job(MATERIALIZE_JOB)
        result = dg.execute_job(
            job,
            instance=instance(settings),
            tags={"dagster/partition": name},
            asset_selection=selection,
            raise_on_error=False,
        )
        if not result.success:
            raise RuntimeError(f"cluster run of {name} failed: run {result.run_id}{_first_failure(result)}")
        return result.run_id

    def steps_per_worker(self, run_ids: list[str]) -> dict[str, int]:
        """Steps each worker started in ``run_ids`` (a step redelivered after a kill counts on both)."""
        import dagster as dg

        from emojudge_pipeline.instance import instance

        inst = instance(self.settings())
        names = {worker.process.pid: name for name, worker in self.workers.items()}
        counts: Counter[str] = Counter({name: 0 for name in self.workers})
        for run_id in run_ids:
            for record in inst.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START).records:
                event = record.event_log_entry.dagster_event
                counts[names.get(event.pid, f"pid-{event.pid}")] += 1
        return dict(counts)


def _first_failure(result) -> str:
    """``, step S: error`` (the root cause's first line) for the first failed step of an ``execute_job`` result."""
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        while error is not None and error.cause is not None:
            error = error.cause
        lines = error.message.strip().splitlines() if error is not None else []
        return f", step {event.step_key}: {lines[0] if lines else 'failed'}"
    return ""


@contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in os.environ for a block (Dagster's instance and the step processes read DAGSTER_HOME)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def cluster(root: Path, settings: Mapping[str, str], workers: int = 2) -> Iterator[Cluster]:
    """PostgreSQL, Redis and ``workers`` Celery workers under ``root``, with the cluster's settings plus
    ``settings``; everything is stopped on the way out."""
    with ExitStack() as stack:
        # a folder of its own that the postgres user can reach (as root the server runs as that user)
        postgres_root = Path(tempfile.mkdtemp(prefix="emojudge-postgres-"))
        os.chmod(postgres_root, 0o755)
        stack.callback(shutil.rmtree, postgres_root, True)
        postgres = servers.Postgres(postgres_root).start([LAKE_DB, DAGSTER_DB])
        stack.callback(postgres.server.stop)
        redis, redis_url = servers.start_redis(root / "redis")
        stack.callback(redis.stop)
        env = {
            **settings,
            "EMOJUDGE_HOME": str(root / "shared"),
            "DAGSTER_HOME": str(root / "dagster"),
            "EMOJUDGE_WAREHOUSE": "ducklake",
            "EMOJUDGE_LAKE_CATALOG": postgres.conninfo(LAKE_DB),
            "EMOJUDGE_DAGSTER_POSTGRES": postgres.url(DAGSTER_DB),
            "EMOJUDGE_EXECUTOR": "celery",
            "EMOJUDGE_CELERY_BROKER": redis_url,
            "OMP_NUM_THREADS": "1",
        }
        found = Cluster(root, env, postgres)
        stack.enter_context(found.stack)
        # this process orchestrates the runs: Dagster loads the code location (and its executor) from os.environ
        stack.enter_context(_environ(env))
        from emojudge_pipeline.instance import instance

        instance(found.settings())  # dagster.yaml with the PostgreSQL storage, before any worker reads it
        if "emojudge_pipeline.definitions" in sys.modules:  # loaded under other settings (a test's single machine)
            importlib.reload(sys.modules["emojudge_pipeline.definitions"])
        for index in range(1, workers + 1):
            found.start_worker(f"worker-{index}")
        yield found


def second_set(manifest: Path, speakers: tuple[str, ...] = ("spk5", "spk6")) -> Path:
    """Two speakers' clips of the demo corpus as a set of their own, scored by the models the demo set trains."""
    with open(manifest, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["speaker_id"] in speakers]
    subset = manifest.with_name("holdout.csv")
    with open(subset, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return subset


def summary_line(steps: Mapping[str, int], sets: int, lost: int, duplicates: int, repeated: int) -> str:
    per_worker = " ".join(f"{name} {count}" for name, count in sorted(steps.items()))
    return (
        f"cluster: workers {len(steps)}, steps {per_worker}, sets {sets}, rows lost {lost}, "
        f"duplicate rows {duplicates}, paid calls repeated {repeated}"
    )


def main(argv: list[str] | None = None) -> None:
    from emojudge_models.ingest.demo_corpus import write_demo_corpus

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, lake data)")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="emojudge-cluster-"))
    os.chmod(root, 0o755)
    try:
        with cluster(root, DEMO_SETTINGS) as running:
            manifest = write_demo_corpus(root / "corpus")
            sets = {"demo": (manifest, True), "holdout": (second_set(manifest), False)}
            runs = []
            for name, (path, train) in sets.items():
                running.add_eval_set(name, path)
                runs.append(running.materialize(name, train))
            found = audit(running.home, {name: path for name, (path, _) in sets.items()})
            print(summary_line(running.steps_per_worker(runs), len(sets), *found), flush=True)
            if args.keep:
                print(f"kept {root}; the lake: {running.env['EMOJUDGE_LAKE_CATALOG']}")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
