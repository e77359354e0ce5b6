"""``make cluster-demo``: a real cluster on loopback in a temporary folder, two evaluation sets through it.

PostgreSQL (Dagster's storage, the DuckLake catalog and the judge journal), Redis (Celery's broker) and two Celery
workers, each its own process group, are started; this process registers the sets and runs ``materialize_eval_set``
for each through Dagster with the Celery executor, so every step runs on one of the workers. Then a real
``dagster-daemon`` starts, a short episode is dropped into the inbox, and the daemon's inbox sensor registers it and
launches its score run, whose steps run on the workers too. It prints one line::

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
import signal
import sys
import tempfile
import time
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
    "EMOJUDGE_INBOX_SETTLE_S": "2",
}
"""What keeps the demo to a few minutes on 2 cores: librosa frames, short head training, a capped local judge, an
inbox that takes a file once it held still for 2 s."""
EPISODE_TIMEOUT_S = 900.0
"""How long the demo waits for the daemon to pick the episode up and its run to end."""


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

    def score_through_daemon(self, episode: Path, timeout_s: float = EPISODE_TIMEOUT_S) -> tuple[str, str]:
        """Drop ``episode`` (with its sidecar) into the inbox while a real ``dagster-daemon`` runs: its inbox sensor
        registers the episode and launches the score job; the run id once that run succeeded.

        Raises when the run fails or does not end within ``timeout_s``, in one line; the daemon is stopped either
        way."""
        import dagster as dg

        from emojudge_models.episodes.ingest import episode_set_name
        from emojudge_models.ingest.audio import file_sha256
        from emojudge_pipeline.instance import instance

        settings = self.settings()
        name = episode_set_name(file_sha256(episode))
        inst = instance(settings)
        daemon = servers.start_daemon({**os.environ, **self.env}, self.root / "logs")
        self.stack.callback(daemon.stop)
        try:
            settings.inbox_dir.mkdir(parents=True, exist_ok=True)
            for path in (episode.with_suffix(".vtt"), episode):  # the sidecar first: the sensor reads it with the audio
                if path.exists():
                    shutil.copyfile(path, settings.inbox_dir / f".{path.name}.partial")
                    os.replace(settings.inbox_dir / f".{path.name}.partial", settings.inbox_dir / path.name)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if not daemon.alive():
                    raise RuntimeError(f"dagster-daemon exited ({daemon.process.returncode}): {daemon.tail(500)}")
                runs = inst.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": name}), limit=1)
                if runs and runs[0].is_finished:
                    break
                time.sleep(2.0)
            else:
                raise RuntimeError(f"the daemon did not score episode {name} within {timeout_s:.0f} s")
        finally:
            daemon.stop()
        if runs[0].status != dg.DagsterRunStatus.SUCCESS:
            raise RuntimeError(
                f"daemon run of episode {name} failed: run {runs[0].run_id}{_first_run_failure(inst, runs[0].run_id)}"
            )
        return name, runs[0].run_id

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


def _failure_line(events) -> str:
    """``, step S: error`` (the root cause's first line) for the first of some step-failure events; '' for none."""
    for event in events:
        error = event.step_failure_data.error
        while error is not None and error.cause is not None:
            error = error.cause
        lines = error.message.strip().splitlines() if error is not None else []
        return f", step {event.step_key}: {lines[0] if lines else 'failed'}"
    return ""


def _first_failure(result) -> str:
    """The first failed step of an ``execute_job`` result, as :func:`_failure_line`."""
    return _failure_line(result.get_step_failure_events())


def _first_run_failure(inst, run_id: str) -> str:
    """The first failed step of a run, read from its event log (a daemon's run), as :func:`_failure_line`."""
    import dagster as dg

    records = inst.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
    return _failure_line(record.event_log_entry.dagster_event for record in records)


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


def episode_line(home: Path, name: str, run_id: str, speakers: int) -> str:
    """What became of the inbox episode of ``speakers`` voices: its state, segments and the speakers found, and the
    daemon's run that scored it."""
    from emojudge_models.episodes.inbox import inbox_episodes
    from emojudge_models.store import warehouse

    with warehouse.connect(home, read_only=True) as con:
        episodes = inbox_episodes(con).set_index("name")
    row = episodes.loc[name]
    if row.state != "scored":
        raise RuntimeError(f"episode {name} is {row.state} after the daemon's run {run_id}: {row.reason}")
    return (
        f"episode {name}: dropped into the inbox, scored by the daemon's run {run_id} on the workers: "
        f"segments {row.segments}, speakers found {row.speakers} of {speakers}"
    )


def main(argv: list[str] | None = None) -> None:
    from emojudge_models.ingest.demo_corpus import write_demo_corpus, write_demo_episode

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, lake data)")
    args = parser.parse_args(argv)
    # a SIGTERM (make interrupted, a CI timeout) unwinds like Ctrl-C: every server stopped, the temporary folders gone
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
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
            voices = ("spk5", "spk6")
            episode, episode_run = running.score_through_daemon(
                write_demo_episode(manifest, root / "episode" / "demo-episode.wav", voices)
            )
            found = audit(running.home, {name: path for name, (path, _) in sets.items()})
            print(summary_line(running.steps_per_worker([*runs, episode_run]), len(sets), *found), flush=True)
            print(episode_line(running.home, episode, episode_run, len(voices)), flush=True)
            if args.keep:
                print(f"kept {root}; the lake: {running.env['EMOJUDGE_LAKE_CATALOG']}")
    except RuntimeError as error:  # a failed run, a server that would not start: one line (the logs stay with --keep)
        raise SystemExit(f"cluster-demo: {error}") from None
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
