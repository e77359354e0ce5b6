"""Evaluation metrics (F1-macro, accuracy, per-class scores, CCC, confusion) and their warehouse rows.

Categorical F1-macro averages over the classes present in ``y_true`` or ``y_pred`` (the same as scikit-learn's
``f1_score(average="macro", labels=present)``), not over all 8 classes: a corpus without contempt (RAVDESS)
would otherwise score a constant 0 for a class nobody could get right, and results would not compare across
corpora. Per-class rows are reported for the same present classes. Undefined ratios (0/0) count as 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from emojudge_models.labels import ATTRIBUTES, EMOTIONS, TASKS

PER_CLASS_METRICS: tuple[str, ...] = ("precision", "recall", "f1", "support")


def _check_labels(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> None:
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} labels but y_pred has {len(y_pred)}")
    if len(y_true) == 0:
        raise ValueError("cannot compute metrics on zero utterances")
    unknown = sorted((set(y_true) | set(y_pred)) - set(labels))
    if unknown:
        raise ValueError(f"labels {unknown} are not in the label set {list(labels)}")


def present_labels(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] = EMOTIONS) -> list[str]:
    """The classes that occur in ``y_true`` or ``y_pred``, in ``labels`` order."""
    seen = set(y_true) | set(y_pred)
    return [label for label in labels if label in seen]


def categorical_metrics(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] = EMOTIONS
) -> dict[str, Any]:
    """F1-macro and accuracy, plus precision/recall/f1/support for each present class.

    Returns ``{"f1_macro": float, "accuracy": float, "per_class": {label: {"precision", "recall", "f1",
    "support"}}}``; ``per_class`` keys follow ``labels`` order.
    """
    y_true, y_pred = list(y_true), list(y_pred)
    _check_labels(y_true, y_pred, labels)
    present = present_labels(y_true, y_pred, labels)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=present, average=None, zero_division=0
    )
    per_class = {
        label: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(present)
    }
    return {
        "f1_macro": float(np.mean(f1)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "per_class": per_class,
    }


def ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Concordance correlation coefficient 2·cov(x, y) / (var x + var y + (mean x − mean y)²).

    Moments are population moments (ddof 0), as in the SER challenge scoring.

    Raises ``ValueError`` when it is undefined (both series constant and equal).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"ccc needs two 1-D arrays of equal length, got shapes {x.shape} and {y.shape}")
    if x.size == 0:
        raise ValueError("ccc of empty arrays is undefined")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("ccc inputs contain NaN or infinite values")
    mean_x, mean_y = x.mean(), y.mean()
    covariance = np.mean((x - mean_x) * (y - mean_y))
    denominator = x.var() + y.var() + (mean_x - mean_y) ** 2
    if denominator == 0:
        raise ValueError("ccc is undefined: both series are constant and equal")
    return float(2.0 * covariance / denominator)


def attribute_metrics(true: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """CCC per attribute (columns in ATTRIBUTES order) and their mean.

    Returns ``{"ccc": {attribute: float}, "ccc_mean": float}``.
    """
    true = np.asarray(true, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    expected = (len(ATTRIBUTES),)
    if true.ndim != 2 or true.shape != pred.shape or true.shape[1:] != expected:
        raise ValueError(
            f"attribute_metrics needs two (N, {len(ATTRIBUTES)}) arrays, got {true.shape} and {pred.shape}"
        )
    per_attribute = {name: ccc(true[:, i], pred[:, i]) for i, name in enumerate(ATTRIBUTES)}
    return {"ccc": per_attribute, "ccc_mean": float(np.mean(list(per_attribute.values())))}


def confusion(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] = EMOTIONS) -> np.ndarray:
    """Counts with rows = true label and columns = predicted label, both in ``labels`` order."""
    y_true, y_pred = list(y_true), list(y_pred)
    _check_labels(y_true, y_pred, labels)
    return confusion_matrix(y_true, y_pred, labels=list(labels))


def confusion_rows(matrix: np.ndarray, labels: Sequence[str] = EMOTIONS) -> list[dict[str, Any]]:
    """Flatten a confusion matrix into (true_label, predicted_label, n) rows for ``confusion_matrices``."""
    matrix = np.asarray(matrix)
    if matrix.shape != (len(labels), len(labels)):
        raise ValueError(f"confusion matrix shape {matrix.shape} does not match {len(labels)} labels")
    return [
        {"true_label": true_label, "predicted_label": predicted_label, "n": int(matrix[i, j])}
        for i, true_label in enumerate(labels)
        for j, predicted_label in enumerate(labels)
    ]


def metrics_rows(stage: str, task: str, metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Flatten a ``categorical_metrics`` or ``attribute_metrics`` result into rows for table ``metrics``.

    Each row has keys stage, task, metric, label, value; ``label`` is None for overall rows (f1_macro,
    accuracy, ccc_mean). The caller adds eval_set and run_id.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if not stage:
        raise ValueError("stage must be a non-empty name such as audio, text, fused or refined")

    def row(metric: str, label: str | None, value: float) -> dict[str, Any]:
        return {"stage": stage, "task": task, "metric": metric, "label": label, "value": float(value)}

    if task == "categorical":
        rows = [row("f1_macro", None, metrics["f1_macro"]), row("accuracy", None, metrics["accuracy"])]
        for label, scores in metrics["per_class"].items():
            rows.extend(row(name, label, scores[name]) for name in PER_CLASS_METRICS)
        return rows
    rows = [row("ccc_mean", None, metrics["ccc_mean"])]
    rows.extend(row("ccc", attribute, value) for attribute, value in metrics["ccc"].items())
    return rows


def _format_value(metric: str, value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if metric == "support" else f"{value:.4f}"


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of metric rows, one column per stage in order of first appearance (UI metadata)."""
    stages: list[str] = []
    cells: dict[tuple[str, str, str | None], dict[str, float]] = {}
    for r in rows:
        if r["stage"] not in stages:
            stages.append(r["stage"])
        cells.setdefault((r["task"], r["metric"], r["label"]), {})[r["stage"]] = r["value"]
    lines = [
        "| " + " | ".join(["task", "metric", "label", *stages]) + " |",
        "|" + "---|" * (3 + len(stages)),
    ]
    for (task, metric, label), by_stage in cells.items():
        values = [_format_value(metric, by_stage.get(stage)) for stage in stages]
        lines.append("| " + " | ".join([task, metric, label or "overall", *values]) + " |")
    return "\n".join(lines)


def f1_macro_of_indices(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """``categorical_metrics(...)["f1_macro"]`` on class indices (classes present in either), fast enough to permute."""
    n = len(EMOTIONS)
    true_count = np.bincount(y_true, minlength=n)
    pred_count = np.bincount(y_pred, minlength=n)
    hits = np.bincount(y_true[y_true == y_pred], minlength=n)
    present = (true_count + pred_count) > 0
    return float(np.mean(2.0 * hits[present] / (true_count[present] + pred_count[present])))
