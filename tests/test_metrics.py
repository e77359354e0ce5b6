"""Metrics against scikit-learn and hand arithmetic, warehouse rows, markdown, and PNG rendering."""

from __future__ import annotations

import io

import matplotlib.image
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from emojudge_models.evaluation.metrics import (
    attribute_metrics,
    categorical_metrics,
    ccc,
    confusion,
    confusion_rows,
    markdown_table,
    metrics_rows,
)
from emojudge_models.evaluation.plots import confusion_png, grid_curve_png
from emojudge_models.labels import ATTRIBUTES, EMOTIONS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_categorical_metrics_match_sklearn_on_random_labels() -> None:
    rng = np.random.default_rng(0)
    # contempt never occurs in y_true and fear only in y_pred, so the "present" label set matters.
    true_pool = [e for e in EMOTIONS if e not in ("contempt", "fear")]
    y_true = list(rng.choice(true_pool, 200))
    y_pred = list(rng.choice([e for e in EMOTIONS if e != "contempt"], 200))
    present = [e for e in EMOTIONS if e in set(y_true) | set(y_pred)]
    assert "fear" in present and "contempt" not in present

    result = categorical_metrics(y_true, y_pred)

    assert result["f1_macro"] == pytest.approx(
        f1_score(y_true, y_pred, average="macro", labels=present, zero_division=0)
    )
    assert result["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=present, zero_division=0)
    assert list(result["per_class"]) == present
    for i, label in enumerate(present):
        scores = result["per_class"][label]
        assert scores["precision"] == pytest.approx(precision[i])
        assert scores["recall"] == pytest.approx(recall[i])
        assert scores["f1"] == pytest.approx(f1[i])
        assert scores["support"] == support[i]
    assert result["per_class"]["fear"]["support"] == 0


def test_categorical_metrics_by_hand() -> None:
    # angry: TP 1 FP 0 FN 1 -> P 1, R 1/2, F1 2/3. sad: TP 1 FP 1 FN 0 -> P 1/2, R 1, F1 2/3.
    # neutral: TP 0 FN 1 -> P 0 (0/0), R 0, F1 0. happy: only predicted, FP 1 -> P 0, R 0 (0/0), F1 0.
    # Macro over the 4 present classes = (2/3 + 2/3 + 0 + 0) / 4 = 1/3; the 4 absent classes do not count.
    result = categorical_metrics(["angry", "angry", "sad", "neutral"], ["angry", "sad", "sad", "happy"])
    assert result["f1_macro"] == pytest.approx(1 / 3)
    assert result["accuracy"] == pytest.approx(0.5)
    assert result["per_class"]["angry"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert set(result["per_class"]) == {"angry", "sad", "happy", "neutral"}


def test_categorical_metrics_reject_unknown_labels_and_length_mismatch() -> None:
    with pytest.raises(ValueError, match="not in the label set"):
        categorical_metrics(["angry"], ["furious"])
    with pytest.raises(ValueError, match="y_true has 2 labels but y_pred has 1"):
        categorical_metrics(["angry", "sad"], ["angry"])


def test_ccc_by_hand() -> None:
    # x = [1, 2, 3, 4], y = [2, 2, 4, 4]: mean x 2.5, mean y 3.
    # var x = (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25; var y = (1 + 1 + 1 + 1) / 4 = 1.
    # cov = (1.5·1 + 0.5·1 + 0.5·1 + 1.5·1) / 4 = 1.
    # ccc = 2·1 / (1.25 + 1 + (2.5 − 3)²) = 2 / 2.5 = 0.8.
    assert ccc(np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 2.0, 4.0, 4.0])) == pytest.approx(0.8)


def test_ccc_penalises_bias_and_scale_unlike_pearson() -> None:
    x = np.array([-1.0, 0.0, 1.0, 2.0])
    assert ccc(x, x) == pytest.approx(1.0)
    assert ccc(x - x.mean(), -(x - x.mean())) == pytest.approx(-1.0)
    assert ccc(x, x + 1.0) < 1.0 and ccc(x, 2 * x) < 1.0
    assert ccc(x, np.full(4, 0.5)) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="constant and equal"):
        ccc(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="equal length"):
        ccc(x, x[:2])


def test_attribute_metrics_per_column_and_mean() -> None:
    rng = np.random.default_rng(1)
    true = rng.normal(size=(50, 3))
    pred = true.copy()
    pred[:, 1] = true[:, 1] + 0.5
    pred[:, 2] = -true[:, 2]
    result = attribute_metrics(true, pred)
    assert list(result["ccc"]) == list(ATTRIBUTES)
    assert result["ccc"]["arousal"] == pytest.approx(1.0)
    assert result["ccc"]["valence"] == pytest.approx(ccc(true[:, 1], pred[:, 1]))
    assert result["ccc"]["valence"] < 1.0
    assert result["ccc_mean"] == pytest.approx(np.mean(list(result["ccc"].values())))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        attribute_metrics(true[:, :2], pred[:, :2])


def test_confusion_counts() -> None:
    labels = ["angry", "sad", "neutral"]
    y_true = ["angry", "angry", "angry", "sad", "neutral", "neutral"]
    y_pred = ["angry", "sad", "sad", "sad", "neutral", "angry"]
    matrix = confusion(y_true, y_pred, labels=labels)
    assert matrix.tolist() == [[1, 2, 0], [0, 1, 0], [1, 0, 1]]
    full = confusion(y_true, y_pred)
    assert full.shape == (8, 8) and full.sum() == 6
    assert full[EMOTIONS.index("angry"), EMOTIONS.index("sad")] == 2
    rows = confusion_rows(matrix, labels)
    assert len(rows) == 9
    assert {"true_label": "angry", "predicted_label": "sad", "n": 2} in rows


def test_metrics_rows_match_the_metrics_table() -> None:
    result = categorical_metrics(["angry", "sad", "sad"], ["angry", "sad", "angry"])
    rows = metrics_rows("fused", "categorical", result)
    assert len(rows) == 2 + 4 * 2
    assert all(set(r) == {"stage", "task", "metric", "label", "value"} for r in rows)
    overall = {r["metric"]: r["value"] for r in rows if r["label"] is None}
    assert overall == pytest.approx({"f1_macro": result["f1_macro"], "accuracy": 2 / 3})
    support = {r["label"]: r["value"] for r in rows if r["metric"] == "support"}
    assert support == {"angry": 1.0, "sad": 2.0}

    attribute_rows = metrics_rows("audio", "attributes", attribute_metrics(np.eye(3), np.eye(3) * 0.5))
    assert [(r["metric"], r["label"]) for r in attribute_rows] == [
        ("ccc_mean", None),
        ("ccc", "arousal"),
        ("ccc", "valence"),
        ("ccc", "dominance"),
    ]
    with pytest.raises(ValueError, match="unknown task"):
        metrics_rows("fused", "regression", result)


def test_markdown_table_puts_stages_in_columns() -> None:
    audio = metrics_rows("audio", "categorical", categorical_metrics(["angry", "sad"], ["angry", "angry"]))
    fused = metrics_rows("fused", "categorical", categorical_metrics(["angry", "sad"], ["angry", "sad"]))
    table = markdown_table(audio + fused).splitlines()
    assert table[0] == "| task | metric | label | audio | fused |"
    assert table[1] == "|---|---|---|---|---|"
    assert "| categorical | accuracy | overall | 0.5000 | 1.0000 |" in table
    assert "| categorical | support | sad | 1 | 1 |" in table
    assert len(table) == 2 + 2 + 4 * 2


def test_confusion_png_is_a_real_image() -> None:
    matrix = np.arange(64).reshape(8, 8)
    png = confusion_png(matrix, EMOTIONS, "fused: ravdess-dev")
    assert png.startswith(PNG_MAGIC)
    assert len(png) > 5_000
    image = matplotlib.image.imread(io.BytesIO(png), format="png")
    assert image.shape[0] > 200 and image.shape[1] > 200
    with pytest.raises(ValueError, match="does not match"):
        confusion_png(matrix[:3, :3], EMOTIONS, "bad")


def test_grid_curve_png_is_a_real_image() -> None:
    grid = [(c, 0.3 + 0.01 * i) for i, c in enumerate(np.logspace(-3, 3, 13))]
    png = grid_curve_png(grid, chosen_C=1.0, metric_name="f1_macro")
    assert png.startswith(PNG_MAGIC)
    assert len(png) > 5_000
    image = matplotlib.image.imread(io.BytesIO(png), format="png")
    assert image.shape[1] > image.shape[0] > 200
