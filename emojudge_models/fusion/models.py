"""Late fusion of audio and text model outputs: logistic regression (categories) and ridge (attributes).

The regularisation strength C is chosen on the development set from a log grid (F1-macro for categories, mean
CCC for attributes; ties go to the smaller C, the simpler model). Inputs are standardised before the linear
model so that one C penalises audio and text outputs alike whatever their logit scale.

Categorical labels are indices into :data:`EMOTIONS`. Classes absent from the training labels (RAVDESS has no
contempt) get probability 0: ``predict_proba`` always returns the 8 EMOTIONS columns, the missing ones padded
with zeros, so rows still sum to 1 and the absent class is never predicted.

Saved models are joblib (pickle) files: load them only from locations you trust, since unpickling runs code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from emojudge_models.evaluation.metrics import attribute_metrics, categorical_metrics
from emojudge_models.labels import ATTRIBUTES, EMOTIONS

C_GRID: np.ndarray = np.logspace(-3, 3, 13)
"""Inverse regularisation strengths searched on the development set (ridge uses alpha = 1 / C)."""

FitOn = Literal["train", "train+dev"]
_SAVE_FORMAT = "emojudge-fusion-v1"
_MODALITIES = ("audio", "text")


def fusion_features(audio_logits: np.ndarray, text_logits: np.ndarray) -> np.ndarray:
    """Fusion input: audio outputs followed by text outputs, ``(N, a) + (N, t) -> (N, a + t)`` float64."""
    audio = np.asarray(audio_logits, dtype=np.float64)
    text = np.asarray(text_logits, dtype=np.float64)
    if audio.ndim != 2 or text.ndim != 2 or audio.shape[0] != text.shape[0]:
        raise ValueError(
            f"audio and text outputs must be 2-D with the same number of rows, got {audio.shape} and {text.shape}"
        )
    return np.hstack([audio, text])


def fusion_feature_names(task: str) -> list[str]:
    """Names of the fusion input columns: ``audio_angry`` ... ``text_neutral``, or ``audio_arousal`` ..."""
    outputs = _task_outputs(task)
    return [f"{modality}_{name}" for modality in _MODALITIES for name in outputs]


def _task_outputs(task: str) -> tuple[str, ...]:
    if task == "categorical":
        return EMOTIONS
    if task == "attributes":
        return ATTRIBUTES
    raise ValueError(f"unknown fusion task {task!r}; expected categorical or attributes")


@dataclass
class FusionModel:
    """A fitted fusion estimator plus what the model registry needs to know about how it was chosen."""

    task: str
    estimator: Pipeline
    C: float
    grid: list[tuple[float, float]]
    dev_score: float
    dev_metric_name: str
    feature_names: list[str]
    n_classes: int | None
    class_balanced: bool | None
    fit_on: FitOn

    def _check_features(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(f"fusion input must be (N, {len(self.feature_names)}), got {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("fusion input contains NaN or infinite values")
        return X

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities (N, 8) in EMOTIONS order; classes unseen in training are 0."""
        if self.task != "categorical":
            raise ValueError(f"predict_proba is only defined for categorical fusion, not {self.task}")
        X = self._check_features(X)
        seen = self.estimator.classes_
        proba = np.zeros((X.shape[0], len(EMOTIONS)), dtype=np.float64)
        proba[:, seen] = self.estimator.predict_proba(X)
        return proba

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Categorical: (N,) class indices into EMOTIONS. Attributes: (N, 3) in ATTRIBUTES order."""
        if self.task == "categorical":
            return self.predict_proba(X).argmax(axis=1)
        return self.estimator.predict(self._check_features(X))

    def predict_labels(self, X: np.ndarray) -> list[str]:
        """Categorical predictions as EMOTIONS names."""
        return [EMOTIONS[i] for i in self.predict(X)]

    def hyperparameters(self) -> dict[str, Any]:
        """JSON-ready settings of the fit (no scores), for ``model_registry.hyperparameters``."""
        return {
            "task": self.task,
            "estimator": "logistic_regression" if self.task == "categorical" else "ridge",
            "standardised_inputs": True,
            "C": self.C,
            "C_grid": [c for c, _ in self.grid],
            "class_balanced": self.class_balanced,
            "fit_on": self.fit_on,
            "feature_names": self.feature_names,
        }

    def save(self, path: str | Path) -> Path:
        """Write estimator and metadata to one joblib file; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump({"format": _SAVE_FORMAT, **self.__dict__}, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> FusionModel:
        """Read a model written by :meth:`save`. Unpickles: only load files from trusted locations."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"fusion model file {path} does not exist")
        payload = joblib.load(path)
        if not isinstance(payload, dict) or payload.get("format") != _SAVE_FORMAT:
            raise ValueError(f"{path} is not an EmoJudge fusion model ({_SAVE_FORMAT})")
        payload.pop("format")
        return cls(**payload)


def _check_training_arrays(name: str, X: np.ndarray, y: np.ndarray, n_features: int) -> None:
    if X.ndim != 2 or X.shape[1] != n_features:
        raise ValueError(f"{name}_X must be (N, {n_features}), got {X.shape}")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"{name}_X has {X.shape[0]} rows but {name}_y has {y.shape[0]}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} set is empty")
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise ValueError(f"{name} set contains NaN or infinite values")


def _check_class_indices(name: str, y: np.ndarray) -> np.ndarray:
    if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1:
        raise ValueError(f"{name}_y must be a 1-D array of integer indices into EMOTIONS, got {y.dtype} {y.shape}")
    bad = sorted(set(y[(y < 0) | (y >= len(EMOTIONS))].tolist()))
    if bad:
        raise ValueError(f"{name}_y holds indices {bad} outside 0..{len(EMOTIONS) - 1} (EMOTIONS)")
    return y


def _select_and_fit(
    make_estimator: Callable[[float], Pipeline],
    score: Callable[[np.ndarray, np.ndarray], float],
    train_X: np.ndarray,
    train_y: np.ndarray,
    dev_X: np.ndarray,
    dev_y: np.ndarray,
    grid: Sequence[float],
    fit_on: FitOn,
) -> tuple[Pipeline, float, list[tuple[float, float]], float]:
    """Fit one estimator per C on train, score on dev, keep the best (first best on an ascending grid)."""
    if fit_on not in ("train", "train+dev"):
        raise ValueError(f"fit_on must be 'train' or 'train+dev', got {fit_on!r}")
    if len(grid) == 0:
        raise ValueError("the C grid is empty")
    results: list[tuple[float, float, Pipeline]] = []
    for C in sorted(float(c) for c in grid):
        estimator = make_estimator(C).fit(train_X, train_y)
        results.append((C, score(dev_y, estimator.predict(dev_X)), estimator))
    best_C, best_score, best_estimator = max(results, key=lambda r: r[1])
    if fit_on == "train+dev":
        best_estimator = make_estimator(best_C).fit(np.vstack([train_X, dev_X]), np.concatenate([train_y, dev_y]))
    return best_estimator, best_C, [(C, s) for C, s, _ in results], best_score


def fit_categorical_fusion(
    train_X: np.ndarray,
    train_y: np.ndarray,
    dev_X: np.ndarray,
    dev_y: np.ndarray,
    class_balanced: bool = True,
    grid: Sequence[float] = C_GRID,
    seed: int = 0,
    fit_on: FitOn = "train",
) -> FusionModel:
    """L2 logistic regression on ``fusion_features`` (N, 16) -> EMOTIONS indices, C chosen by dev F1-macro.

    ``class_balanced`` weights classes inversely to their training frequency. ``fit_on="train+dev"`` refits
    the chosen C on train and dev together (for small corpora where every labelled clip counts).
    """
    n_features = 2 * len(EMOTIONS)
    train_X, dev_X = np.asarray(train_X, dtype=np.float64), np.asarray(dev_X, dtype=np.float64)
    train_y = _check_class_indices("train", np.asarray(train_y))
    dev_y = _check_class_indices("dev", np.asarray(dev_y))
    _check_training_arrays("train", train_X, train_y, n_features)
    _check_training_arrays("dev", dev_X, dev_y, n_features)
    if np.unique(train_y).size < 2:
        raise ValueError(f"train_y holds a single class ({EMOTIONS[train_y[0]]}); fusion needs at least two")

    def make_estimator(C: float) -> Pipeline:
        return make_pipeline(
            StandardScaler(),
            LogisticRegression(
                C=C,
                l1_ratio=0.0,
                class_weight="balanced" if class_balanced else None,
                max_iter=5000,
                random_state=seed,
            ),
        )

    def f1_macro(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return categorical_metrics([EMOTIONS[i] for i in y_true], [EMOTIONS[i] for i in y_pred])["f1_macro"]

    estimator, C, scores, dev_score = _select_and_fit(
        make_estimator, f1_macro, train_X, train_y, dev_X, dev_y, grid, fit_on
    )
    return FusionModel(
        task="categorical",
        estimator=estimator,
        C=C,
        grid=scores,
        dev_score=dev_score,
        dev_metric_name="f1_macro",
        feature_names=fusion_feature_names("categorical"),
        n_classes=len(EMOTIONS),
        class_balanced=class_balanced,
        fit_on=fit_on,
    )


def fit_attribute_fusion(
    train_X: np.ndarray,
    train_y: np.ndarray,
    dev_X: np.ndarray,
    dev_y: np.ndarray,
    grid: Sequence[float] = C_GRID,
    seed: int = 0,
    fit_on: FitOn = "train",
) -> FusionModel:
    """Ridge (alpha = 1 / C) on ``fusion_features`` (N, 6) -> (N, 3) ATTRIBUTES, C chosen by dev mean CCC."""
    n_features = 2 * len(ATTRIBUTES)
    train_X, dev_X = np.asarray(train_X, dtype=np.float64), np.asarray(dev_X, dtype=np.float64)
    train_y, dev_y = np.asarray(train_y, dtype=np.float64), np.asarray(dev_y, dtype=np.float64)
    for name, y in (("train", train_y), ("dev", dev_y)):
        if y.ndim != 2 or y.shape[1] != len(ATTRIBUTES):
            raise ValueError(f"{name}_y must be (N, {len(ATTRIBUTES)}) in ATTRIBUTES order, got {y.shape}")
    _check_training_arrays("train", train_X, train_y, n_features)
    _check_training_arrays("dev", dev_X, dev_y, n_features)

    def make_estimator(C: float) -> Pipeline:
        return make_pipeline(StandardScaler(), Ridge(alpha=1.0 / C, random_state=seed))

    def ccc_mean(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return attribute_metrics(y_true, y_pred)["ccc_mean"]

    estimator, C, scores, dev_score = _select_and_fit(
        make_estimator, ccc_mean, train_X, train_y, dev_X, dev_y, grid, fit_on
    )
    return FusionModel(
        task="attributes",
        estimator=estimator,
        C=C,
        grid=scores,
        dev_score=dev_score,
        dev_metric_name="ccc_mean",
        feature_names=fusion_feature_names("attributes"),
        n_classes=None,
        class_balanced=None,
        fit_on=fit_on,
    )
