"""Turn warehouse logits into fusion inputs, and choose which rows fit the fusion and which select its C.

Two strategies (``FIT_STRATEGIES``):
- ``train`` (default): fit on the train split's logits, select C on the development split, refit on both. The
  heads have seen the train split, so its logits are somewhat over-confident; selecting C on held-out rows
  corrects the regularisation for that.
- ``development``: fit only on held-out logits: the development split is cut (seeded, stratified) into a fitting
  half and a selection half, then the chosen C is refitted on the whole development split. Cleaner, but needs a
  large development split.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

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


FIT_STRATEGIES = ("train", "development")


def selection_split(frame: pd.DataFrame, task: str, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded halves of the development rows (stratified by class where every class has two rows)."""
    stratify = None
    if task == "categorical" and frame["emotion"].value_counts().min() >= 2:
        stratify = frame["emotion"]
    fit, select = train_test_split(frame, test_size=0.5, random_state=seed, stratify=stratify)
    return fit, select
