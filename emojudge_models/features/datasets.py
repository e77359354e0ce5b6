"""Training and scoring data read from the feature store: frames or vectors with their targets.

Frames are held as float16 (half the memory of float32); one evaluation set's split is read shard by shard.
Head training streams its frames (:func:`frame_stream`, see ``features/streaming.py``) instead of holding them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from emojudge_models.features.frame_stats import FrameStats
from emojudge_models.features.speaker_norm import MIN_SPEAKER_UTTERANCES, SpeakerNormaliser
from emojudge_models.features.store import FeatureStore, MissingFeaturesError, arrow_rows
from emojudge_models.features.streaming import FrameStream, Normalisation, shard_units
from emojudge_models.labels import ATTRIBUTES, EMOTIONS
from emojudge_models.settings import default


@dataclass
class SplitData:
    """Rows of one split with targets aligned to them: class indices (N,) int64 or attributes (N, 3) float32 from
    :func:`labelled_rows` (any sequence of either is accepted)."""

    rows: pd.DataFrame
    targets: Sequence[Any]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def utterance_ids(self) -> list[str]:
        return self.rows["utterance_id"].tolist()


def labelled_rows(
    con: duckdb.DuckDBPyConnection, eval_sets: list[str], split: str, encoder_key: str, task: str
) -> SplitData:
    """Labelled utterances of ``split`` in ``eval_sets`` that have features under ``encoder_key``."""
    rows = arrow_rows(con, "features/labelled_features.sql", [encoder_key, eval_sets, split]).to_pandas()
    if task == "categorical":
        rows = rows[rows["emotion"].isin(EMOTIONS)].reset_index(drop=True)
        targets = pd.Categorical(rows["emotion"], categories=EMOTIONS).codes.astype(np.int64)
    else:
        rows = rows[rows[list(ATTRIBUTES)].notna().all(axis=1)].reset_index(drop=True)
        targets = rows[list(ATTRIBUTES)].to_numpy(dtype=np.float32)
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


def _items(rows: pd.DataFrame | pa.Table) -> pa.Table:
    """``rows``' keys numbered in row order (eval_set, utterance_id, item), to join with the store's tables in SQL."""
    return pa.table(
        {
            "eval_set": rows["eval_set"],
            "utterance_id": rows["utterance_id"],
            "item": np.arange(len(rows), dtype=np.int64),
        }
    )


def speaker_normaliser(
    store: FeatureStore,
    eval_sets: list[str],
    encoder_key: str,
    min_utterances: int = MIN_SPEAKER_UTTERANCES,
) -> SpeakerNormaliser:
    """Per-speaker frame statistics over every utterance of ``eval_sets`` with features under ``encoder_key``
    (labels are not used, so test speakers are normalised by their own speech).

    Built from the stored utterance vectors (mean ++ std of each clip's frames) and frame counts, which determine
    the pooled statistics exactly: no frame is read, vectors are read a record batch at a time and matched to the
    utterances in SQL."""
    rows = store.speaker_rows(eval_sets, encoder_key)
    normaliser = SpeakerNormaliser.for_rows(rows, min_utterances)
    n_frames = rows["n_frames"].to_numpy()
    for items, vectors in store.iter_item_vectors(_items(rows), encoder_key):
        dim = vectors.shape[1] // 2
        normaliser.add_pooled_at(items, n_frames[items], vectors[:, :dim], vectors[:, dim:])
    return normaliser


def _normalisation(rows: pd.DataFrame, normaliser: SpeakerNormaliser) -> Normalisation:
    """Each row's normalisation group, as an index into the groups' stacked float32 means and stds."""
    codes, groups = np.unique(normaliser.group_of(rows["eval_set"], rows["utterance_id"]), return_inverse=True)
    stats = [normaliser.group_stats(int(code)) for code in codes]
    return Normalisation(groups.astype(np.int32), np.stack([m for m, _ in stats]), np.stack([s for _, s in stats]))


def _pooled_stats(
    store: FeatureStore, items: pa.Table, lengths: np.ndarray, encoder_key: str, normalisation: Normalisation | None
) -> FrameStats:
    """Statistics of the items' (normalised) frames from their stored mean ++ std vectors and frame counts: a
    group's normalisation maps an utterance's mean m and std s to (m - mean) / std and s / std."""
    stats = FrameStats()
    for item, vectors in store.iter_item_vectors(items, encoder_key):
        dim = vectors.shape[1] // 2
        mean, std = vectors[:, :dim], vectors[:, dim:]
        if normalisation is not None:
            group = normalisation.groups[item]
            mean = (mean - normalisation.means[group]) / normalisation.stds[group]
            std = std / normalisation.stds[group]
        if len(item):
            stats.add_pooled(lengths[item], mean, std)
    return stats


def _stream_targets(targets: Sequence[Any]) -> np.ndarray:
    """Class indices (N,) int64 or attributes (N, 3) float32: compact, one array per split."""
    if len(targets) and np.ndim(targets[0]) == 0:
        return np.asarray(targets, dtype=np.int64)
    return np.asarray(targets, dtype=np.float32).reshape(len(targets), -1)


def frame_stream(
    store: FeatureStore,
    split: SplitData,
    encoder_key: str,
    normaliser: SpeakerNormaliser | None,
    buffer_size: int = default("shuffle_buffer"),
    num_workers: int = default("loader_workers"),
) -> FrameStream:
    """``split``'s frames as a :class:`FrameStream` (speaker-normalised on the fly when ``normaliser`` is given):
    locations from the feature index (joined to the split's rows in SQL, one short session), statistics from the
    stored vectors; no frame is read here, and nothing per utterance is kept as a Python object."""
    rows = split.rows.reset_index(drop=True)
    items = _items(rows)
    located = store.item_locations(items, encoder_key)
    found = np.zeros(len(rows), dtype=bool)
    found[located["item"].to_numpy()] = True
    if not found.all():
        absent = rows[~found]
        raise MissingFeaturesError(
            f"{len(absent)} utterance(s) of {sorted(absent['eval_set'].unique())} have no audio frames under "
            f"encoder {encoder_key} (first: {absent['utterance_id'].head(5).tolist()}); materialise the features first"
        )
    order = np.argsort(located["item"].to_numpy())

    def column(name: str) -> np.ndarray:
        return located[name].to_numpy()[order].astype(np.int64)

    lengths, shard_rows = column("n_frames"), column("row")
    normalisation = None if normaliser is None else _normalisation(rows, normaliser)
    return FrameStream(
        store=store,
        utterance_ids=items["utterance_id"].combine_chunks(),
        content_sha256=located["content_sha256"].take(order).combine_chunks(),
        rows=shard_rows,
        lengths=lengths,
        dims=column("dim"),
        targets=_stream_targets(split.targets),
        units=shard_units(store, items["eval_set"], located["file"].take(order), shard_rows),
        frame_stats=_pooled_stats(store, items, lengths, encoder_key, normalisation),
        normalisation=normalisation,
        buffer_size=buffer_size,
        num_workers=num_workers,
    )
