"""Ingest one podcast episode as an evaluation set: decode, segment, diarize, map a sidecar; rows, not files.

Segments become ``utterances`` rows whose audio is ``[start_s, end_s)`` of the episode file (read back through
:class:`~emojudge_models.ingest.audio.SegmentSource`) and whose audio identity is
:func:`~emojudge_models.episodes.segment.segment_audio_sha256`, so every feature, transcript and judgment cached for
a segment survives a rescoring. An episode that cannot be scored is one rejection, never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from emojudge_models.episodes.decode import DEFAULT_MAX_EPISODE_S, EpisodeRejected, decode_episode
from emojudge_models.episodes.segment import (
    DEFAULT_MAX_S,
    DEFAULT_MIN_S,
    segment_audio_sha256,
    segment_episode,
    segment_id,
)
from emojudge_models.episodes.sidecar import SidecarError, find_sidecar, map_cues, parse_sidecar
from emojudge_models.episodes.speakers import diarize
from emojudge_models.ingest.corpus import Rejection
from emojudge_models.ingest.utterances import UTTERANCE_COLUMNS

EPISODE_COLUMNS = [*UTTERANCE_COLUMNS, "episode_sha256", "start_s", "end_s"]
SPEAKER_COLUMNS = ["speaker_id", "episode_sha256", "n_segments", "speech_s", "centroid"]
SET_PREFIX = "ep-"


def episode_set_name(sha256: str) -> str:
    """The evaluation set of an episode: ``ep-<first 12 hex digits of its SHA-256>``."""
    return f"{SET_PREFIX}{sha256[:12]}"


@dataclass
class EpisodeIngest:
    """The episode's utterance rows (``EPISODE_COLUMNS``), its speakers (``SPEAKER_COLUMNS``) and rejections."""

    utterances: pd.DataFrame
    speakers: pd.DataFrame
    rejections: list[Rejection] = field(default_factory=list)
    sidecar: str | None = None

    @property
    def rejected_reason(self) -> str | None:
        """Why the whole episode was rejected, or None when it has segments."""
        reasons = [r.reason for r in self.rejections if r.stage == "ingest"]
        return reasons[0] if reasons and self.utterances.empty else None


def _rejected(path: Path, reason: str) -> EpisodeIngest:
    return EpisodeIngest(
        pd.DataFrame(columns=EPISODE_COLUMNS),
        pd.DataFrame(columns=SPEAKER_COLUMNS),
        [Rejection(None, str(path), "ingest", reason)],
    )


def ingest_episode(
    path: Path,
    episode: str,
    speakers_hint: int | None = None,
    max_episode_s: float = DEFAULT_MAX_EPISODE_S,
    min_s: float = DEFAULT_MIN_S,
    max_s: float = DEFAULT_MAX_S,
) -> EpisodeIngest:
    """Decode ``path`` (streaming), cut it into ``[min_s, max_s]`` segments, find its speakers (``speakers_hint``:
    the count, if known) and map a ``.vtt``/``.srt`` beside it onto the segments.

    ``episode`` names the evaluation set; a set named ``ep-<sha prefix>`` whose file no longer hashes to that
    prefix is rejected (the inbox file was replaced by other bytes, which are a new episode of their own).
    """
    try:
        decoded = decode_episode(path, max_duration_s=max_episode_s)
    except EpisodeRejected as rejected:
        return _rejected(path, rejected.reason)
    if episode.startswith(SET_PREFIX) and episode != episode_set_name(decoded.sha256):
        return _rejected(path, f"file content changed since it was registered as {episode} (SHA-256 differs)")
    segments = segment_episode(decoded.wave, min_s=min_s, max_s=max_s)
    if not segments:
        return _rejected(path, "no speech found (the voice activity detector marked none)")
    who = diarize(episode, decoded.wave, segments, n_speakers=speakers_hint)
    rejections: list[Rejection] = []
    texts: list[str | None] = [None] * len(segments)
    sidecar = find_sidecar(path)
    if sidecar is not None:
        try:
            texts = map_cues(parse_sidecar(sidecar), segments)
        except SidecarError as error:
            rejections.append(Rejection(None, str(sidecar), "transcript", f"{error}; ASR transcribes the episode"))
            sidecar = None
    sha = decoded.sha256
    rows = [
        {
            "utterance_id": segment_id(sha, segment.start_s, segment.end_s),
            "speaker_id": speaker,
            "transcript": text,
            "transcript_source": "sidecar" if text else None,
            "audio_path": str(path),
            "audio_sha256": segment_audio_sha256(sha, segment.start_s, segment.end_s),
            "duration_s": round(segment.duration_s, 4),
            "sample_rate_hz": decoded.header.sample_rate_hz,
            "channels": decoded.header.channels,
            "episode_sha256": sha,
            "start_s": segment.start_s,
            "end_s": segment.end_s,
        }
        for segment, speaker, text in zip(segments, who.speaker_ids, texts, strict=True)
    ]
    utterances = pd.DataFrame(rows, columns=EPISODE_COLUMNS)
    spoken = utterances.groupby("speaker_id")["duration_s"].agg(["count", "sum"])
    speakers = pd.DataFrame(
        [
            {
                "speaker_id": speaker,
                "episode_sha256": sha,
                "n_segments": int(spoken.loc[speaker, "count"]),
                "speech_s": round(float(spoken.loc[speaker, "sum"]), 4),
                "centroid": np.asarray(centroid, dtype=np.float32).tolist(),
            }
            for speaker, centroid in who.centroids.items()
        ],
        columns=SPEAKER_COLUMNS,
    )
    return EpisodeIngest(utterances, speakers, rejections, str(sidecar) if sidecar else None)
