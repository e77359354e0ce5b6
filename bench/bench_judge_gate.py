"""Refinement wall time for a new unlabelled set when development evidence has closed the judge gate.

Seeds a fresh warehouse with a labelled ``train`` set whose development judgments (by the local judge's model,
template and threshold) broke more labels than they fixed, and a new unlabelled set of the 168 RAVDESS dev clips
with fused predictions; then materialises the real ``refinement`` asset (``llm_judgments`` + ``predictions``) for the
new set with the ``local`` backend, and reports its wall time and how many judge requests it sent (the llama.cpp
server is only started when there is something to ask).

Run by hand: ``.venv/bin/python bench/bench_judge_gate.py [--data ../shared/data/ravdess-dev]``.

``--stored WAREHOUSE`` compares the gate modes instead, on the judgments a warehouse already holds (no judge call):
F1-macro of the fused labels, of the paper's rule alone (``off``), and of the ``development`` and ``per_change``
gates, on development (the gate decided on the development judgments, applied to them) and on held-out speakers
(nested: each speaker's labels decided by the evidence of the other speakers' judged utterances, pooled).
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
from sklearn.metrics import f1_score

from emojudge_models.judge import LOCAL_JUDGE_MODEL, TEMPLATE_SHA256
from emojudge_models.judge.gate import GATE_MODES, gate_decision
from emojudge_models.labels import EMOTIONS
from emojudge_models.store import warehouse
from emojudge_pipeline.assets.refinement import refinement
from emojudge_pipeline.resources import JudgeResource, WarehouseResource

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared/data/ravdess-dev"


def utterances(eval_set: str, ids: list[str], split: str | None, emotions: list[str | None]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "utterance_id": ids,
            "split": split,
            "emotion": emotions,
            "transcript": "Kids are talking by the door",
            "audio_path": [f"{u}.wav" for u in ids],
            "audio_sha256": [f"{eval_set}-{u}" for u in ids],
            "duration_s": 3.7,
            "sample_rate_hz": 16000,
            "channels": 1,
            "run_id": "bench",
        }
    )


def fused(ids: list[str], labels: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "utterance_id": ids,
            "task": "categorical",
            "fusion_model_key": "fusion-bench",
            "probabilities": [[0.3 if e == label else 0.1 for e in EMOTIONS] for label in labels],
            "predicted_label": labels,
            "audio_label": labels,
            "text_label": "neutral",
            "run_id": "bench",
        }
    )


def seed(home: Path, rows: list[dict[str, str]], threshold: float) -> None:
    """A labelled train set with 40 harmful development judgments, and the new set ``new`` (no labels)."""
    dev_ids = [f"d{i:03d}" for i in range(40)]
    custom_ids = [f"train:{u}" for u in dev_ids]
    with warehouse.connect(home) as con:
        for name, path in (("train", "train"), ("new", "new")):
            con.execute(warehouse.sql_text("ingest/register_eval_set.sql"), [name, "manifest", path])
        warehouse.replace_partition(
            con, "utterances", "train", utterances("train", dev_ids, "development", ["sad"] * 40)
        )
        judgments = pd.DataFrame(
            {
                "utterance_id": dev_ids,
                "custom_id": custom_ids,
                "backend": "local",
                "judge_model": LOCAL_JUDGE_MODEL,
                "temperature": 0.3,
                "threshold": threshold,
                "prompt_template_sha256": TEMPLATE_SHA256,
                "prompt_sha256": "p",
                "fusion_model_key": "fusion-bench",
                "request_json": "{}",
                "fused_label": "sad",
                "label": "angry",
                "confidence": 0.9,
                "accepted": True,
                "answered": True,
                "attempts": 1,
                "run_id": "bench",
            }
        )
        warehouse.replace_partition(con, "llm_judgments", "train", judgments)
        predictions = pd.DataFrame(
            {
                "utterance_id": dev_ids,
                "fused_label": "sad",
                "refined_label": "sad",
                "final_label": "sad",
                "changed": False,
                "judgment_custom_id": custom_ids,
                "judge_gate": "closed",
                "run_id": "bench",
            }
        )
        warehouse.replace_partition(con, "predictions", "train", predictions)
        new_ids = [row["utterance_id"] for row in rows]
        warehouse.replace_partition(con, "utterances", "new", utterances("new", new_ids, None, [None] * len(rows)))
        warehouse.replace_partition(con, "fused_predictions", "new", fused(new_ids, [row["emotion"] for row in rows]))


STORED_JUDGMENTS = """
SELECT u.eval_set, u.utterance_id, u.split, u.speaker_id, u.emotion, j.fused_label, j.label, j.accepted, j.judge_model
FROM llm_judgments j JOIN utterances u USING (eval_set, utterance_id)
WHERE j.answered AND u.emotion IS NOT NULL
"""


def gated_labels(evidence: pd.DataFrame, target: pd.DataFrame, mode: str) -> list[str]:
    """The final labels of ``target`` under ``mode``, the gate decided on ``evidence``."""
    gate = gate_decision(evidence[["fused_label", "label", "accepted", "emotion"]], mode)
    return [
        label if accepted and gate.applies(fused, label) else fused
        for fused, label, accepted in zip(target["fused_label"], target["label"], target["accepted"], strict=True)
    ]


def compare_modes(judgments: pd.DataFrame) -> list[str]:
    """Table rows: F1-macro per label source on development and on held-out speakers (see the module doc)."""
    modes = [mode for mode in GATE_MODES if mode != "off"] + ["off"]
    dev = judgments[judgments["split"] == "development"]
    lines = []
    if len(dev):
        scores = [f1_score(dev["emotion"], dev["fused_label"], average="macro", zero_division=0)]
        scores += [f1_score(dev["emotion"], gated_labels(dev, dev, m), average="macro", zero_division=0) for m in modes]
        lines.append(f"| development (in-sample) | {len(dev)} | " + " | ".join(f"{x:.3f}" for x in scores) + " |")
    pooled: dict[str, list[str]] = {mode: [] for mode in modes}
    truth: list[str] = []
    fused: list[str] = []
    for _, held_out in judgments.groupby("speaker_id"):
        others = judgments[judgments["speaker_id"] != held_out["speaker_id"].iloc[0]]
        truth += held_out["emotion"].tolist()
        fused += held_out["fused_label"].tolist()
        for mode in modes:
            pooled[mode] += gated_labels(others, held_out, mode)
    speakers = judgments["speaker_id"].nunique()
    scores = [f1_score(truth, fused, average="macro", zero_division=0)]
    scores += [f1_score(truth, pooled[mode], average="macro", zero_division=0) for mode in modes]
    lines.append(
        f"| held-out speaker ({speakers} folds) | {len(truth)} | " + " | ".join(f"{x:.3f}" for x in scores) + " |"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--stored", type=Path, help="a warehouse file whose judgments the gate modes are compared on")
    args = parser.parse_args()
    if args.stored:
        with duckdb.connect(str(args.stored), read_only=True) as con:
            judgments = con.execute(STORED_JUDGMENTS).df()
        print(f"{len(judgments)} labelled judgments by {sorted(set(judgments['judge_model']))}")
        print("| rows | n | fused | development gate | per_change gate | off (paper rule) |")
        print("|---|---|---|---|---|---|")
        print("\n".join(compare_modes(judgments)))
        return
    rows = list(csv.DictReader((args.data / "manifest.csv").open()))
    judge = JudgeResource(backend="local")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        seed(home, rows, judge.threshold)
        instance = dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions("eval_sets", ["new"])
        started = time.monotonic()
        result = dg.materialize(
            [refinement],
            partition_key="new",
            instance=instance,
            resources={"warehouse_db": WarehouseResource(home=str(home)), "judge": judge},
        )
        wall_s = time.monotonic() - started
        with warehouse.connect(home, read_only=True) as con:
            sent = con.execute("SELECT count(*) FROM llm_judgments WHERE eval_set = 'new'").fetchone()[0]
            gates = con.execute(
                "SELECT judge_gate, count(*) FROM predictions WHERE eval_set = 'new' GROUP BY ALL"
            ).fetchall()
    print(f"success={result.success} clips={len(rows)} wall_s={wall_s:.1f} judge_requests={sent} gates={gates}")


if __name__ == "__main__":
    main()
