"""Model outputs for frames or utterance vectors, in input order (what the logits asset stores)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from emojudge_models.models.batches import BatchPlan, collate_frames, collate_vectors
from emojudge_models.models.heads import AudioEmotionModel, EnsembleEmotionModel, VectorEmotionModel, output_dim
from emojudge_models.models.linear_probe import LinearProbeModel
from emojudge_models.models.loop import run_inference


def predict_audio(
    model: AudioEmotionModel | EnsembleEmotionModel | LinearProbeModel,
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
