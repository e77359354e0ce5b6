"""Length-bucketed batches for the trainers: items are read and padded one batch at a time, so a lazy feature
store can back the data; collate functions validate every item and name the bad one. :class:`BatchPlan` indexes a
sequence of items; :class:`StreamPlan` streams a feature-store split shard by shard (features/streaming.py)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from emojudge_models.features.streaming import FrameStream
from emojudge_models.models.heads import output_dim

BUCKET_BATCHES = 50
"""Shuffled chunks of this many batches are sorted by length before batching: little padding, still random."""

Batch = tuple[list[int], dict[str, torch.Tensor], torch.Tensor | None]
"""(dataset indices, model keyword inputs, targets or None)."""


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


@dataclass
class StreamPlan:
    """Length-aware batches streamed from a :class:`FrameStream` by its DataLoader workers, pinned for CUDA.

    ``len`` is ceil(N / batch_size); an epoch may yield a few more, smaller batches (one per emptied buffer per
    worker at most)."""

    stream: FrameStream
    batch_size: int
    collate: Callable[[list[tuple[int, Any]]], Batch]
    pin_memory: bool = False

    def __len__(self) -> int:
        return math.ceil(len(self.stream) / self.batch_size)

    def _loader(self, seed: list[int] | None) -> DataLoader:
        return DataLoader(
            self.stream.batches(self.batch_size, self.collate, seed),
            batch_size=None,
            num_workers=self.stream.num_workers,
            pin_memory=self.pin_memory,
        )

    def shuffled(self, seed: int, epoch: int) -> DataLoader:
        """Shuffled shard order and buffers, a fixed function of (seed, epoch) (and the buffer size and workers)."""
        return self._loader([seed, epoch])

    def ordered(self) -> DataLoader:
        """Every item once, in storage order, batched by length within each buffer: for evaluation."""
        return self._loader(None)


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


def check_frames(frames: Any, input_dim: int, where: str) -> None:
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
            check_frames(frames, input_dim, f"item {index}")
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


class Pairs(Sequence[tuple[Any, Any]]):
    """(input, target) pairs over N inputs (vectors, texts) and N targets, without copying either."""

    def __init__(self, inputs: Sequence[Any], targets: Sequence[Any]) -> None:
        self.inputs, self.targets = inputs, targets

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> tuple[Any, Any]:  # type: ignore[override]
        return self.inputs[index], self.targets[index]
