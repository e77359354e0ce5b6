"""The cluster's engine, chosen by measurement: Celery + Redis against Ray, two workers on loopback.

For each engine: seconds from nothing to two workers accepting tasks, the round trip of an empty task (median of
200, one at a time), and the resident memory of everything the engine started (broker or head, and both workers),
before any Dagster or model code is loaded. Ray runs from an interpreter that has it (``--ray-python``, e.g. a venv
with ``ray`` installed beside this one); Celery from this one (``pip install 'emojudge[cluster]'``).

    .venv/bin/python bench/bench_cluster.py --ray-python /tmp/rayenv/bin/python

Record the output with the machine in bench/RESULTS.md ("Cluster engine").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from celery import Celery

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TASKS = 200

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ray-python", help="an interpreter with ray installed (ray is not in the cluster extra)")
    args = parser.parse_args()
    rows = [bench_celery()]
    if args.ray_python:
        rows.append(bench_ray(args.ray_python))
    print(
        "| engine | 2 workers ready (s) | empty task round trip (ms, median) | memory, broker/head + 2 workers (MB) |"
    )
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['engine']} | {row['ready_s']:.1f} | {row['task_ms']:.1f} | {row['rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
