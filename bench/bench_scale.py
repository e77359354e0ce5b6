"""Cost by training-set size: head training streamed from the feature store, fusion, evaluation and the SQL views.

Usage: python bench/bench_scale.py [--sizes 10000 50000 200000] [--dim 64] [--max-frames 100] [--head probe]
                                   [--epochs 1] [--workers 2] [--in-memory]

For each size, a synthetic store (``emojudge_models.features.synthetic``: small float16 frames, 70/15/15 splits,
200 speakers) plus synthetic audio and text logits for every utterance is built in one process; then, each in its
own process so that its peak resident memory is its own:

- ``train``: speaker normaliser and streams as the training asset builds them, then ``--epochs`` epochs of one head
  (``--head``) streamed with ``--workers`` loader processes: seconds per epoch, the peak RSS of the training process
  and of the largest loader worker (forked, so it shares the parent's pages); ``--in-memory`` also runs the
  pre-streaming path (every frame read into a list, plus its normalised copy) for comparison;
- ``steps``: the fusion (``fusion/logits_with_truth.sql``, ``fit_fusion`` on train with C chosen on development,
  ``fused_rows`` for every utterance, written to ``fused_predictions``), the evaluation (``evaluation_rows.sql``,
  ``evaluate``) and the SQL views (``v_predictions`` grouped by split and final label, ``v_metrics``).

Prints a table, the cost per 1,000 utterances of each step (flat when cost is linear in utterances) and last
``scale: peak RSS <smallest>=<MB> <largest>=<MB> ratio=<r>`` for head training.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emojudge_models.features.synthetic import ENCODER_KEY, EVAL_SET, build_synthetic_store, synthetic_store
from emojudge_models.labels import EMOTIONS
from emojudge_models.models.scoring import logits_rows
from emojudge_models.store import warehouse

STEP_COLUMNS = ["fusion_s", "evaluation_s", "views_s"]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def label(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def add_logits(home: Path) -> None:
    """Audio and text logits for every utterance (both tasks): the true class made likelier, plus noise."""
    with warehouse.connect(home) as con:
        truth = con.execute("SELECT utterance_id, emotion FROM utterances WHERE eval_set = ?", [EVAL_SET]).df()
    rng = np.random.default_rng(0)
    onehot = np.eye(len(EMOTIONS))[[EMOTIONS.index(e) for e in truth["emotion"]]]
    frames = []
    for modality, strength in (("audio", 1.5), ("text", 1.0)):
        categorical = strength * onehot + rng.normal(size=onehot.shape)
        attributes = onehot[:, :3] * strength + rng.normal(size=(len(truth), 3))
        for task, outputs in (("categorical", categorical), ("attributes", attributes)):
            rows = logits_rows(truth["utterance_id"].tolist(), outputs, task)
            frames.append(rows.assign(modality=modality, model_key=f"synthetic-{modality}-{task}", run_id="bench"))
    with warehouse.connect(home) as con:
        warehouse.replace_partition(con, "logits", EVAL_SET, pd.concat(frames, ignore_index=True))


def build(home: Path, n: int, args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    build_synthetic_store(home, n, dim=args.dim, max_frames=args.max_frames)
    add_logits(home)
    return {"build_s": time.perf_counter() - started}


def inputs_for(store, splits: list, args: argparse.Namespace, in_memory: bool) -> list:
    """What the training asset hands the trainer (its normaliser dropped once the inputs exist, as there)."""
    from emojudge_models.features.datasets import frame_stream, frames_for, speaker_normaliser

    normaliser = speaker_normaliser(store, [EVAL_SET], ENCODER_KEY)
    if not in_memory:
        return [frame_stream(store, split, ENCODER_KEY, normaliser, args.buffer, args.workers) for split in splits]
    inputs = []
    for split in splits:
        keys = list(zip(split.rows["eval_set"], split.rows["utterance_id"], strict=True))
        frames = normaliser.apply(keys, frames_for(store, split.rows, ENCODER_KEY))
        inputs.append(list(zip(frames, split.targets, strict=True)))
    return inputs


def train(home: Path, args: argparse.Namespace, in_memory: bool) -> dict:
    """Head training as the training asset runs it (streamed), or the pre-streaming in-memory path."""
    from emojudge_models.features.datasets import labelled_rows
    from emojudge_models.models.loop import TrainConfig
    from emojudge_models.models.policy import audio_head_config
    from emojudge_models.models.training import train_audio_head

    store = synthetic_store(home)
    started = time.perf_counter()
    with store.connect() as con:
        splits = [labelled_rows(con, [EVAL_SET], s, ENCODER_KEY, "categorical") for s in ("train", "development")]
    inputs = inputs_for(store, splits, args, in_memory)
    prepare_s = time.perf_counter() - started
    config = audio_head_config(args.head, "categorical", args.dim, TrainConfig(max_epochs=args.epochs, batch_size=256))
    result = train_audio_head(inputs[0], inputs[1], config, "cpu", seed=0)
    return {
        "train_rows": len(splits[0]),
        "prepare_s": prepare_s,
        "epoch_s": float(np.mean([row["seconds"] for row in result.history])),
        "dev_f1": result.dev_metric,
        "train_peak_mb": peak_mb(),
        "worker_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def steps(home: Path) -> dict:
    """Fusion, evaluation and the SQL views over the whole set, as their assets run them."""
    from emojudge_models.evaluation.evaluate import evaluate
    from emojudge_models.fusion.predict import fused_rows
    from emojudge_models.fusion.strategy import fit_fusion

    timings = {}
    started = time.perf_counter()
    fused = []
    for task in ("categorical", "attributes"):
        with warehouse.connect(home, read_only=True) as con:
            query = warehouse.sql_text("fusion/logits_with_truth.sql")
            splits = ["train", "development"]
            labelled = con.execute(query, [task, task, [EVAL_SET], splits, splits]).df()
            every = con.execute(query, [task, task, [EVAL_SET], None, None]).df()
        model = fit_fusion(task, labelled, "train")
        fused.append(fused_rows(model, every, task, f"bench-fusion-{task}"))
    with warehouse.connect(home) as con:
        warehouse.replace_partition(con, "fused_predictions", EVAL_SET, pd.concat(fused).assign(run_id="bench"))
    timings["fusion_s"] = time.perf_counter() - started
    started = time.perf_counter()
    with warehouse.connect(home, read_only=True) as con:
        rows = warehouse.query_df(con, "evaluation/evaluation_rows.sql", [EVAL_SET])
    evaluation = evaluate(rows)
    with warehouse.connect(home) as con:
        metrics = evaluation.metrics_frame().assign(run_id="bench")
        warehouse.replace_partition(con, "metrics", EVAL_SET, metrics)
    timings["evaluation_s"] = time.perf_counter() - started
    started = time.perf_counter()
    with warehouse.connect(home, read_only=True) as con:
        con.execute(
            "SELECT split, final_label, count(*), avg(fused_probability) FROM v_predictions WHERE eval_set = ? "
            "GROUP BY ALL",
            [EVAL_SET],
        ).fetchall()
        con.execute("SELECT * FROM v_metrics WHERE eval_set = ?", [EVAL_SET]).fetchall()
    timings["views_s"] = time.perf_counter() - started
    return timings | {"steps_peak_mb": peak_mb()}


def child(args: argparse.Namespace) -> None:
    home = Path(args.home)
    if args.child == "build":
        result = build(home, args.n, args)
    elif args.child == "steps":
        result = steps(home)
    else:
        result = train(home, args, in_memory=args.child == "memory")
    print(json.dumps(result))


def run_child(kind: str, home: Path, n: int, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", kind, "--home", str(home), "--n", str(n)]
    command += ["--dim", str(args.dim), "--max-frames", str(args.max_frames), "--head", args.head]
    command += ["--epochs", str(args.epochs), "--workers", str(args.workers), "--buffer", str(args.buffer)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{kind} for {n} utterances failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 200_000])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--max-frames", type=int, default=100)
    parser.add_argument("--head", default="probe", choices=["attentive", "meanstd", "probe"])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--buffer", type=int, default=1024)
    parser.add_argument("--in-memory", action="store_true", help="also run the pre-streaming in-memory path")
    parser.add_argument("--child", choices=["build", "train", "memory", "steps"], help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; {vars(args)}")
    results = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as directory:
            home = Path(directory)
            row = {"utterances": n} | run_child("build", home, n, args) | run_child("train", home, n, args)
            if args.in_memory:
                memory = run_child("memory", home, n, args)
                row |= {"in_memory_peak_mb": memory["train_peak_mb"], "in_memory_epoch_s": memory["epoch_s"]}
            row |= run_child("steps", home, n, args)
        results.append(row)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    table = pd.DataFrame(results).set_index("utterances")
    print(table.round(3).to_markdown())
    per_k = table[["epoch_s", *STEP_COLUMNS]].div(table.index.to_numpy() / 1000, axis=0)
    print("\nseconds per 1,000 utterances (flat = linear in utterances):")
    print(per_k.round(4).to_markdown())
    small, large = table.iloc[0], table.iloc[-1]
    ratio = large["train_peak_mb"] / small["train_peak_mb"]
    print(
        f"scale: peak RSS {label(int(table.index[0]))}={small['train_peak_mb']:.0f} "
        f"{label(int(table.index[-1]))}={large['train_peak_mb']:.0f} ratio={ratio:.2f}"
    )


if __name__ == "__main__":
    main()
