"""What the readers' snapshot costs a writer, by warehouse size; does a polling reader ever see half a partition?

Usage: python bench/bench_warehouse.py [--rows 10000 100000 1000000] [--sessions 20]

For each size: a warehouse whose `utterance_vectors` holds that many 512-d vectors (the bulk of a real warehouse:
frames live in Parquet), then `--sessions` write sessions that each replace a 1,000-row partition, timed with the
snapshot published (what `warehouse.connect` does) and without (a bare DuckDB connection doing the same write).
A second process polls the snapshot every 50 ms during the published sessions and counts partial views.
"""

from __future__ import annotations

import argparse
import ast
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emojudge_models.store import warehouse

POLLER = """
import sys, time
from pathlib import Path
from emojudge_models.store import warehouse
seen, queries = set(), 0
stop = Path(sys.argv[2])
while not stop.exists():
    with warehouse.connect(Path(sys.argv[1]), read_only=True) as con:
        seen.add(con.execute("SELECT count(*) FROM utterances WHERE eval_set = 'p'").fetchone()[0])
    queries += 1
    time.sleep(0.05)
print(queries, sorted(seen))
"""


def partition(run: int) -> pd.DataFrame:
    n = 1000
    return pd.DataFrame(
        {
            "eval_set": "p",
            "utterance_id": [f"u{i}" for i in range(n)],
            "audio_path": "x.wav",
            "audio_sha256": [f"{run}-{i}" for i in range(n)],
            "duration_s": 1.0,
            "sample_rate_hz": 16000,
            "channels": 1,
            "run_id": f"r{run}",
        }
    )


def fill(home: Path, rows: int) -> None:
    with warehouse.connect(home) as con:
        vectors = np.random.default_rng(0).standard_normal((rows, 512)).astype(np.float32)
        frame = pd.DataFrame(
            {
                "encoder_key": "bench",
                "content_sha256": [f"{i:064d}" for i in range(rows)],
                "modality": "audio",
                "vector": list(vectors),
            }
        )
        warehouse.insert_frame(con, "utterance_vectors", frame)


def timed_sessions(home: Path, sessions: int, publish: bool) -> list[float]:
    times = []
    for run in range(sessions):
        started = time.perf_counter()
        if publish:
            with warehouse.connect(home) as con:
                warehouse.replace_partition(con, "utterances", "p", partition(run))
        else:
            con = duckdb.connect(str(warehouse.warehouse_path(home)))
            try:
                warehouse.replace_partition(con, "utterances", "p", partition(run))
            finally:
                con.close()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--sessions", type=int, default=20)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"duckdb {duckdb.__version__}"
    )
    print(
        "| vectors | file MB | write session, bare (ms, median) | with snapshot (ms, median) | reader queries | "
        "partial views |"
    )
    print("|---|---|---|---|---|---|")
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            fill(home, rows)
            size_mb = warehouse.warehouse_path(home).stat().st_size / 1e6
            bare = timed_sessions(home, args.sessions, publish=False)
            stop = home / "stop"
            env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
            poller = subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(POLLER), str(home), str(stop)],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            time.sleep(1.0)
            published = timed_sessions(home, args.sessions, publish=True)
            stop.touch()
            out, _ = poller.communicate(timeout=120)
            queries, seen = out.split(" ", 1)
            partial = sum(1 for count in ast.literal_eval(seen) if count not in (0, 1000))
            print(
                f"| {rows:,} | {size_mb:.0f} | {np.median(bare) * 1e3:.0f} | {np.median(published) * 1e3:.0f} | "
                f"{queries} | {partial} |"
            )


if __name__ == "__main__":
    main()
