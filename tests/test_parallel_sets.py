"""Two evaluation sets materialised at once by two real `emojudge materialize` processes.

Both runs succeed and leave exactly the tables of one-after-the-other runs; a run started while another process holds
a write session waits for it, then succeeds. Models are trained once (a small slice of the demo corpus, acoustic
frames, a tiny RoBERTa, short head training) and the trained home is copied for each way of running.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from batch_api_server import FakeOpenAIServer
from tiny_models import demo_training_env

from emojudge_models.settings import Settings
from emojudge_models.store import warehouse
from emojudge_pipeline import cli

REPO = Path(__file__).resolve().parents[1]
SETS = ("set_a", "set_b")
RUN_TIMEOUT_S = 240
STEP_STARTED = 'Started execution of step "utterances"'
"""The DEBUG line a run prints before the ingest asset opens its first warehouse session."""


def write_subset(manifest: Path, name: str, rows: list[dict[str, str]]) -> Path:
    """A manifest beside ``manifest`` (so the same audio folder) holding ``rows``."""
    subset = manifest.with_name(f"{name}.csv")
    with open(subset, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return subset


def env_for(extra: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        **extra,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }


def home_env(home: Path, base: dict[str, str]) -> dict[str, str]:
    return {**base, "EMOJUDGE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}


def materialize(name: str, env: dict[str, str]) -> subprocess.Popen:
    """``emojudge materialize NAME --no-train`` in its own process (one torch thread: two share 2 cores)."""
    return subprocess.Popen(
        [sys.executable, "-m", "emojudge_pipeline.cli", "materialize", name, "--no-train"],
        env=env_for(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen) -> str:
    try:
        out, _ = process.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate(timeout=30)
        raise AssertionError(f"materialize did not finish in {RUN_TIMEOUT_S} s: {out[-3000:]}") from None
    assert process.returncode == 0, out[-3000:]
    return out


def partition_keys(home: Path, eval_set: str) -> dict[str, list[tuple]]:
    """Per partitioned table, the sorted key columns (and labels where they are the result) of ``eval_set``."""
    queries = {
        "utterances": "SELECT utterance_id, split FROM utterances",
        "rejected_inputs": "SELECT utterance_id, stage FROM rejected_inputs",
        "feature_index": "SELECT utterance_id, modality, encoder_key, content_sha256 FROM feature_index",
        "logits": "SELECT utterance_id, modality, task, model_key, predicted_label FROM logits",
        "fused_predictions": "SELECT utterance_id, task, fusion_model_key, predicted_label FROM fused_predictions",
        "prosody": "SELECT utterance_id, prosody_version, description FROM prosody",
        "llm_judgments": "SELECT utterance_id, custom_id, label, accepted FROM llm_judgments",
        "predictions": "SELECT utterance_id, fused_label, final_label FROM predictions",
        "metrics": "SELECT split, stage, task, metric, label, round(value, 9) FROM metrics",
        "confusion_matrices": "SELECT * EXCLUDE (run_id, computed_at) FROM confusion_matrices",
    }
    with warehouse.connect(home, read_only=True) as con:
        return {
            table: sorted(
                con.execute(f"SELECT * FROM ({query} WHERE eval_set = ?)", [eval_set]).fetchall(),
                key=repr,
            )
            for table, query in queries.items()
        }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """A home with models trained on a demo slice, the two sets' manifests, the env and the judge server."""
    root = tmp_path_factory.mktemp("parallel")
    manifest, training = demo_training_env(root)
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    # Training: take 0 of every speaker and emotion; the sets to score: 12 other clips each.
    train = write_subset(manifest, "train", [r for r in rows if r["utterance_id"].endswith("_0")])
    unseen = [r for r in rows if not r["utterance_id"].endswith("_0")]
    takes = [write_subset(manifest, name, unseen[k::8]) for k, name in enumerate(SETS)]
    base = {
        **training,
        "EMOJUDGE_TRAIN_SETS": "train",
        "EMOJUDGE_AUDIO_POOLING": "meanstd",
        "EMOJUDGE_LOG_LEVEL": "WARNING",
    }
    trained_home = root / "trained"
    with pytest.MonkeyPatch.context() as patch, FakeOpenAIServer(max_lifetime_s=900) as api:
        base["EMOJUDGE_JUDGE_BASE_URL"] = api.base_url
        for name, value in home_env(trained_home, base).items():
            patch.setenv(name, value)
        cli.add_eval_set("train", train, "manifest")
        cli.materialize("train", train=True)
        homes = {}
        for way in ("parallel", "sequential"):
            homes[way] = root / way
            shutil.copytree(trained_home, homes[way])
            for name, value in home_env(homes[way], base).items():
                patch.setenv(name, value)
            for name, subset in zip(SETS, takes, strict=True):
                cli.add_eval_set(name, subset, "manifest", Settings.from_env())
        yield homes, base, api


HOLDER = """
import select, sys
from pathlib import Path
from emojudge_models.store import warehouse
with warehouse.connect(Path(sys.argv[1])) as con:
    print("holding", flush=True)
    select.select([sys.stdin], [], [], 120)
    rows = con.execute("SELECT count(*) FROM utterances WHERE eval_set = 'set_a'").fetchall()[0][0]
    print(f"set_a rows while held: {rows}", flush=True)
"""


def read_until(process: subprocess.Popen, expected: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline and process.poll() is None:
        line = process.stdout.readline()
        seen.append(line)
        if expected in line:
            return
    process.kill()
    raise AssertionError(f"never printed {expected!r}: {''.join(seen)[-3000:]}")


@pytest.mark.reliability
@pytest.mark.slow_fault
def test_two_sets_at_once_equal_one_after_the_other_and_a_held_session_is_waited_for(trained) -> None:
    homes, base, api = trained
    parallel_env, sequential_env = home_env(homes["parallel"], base), home_env(homes["sequential"], base)
    calls_before = len(api.chat_bodies)

    runs = [materialize(name, parallel_env) for name in SETS]
    for run in runs:
        finish(run)
    calls_in_parallel = len(api.chat_bodies) - calls_before

    # One after the other, the first while another process holds a write session until the run is waiting on it.
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLDER), str(homes["sequential"])],
        env=env_for({}),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        read_until(holder, "holding")
        first = materialize(SETS[0], {**sequential_env, "EMOJUDGE_LOG_LEVEL": "DEBUG"})
        read_until(first, STEP_STARTED)
        time.sleep(2)
        assert first.poll() is None, "the run ended instead of waiting for the held session"
        holder_out, holder_err = holder.communicate("release\n", timeout=60)
    finally:
        holder.kill()
    assert holder.returncode == 0, holder_err[-2000:]
    assert holder_out.strip() == "set_a rows while held: 0"
    finish(first)
    finish(materialize(SETS[1], sequential_env))

    assert len(api.chat_bodies) - calls_before == 2 * calls_in_parallel > 0
    for name in SETS:
        parallel, sequential = partition_keys(homes["parallel"], name), partition_keys(homes["sequential"], name)
        assert len(parallel["utterances"]) == 12 and len(parallel["logits"]) == 4 * 12
        assert len(parallel["predictions"]) == 12 and parallel["metrics"]
        for table, rows in sequential.items():
            assert parallel[table] == rows, f"{name}: {table} differs between parallel and sequential runs"
