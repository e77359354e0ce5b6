"""Score every stage (audio, text, fused, refined) of one evaluation set, per split, from its prediction rows."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from emojudge_models.evaluation.metrics import (
    attribute_metrics,
    categorical_metrics,
    confusion,
    confusion_rows,
    metrics_rows,
)
from emojudge_models.labels import ATTRIBUTES

CATEGORICAL_STAGES = {"audio": "audio_label", "text": "text_label", "fused": "fused_label", "refined": "refined_label"}
ATTRIBUTE_STAGES = {"audio": "audio_attributes", "text": "text_attributes", "fused": "fused_attributes"}


@dataclass
class Evaluation:
    """Rows for tables ``metrics`` and ``confusion_matrices``, plus the judge's effect on labels."""

    metrics: list[dict] = field(default_factory=list)
    confusions: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    judge: dict[str, int] = field(default_factory=dict)

    def metrics_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.metrics, columns=["split", "stage", "task", "metric", "label", "value"])

    def confusion_frame(self) -> pd.DataFrame:
        rows = [
            {"split": split, "stage": stage, **row}
            for (split, stage), matrix in self.confusions.items()
            for row in confusion_rows(matrix)
        ]
        return pd.DataFrame(rows, columns=["split", "stage", "true_label", "predicted_label", "n"])


def _splits(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    named = [(str(s), part) for s, part in rows.groupby("split", dropna=True)]
    return [*named, ("all", rows)]


def judge_effect(rows: pd.DataFrame) -> dict[str, int]:
    """How many labels the judge changed, and how many of those went right-to-wrong and wrong-to-right."""
    changed = rows[rows["judge_changed"].fillna(False).astype(bool)]
    return {
        "judge_changed": len(changed),
        "judge_wrong_to_right": int(
            ((changed["fused_label"] != changed["emotion"]) & (changed["refined_label"] == changed["emotion"])).sum()
        ),
        "judge_right_to_wrong": int(
            ((changed["fused_label"] == changed["emotion"]) & (changed["refined_label"] != changed["emotion"])).sum()
        ),
    }


def evaluate(rows: pd.DataFrame) -> Evaluation:
    """Metrics over labelled rows only, for each stage that has predictions, per split and over all rows."""
    result = Evaluation()
    categorical = rows[rows["emotion"].notna()]
    for split, part in _splits(categorical):
        for stage, column in CATEGORICAL_STAGES.items():
            scored = part[part[column].notna()]
            if scored.empty:
                continue
            y_true, y_pred = scored["emotion"].tolist(), scored[column].tolist()
            result.metrics += [
                {"split": split, **r} for r in metrics_rows(stage, "categorical", categorical_metrics(y_true, y_pred))
            ]
            result.confusions[(split, stage)] = confusion(y_true, y_pred)
        if part["refined_label"].notna().any():
            for name, value in judge_effect(part[part["refined_label"].notna()]).items():
                result.metrics.append(
                    {
                        "split": split,
                        "stage": "refined",
                        "task": "categorical",
                        "metric": name,
                        "label": None,
                        "value": float(value),
                    }
                )
    result.judge = judge_effect(categorical[categorical["refined_label"].notna()])
    attributes = rows[rows[list(ATTRIBUTES)].notna().all(axis=1)]
    for split, part in _splits(attributes):
        for stage, column in ATTRIBUTE_STAGES.items():
            scored = part[part[column].notna()]
            if len(scored) < 2:
                continue
            truth = scored[list(ATTRIBUTES)].to_numpy(dtype=np.float64)
            predicted = np.stack(scored[column].to_numpy()).astype(np.float64)
            result.metrics += [
                {"split": split, **r} for r in metrics_rows(stage, "attributes", attribute_metrics(truth, predicted))
            ]
    return result
