"""The ``logreg`` audio model: scikit-learn L2 logistic regression on standardised per-clip mean+std of the frames.

Fitted on the train split for every C of :data:`C_GRID`, the C with the best development F1-macro kept (no refit,
as the other heads keep their best development epoch). For the ``attributes`` task the same probe is a ridge
regression (alpha = 1 / C) chosen by development mean CCC. The fitted scaler and coefficients live in a torch
module (:class:`LinearProbeModel`), so the checkpoint, scoring and ensembles treat it as any other frame head; it
pools frames exactly as :class:`~emojudge_models.models.heads.MeanStdPooling`. Under nested speaker-grouped CV on
RAVDESS it generalised best to unseen speakers of every audio model measured (bench/RESULTS.md, issue 20).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler
from torch import nn

from emojudge_models.features.streaming import FrameStream
from emojudge_models.models.heads import STD_EPS, MeanStdPooling, output_dim
from emojudge_models.models.loop import TrainResult, dev_metric, dev_metric_name
from emojudge_models.models.training import FrameItems, frame_input_dim

CODE_VERSION = "logreg-1"
"""Bump when a change to this module changes what a fitted probe computes (part of ``model_key``)."""

C_GRID: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0)
"""Inverse L2 strengths tried on development (the grid of the nested CV bench)."""
MAX_ITER = 5000
"""lbfgs iterations: enough for every fit of the nested bench to converge on 1024-dimensional Whisper-base stats."""
ABSENT_CLASS_LOGIT = -30.0
"""Logit of an emotion no train row has (probability about 1e-13 after the softmax)."""


@dataclass(frozen=True, kw_only=True)
class LinearProbeConfig:
    """A fitted probe's shape and how it was chosen: the grid, the C kept, the iteration cap and seed."""

    task: str
    input_dim: int
    c_grid: tuple[float, ...] = C_GRID
    max_iter: int = MAX_ITER
    seed: int = 0
    C: float | None = None

    def __post_init__(self) -> None:
        output_dim(self.task)
        if self.input_dim < 1 or self.max_iter < 1 or not self.c_grid or min(self.c_grid) <= 0:
            raise ValueError(f"linear probe needs input_dim >= 1, max_iter >= 1 and positive C values, got {self}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kind": "logreg", "c_grid": list(self.c_grid)}

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> LinearProbeConfig:
        fields = {k: v for k, v in document.items() if k != "kind"}
        return cls(**{**fields, "c_grid": tuple(fields["c_grid"])})


class LinearProbeModel(nn.Module):
    """Frames (B, T, D) and mask (B, T) -> mean ++ std -> (x - mean) / scale -> linear.

    Categorical outputs are log-probabilities over EMOTIONS (softmax gives sklearn's ``predict_proba`` back),
    attribute outputs the ridge predictions. Float32 buffers, so every torch device (mps included) can run it."""

    def __init__(self, config: LinearProbeConfig) -> None:
        super().__init__()
        self.config = config
        self.pooling = MeanStdPooling(config.input_dim)
        n_in, n_out = 2 * config.input_dim, output_dim(config.task)
        self.register_buffer("scaler_mean", torch.zeros(n_in))
        self.register_buffer("scaler_scale", torch.ones(n_in))
        self.register_buffer("weight", torch.zeros(n_out, n_in))
        self.register_buffer("bias", torch.zeros(n_out))

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=frames.device.type, enabled=False):
            pooled = self.pooling(frames.float(), mask)
            outputs = ((pooled - self.scaler_mean) / self.scaler_scale) @ self.weight.T + self.bias
            if self.config.task == "categorical":
                outputs = torch.log_softmax(outputs, dim=-1)
            return outputs


def pooled_stats(frames: Sequence[np.ndarray]) -> np.ndarray:
    """(N, 2D) float64 per-clip mean ++ std, as :class:`MeanStdPooling` computes them (variance floored)."""
    stats = []
    for clip in frames:
        clip = np.asarray(clip, dtype=np.float32).astype(np.float64)
        mean = clip.mean(axis=0)
        stats.append(np.concatenate([mean, np.sqrt(np.maximum(((clip - mean) ** 2).mean(axis=0), STD_EPS))]))
    return np.stack(stats)


def pooled_items(items: FrameItems) -> tuple[np.ndarray, np.ndarray]:
    """Per-clip pooled statistics and targets in item order; a streamed split is read one row group at a time and
    speaker-normalised as the heads see it, so only the (N, 2D) statistics are held."""
    if not isinstance(items, FrameStream):
        return pooled_stats([frames for frames, _ in items]), np.asarray([target for _, target in items])
    stats = np.empty((len(items), 2 * items.dim))
    for unit in items.units:
        for index, frames in items.read_unit(unit):
            normalised = frames if items.normalisation is None else items.normalisation.apply(index, frames)
            stats[index] = pooled_stats([normalised])[0]
    return stats, np.asarray([items.targets[index] for index in range(len(items))])


def _estimator(task: str, c: float, config: LinearProbeConfig) -> LogisticRegression | Ridge:
    if task == "categorical":
        return LogisticRegression(C=c, max_iter=config.max_iter, random_state=config.seed)
    return Ridge(alpha=1.0 / c)


def _to_module(config: LinearProbeConfig, scaler: StandardScaler, estimator: Any) -> LinearProbeModel:
    """The fitted scaler and estimator as a :class:`LinearProbeModel` (absent classes get a fixed low logit)."""
    model = LinearProbeModel(config)
    n_out = output_dim(config.task)
    weight, bias = np.zeros((n_out, 2 * config.input_dim)), np.zeros(n_out)
    coef, intercept = np.atleast_2d(estimator.coef_), np.atleast_1d(estimator.intercept_)
    if config.task == "categorical":
        bias[:] = ABSENT_CLASS_LOGIT
        classes = np.asarray(estimator.classes_, dtype=np.int64)
        if len(classes) == 2:
            # sklearn's binary model: P(classes[1]) = sigmoid(w.x + b) = softmax over logits (0, w.x + b).
            weight[classes[1]], bias[classes[1]], bias[classes[0]] = coef[0], intercept[0], 0.0
        else:
            weight[classes], bias[classes] = coef, intercept
    else:
        weight[:], bias[:] = coef, intercept
    state = {
        "scaler_mean": scaler.mean_,
        "scaler_scale": scaler.scale_,
        "weight": weight,
        "bias": bias,
    }
    model.load_state_dict({name: torch.as_tensor(value, dtype=torch.float32) for name, value in state.items()})
    return model.eval()


def fit_pooled_probe(x: np.ndarray, y: np.ndarray, config: LinearProbeConfig) -> LinearProbeModel:
    """A probe fitted at ``config.C`` on pooled statistics ``x`` (N, 2D) and targets ``y`` (scaler included): what a
    recipe that chose C by its own cross-validation refits on all its rows (models/shipped_recipe.py)."""
    if config.C is None:
        raise ValueError("fit_pooled_probe needs config.C")
    scaler = StandardScaler().fit(x)
    return _to_module(config, scaler, _estimator(config.task, config.C, config).fit(scaler.transform(x), y))


def fit_linear_probe(
    train_items: FrameItems,
    dev_items: FrameItems,
    *,
    task: str,
    seed: int,
    c_grid: Sequence[float] = C_GRID,
    max_iter: int = MAX_ITER,
    log: Callable[[str], None] = lambda _: None,
) -> TrainResult:
    """Fit on the train items for every C, keep the one with the best development metric (first on ties).

    Development items only score the fits; they never enter the scaler or the coefficients. ``history`` has one
    row per C; ``best_epoch`` is the kept C's position in the grid, from 1."""
    config = LinearProbeConfig(
        task=task, input_dim=frame_input_dim(train_items), c_grid=tuple(c_grid), max_iter=max_iter, seed=seed
    )
    (x_train, y_train), (x_dev, y_dev) = pooled_items(train_items), pooled_items(dev_items)
    scaler = StandardScaler().fit(x_train)
    z_train, z_dev = scaler.transform(x_train), scaler.transform(x_dev)
    name = dev_metric_name(task)
    history: list[dict[str, float]] = []
    best: tuple[float, int, Any] | None = None
    for index, c in enumerate(config.c_grid, 1):
        estimator = _estimator(task, c, config).fit(z_train, y_train)
        metric = dev_metric(task, _outputs(task, estimator, z_dev), y_dev)
        history.append({"C": float(c), f"dev_{name}": metric})
        log(f"logreg C={c:g}: development {name} {metric:.4f}")
        if best is None or metric > best[0]:
            best = (metric, index, estimator)
    metric, index, estimator = best
    config = LinearProbeConfig(**{**asdict(config), "C": float(config.c_grid[index - 1])})
    return TrainResult(
        model=_to_module(config, scaler, estimator),
        history=history,
        best_epoch=index,
        dev_metric_name=name,
        dev_metric=metric,
    )


def _outputs(task: str, estimator: Any, z: np.ndarray) -> np.ndarray:
    """Development outputs in the model's layout (classes not trained on never win the argmax)."""
    if task != "categorical":
        return estimator.predict(z)
    outputs = np.full((len(z), output_dim(task)), ABSENT_CLASS_LOGIT)
    outputs[:, np.asarray(estimator.classes_, dtype=np.int64)] = estimator.predict_log_proba(z)
    return outputs
