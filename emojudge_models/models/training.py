"""Device-agnostic training for the emotion heads: one generic loop, length-bucketed batches, dev selection.

Every trainer (audio head on frames, head on cached vectors, fine-tuned text model) builds its batches and
model, then hands them to :func:`fit`: AdamW, optional warm-up schedule and gradient accumulation, bf16 autocast
on CUDA only, model selection and early stopping on the development metric (F1-macro for categories, mean CCC
for attributes). Items are read and padded one batch at a time, so a lazy feature store can back the data.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn
from torch.utils.data import DataLoader

from emojudge_models.features.frame_stats import FrameStats
from emojudge_models.models.heads import (
    AudioEmotionModel,
    EnsembleEmotionModel,
    HeadConfig,
    VectorEmotionModel,
    output_dim,
)
from emojudge_models.models.losses import CCCLoss, WeightedFocalLoss, ccc, class_alpha
from emojudge_models.settings import default

BUCKET_BATCHES = 50
"""Shuffled chunks of this many batches are sorted by length before batching: little padding, still random."""

EpochCallback = Callable[[int, dict[str, float]], None]
Batch = tuple[list[int], dict[str, torch.Tensor], torch.Tensor | None]
"""(dataset indices, model keyword inputs, targets or None)."""


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Optimisation hyperparameters shared by every trainer.

    ``focal_gamma``/``class_balance`` apply to categorical tasks, ``attention_l2_weight`` to attentive pooling,
    ``warmup_ratio`` to the fine-tuned text model, ``num_workers`` (DataLoader processes) to frame reading.
    ``lr``, ``max_epochs`` and ``patience`` default to the head settings (EMOJUDGE_HEAD_LR, ...).
    """

    lr: float = default("head_lr")
    weight_decay: float = 0.01
    batch_size: int = 32
    max_epochs: int = default("max_epochs")
    patience: int = default("patience")
    grad_accum_steps: int = 1
    warmup_ratio: float = 0.0
    max_grad_norm: float | None = None
    focal_gamma: float = 2.0
    class_balance: bool = True
    attention_l2_weight: float = 1e-4
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_epochs < 1 or self.patience < 1 or self.grad_accum_steps < 1:
            raise ValueError(f"batch_size, max_epochs, patience and grad_accum_steps must be >= 1, got {self}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must lie in [0, 1), got {self.warmup_ratio}")


@dataclass(frozen=True, kw_only=True)
class HeadTrainingConfig:
    """Everything that defines a trained head: its architecture and how it was optimised."""

    head: HeadConfig
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    """The model with its best-on-dev weights loaded (eval mode), per-epoch history and the selection."""

    model: nn.Module
    history: list[dict[str, float]]
    best_epoch: int
    dev_metric_name: str
    dev_metric: float


def dev_metric_name(task: str) -> str:
    """The development metric that selects checkpoints: f1_macro (categorical) or ccc_mean (attributes)."""
    output_dim(task)
    return "f1_macro" if task == "categorical" else "ccc_mean"


def dev_metric(task: str, outputs: np.ndarray, targets: np.ndarray) -> float:
    """F1-macro over the classes in targets or predictions (as metrics.py), or CCC averaged over attributes."""
    if task == "categorical":
        predictions = outputs.argmax(axis=1)
        return float(f1_score(targets, predictions, average="macro", zero_division=0))
    return float(ccc(torch.from_numpy(outputs), torch.from_numpy(targets)).mean())


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed Python, NumPy and torch, and use deterministic algorithms (warn-only) until the block exits."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


def autocast(device: torch.device) -> torch.autocast:
    """bf16 autocast on CUDA; a no-op context elsewhere (CPU runs stay float32 and reproducible)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


class _Indexed(torch.utils.data.Dataset):
    """Yields (index, item) so collate functions can name bad items and predictions can be put back in order."""

    def __init__(self, items: Sequence[Any]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return index, self.items[index]


@dataclass
class BatchPlan:
    """Length-aware batches over a sequence of items, collated lazily by a DataLoader."""

    items: Sequence[Any]
    lengths: np.ndarray
    batch_size: int
    collate: Callable[[list[tuple[int, Any]]], Batch]
    num_workers: int = 0

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def _loader(self, batches: list[list[int]]) -> DataLoader:
        return DataLoader(
            _Indexed(self.items), batch_sampler=batches, collate_fn=self.collate, num_workers=self.num_workers
        )

    def shuffled(self, seed: int, epoch: int) -> DataLoader:
        """Random batches of similar length, a fixed function of (seed, epoch)."""
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(self.lengths))
        chunk = self.batch_size * BUCKET_BATCHES
        batches: list[list[int]] = []
        for start in range(0, len(order), chunk):
            part = order[start : start + chunk]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            batches += [part[i : i + self.batch_size].tolist() for i in range(0, len(part), self.batch_size)]
        return self._loader([batches[i] for i in rng.permutation(len(batches))])

    def ordered(self) -> DataLoader:
        """Batches sorted by length, for evaluation and prediction."""
        order = np.argsort(self.lengths, kind="stable")
        return self._loader([order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)])


def _target_array(targets: list[Any], task: str) -> torch.Tensor:
    if task == "categorical":
        return torch.as_tensor(np.asarray(targets, dtype=np.int64))
    return torch.as_tensor(np.stack([np.asarray(t, dtype=np.float32) for t in targets]))


def check_target(target: Any, task: str, where: str) -> None:
    """Raise naming ``where`` when a target is not a class index (categorical) or 3 finite floats (attributes)."""
    n_outputs = output_dim(task)
    if task == "categorical":
        if isinstance(target, bool) or not isinstance(target, int | np.integer) or not 0 <= target < n_outputs:
            raise ValueError(f"{where}: categorical target must be a class index in [0, {n_outputs}), got {target!r}")
        return
    values = np.asarray(target, dtype=np.float64)
    if values.shape != (n_outputs,) or not np.isfinite(values).all():
        raise ValueError(f"{where}: attribute target must be {n_outputs} finite floats, got {target!r}")


def _item_frames(item: Any) -> np.ndarray:
    return item[0] if isinstance(item, tuple) else item


def _check_frames(frames: Any, input_dim: int, where: str) -> None:
    if not isinstance(frames, np.ndarray) or frames.ndim != 2:
        raise ValueError(f"{where}: frames must be a 2-D (T, D) array, got {type(frames).__name__}")
    if frames.shape[0] < 1 or frames.shape[1] != input_dim:
        raise ValueError(f"{where}: frames have shape {frames.shape}; need T >= 1 and D = {input_dim}")


def collate_frames(input_dim: int, task: str | None) -> Callable[[list[tuple[int, Any]]], Batch]:
    """Collate (frames, target) items (or bare frames when ``task`` is None) into zero-padded float32 frames
    (B, T_max, D) and a boolean mask (B, T_max), True on real frames."""

    def collate(batch: list[tuple[int, Any]]) -> Batch:
        indices = [index for index, _ in batch]
        arrays = [_item_frames(item) for _, item in batch]
        for index, frames in zip(indices, arrays, strict=True):
            _check_frames(frames, input_dim, f"item {index}")
        lengths = [len(frames) for frames in arrays]
        padded = np.zeros((len(arrays), max(lengths), input_dim), dtype=np.float32)
        mask = np.zeros((len(arrays), max(lengths)), dtype=bool)
        for row, frames in enumerate(arrays):
            padded[row, : len(frames)] = frames
            mask[row, : len(frames)] = True
        inputs = {"frames": torch.from_numpy(padded), "mask": torch.from_numpy(mask)}
        targets = None if task is None else _target_array([item[1] for _, item in batch], task)
        return indices, inputs, targets

    return collate


def collate_vectors(task: str | None) -> Callable[[list[tuple[int, Any]]], Batch]:
    """Collate (vector, target) items (or bare vectors when ``task`` is None) into float32 (B, D)."""

    def collate(batch: list[tuple[int, Any]]) -> Batch:
        indices = [index for index, _ in batch]
        vectors = np.stack([np.asarray(_item_frames(item), dtype=np.float32) for _, item in batch])
        targets = None if task is None else _target_array([item[1] for _, item in batch], task)
        return indices, {"vectors": torch.from_numpy(vectors)}, targets

    return collate


def _to_device(inputs: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {name: tensor.to(device, non_blocking=True) for name, tensor in inputs.items()}


def run_inference(
    model: nn.Module, batches: Iterable[Batch], device: torch.device, n_outputs: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Model outputs (float32) over all batches and their targets (or None), put back in dataset order."""
    model.eval()
    indices: list[int] = []
    outputs: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    with torch.inference_mode(), autocast(device):
        for batch_indices, inputs, batch_targets in batches:
            indices += batch_indices
            outputs.append(model(**_to_device(inputs, device)).float().cpu().numpy())
            if batch_targets is not None:
                targets.append(batch_targets.numpy())
    if not outputs:
        return np.zeros((0, n_outputs), dtype=np.float32), None
    order = np.argsort(np.asarray(indices), kind="stable")
    return np.concatenate(outputs)[order], np.concatenate(targets)[order] if targets else None


def task_loss(task: str, train_targets: Sequence[int], config: TrainConfig) -> nn.Module:
    """Weighted focal loss (alpha from train frequencies when class_balance) or the CCC loss."""
    if task == "attributes":
        return CCCLoss()
    alpha = class_alpha(np.asarray(train_targets), output_dim(task)) if config.class_balance else None
    return WeightedFocalLoss(alpha=alpha, gamma=config.focal_gamma)


def fit(
    model: nn.Module,
    *,
    task: str,
    train: BatchPlan,
    dev: BatchPlan,
    loss_fn: nn.Module,
    config: TrainConfig,
    device: torch.device,
    seed: int,
    on_epoch: EpochCallback | None = None,
    penalty: Callable[[], torch.Tensor] | None = None,
    scheduler_factory: Callable[[torch.optim.Optimizer, int], torch.optim.lr_scheduler.LRScheduler] | None = None,
) -> TrainResult:
    """Train ``model`` with AdamW, keep the weights of the best development epoch, stop after ``patience``
    epochs without improvement. Epochs are numbered from 1; ``on_epoch(epoch, metrics)`` sees each one."""
    model.to(device)
    loss_fn.to(device)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay
    )
    steps_per_epoch = math.ceil(len(train) / config.grad_accum_steps)
    scheduler = scheduler_factory(optimizer, steps_per_epoch * config.max_epochs) if scheduler_factory else None
    metric_name = dev_metric_name(task)
    history: list[dict[str, float]] = []
    best_metric, best_epoch, best_state = -math.inf, 0, None
    for epoch in range(1, config.max_epochs + 1):
        started = time.perf_counter()
        model.train()
        optimizer.zero_grad(set_to_none=True)
        losses: list[float] = []
        batches = train.shuffled(seed, epoch)
        for step, (_, inputs, targets) in enumerate(batches, start=1):
            with autocast(device):
                loss = loss_fn(model(**_to_device(inputs, device)), targets.to(device))
                if penalty is not None:
                    loss = loss + penalty()
            losses.append(loss.item())
            if not math.isfinite(losses[-1]):
                raise FloatingPointError(f"training loss became {losses[-1]} at epoch {epoch}, batch {step}")
            (loss / config.grad_accum_steps).backward()
            if step % config.grad_accum_steps == 0 or step == len(train):
                if config.max_grad_norm is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if scheduler is not None:
                    scheduler.step()
        outputs, dev_targets = run_inference(model, dev.ordered(), device, output_dim(task))
        metric = dev_metric(task, outputs, dev_targets)
        if not math.isfinite(metric):
            raise FloatingPointError(f"development {metric_name} became {metric} at epoch {epoch}")
        metrics = {
            "train_loss": float(np.mean(losses)),
            "dev_metric": metric,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - started,
        }
        history.append({"epoch": epoch, **metrics})
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        if metric > best_metric:
            best_metric, best_epoch = metric, epoch
            best_state = {name: value.detach().to("cpu", copy=True) for name, value in model.state_dict().items()}
        elif epoch - best_epoch >= config.patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(model, history, best_epoch, metric_name, best_metric)


def _scan(
    items: Sequence[Any], input_dim: int, task: str, name: str, stats: FrameStats | None = None
) -> tuple[np.ndarray, list[Any]]:
    """One validating pass over (frames, target) items: frame counts and targets (and ``stats``), frames not kept."""
    if len(items) == 0:
        raise ValueError(f"the {name} set is empty")
    lengths = np.empty(len(items), dtype=np.int64)
    targets = []
    for index in range(len(items)):
        frames, target = items[index]
        _check_frames(frames, input_dim, f"{name} item {index}")
        check_target(target, task, f"{name} item {index}")
        lengths[index] = len(frames)
        targets.append(target)
        if stats is not None:
            stats.add(frames)
    return lengths, targets


def train_audio_head(
    train: Sequence[tuple[np.ndarray, Any]],
    dev: Sequence[tuple[np.ndarray, Any]],
    config: HeadTrainingConfig,
    device: torch.device | str,
    seed: int,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train an AudioEmotionModel on (frames (T, D), target) items; target: class index or 3 attributes."""
    device = torch.device(device)
    head, hyper = config.head, config.train
    if head.pooling == "none":
        raise ValueError("train_audio_head pools frames; pooling 'none' is for train_text_head")
    stats = FrameStats()
    train_lengths, train_targets = _scan(train, head.input_dim, head.task, "train", stats)
    dev_lengths, _ = _scan(dev, head.input_dim, head.task, "development")
    collate = collate_frames(head.input_dim, head.task)
    with seeded(seed, device):
        model = AudioEmotionModel(head)
        model.standardizer.fit(*stats.mean_std())

        def penalty() -> torch.Tensor:
            return hyper.attention_l2_weight * model.attention_l2()

        return fit(
            model,
            task=head.task,
            train=BatchPlan(train, train_lengths, hyper.batch_size, collate, hyper.num_workers),
            dev=BatchPlan(dev, dev_lengths, hyper.batch_size, collate, hyper.num_workers),
            loss_fn=task_loss(head.task, train_targets, hyper),
            config=hyper,
            device=device,
            seed=seed,
            on_epoch=on_epoch,
            penalty=penalty if head.pooling == "attentive" and hyper.attention_l2_weight > 0 else None,
        )


class Pairs(Sequence[tuple[Any, Any]]):
    """(input, target) pairs over N inputs (vectors, texts) and N targets, without copying either."""

    def __init__(self, inputs: Sequence[Any], targets: Sequence[Any]) -> None:
        self.inputs, self.targets = inputs, targets

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> tuple[Any, Any]:  # type: ignore[override]
        return self.inputs[index], self.targets[index]


def _vector_plan(
    vectors: np.ndarray, targets: Sequence[Any], head: HeadConfig, hyper: TrainConfig, name: str
) -> BatchPlan:
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[1] != head.input_dim or len(vectors) != len(targets) or not len(vectors):
        raise ValueError(
            f"{name} vectors must be a non-empty (N, {head.input_dim}) array with N targets, "
            f"got {vectors.shape} and {len(targets)} targets"
        )
    for index, target in enumerate(targets):
        check_target(target, head.task, f"{name} item {index}")
    lengths = np.ones(len(vectors), dtype=np.int64)
    return BatchPlan(Pairs(vectors, list(targets)), lengths, hyper.batch_size, collate_vectors(head.task))


def train_text_head(
    train_vectors: np.ndarray,
    train_targets: Sequence[Any],
    dev_vectors: np.ndarray,
    dev_targets: Sequence[Any],
    config: HeadTrainingConfig,
    device: torch.device | str,
    seed: int,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train a head (linear when n_hidden_layers=0, else residual MLP) on cached utterance vectors (N, D).

    The cheap CPU alternative to fine-tuning the text encoder; also fits audio heads on cached mean ++ std.
    """
    device = torch.device(device)
    head, hyper = config.head, config.train
    if head.pooling != "none":
        raise ValueError(
            f"train_text_head takes utterance vectors; config.head.pooling must be 'none', got {head.pooling!r}"
        )
    train_plan = _vector_plan(train_vectors, train_targets, head, hyper, "train")
    dev_plan = _vector_plan(dev_vectors, dev_targets, head, hyper, "development")
    with seeded(seed, device):
        model = VectorEmotionModel(head)
        vectors = np.asarray(train_vectors, dtype=np.float64)
        model.standardizer.fit(vectors.mean(axis=0), vectors.std(axis=0))
        return fit(
            model,
            task=head.task,
            train=train_plan,
            dev=dev_plan,
            loss_fn=task_loss(head.task, list(train_targets), hyper),
            config=hyper,
            device=device,
            seed=seed,
            on_epoch=on_epoch,
        )


def predict_audio(
    model: AudioEmotionModel | EnsembleEmotionModel,
    items: Sequence[Any],
    device: torch.device | str,
    batch_size: int = 32,
    lengths: Sequence[int] | None = None,
) -> np.ndarray:
    """Outputs (N, 8 | 3) for frames arrays (or (frames, target) items), in input order.

    With ``lengths`` (frame counts, e.g. from the feature index) batches group similar lengths; without,
    items are read once, in order.
    """
    device = torch.device(device)
    model.to(device)
    order = np.zeros(len(items), dtype=np.int64) if lengths is None else np.asarray(lengths, dtype=np.int64)
    plan = BatchPlan(items, order, batch_size, collate_frames(model.config.input_dim, task=None))
    return run_inference(model, plan.ordered(), device, output_dim(model.config.task))[0]


def predict_vectors(
    model: VectorEmotionModel, vectors: np.ndarray, device: torch.device | str, batch_size: int = 256
) -> np.ndarray:
    """Outputs (N, 8 | 3) of a vector head on utterance vectors (N, D), in input order."""
    device = torch.device(device)
    model.to(device)
    plan = BatchPlan(np.asarray(vectors), np.ones(len(vectors), dtype=np.int64), batch_size, collate_vectors(None))
    return run_inference(model, plan.ordered(), device, output_dim(model.config.task))[0]
