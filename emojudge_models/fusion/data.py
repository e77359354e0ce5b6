"""Turn warehouse logits into fusion inputs and targets (which rows fit and select the fusion: strategy.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from emojudge_models.fusion.models import fusion_features
from emojudge_models.labels import ATTRIBUTES, EMOTIONS


def _stacked(column: pd.Series, width: int) -> np.ndarray:
    """(N, width) float array of a list column; a missing list (NULL) is a row of NaN."""
    missing = np.full(width, np.nan)
    if len(column) == 0:
        return np.empty((0, width))
    return np.stack([np.asarray(v, dtype=np.float64) if _present(v) else missing for v in column])


def _present(value) -> bool:
    """A list of outputs (DuckDB gives lists or arrays; a missing one is None, NaN or pandas' NA)."""
    return isinstance(value, list | tuple | np.ndarray)


def present(frame: pd.DataFrame, modality: str) -> np.ndarray:
    """Boolean mask of the rows that have ``modality``'s logits."""
    return frame[f"{modality}_logits"].map(_present).to_numpy(dtype=bool)


def complete(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows with both modalities (what fits a two-modality fusion)."""
    return frame[present(frame, "audio") & present(frame, "text")]


def features(frame: pd.DataFrame) -> np.ndarray:
    """(N, a + t) fusion inputs from the ``audio_logits`` and ``text_logits`` list columns (NaN where missing)."""
    widths = [len(v) for col in ("audio_logits", "text_logits") for v in frame[col] if _present(v)]
    width = widths[0] if widths else 0
    return fusion_features(_stacked(frame["audio_logits"], width), _stacked(frame["text_logits"], width))


def targets(frame: pd.DataFrame, task: str) -> np.ndarray:
    """Class indices (categorical) or an (N, 3) attribute array."""
    if task == "categorical":
        return frame["emotion"].map(EMOTIONS.index).to_numpy()
    return frame[list(ATTRIBUTES)].to_numpy(dtype=np.float64)


def labelled(frame: pd.DataFrame, task: str) -> pd.DataFrame:
    if task == "categorical":
        return frame[frame["emotion"].notna()]
    return frame[frame[list(ATTRIBUTES)].notna().all(axis=1)]
