"""The cluster by measurement: the engine (Celery + Redis against Ray), one worker against two on the same sets, and
the warehouse's commit and reader latency on DuckLake-PostgreSQL against the single DuckDB file.

``--part engine``: for each engine, seconds from nothing to two workers accepting tasks, the round trip of an empty
task (median of 200, one at a time), and the resident memory of everything the engine started (broker or head, and
both workers), before any Dagster or model code is loaded. Ray runs from an interpreter that has it
(``--ray-python``, e.g. a venv with ``ray`` installed beside this one); Celery from this one
(``pip install 'emojudge[cluster]'``).

    .venv/bin/python bench/bench_cluster.py --part engine --ray-python /tmp/rayenv/bin/python

``--part workers``: the demo set (training and scoring) then the two-speaker hold-out set, materialised through
Dagster on a cluster (PostgreSQL, Redis, Celery) of one worker and then of two; wall time per set, the speed-up, and
where the time goes: each step's seconds from Dagster's event log (STEP_START to STEP_SUCCESS), and their sum
against the wall time times the workers (busy share; the rest is dispatch, step start-up and waiting on
dependencies). The judge is ``openai-chat`` against a local OpenAI-compatible server (tests/batch_api_server.py),
the text encoder the tests' tiny RoBERTa, so the figures are the pipeline's, not an LLM's.

``--part commits``: 1, 2 and 4 processes each replacing its own set's ``utterances`` and ``predictions``
partitions (1,000 rows) on one lake as fast as they can for ``--seconds``: the replacements landed per second
(DuckLake replays the commits that conflict; the rate is what one table's writers get from one catalog).

``--part warehouse``: one evaluation set's ``utterances`` and ``predictions`` partitions of ``--sizes`` rows
replaced (``warehouse.write_partitions``, one transaction, in a session opened and closed as an asset does) and
a reader's session running a ``v_predictions`` query over the partition (timed with the session's opening, and
again in the open session), on the single file (its snapshot
republished after each write) and on DuckLake with its catalog in a local PostgreSQL; medians of ``--repeats``.

Record the output with the machine and its load in bench/RESULTS.md ("Cluster").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from celery import Celery

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # the tiny text model and the local judge server
TASKS = 200
READ_QUERY = "SELECT final_label, count(*), avg(duration_s) FROM v_predictions WHERE eval_set = ? GROUP BY final_label"

app = Celery("bench_cluster", broker=os.environ.get("BENCH_BROKER"), backend=os.environ.get("BENCH_BROKER"))


@app.task(name="noop")
def noop(value: int) -> int:
    return value


def rss_mb(pids: list[int]) -> float:
    """Resident memory of ``pids`` and all their descendants, in MB."""
    seen, todo, total = set(), list(pids), 0
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
            todo += [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except (OSError, StopIteration):
            continue
    return total / 1024


def bench_celery() -> dict:
    from emojudge_pipeline.cluster import servers

    with tempfile.TemporaryDirectory() as root:
        started = time.perf_counter()
        redis, url = servers.start_redis(Path(root) / "redis")
        env = {**os.environ, "BENCH_BROKER": url, "PYTHONPATH": f"{REPO / 'bench'}:{REPO}"}
        workers = []
        try:
            for name in ("worker-1", "worker-2"):
                argv = [sys.executable, "-m", "celery", "-A", "bench_cluster", "worker", "-n", f"{name}@%h", "-P",
                        "solo", "--without-gossip", "--without-mingle", "-l", "INFO"]  # fmt: skip
                workers.append(servers.start(name, argv, Path(root) / f"{name}.log", env=env))
            for worker in workers:
                servers._wait(worker, lambda w=worker: " ready." in w.tail(20_000), "ready")
            ready_s = time.perf_counter() - started
            app.conf.broker_url = app.conf.result_backend = url
            trips = []
            for index in range(TASKS):
                sent = time.perf_counter()
                assert noop.delay(index).get(timeout=30) == index
                trips.append(time.perf_counter() - sent)
            memory = rss_mb([redis.process.pid, *(w.process.pid for w in workers)])
        finally:
            for server in (*workers, redis):
                server.stop()
    return {"engine": "celery+redis", "ready_s": ready_s, "task_ms": 1000 * statistics.median(trips), "rss_mb": memory}


RAY_SCRIPT = """
import json, statistics, sys, time
started = time.perf_counter()
import ray
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
@ray.remote(num_cpus=1)
class Worker:
    def noop(self, value):
        return value
workers = [Worker.remote() for _ in range(2)]
ray.get([w.noop.remote(0) for w in workers])
ready_s = time.perf_counter() - started
trips = []
for index in range(%d):
    sent = time.perf_counter()
    assert ray.get(workers[index %% 2].noop.remote(index)) == index
    trips.append(time.perf_counter() - sent)
print(json.dumps({"ready_s": ready_s, "task_ms": 1000 * statistics.median(trips)}), flush=True)
sys.stdin.readline()
"""


def bench_ray(python: str) -> dict:
    process = subprocess.Popen([python, "-c", RAY_SCRIPT % TASKS], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True, start_new_session=True)  # fmt: skip
    try:
        figures = json.loads(process.stdout.readline())
        # the head (GCS, raylet, log monitor ...) and the worker processes are the driver's session's
        pids = [int(p) for p in subprocess.run(["pgrep", "-s", str(process.pid)], capture_output=True,
                                               text=True).stdout.split()]  # fmt: skip
        figures["rss_mb"] = rss_mb(pids)
        process.stdin.write("\n")
        process.stdin.flush()
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
    return {"engine": "ray", **figures}


def step_seconds(running, run_id: str) -> dict[str, float]:
    """Each step's seconds in ``run_id``, STEP_START to its STEP_SUCCESS (or STEP_FAILURE), from Dagster's log."""
    import dagster as dg

    from emojudge_pipeline.instance import instance

    kinds = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}
    started, seconds = {}, {}
    for record in instance(running.settings()).get_records_for_run(run_id, of_type=kinds, limit=10_000).records:
        event, at = record.event_log_entry.dagster_event, record.event_log_entry.timestamp
        if event.event_type == dg.DagsterEventType.STEP_START:
            started[event.step_key] = at
        elif event.step_key in started:
            seconds[event.step_key] = seconds.get(event.step_key, 0.0) + at - started.pop(event.step_key)
    return seconds


def bench_workers(counts: tuple[int, ...]) -> list[dict]:
    from batch_api_server import FakeOpenAIServer
    from tiny_models import demo_training_env

    from emojudge_pipeline.cluster.demo import cluster, second_set

    root = Path(tempfile.mkdtemp(prefix="emojudge-bench-cluster-"))
    os.chmod(root, 0o755)
    rows = []
    try:
        with FakeOpenAIServer(max_lifetime_s=7200) as api:
            manifest, training = demo_training_env(root / "corpus")
            sets = {"demo": (manifest, True), "holdout": (second_set(manifest), False)}
            base = {**training, "EMOJUDGE_AUDIO_POOLING": "meanstd", "EMOJUDGE_LOG_LEVEL": "WARNING",
                    "EMOJUDGE_JUDGE_BASE_URL": api.base_url}  # fmt: skip
            for workers in counts:
                with cluster(root / f"workers-{workers}", base, workers=workers) as running:
                    row = {"workers": workers, "wall_s": {}, "steps_s": {}}
                    for name, (path, train) in sets.items():
                        running.add_eval_set(name, path)
                        started = time.perf_counter()
                        run_id = running.materialize(name, train)
                        row["wall_s"][name] = time.perf_counter() - started
                        for step, seconds in step_seconds(running, run_id).items():
                            row["steps_s"][step] = row["steps_s"].get(step, 0.0) + seconds
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return rows


def print_workers(rows: list[dict]) -> None:
    base = sum(rows[0]["wall_s"].values())
    print("| workers | demo, trained (s) | hold-out (s) | both (s) | speed-up | step-seconds | busy share |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        wall, busy = sum(row["wall_s"].values()), sum(row["steps_s"].values())
        print(f"| {row['workers']} | {row['wall_s']['demo']:.1f} | {row['wall_s']['holdout']:.1f} | {wall:.1f} | "
              f"{base / wall:.2f}x | {busy:.1f} | {busy / (wall * row['workers']):.0%} |")  # fmt: skip
    steps = sorted(rows[0]["steps_s"], key=lambda step: -rows[0]["steps_s"][step])
    print()
    print("| step (both sets) | " + " | ".join(f"{row['workers']} worker(s) (s)" for row in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for step in steps:
        print(f"| {step} | " + " | ".join(f"{row['steps_s'].get(step, 0.0):.1f}" for row in rows) + " |")


def partition_frames(size: int) -> tuple:
    """One set's utterances and predictions of ``size`` rows (the columns a reader's v_predictions needs)."""
    import pandas as pd

    ids = [f"u{index:06d}" for index in range(size)]
    utterances = pd.DataFrame({"utterance_id": ids, "split": "test", "speaker_id": "spk", "emotion": "neutral",
                               "audio_path": [f"/audio/{i}.wav" for i in ids], "audio_sha256": "0" * 64,
                               "duration_s": 3.0, "sample_rate_hz": 16000, "channels": 1,
                               "run_id": "bench"})  # fmt: skip
    labels = ["neutral", "happy", "sad", "angry"]
    predictions = pd.DataFrame({"utterance_id": ids, "fused_label": [labels[i % 4] for i in range(size)],
                                "final_label": [labels[i % 4] for i in range(size)], "changed": False,
                                "run_id": "bench"})  # fmt: skip
    return utterances, predictions


def time_store(home: Path, sizes: tuple[int, ...], repeats: int) -> dict[int, tuple[float, ...]]:
    """Per size: median (commit ms, read ms in a new session, read ms in a session held open) on the warehouse of
    ``home`` (the file, or the lake registered)."""
    from emojudge_models.store import warehouse

    with warehouse.connect(home):  # the schema, outside the timings
        pass
    figures = {}
    for size in sizes:
        utterances, predictions = partition_frames(size)
        writes = [
            warehouse.PartitionWrite("utterances", utterances),
            warehouse.PartitionWrite("predictions", predictions),
        ]
        commits, reads, held_reads = [], [], []
        for _ in range(repeats):
            started = time.perf_counter()
            with warehouse.connect(home) as con:
                warehouse.write_partitions(con, f"set{size}", writes)
            commits.append(time.perf_counter() - started)
            started = time.perf_counter()
            with warehouse.connect(home, read_only=True) as con:
                found = con.execute(READ_QUERY, [f"set{size}"]).fetchall()
                reads.append(time.perf_counter() - started)
                started = time.perf_counter()
                held = con.execute(READ_QUERY, [f"set{size}"]).fetchall()
                held_reads.append(time.perf_counter() - started)
            assert sum(row[1] for row in found) == sum(row[1] for row in held) == size, found
        figures[size] = tuple(1000 * statistics.median(times) for times in (commits, reads, held_reads))
    return figures


def bench_warehouse(sizes: tuple[int, ...], repeats: int) -> dict[str, dict[int, tuple[float, ...]]]:
    from emojudge_models.store import lake
    from emojudge_pipeline.cluster import servers

    root = Path(tempfile.mkdtemp(prefix="emojudge-bench-warehouse-"))
    os.chmod(root, 0o755)
    postgres = servers.Postgres(root / "postgres").start(["lake"])
    try:
        results = {"DuckDB file": time_store(root / "file", sizes, repeats)}
        lake.register(root / "lake-home", lake.Lake(postgres.conninfo("lake"), root / "lake-data"))
        results["DuckLake, PostgreSQL catalog"] = time_store(root / "lake-home", sizes, repeats)
    finally:
        postgres.server.stop()
        shutil.rmtree(root, ignore_errors=True)
    return results


def replace_for(found, eval_set: str, rows: int, seconds: float) -> int:
    """A writer process: replace ``eval_set``'s partition of ``rows`` rows, one session each, for ``seconds``."""
    from emojudge_models.store import lake, warehouse

    utterances, predictions = partition_frames(rows)
    writes = [warehouse.PartitionWrite("utterances", utterances), warehouse.PartitionWrite("predictions", predictions)]
    commits, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        with lake.connect(found) as con:
            warehouse.write_partitions(con, eval_set, writes)
        commits += 1
    return commits


def bench_commit_rate(writers: tuple[int, ...], rows: int, seconds: float) -> dict[int, float]:
    """Partition replacements per second landed on one lake (the same two tables) by ``writers`` processes at once,
    each replacing its own set's partitions as fast as it can."""
    import multiprocessing

    from emojudge_models.store import lake
    from emojudge_pipeline.cluster import servers

    root = Path(tempfile.mkdtemp(prefix="emojudge-bench-commits-"))
    os.chmod(root, 0o755)
    postgres = servers.Postgres(root / "postgres").start(["lake"])
    rates = {}
    try:
        found = lake.Lake(postgres.conninfo("lake"), root / "lake-data")
        with lake.connect(found):
            pass
        for count in writers:
            with multiprocessing.get_context("spawn").Pool(count) as pool:
                args = [(found, f"writer{index}", rows, seconds) for index in range(count)]
                rates[count] = sum(pool.starmap(replace_for, args)) / seconds
    finally:
        postgres.server.stop()
        shutil.rmtree(root, ignore_errors=True)
    return rates


def print_commit_rate(rates: dict[int, float], rows: int) -> None:
    print(f"| writers (processes, one set each, {rows:,} rows) | partition replacements landed per second |")
    print("|---|---|")
    for count, rate in rates.items():
        print(f"| {count} | {rate:.1f} |")


def print_warehouse(results: dict[str, dict[int, tuple[float, ...]]]) -> None:
    print("| warehouse | rows per partition | commit (ms) | read, new session (ms) | read, session held open (ms) |")
    print("|---|---|---|---|---|")
    for store, figures in results.items():
        for size, (commit, read, held) in figures.items():
            print(f"| {store} | {size:,} | {commit:.0f} | {read:.0f} | {held:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("engine", "workers", "warehouse", "commits"), action="append",
                        help="what to measure (repeatable; default all)")  # fmt: skip
    parser.add_argument("--ray-python", help="an interpreter with ray installed (ray is not in the cluster extra)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="cluster sizes compared")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000], help="rows per partition")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 2, 4], help="concurrent writers compared")
    parser.add_argument("--seconds", type=float, default=10.0, help="each commit-rate measurement's length")
    args = parser.parse_args()
    parts = args.part or ["engine", "workers", "warehouse", "commits"]
    if "engine" in parts:
        print_engines(args.ray_python)
    if "warehouse" in parts:
        print_warehouse(bench_warehouse(tuple(args.sizes), args.repeats))
    if "commits" in parts:
        print_commit_rate(bench_commit_rate(tuple(args.writers), 1000, args.seconds), 1000)
    if "workers" in parts:
        print_workers(bench_workers(tuple(args.workers)))


def print_engines(ray_python: str | None) -> None:
    rows = [bench_celery()]
    if ray_python:
        rows.append(bench_ray(ray_python))
    print(
        "| engine | 2 workers ready (s) | empty task round trip (ms, median) | memory, broker/head + 2 workers (MB) |"
    )
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['engine']} | {row['ready_s']:.1f} | {row['task_ms']:.1f} | {row['rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
