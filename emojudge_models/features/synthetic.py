"""A synthetic feature store of any size, for scale benchmarks and memory tests (bench/bench_scale.py).

Utterances of one evaluation set, split 70/15/15 into train/development/test, with a class, three attributes and a
speaker each; small float16 frames (class mean + speaker offset + noise, so heads can learn and speaker
normalisation matters) stored exactly as the extraction writes them: Parquet shards, pooled mean ++ std vectors,
``feature_index`` and ``utterances`` rows. Built chunk by chunk, so building it needs little memory either.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from emojudge_models.features.store import FRAME_DTYPE, FeatureStore
from emojudge_models.home import HomeLayout
from emojudge_models.labels import EMOTIONS
from emojudge_models.store import warehouse

ENCODER_KEY = "synthetic"
EVAL_SET = "synthetic"
SPLITS = ("train", "development", "test")


@dataclass(frozen=True)
class SyntheticStore:
    store: FeatureStore
    encoder_key: str
    eval_set: str
    n_utterances: int


def synthetic_store(home: Path) -> FeatureStore:
    """The feature store (and warehouse) under ``home``, as :func:`build_synthetic_store` lays it out."""
    return FeatureStore(functools.partial(warehouse.connect, Path(home)), HomeLayout(home).features)


def _chunk(start: int, n: int, dim: int, speakers: int, max_frames: int, rng: np.random.Generator) -> dict:
    labels = rng.integers(0, len(EMOTIONS), size=n)
    speaker = rng.integers(0, speakers, size=n)
    lengths = rng.integers(max(1, max_frames // 4), max_frames + 1, size=n)
    class_means = np.random.default_rng(1).normal(0.0, 1.0, size=(len(EMOTIONS), dim))
    offsets = np.random.default_rng(2).normal(0.0, 3.0, size=(speakers, dim))
    centres = np.repeat(class_means[labels] + offsets[speaker], lengths, axis=0)
    frames = (centres + rng.normal(0.0, 1.0, size=centres.shape)).astype(FRAME_DTYPE)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    as32 = frames.astype(np.float32)
    means = np.add.reduceat(as32, starts, axis=0) / lengths[:, None]
    squares = np.add.reduceat(np.square(as32), starts, axis=0) / lengths[:, None]
    stds = np.sqrt(np.maximum(squares - np.square(means), 0.0))
    ids = [f"u{start + i:07d}" for i in range(n)]
    return {
        "ids": ids,
        "hashes": [hashlib.sha256(f"synthetic-{dim}-{u}".encode()).hexdigest() for u in ids],
        "labels": labels,
        "speakers": speaker,
        "matrices": np.split(frames, np.cumsum(lengths)[:-1]),
        "vectors": np.concatenate([means, stds], axis=1).astype(np.float32),
        "split": np.asarray(SPLITS)[np.searchsorted([0.7, 0.85], rng.random(n), side="right")],
    }


def build_synthetic_store(
    home: Path,
    n_utterances: int,
    *,
    dim: int = 8,
    max_frames: int = 100,
    speakers: int = 200,
    shard_utterances: int = 2000,
    eval_set: str = EVAL_SET,
    seed: int = 0,
) -> SyntheticStore:
    """A warehouse and feature store under ``home`` holding ``n_utterances`` synthetic utterances (see the module)."""
    store = synthetic_store(home)
    rng = np.random.default_rng(seed)
    index, utterances, hashes, vectors = [], [], [], []
    for start in range(0, n_utterances, shard_utterances):
        chunk = _chunk(start, min(shard_utterances, n_utterances - start), dim, speakers, max_frames, rng)
        stored = store.write_shard(ENCODER_KEY, list(zip(chunk["hashes"], chunk["matrices"], strict=True)))
        hashes += chunk["hashes"]
        vectors.append(chunk["vectors"])
        index.append(
            pd.DataFrame(
                {
                    "utterance_id": chunk["ids"],
                    "modality": "audio",
                    "encoder_key": ENCODER_KEY,
                    "content_sha256": chunk["hashes"],
                    "n_frames": [s.n_frames for s in stored],
                    "dim": dim,
                    "dtype": FRAME_DTYPE,
                    "file": [s.file for s in stored],
                    "row": [s.row for s in stored],
                    "run_id": "synthetic",
                }
            )
        )
        labels = chunk["labels"]
        utterances.append(
            pd.DataFrame(
                {
                    "utterance_id": chunk["ids"],
                    "split": chunk["split"],
                    "emotion": np.asarray(EMOTIONS)[labels],
                    "arousal": 1.0 + labels % 7,
                    "valence": 1.0 + (labels * 3) % 7,
                    "dominance": 1.0 + (labels * 5) % 7,
                    "speaker_id": [f"spk{s}" for s in chunk["speakers"]],
                    "audio_path": [f"{u}.wav" for u in chunk["ids"]],
                    "audio_sha256": chunk["hashes"],
                    "duration_s": [len(m) / 50.0 for m in chunk["matrices"]],
                    "sample_rate_hz": 16000,
                    "channels": 1,
                    "run_id": "synthetic",
                }
            )
        )
    store.add_vectors(ENCODER_KEY, "audio", hashes, np.concatenate(vectors))
    with store.connect() as con:
        warehouse.replace_partition(con, "utterances", eval_set, pd.concat(utterances, ignore_index=True))
        warehouse.replace_partition(
            con,
            "feature_index",
            eval_set,
            pd.concat(index, ignore_index=True),
            where={"modality": "audio", "encoder_key": ENCODER_KEY},
        )
    return SyntheticStore(store, ENCODER_KEY, eval_set, n_utterances)
