"""Streaming per-dimension mean and std over frames (T, D), accumulated one utterance at a time (from its frames
or from its pooled mean, std and frame count)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class FrameStats:
    """Per-dimension sums over every frame seen: the heads' input standardisation and speaker normalisation."""

    count: int = 0
    total: np.ndarray | None = None
    total_sq: np.ndarray | None = None

    def add(self, frames: np.ndarray) -> None:
        values = np.asarray(frames, dtype=np.float64)
        if self.total is None:
            self.total, self.total_sq = np.zeros(values.shape[1]), np.zeros(values.shape[1])
        self.count += len(values)
        self.total += values.sum(axis=0)
        self.total_sq += np.square(values).sum(axis=0)

    def add_pooled(self, n_frames: int | np.ndarray, mean: np.ndarray, std: np.ndarray) -> None:
        """Accumulate an utterance known only by its frame count and per-dimension mean and (population) std, or
        several at once (``n_frames`` (K,), ``mean`` and ``std`` (K, D))."""
        mean, std = np.atleast_2d(np.asarray(mean, dtype=np.float64)), np.atleast_2d(np.asarray(std, dtype=np.float64))
        counts = np.asarray(n_frames, dtype=np.float64).reshape(-1, 1)
        if self.total is None:
            self.total, self.total_sq = np.zeros(mean.shape[1]), np.zeros(mean.shape[1])
        self.count += int(counts.sum())
        self.total += (counts * mean).sum(axis=0)
        self.total_sq += (counts * (np.square(std) + np.square(mean))).sum(axis=0)

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        mean = self.total / max(self.count, 1)
        return mean, np.sqrt(np.maximum(self.total_sq / max(self.count, 1) - mean**2, 0.0))
