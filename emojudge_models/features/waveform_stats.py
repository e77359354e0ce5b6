"""Train-set waveform mean and standard deviation, and the (wave - mean) / std normalisation that uses them.

The paper normalises every waveform with the training set's sample statistics before the speech encoder.
The statistics' key joins the encoder spec, so features computed with other statistics are another cache entry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from emojudge_models.encoders.base import AudioEncoder
from emojudge_models.episodes.sources import load_audio
from emojudge_models.features.loader import BackgroundLoader
from emojudge_models.ingest.audio import DEFAULT_MAX_DURATION_S
from emojudge_models.store.warehouse import sql_text

STATS_VERSION = "1"
PATHS_PER_BATCH = 16


@dataclass(frozen=True)
class WaveformStats:
    """Sample mean/std over ``n_clips`` decoded clips; ``rejected`` lists (path, reason) of clips left out."""

    mean: float
    std: float
    n_clips: int
    n_samples: int
    stats_key: str
    rejected: tuple[tuple[str, str], ...] = ()


def stats_key_of(mean: float, std: float, n_clips: int, n_samples: int) -> str:
    """Key naming the statistics by their values, so equal statistics share features."""
    blob = json.dumps(
        {"version": STATS_VERSION, "mean": repr(mean), "std": repr(std), "n_clips": n_clips, "n_samples": n_samples},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def compute_waveform_stats(
    paths: Iterable[Path | str],
    workers: int = 2,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
) -> WaveformStats:
    """Streamed over the clips (one batch of decoded audio in memory at a time), merged with Chan's formula."""
    path_list = [str(p) for p in paths]
    batches = [path_list[i : i + PATHS_PER_BATCH] for i in range(0, len(path_list), PATHS_PER_BATCH)]
    count, mean, m2 = 0, 0.0, 0.0
    n_clips = 0
    rejected: list[tuple[str, str]] = []
    with BackgroundLoader(batches, lambda p: load_audio(p, max_duration_s), workers=workers) as loader:
        for loaded in loader:
            rejected.extend(loaded.failures)
            for wave in loaded.waves:
                samples = wave.astype(np.float64)
                clip_count = samples.size
                clip_mean = float(samples.mean())
                clip_m2 = float(np.square(samples - clip_mean).sum())
                delta = clip_mean - mean
                total = count + clip_count
                mean += delta * clip_count / total
                m2 += clip_m2 + delta * delta * count * clip_count / total
                count = total
                n_clips += 1
    if count == 0:
        raise ValueError(f"no clip could be decoded for waveform statistics ({len(rejected)} rejected)")
    std = float(np.sqrt(m2 / count))
    if std == 0.0:
        raise ValueError("waveform statistics have zero standard deviation (all clips are constant)")
    return WaveformStats(
        mean=mean,
        std=std,
        n_clips=n_clips,
        n_samples=count,
        stats_key=stats_key_of(mean, std, n_clips, count),
        rejected=tuple(rejected),
    )


def normalize_waveform(wave: np.ndarray, stats: WaveformStats) -> np.ndarray:
    """(wave - mean) / std as float32."""
    return ((wave - stats.mean) / stats.std).astype(np.float32)


def normalize_in_place(wave: np.ndarray, stats: WaveformStats) -> np.ndarray:
    """:func:`normalize_waveform` without a new array when ``wave`` is a writable float32 array (a fresh decode),
    the same values; extraction runs it on the decoding threads, off the model's thread."""
    if wave.dtype != np.float32 or not wave.flags.writeable:
        return normalize_waveform(wave, stats)
    np.subtract(wave, float(stats.mean), out=wave)
    np.divide(wave, float(stats.std), out=wave)
    return wave


class NormalizedAudioEncoder:
    """Any ``AudioEncoder`` fed normalised waveforms; the statistics' key is part of its spec (and cache key).

    Refuses an encoder that z-normalises each clip itself: that would undo the train-set normalisation exactly.
    """

    def __init__(self, encoder: AudioEncoder, stats: WaveformStats) -> None:
        if encoder.spec.get("clip_norm"):
            raise ValueError(
                f"{encoder.spec.get('model', encoder.spec.get('kind'))}: per-clip waveform normalisation (clip_norm) "
                'would cancel the train-set normalisation; set "clip_norm": false in EMOJUDGE_AUDIO_ENCODER'
            )
        self.encoder = encoder
        self.stats = stats
        self.spec: dict[str, Any] = {**encoder.spec, "waveform_stats_key": stats.stats_key}
        self.frame_rate_hz = encoder.frame_rate_hz
        self.dim = encoder.dim

    def encode_batch(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        return self.encoder.encode_batch([normalize_waveform(w, self.stats) for w in waves])


def save_waveform_stats(
    con: duckdb.DuckDBPyConnection, stats: WaveformStats, eval_sets: Iterable[str], run_id: str
) -> None:
    """Insert into ``waveform_stats`` (a row with the same key is already the same statistics)."""
    con.execute(
        sql_text("features/save_waveform_stats.sql"),
        [stats.stats_key, ",".join(sorted(eval_sets)), stats.mean, stats.std, stats.n_clips, stats.n_samples, run_id],
    )


def load_waveform_stats(con: duckdb.DuckDBPyConnection, stats_key: str) -> WaveformStats:
    rows = con.execute(sql_text("features/load_waveform_stats.sql"), [stats_key]).fetchall()
    if not rows:
        raise KeyError(f"no waveform statistics with key {stats_key} in the warehouse")
    ((mean, std, n_clips, n_samples),) = rows
    return WaveformStats(mean=mean, std=std, n_clips=n_clips, n_samples=n_samples, stats_key=stats_key)
