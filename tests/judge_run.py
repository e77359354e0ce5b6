"""Seed a warehouse with fused predictions and run the real ``refinement`` asset on it, in this process or as a
script (``python judge_run.py HOME BASE_URL EVAL_SET``, gate off, for tests that kill the judging process).

The seeded set has ``n`` utterances ``u00``.. with transcripts ``clip u00 says hello``, fused label neutral, and
no prosody; the judge is ``openai-chat`` at ``base_url`` with two workers.
"""

from __future__ import annotations

import sys
from pathlib import Path

import dagster as dg
import pandas as pd

from emojudge_models.labels import EMOTIONS
from emojudge_models.store import warehouse


def seed_set(
    home: Path,
    eval_set: str,
    n: int,
    split: str | list[str | None] | None = None,
    emotion: str | list[str | None] | None = None,
    fused: str | list[str] = "neutral",
) -> list[str]:
    """Utterances and categorical fused predictions for ``n`` clips (split, emotion and fused label: one for all,
    or one per clip); returns their utterance ids."""
    ids = [f"u{i:02d}" for i in range(n)]
    fused_labels = [fused] * n if isinstance(fused, str) else list(fused)
    probabilities = [[0.3 if label == f else 0.1 for label in EMOTIONS] for f in fused_labels]
    with warehouse.connect(home) as con:
        con.execute(warehouse.sql_text("ingest/register_eval_set.sql"), [eval_set, "manifest", str(home)])
        warehouse.replace_partition(
            con,
            "utterances",
            eval_set,
            pd.DataFrame(
                {
                    "utterance_id": ids,
                    "split": split,
                    "emotion": emotion,
                    "transcript": [f"clip {u} says hello" for u in ids],
                    "audio_path": [f"{u}.wav" for u in ids],
                    "audio_sha256": ids,
                    "duration_s": 1.0,
                    "sample_rate_hz": 16000,
                    "channels": 1,
                    "run_id": "seed",
                }
            ),
        )
        warehouse.replace_partition(
            con,
            "fused_predictions",
            eval_set,
            pd.DataFrame(
                {
                    "utterance_id": ids,
                    "task": "categorical",
                    "fusion_model_key": "fusion-seed",
                    "probabilities": probabilities,
                    "predicted_label": fused_labels,
                    "audio_label": "angry",
                    "text_label": fused_labels,
                    "run_id": "seed",
                }
            ),
        )
    return ids


def run_refinement(
    home: Path, base_url: str, eval_set: str, gate: str = "development", **judge_options
) -> dg.ExecuteInProcessResult:
    """Materialise ``llm_judgments`` and ``predictions`` for ``eval_set`` with the openai-chat judge
    (``judge_options``: other JudgeResource fields, such as evidence_max or max_calls)."""
    from emojudge_pipeline.assets.refinement import refinement
    from emojudge_pipeline.resources import JudgeResource, WarehouseResource

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("eval_sets", [eval_set])
    return dg.materialize(
        [refinement],
        partition_key=eval_set,
        instance=instance,
        resources={
            "warehouse_db": WarehouseResource(home=str(home)),
            "judge": JudgeResource(backend="openai-chat", base_url=base_url, gate=gate, max_workers=2, **judge_options),
        },
    )


if __name__ == "__main__":
    run_refinement(Path(sys.argv[1]), sys.argv[2], sys.argv[3], gate="off")
