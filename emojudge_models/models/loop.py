"""The generic training loop every trainer hands its batches and model to.

:func:`fit`: AdamW, optional warm-up schedule and gradient accumulation, bf16 autocast on CUDA only, model
selection and early stopping on the development metric (F1-macro for categories, mean CCC for attributes).
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn

from emojudge_models.heap import pin_mmap_threshold
from emojudge_models.models.batches import Batch, BatchPlan, StreamPlan
from emojudge_models.models.heads import output_dim
from emojudge_models.models.losses import CCCLoss, WeightedFocalLoss, ccc, class_alpha
from emojudge_models.settings import default

EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Optimisation hyperparameters shared by every trainer.

    ``focal_gamma``/``class_balance`` apply to categorical tasks, ``attention_l2_weight`` to attentive pooling,
    ``warmup_ratio`` to the fine-tuned text model, ``num_workers`` (DataLoader processes) to frame reading.
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


def _to_device(inputs: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {name: tensor.to(device, non_blocking=True) for name, tensor in inputs.items()}


def run_inference(
    model: nn.Module, batches: Iterable[Batch], device: torch.device, n_outputs: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Model outputs (float32) over all batches and their targets (or None), put back in dataset order."""
    model.eval()
    indices: list[np.ndarray] = []
    outputs: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    with torch.inference_mode(), autocast(device):
        for batch_indices, inputs, batch_targets in batches:
            indices.append(np.asarray(batch_indices, dtype=np.int64))
            outputs.append(model(**_to_device(inputs, device)).float().cpu().numpy())
            if batch_targets is not None:
                targets.append(batch_targets.numpy())
    if not outputs:
        return np.zeros((0, n_outputs), dtype=np.float32), None
    order = np.argsort(np.concatenate(indices), kind="stable")
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
    train: BatchPlan | StreamPlan,
    dev: BatchPlan | StreamPlan,
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
    pin_mmap_threshold()
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

    def update() -> None:
        if config.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if scheduler is not None:
            scheduler.step()

    for epoch in range(1, config.max_epochs + 1):
        started = time.perf_counter()
        model.train()
        optimizer.zero_grad(set_to_none=True)
        losses: list[float] = []
        step = 0
        for step, (_, inputs, targets) in enumerate(train.shuffled(seed, epoch), start=1):
            with autocast(device):
                loss = loss_fn(model(**_to_device(inputs, device)), targets.to(device))
                if penalty is not None:
                    loss = loss + penalty()
            losses.append(loss.item())
            if not math.isfinite(losses[-1]):
                raise FloatingPointError(f"training loss became {losses[-1]} at epoch {epoch}, batch {step}")
            (loss / config.grad_accum_steps).backward()
            if step % config.grad_accum_steps == 0:
                update()
        if step % config.grad_accum_steps:
            update()
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
