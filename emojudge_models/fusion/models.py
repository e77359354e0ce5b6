"""Late fusion of audio and text model outputs: logistic regression (categories) and ridge (attributes).

The regularisation strength C is chosen on the development set from a log grid (F1-macro for categories, mean
CCC for attributes; ties go to the smaller C, the simpler model). Inputs are standardised before the linear
model so that one C penalises audio and text outputs alike whatever their logit scale.

Categorical labels are indices into :data:`EMOTIONS`. Classes absent from the training labels (RAVDESS has no
contempt) get probability 0: ``predict_proba`` always returns the 8 EMOTIONS columns, the missing ones padded
with zeros, so rows still sum to 1 and the absent class is never predicted.

A modality never costs accuracy (``fit_guarded_fusion``, what the pipeline fits): each modality's own outputs are scored
on development against a permutation null (the same predictions against shuffled truth). A modality is used only
if it is present (finite everywhere) and its score beats the null's 95th percentile and the null mean by
``RELIABILITY_MARGIN``; a constant prediction scores exactly its null and is never used. With one usable modality
the fusion is that modality alone (categorical: its logits temperature-scaled on development, so its labels are
kept; attributes: its outputs as they are); with both, the linear fusion is kept only if its development score is
at least the better modality's minus ``FUSION_TOLERANCE``.

Saved models are joblib (pickle) files: load them only from locations you trust, since unpickling runs code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import joblib
import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from emojudge_models.evaluation.metrics import attribute_metrics, categorical_metrics, f1_macro_of_indices
from emojudge_models.labels import ATTRIBUTES, EMOTIONS

C_GRID: np.ndarray = np.logspace(-3, 3, 13)
"""Inverse regularisation strengths searched on the development set (ridge uses alpha = 1 / C)."""

FitOn = Literal["train", "train+dev"]
_SAVE_FORMAT = "emojudge-fusion-v1"
_MODALITIES = ("audio", "text")

RELIABILITY_PERMUTATIONS = 200
RELIABILITY_QUANTILE = 0.95
RELIABILITY_MARGIN = 0.05
"""A modality's development score must beat the permutation null's mean by this much (F1-macro or CCC)."""
FUSION_TOLERANCE = 0.01
"""Both modalities are fused only if that scores at least the better single modality's minus this on development."""


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
    estimator: Pipeline | SingleModality
    C: float | None
    """None for a single modality (no regularised fit)."""
    grid: list[tuple[float, float]]
    dev_score: float
    dev_metric_name: str
    feature_names: list[str]
    n_classes: int | None
    class_balanced: bool | None
    fit_on: FitOn
    modalities: tuple[str, ...] = _MODALITIES
    """The modalities the estimator reads; the others' columns are ignored (and may hold NaN)."""
    rule: str = "both modalities fused"
    reliability: dict[str, dict[str, Any]] = field(default_factory=dict)

    def _check_features(self, X: np.ndarray) -> np.ndarray:
        """The columns of ``self.modalities`` from a full (N, audio + text) fusion input."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(f"fusion input must be (N, {len(self.feature_names)}), got {X.shape}")
        X = X[:, _modality_columns(X.shape[1], self.modalities)]
        if not np.isfinite(X).all():
            raise ValueError(f"fusion input ({', '.join(self.modalities)}) contains NaN or infinite values")
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
        if len(self.modalities) == 1:
            estimator = "temperature_scaling" if self.task == "categorical" else "identity"
        else:
            estimator = "logistic_regression" if self.task == "categorical" else "ridge"
        return {
            "task": self.task,
            "estimator": estimator,
            "modalities": list(self.modalities),
            "rule": self.rule,
            "reliability": self.reliability,
            "standardised_inputs": len(self.modalities) > 1,
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


def _modality_columns(n_features: int, modalities: Sequence[str]) -> np.ndarray:
    """Column indices of ``modalities`` in a fusion input of ``n_features`` columns (audio half, then text half)."""
    width = n_features // len(_MODALITIES)
    return np.concatenate([np.arange(width) + width * _MODALITIES.index(modality) for modality in modalities]).astype(
        int
    )


@dataclass(frozen=True)
class ModalityReliability:
    """One modality's own outputs scored on development, against the same outputs scored on shuffled truth."""

    modality: str
    present: bool
    dev_score: float | None
    null_mean: float | None
    null_quantile: float | None

    @property
    def reliable(self) -> bool:
        if not self.present:
            return False
        above_null = self.dev_score > self.null_quantile + 1e-9  # a constant prediction equals its null exactly
        return above_null and self.dev_score >= self.null_mean + RELIABILITY_MARGIN

    def describe(self) -> str:
        if not self.present:
            return f"{self.modality} missing"
        return (
            f"{self.modality} development {self.dev_score:.3f} against chance {self.null_mean:.3f} "
            f"(permutation {RELIABILITY_QUANTILE:.0%} {self.null_quantile:.3f})"
        )


def _own_score(task: str) -> Callable[[np.ndarray, np.ndarray], float]:
    """A modality's score from its own outputs: F1-macro of its argmax, or mean CCC of its attribute outputs."""
    if task == "categorical":
        return lambda y, outputs: f1_macro_of_indices(y, outputs.argmax(axis=1))
    return lambda y, outputs: attribute_metrics(y, outputs)["ccc_mean"]


def modality_reliability(
    task: str, train_X: np.ndarray, dev_X: np.ndarray, dev_y: np.ndarray, seed: int = 0
) -> dict[str, ModalityReliability]:
    """Each modality's development score and its permutation null (``RELIABILITY_PERMUTATIONS`` shuffles of dev_y).

    A modality with any non-finite value in train or development outputs counts as missing.
    """
    _task_outputs(task)
    score = _own_score(task)
    rng = np.random.default_rng(seed)
    shuffles = [rng.permutation(len(dev_y)) for _ in range(RELIABILITY_PERMUTATIONS)]
    result = {}
    for modality in _MODALITIES:
        columns = _modality_columns(dev_X.shape[1], [modality])
        outputs = dev_X[:, columns]
        if not (np.isfinite(outputs).all() and np.isfinite(train_X[:, columns]).all()):
            result[modality] = ModalityReliability(modality, False, None, None, None)
            continue
        null = np.array([score(dev_y[order], outputs) for order in shuffles])
        result[modality] = ModalityReliability(
            modality,
            True,
            float(score(dev_y, outputs)),
            float(null.mean()),
            float(np.quantile(null, RELIABILITY_QUANTILE)),
        )
    return result


class SingleModality:
    """One modality's own outputs as the fusion output.

    Categorical: the logits of the training classes divided by one temperature (fitted on development by negative
    log-likelihood), then softmax: calibrated probabilities whose argmax is the modality's own label. Attributes:
    the outputs unchanged.
    """

    def __init__(self, task: str, classes: np.ndarray | None = None, temperature: float = 1.0) -> None:
        self.task = task
        self.classes_ = classes
        self.temperature = temperature

    def fit_temperature(self, X: np.ndarray, y: np.ndarray) -> SingleModality:
        logits = X[:, self.classes_]
        target = np.searchsorted(self.classes_, y)
        known = np.isin(y, self.classes_)

        def nll(log_t: float) -> float:
            return -float(
                log_softmax(logits[known] / np.exp(log_t), axis=1)[np.arange(known.sum()), target[known]].mean()
            )

        if known.any():
            self.temperature = float(np.exp(minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded").x))
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return softmax(X[:, self.classes_] / self.temperature, axis=1)

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.task == "categorical":
            return self.classes_[self.predict_proba(X).argmax(axis=1)]
        return X


def fit_guarded_fusion(
    task: str,
    train_X: np.ndarray,
    train_y: np.ndarray,
    dev_X: np.ndarray,
    dev_y: np.ndarray,
    class_balanced: bool = True,
    grid: Sequence[float] = C_GRID,
    seed: int = 0,
    fit_on: FitOn = "train",
) -> FusionModel:
    """Fusion that never gives weight to a modality at chance or missing on development (see the module docstring).

    Takes the full (N, audio + text) inputs of ``fusion_features``; a missing modality's columns may be NaN.
    Raises ValueError when neither modality is present.
    """
    outputs = _task_outputs(task)
    train_X, dev_X = np.asarray(train_X, dtype=np.float64), np.asarray(dev_X, dtype=np.float64)
    train_y, dev_y = np.asarray(train_y), np.asarray(dev_y)
    if task == "categorical":
        train_y, dev_y = _check_class_indices("train", train_y), _check_class_indices("dev", dev_y)
    for name, X in (("train", train_X), ("dev", dev_X)):
        if X.ndim != 2 or X.shape[1] != 2 * len(outputs):
            raise ValueError(f"{name}_X must be (N, {2 * len(outputs)}), got {X.shape}")
    reliability = modality_reliability(task, train_X, dev_X, dev_y, seed)
    described = "; ".join(r.describe() for r in reliability.values())
    present = [r for r in reliability.values() if r.present]
    if not present:
        raise ValueError("fusion needs audio or text outputs: both are missing (non-finite) in train or development")
    usable = [r.modality for r in present if r.reliable]
    best = max(present, key=lambda r: r.dev_score)  # max keeps the first (audio) on ties
    record = {
        r.modality: {**{key: value for key, value in asdict(r).items() if key != "modality"}, "reliable": r.reliable}
        for r in reliability.values()
    }
    if len(usable) == 2:
        fit = fit_categorical_fusion if task == "categorical" else fit_attribute_fusion
        options = {"class_balanced": class_balanced} if task == "categorical" else {}
        fused = fit(train_X, train_y, dev_X, dev_y, grid=grid, seed=seed, fit_on=fit_on, **options)
        fused.reliability = record
        if fused.dev_score >= best.dev_score - FUSION_TOLERANCE:
            fused.rule = f"both modalities fused ({described})"
            return fused
        rule = f"{best.modality} alone: fusion scored {fused.dev_score:.3f} on development ({described})"
    elif len(usable) == 1:
        best = reliability[usable[0]]
        rule = f"{best.modality} alone ({described})"
    else:
        rule = f"{best.modality} alone, neither modality above chance ({described})"
    columns = _modality_columns(train_X.shape[1], [best.modality])
    if task == "categorical":
        estimator = SingleModality(task, np.unique(train_y)).fit_temperature(dev_X[:, columns], dev_y)
    else:
        estimator = SingleModality(task)
    return FusionModel(
        task=task,
        estimator=estimator,
        C=None,
        grid=[],
        dev_score=best.dev_score,
        dev_metric_name="f1_macro" if task == "categorical" else "ccc_mean",
        feature_names=fusion_feature_names(task),
        n_classes=len(EMOTIONS) if task == "categorical" else None,
        class_balanced=None,
        fit_on=fit_on,
        modalities=(best.modality,),
        rule=rule,
        reliability=record,
    )
