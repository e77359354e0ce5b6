"""What an utterance's audio is, and reading it: a clip file, or ``[start_s, end_s)`` of a podcast episode.

Features, ASR and prosody read every utterance through :func:`load_audio`, so clips and episode segments are one
kind of thing (indexed by file, start and end, as audinterface does). A segment is cut from its episode's decoded file
(:mod:`emojudge_models.episodes.decoded`), keyed by the hash ingest recorded: decoded once, mapped by every process.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from emojudge_models.episodes.decode import EpisodeRejected, decode_episode
from emojudge_models.episodes.decoded import DecodedEpisodes
from emojudge_models.ingest.audio import DEFAULT_MAX_DURATION_S, AudioRejected, load_wave
from emojudge_models.sample_rate import SAMPLE_RATE_HZ

EPISODE_SOURCE_MAX_S = 24 * 3600.0
"""Upper bound when an episode is decoded for its segments (ingest already enforced EMOJUDGE_MAX_EPISODE_S)."""


def default_decoded_dir() -> Path:
    """Where a segment without a home's folder keeps its episode's decode (library use outside the pipeline)."""
    return Path(tempfile.gettempdir()) / "emojudge-decoded-episodes"


@dataclass(frozen=True)
class SegmentSource:
    """The stretch ``[start_s, end_s)`` of an episode file, read like a clip (an utterance row with start/end set)."""

    path: str
    start_s: float
    end_s: float
    episode_sha256: str | None = None
    """The episode's SHA-256 recorded at ingest: the key of its decoded file; the file must still hash to it when
    it has to be decoded again."""
    channel: int | None = None
    """The 1-based channel the segment was cut from (a split episode); ``None``: the channels' mean."""
    decoded_dir: str | None = None
    """Where decoded episodes are kept (``$EMOJUDGE_HOME/episodes/decoded``); None: :func:`default_decoded_dir`."""

    def __str__(self) -> str:
        track = "" if self.channel is None else f" c{self.channel}"
        return f"{self.path}[{self.start_s:.2f}-{self.end_s:.2f}s{track}]"


AudioSource = str | Path | SegmentSource
"""What an utterance's audio is: a clip file, or a segment of an episode file."""


def _missing(value: object) -> bool:
    """NULL as read through pandas: None, NaN (DOUBLE columns) or ``pd.NA`` (nullable INTEGER columns)."""
    return value is None or bool(pd.isna(value))


def audio_source(
    path: str | Path,
    start_s: float | None = None,
    end_s: float | None = None,
    episode_sha256: str | None = None,
    channel: float | None = None,
    decoded_dir: Path | str | None = None,
) -> AudioSource:
    """The audio of an utterance row: its clip file, or its episode segment when ``start_s``/``end_s`` are set
    (of one ``channel`` when set, else of the channels' mean).

    NULLs read through pandas arrive as NaN or None; both mean "a clip" (or, for ``channel``, "mixed down").
    """
    if _missing(start_s) or _missing(end_s):
        return str(path)
    sha = None if not isinstance(episode_sha256, str) else episode_sha256
    track = None if _missing(channel) else int(channel)
    folder = None if decoded_dir is None else str(decoded_dir)
    return SegmentSource(str(path), float(start_s), float(end_s), sha, track, folder)


def _decode(path: Path, source: SegmentSource) -> np.ndarray:
    if not path.is_file():
        raise AudioRejected(path, "episode file not found")
    try:
        episode = decode_episode(path, max_duration_s=EPISODE_SOURCE_MAX_S, min_duration_s=0.0, channel=source.channel)
    except EpisodeRejected as rejected:
        raise AudioRejected(path, rejected.reason) from None
    if source.episode_sha256 is not None and episode.sha256 != source.episode_sha256:
        raise AudioRejected(path, "episode content changed since ingest (SHA-256 differs); re-run ingest")
    return episode.wave


def episode_samples(source: SegmentSource) -> np.ndarray:
    """The whole episode (or channel) of ``source``, mapped from its decoded file (decoded first where needed)."""
    path = Path(source.path)
    if source.episode_sha256 is None:
        return _decode(path, source)
    store = DecodedEpisodes(source.decoded_dir or default_decoded_dir())
    return store.get(source.episode_sha256, source.channel, lambda: _decode(path, source), source=str(path))


def load_segment(source: SegmentSource) -> np.ndarray:
    """The 16 kHz mono float32 samples of ``[start_s, end_s)`` of the episode (a copy of the mapped stretch)."""
    wave = episode_samples(source)
    start, end = round(source.start_s * SAMPLE_RATE_HZ), min(round(source.end_s * SAMPLE_RATE_HZ), len(wave))
    if not 0 <= start < end:
        span = f"{source.start_s:.2f}-{source.end_s:.2f} s"
        duration = len(wave) / SAMPLE_RATE_HZ
        raise AudioRejected(source.path, f"segment {span} lies outside the {duration:.2f} s episode")
    return np.array(wave[start:end], dtype=np.float32)


def load_audio(source: AudioSource, max_duration_s: float = DEFAULT_MAX_DURATION_S) -> np.ndarray:
    """The 16 kHz mono float32 samples of a clip file or an episode segment (encoders, ASR and prosody use it)."""
    if isinstance(source, SegmentSource):
        return load_segment(source)
    return load_wave(source, max_duration_s)
