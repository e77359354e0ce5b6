"""Two evaluation sets materialised at once against one after the other (wall time), on one machine.

Usage: python bench/bench_parallel_sets.py [--clips-per-set 144] [--judge-latency-s 0.5] [--threads N] [--repeats 1]

Trains once on the demo corpus (profile `acoustic`: librosa frames, MiniLM vectors + heads; short head training),
then scores two further demo corpora (seeds 8 and 9: new audio, so every clip is decoded, encoded and judged) with
`emojudge materialize NAME --no-train`, each in its own process as a user would run it: one after the other in one
copy of the trained home, both at once in another. The judge is `openai-chat` against a local OpenAI-compatible
server that answers after `--judge-latency-s` (a remote LLM's latency; no network). Prints wall times, the speed-up
and checks that both ways leave the same rows.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from batch_api_server import FakeOpenAIServer, keep_prediction  # noqa: E402

from emojudge_models.ingest.demo_corpus import write_demo_corpus  # noqa: E402
from emojudge_models.store import warehouse  # noqa: E402

SETS = ("copy_a", "copy_b")
TABLES = ("utterances", "feature_index", "logits", "fused_predictions", "prosody", "llm_judgments", "predictions")


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "emojudge_pipeline.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_ok(process: subprocess.Popen) -> None:
    out, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"emojudge failed ({process.returncode}):\n{out[-4000:]}")


def environment(home: Path, base: dict[str, str]) -> dict[str, str]:
    return {**base, "EMOJUDGE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}


def subset(manifest: Path, name: str, n: int) -> Path:
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))[:n]
    path = manifest.with_name(f"{name}.csv")
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def counts(home: Path) -> dict[tuple[str, str], int]:
    with warehouse.connect(home, read_only=True) as con:
        return {
            (table, name): con.execute(f"SELECT count(*) FROM {table} WHERE eval_set = ?", [name]).fetchall()[0][0]
            for table in TABLES
            for name in SETS
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips-per-set", type=int, default=144)
    parser.add_argument("--judge-latency-s", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of every run (default: unset)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--max-epochs", type=int, default=5)
    args = parser.parse_args()

    def respond(body, call):
        time.sleep(args.judge_latency_s)
        return keep_prediction(body, call)

    work = Path(tempfile.mkdtemp(prefix="bench-parallel-"))
    base = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "EMOJUDGE_PROFILE": "acoustic",
        "EMOJUDGE_MAX_EPOCHS": str(args.max_epochs),
        "EMOJUDGE_JUDGE": "openai-chat",
        "OPENAI_API_KEY": "sk-bench",
        "EMOJUDGE_LOG_LEVEL": "WARNING",
    }
    if args.threads:
        base["OMP_NUM_THREADS"] = str(args.threads)
    demo = write_demo_corpus(work / "demo")
    copies = [
        subset(write_demo_corpus(work / name, seed=8 + i), name, args.clips_per_set) for i, name in enumerate(SETS)
    ]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    with FakeOpenAIServer(respond, max_lifetime_s=7200) as api:
        base["EMOJUDGE_JUDGE_BASE_URL"] = api.base_url
        trained = work / "trained"
        started = time.perf_counter()
        wait_ok(run_cli(["eval-set", "add", "demo", str(demo), "--format", "manifest"], environment(trained, base)))
        wait_ok(run_cli(["materialize", "demo", "--train"], environment(trained, base)))
        print(f"training once on demo (144 clips): {time.perf_counter() - started:.1f} s")
        for repeat in range(args.repeats):
            homes = {way: work / f"{way}-{repeat}" for way in ("sequential", "parallel")}
            for home in homes.values():
                shutil.copytree(trained, home)
                for name, manifest in zip(SETS, copies, strict=True):
                    wait_ok(
                        run_cli(
                            ["eval-set", "add", name, str(manifest), "--format", "manifest"], environment(home, base)
                        )
                    )
            load = os.getloadavg()[0]
            started = time.perf_counter()
            for name in SETS:
                wait_ok(run_cli(["materialize", name, "--no-train"], environment(homes["sequential"], base)))
            sequential = time.perf_counter() - started
            started = time.perf_counter()
            runs = [run_cli(["materialize", name, "--no-train"], environment(homes["parallel"], base)) for name in SETS]
            for run in runs:
                wait_ok(run)
            parallel = time.perf_counter() - started
            same = counts(homes["sequential"]) == counts(homes["parallel"])
            print(
                f"repeat {repeat + 1}: one after the other {sequential:.1f} s, both at once {parallel:.1f} s, "
                f"speed-up {sequential / parallel:.2f}x (load average at start {load:.2f}; same rows: {same})"
            )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
