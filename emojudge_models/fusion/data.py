"""Turn warehouse logits into fusion inputs and targets (which rows fit and select the fusion: strategy.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from emojudge_models.fusion.models import fusion_features
from emojudge_models.labels import ATTRIBUTES, EMOTIONS


def features(frame: pd.DataFrame) -> np.ndarray:
    """(N, a + t) fusion inputs from the ``audio_logits`` and ``text_logits`` list columns."""
    return fusion_features(np.stack(frame["audio_logits"].to_numpy()), np.stack(frame["text_logits"].to_numpy()))


def targets(frame: pd.DataFrame, task: str) -> np.ndarray:
    """Class indices (categorical) or an (N, 3) attribute array."""
    if task == "categorical":
        return frame["emotion"].map(EMOTIONS.index).to_numpy()
    return frame[list(ATTRIBUTES)].to_numpy(dtype=np.float64)


def labelled(frame: pd.DataFrame, task: str) -> pd.DataFrame:
    if task == "categorical":
        return frame[frame["emotion"].notna()]
    return frame[frame[list(ATTRIBUTES)].notna().all(axis=1)]
