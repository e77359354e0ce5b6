"""Trainers for the emotion heads: an audio head on frames (in memory or streamed from the feature store), a head
on cached utterance vectors.

Each validates its items, builds length-aware batches (emojudge_models.models.batches) and the model, then hands
them to the generic loop (emojudge_models.models.loop.fit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from emojudge_models.features.frame_stats import FrameStats
from emojudge_models.features.streaming import FrameStream
from emojudge_models.models.batches import (
    BatchPlan,
    Pairs,
    StreamPlan,
    check_frames,
    check_target,
    collate_frames,
    collate_vectors,
)
from emojudge_models.models.heads import AudioEmotionModel, HeadConfig, VectorEmotionModel
from emojudge_models.models.loop import EpochCallback, TrainConfig, TrainResult, fit, seeded, task_loss

FrameItems = Sequence[tuple[np.ndarray, Any]] | FrameStream
"""(frames (T, D), target) items in memory, or a split streamed from the feature store."""


@dataclass(frozen=True, kw_only=True)
class HeadTrainingConfig:
    """Everything that defines a trained head: its architecture and how it was optimised."""

    head: HeadConfig
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _scan(
    items: Sequence[Any], input_dim: int, task: str, name: str, stats: FrameStats
) -> tuple[np.ndarray, list[Any]]:
    """One validating pass over (frames, target) items: frame counts and targets (and ``stats``), frames not kept."""
    if len(items) == 0:
        raise ValueError(f"the {name} set is empty")
    lengths = np.empty(len(items), dtype=np.int64)
    targets = []
    for index in range(len(items)):
        frames, target = items[index]
        check_frames(frames, input_dim, f"{name} item {index}")
        check_target(target, task, f"{name} item {index}")
        lengths[index] = len(frames)
        targets.append(target)
        stats.add(frames)
    return lengths, targets


def frame_input_dim(items: FrameItems) -> int:
    """The frame dimension of the first item."""
    return items.dim if isinstance(items, FrameStream) else int(items[0][0].shape[1])


def frame_plan(
    items: FrameItems, input_dim: int, task: str, batch_size: int, name: str, device: torch.device, num_workers: int = 0
) -> tuple[BatchPlan | StreamPlan, Sequence[Any], FrameStats]:
    """Batches over ``items``, their targets and the statistics of their frames.

    Items in memory get one validating pass (frames read once); a stream is checked from the index (frame counts,
    dims, targets) and brings statistics computed from the stored vectors, so no frame is read before training.
    """
    collate = collate_frames(input_dim, task)
    if isinstance(items, FrameStream):
        if len(items) == 0:
            raise ValueError(f"the {name} set is empty")
        items.check_dim(input_dim, name)
        for index, target in enumerate(items.targets):
            check_target(target, task, f"{name} item {index}")
        return (
            StreamPlan(items, batch_size, collate, pin_memory=device.type == "cuda"),
            items.targets,
            items.frame_stats,
        )
    stats = FrameStats()
    lengths, targets = _scan(items, input_dim, task, name, stats)
    return BatchPlan(items, lengths, batch_size, collate, num_workers), targets, stats


def train_audio_head(
    train: FrameItems,
    dev: FrameItems,
    config: HeadTrainingConfig,
    device: torch.device | str,
    seed: int,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train an AudioEmotionModel on (frames (T, D), target) items or a streamed split; target: class index or
    3 attributes."""
    device = torch.device(device)
    head, hyper = config.head, config.train
    if head.pooling == "none":
        raise ValueError("train_audio_head pools frames; pooling 'none' is for train_text_head")
    train_plan, train_targets, stats = frame_plan(
        train, head.input_dim, head.task, hyper.batch_size, "train", device, hyper.num_workers
    )
    dev_plan, _, _ = frame_plan(
        dev, head.input_dim, head.task, hyper.batch_size, "development", device, hyper.num_workers
    )
    with seeded(seed, device):
        model = AudioEmotionModel(head)
        model.standardizer.fit(*stats.mean_std())

        def penalty() -> torch.Tensor:
            return hyper.attention_l2_weight * model.attention_l2()

        return fit(
            model,
            task=head.task,
            train=train_plan,
            dev=dev_plan,
            loss_fn=task_loss(head.task, train_targets, hyper),
            config=hyper,
            device=device,
            seed=seed,
            on_epoch=on_epoch,
            penalty=penalty if head.pooling == "attentive" and hyper.attention_l2_weight > 0 else None,
        )


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
