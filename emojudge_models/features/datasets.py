"""Training and scoring data read from the feature store: frames or vectors with their targets.

Frames are held as float16 (half the memory of float32); one evaluation set's split is read shard by shard.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from emojudge_models.features.speaker_norm import MIN_SPEAKER_UTTERANCES, SpeakerNormaliser
from emojudge_models.features.store import FeatureStore
from emojudge_models.labels import ATTRIBUTES, EMOTIONS
from emojudge_models.store.warehouse import sql_text


@dataclass
class SplitData:
    """Rows of one split with targets (class index or 3 attributes) aligned to ``frames``/``vectors``."""

    rows: pd.DataFrame
    targets: list

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def utterance_ids(self) -> list[str]:
        return self.rows["utterance_id"].tolist()


def labelled_rows(
    con: duckdb.DuckDBPyConnection, eval_sets: list[str], split: str, encoder_key: str, task: str
) -> SplitData:
    """Labelled utterances of ``split`` in ``eval_sets`` that have features under ``encoder_key``."""
    rows = con.execute(sql_text("features/labelled_features.sql"), [encoder_key, eval_sets, split]).df()
    if task == "categorical":
        rows = rows[rows["emotion"].isin(EMOTIONS)].reset_index(drop=True)
        targets = [EMOTIONS.index(e) for e in rows["emotion"]]
    else:
        rows = rows[rows[list(ATTRIBUTES)].notna().all(axis=1)].reset_index(drop=True)
        targets = list(rows[list(ATTRIBUTES)].to_numpy(dtype=np.float32))
    return SplitData(rows, targets)


def frames_for(store: FeatureStore, rows: pd.DataFrame, encoder_key: str) -> list[np.ndarray]:
    """float16 frames for ``rows`` (eval_set, utterance_id), in row order."""
    found: dict[tuple[str, str], np.ndarray] = {}
    for eval_set, part in rows.groupby("eval_set", sort=False):
        for utterance_id, frames in store.read_frames(eval_set, part["utterance_id"].tolist(), encoder_key):
            found[(eval_set, utterance_id)] = frames
    return [found[(e, u)] for e, u in zip(rows["eval_set"], rows["utterance_id"], strict=True)]


def vectors_for(store: FeatureStore, rows: pd.DataFrame, encoder_key: str) -> np.ndarray:
    """float32 utterance vectors for ``rows``, in row order."""
    parts = []
    for eval_set, part in rows.groupby("eval_set", sort=False):
        _, matrix = store.read_vectors(eval_set, part["utterance_id"].tolist(), encoder_key)
        parts.append(
            pd.DataFrame(
                {"key": list(zip([eval_set] * len(part), part["utterance_id"], strict=True)), "vector": list(matrix)}
            )
        )
    table = pd.concat(parts).set_index("key")["vector"]
    return np.stack([table[(e, u)] for e, u in zip(rows["eval_set"], rows["utterance_id"], strict=True)])


def speaker_normaliser(
    store: FeatureStore,
    eval_sets: list[str],
    encoder_key: str,
    min_utterances: int = MIN_SPEAKER_UTTERANCES,
) -> SpeakerNormaliser:
    """Per-speaker frame statistics over every utterance of ``eval_sets`` with features under ``encoder_key``
    (labels are not used, so test speakers are normalised by their own speech).

    Built from the stored utterance vectors (mean ++ std of each clip's frames) and frame counts, which determine
    the pooled statistics exactly: no frame is read."""
    rows = store.speaker_rows(eval_sets, encoder_key)
    normaliser = SpeakerNormaliser.for_rows(rows, min_utterances)
    for eval_set, part in rows.groupby("eval_set", sort=False):
        ids, vectors = store.read_vectors(eval_set, part["utterance_id"].tolist(), encoder_key)
        dim = vectors.shape[1] // 2
        for utterance_id, n_frames, vector in zip(ids, part["n_frames"], vectors, strict=True):
            normaliser.add_pooled((eval_set, utterance_id), int(n_frames), vector[:dim], vector[dim:])
    return normaliser
