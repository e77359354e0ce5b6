"""Training and scoring data read from the feature store: frames or vectors with their targets.

Frames are held as float16 (half the memory of float32); one evaluation set's split is read shard by shard.
Head training streams its frames (:func:`frame_stream`, see ``features/streaming.py``) instead of holding them.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from emojudge_models.features.frame_stats import FrameStats
from emojudge_models.features.speaker_norm import MIN_SPEAKER_UTTERANCES, SpeakerNormaliser
from emojudge_models.features.store import FeatureStore, MissingFeaturesError
from emojudge_models.features.streaming import FrameStream, Normalisation, shard_units
from emojudge_models.labels import ATTRIBUTES, EMOTIONS
from emojudge_models.settings import default
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
    the pooled statistics exactly: no frame is read, and vectors are read a record batch at a time."""
    rows = store.speaker_rows(eval_sets, encoder_key)
    normaliser = SpeakerNormaliser.for_rows(rows, min_utterances)
    for eval_set, part in rows.groupby("eval_set", sort=False):
        n_frames = dict(zip(part["utterance_id"], part["n_frames"], strict=True))
        for ids, vectors in store.iter_vectors(eval_set, encoder_key):
            keep = [i for i, utterance_id in enumerate(ids) if utterance_id in n_frames]
            dim = vectors.shape[1] // 2
            normaliser.add_pooled_many(
                [(eval_set, ids[i]) for i in keep],
                np.asarray([n_frames[ids[i]] for i in keep]),
                vectors[keep, :dim],
                vectors[keep, dim:],
            )
    return normaliser


def _normalisation(rows: pd.DataFrame, normaliser: SpeakerNormaliser) -> Normalisation:
    """Each row's normalisation group, as an index into the groups' stacked float32 means and stds."""
    index_of: dict[tuple[str, str], int] = {}
    first_keys: list[tuple[str, str]] = []
    groups = np.empty(len(rows), dtype=np.int32)
    for position, key in enumerate(zip(rows["eval_set"], rows["utterance_id"], strict=True)):
        group = normaliser.groups[key]
        if group not in index_of:
            index_of[group] = len(first_keys)
            first_keys.append(key)
        groups[position] = index_of[group]
    stats = [normaliser.stats(key) for key in first_keys]
    return Normalisation(groups, np.stack([m for m, _ in stats]), np.stack([s for _, s in stats]))


def _pooled_stats(
    store: FeatureStore, rows: pd.DataFrame, encoder_key: str, normalisation: Normalisation | None
) -> FrameStats:
    """Statistics of the rows' (normalised) frames from their stored mean ++ std vectors and frame counts: a
    group's normalisation maps an utterance's mean m and std s to (m - mean) / std and s / std."""
    stats = FrameStats()
    lengths = rows["n_frames"].to_numpy()
    for eval_set, part in rows.groupby("eval_set", sort=False):
        position = dict(zip(part["utterance_id"], part.index, strict=True))
        for ids, vectors in store.iter_vectors(eval_set, encoder_key):
            keep = [i for i, utterance_id in enumerate(ids) if utterance_id in position]
            items = np.asarray([position[ids[i]] for i in keep], dtype=np.int64)
            dim = vectors.shape[1] // 2
            mean, std = vectors[keep, :dim], vectors[keep, dim:]
            if normalisation is not None:
                group = normalisation.groups[items]
                mean = (mean - normalisation.means[group]) / normalisation.stds[group]
                std = std / normalisation.stds[group]
            if len(items):
                stats.add_pooled(lengths[items], mean, std)
    return stats


def _stream_targets(targets: list) -> np.ndarray:
    """Class indices (N,) int64 or attributes (N, 3) float32: compact, one array per split."""
    if targets and np.ndim(targets[0]) == 0:
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
    locations from the feature index (one short session per evaluation set), statistics from the stored vectors;
    no frame is read here."""
    rows = split.rows[["eval_set", "utterance_id"]].reset_index(drop=True)
    located = pd.concat(
        [
            store.frame_locations(eval_set, encoder_key).assign(eval_set=eval_set)
            for eval_set in rows["eval_set"].unique()
        ]
    )
    rows = rows.merge(located, on=["eval_set", "utterance_id"], how="left", validate="one_to_one")
    missing = rows[rows["file"].isna()]
    if len(missing):
        raise MissingFeaturesError(
            f"{len(missing)} utterance(s) of {sorted(missing['eval_set'].unique())} have no audio frames under "
            f"encoder {encoder_key} (first: {missing['utterance_id'].head(5).tolist()}); materialise the features first"
        )
    normalisation = None if normaliser is None else _normalisation(rows, normaliser)
    return FrameStream(
        store=store,
        utterance_ids=rows["utterance_id"].to_numpy(dtype=object),
        content_sha256=rows["content_sha256"].to_numpy(dtype=object),
        rows=rows["row"].to_numpy(dtype=np.int64),
        lengths=rows["n_frames"].to_numpy(dtype=np.int64),
        dims=rows["dim"].to_numpy(dtype=np.int64),
        targets=_stream_targets(split.targets),
        units=shard_units(store, rows["eval_set"], rows["file"], rows["row"].to_numpy(dtype=np.int64)),
        frame_stats=_pooled_stats(store, rows, encoder_key, normalisation),
        normalisation=normalisation,
        buffer_size=buffer_size,
        num_workers=num_workers,
    )
