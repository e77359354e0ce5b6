"""Ingest one podcast episode as an evaluation set: decode, segment, diarize, map a sidecar; rows, not files.

Segments become ``utterances`` rows whose audio is ``[start_s, end_s)`` of the episode file (read back through
:class:`~emojudge_models.ingest.audio.SegmentSource`) and whose audio identity is
:func:`~emojudge_models.episodes.segment.segment_audio_sha256`, so every feature, transcript and judgment cached for
a segment survives a rescoring. An episode that cannot be scored is one rejection, never an exception.

Channels: ``mix`` (the default) averages them and finds speakers by voice; ``split`` treats each channel of a
multi-channel file as one speaker's microphone (a double-ender, a studio with a track per voice): every channel is
decoded, segmented and embedded on its own, its segments carry ``channel`` and belong to speaker ``<episode>:C<k>``.
Bleed of one voice into another's microphone is segmented as that channel's speech, so ``split`` suits close
microphones; a mono file is mixed as usual. Each channel's segments are tiled alone, so segments of different
channels may overlap in time (crosstalk), and a sidecar's cues are mapped onto every channel's segments by time.

:func:`ingest_key` names everything that shapes the segments and speakers; an episode already ingested with the same
key is reused by a rescoring (see ``emojudge_pipeline/assets/ingest.py``) instead of being decoded again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from emojudge_models.episodes.decode import (
    DEFAULT_MAX_EPISODE_S,
    SILENT_REASON,
    DecodedEpisode,
    EpisodeHeader,
    EpisodeReader,
    EpisodeRejected,
    decode_episode,
)
from emojudge_models.episodes.decoded import DecodedEpisodes
from emojudge_models.episodes.segment import (
    DEFAULT_MAX_S,
    DEFAULT_MIN_S,
    Segment,
    StreamedSpeechRegions,
    segment_audio_sha256,
    segment_episode,
    segment_id,
)
from emojudge_models.episodes.sidecar import SidecarError, find_sidecar, map_cues, parse_sidecar
from emojudge_models.episodes.speakers import NO_HINT, SpeakerHint, segment_and_diarize, voice_vectors
from emojudge_models.ingest.audio import file_sha256
from emojudge_models.ingest.corpus import Rejection
from emojudge_models.ingest.utterances import UTTERANCE_COLUMNS

EPISODE_COLUMNS = [*UTTERANCE_COLUMNS, "episode_sha256", "start_s", "end_s", "channel"]
SPEAKER_COLUMNS = ["speaker_id", "episode_sha256", "n_segments", "speech_s", "centroid"]
SET_PREFIX = "ep-"
SEGMENTATION_VERSION = 4
"""Bump when decoding, VAD, the split/merge rule or diarization change what an episode's rows would be: every episode
is then ingested again on its next run instead of reusing its segments."""
ChannelMode = Literal["mix", "split"]


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
    ingest_key: str | None = None
    """:func:`ingest_key` of an accepted episode (``None`` when rejected, so a rejected one is tried again)."""

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


def ingest_key(
    path: Path,
    speakers: SpeakerHint,
    min_s: float,
    max_s: float,
    channels: ChannelMode,
) -> str:
    """JSON of what shapes an episode's rows besides its bytes: segment range, channel mode, speaker hints, the
    sidecar's bytes (a sidecar added or edited later maps new text) and :data:`SEGMENTATION_VERSION`."""
    sidecar = find_sidecar(path)
    return json.dumps(
        {
            "version": SEGMENTATION_VERSION,
            "segment_min_s": min_s,
            "segment_max_s": max_s,
            "channels": channels,
            "speakers_hint": speakers.count,
            "min_speakers": speakers.minimum,
            "max_speakers": speakers.maximum,
            "sidecar_sha256": file_sha256(sidecar) if sidecar is not None else None,
        },
        sort_keys=True,
    )


def can_reuse(path: Path, key: str, stored_key: str | None, stored_sha256: str | None, segments: int) -> bool:
    """Whether an episode's stored segments and speakers stand: made with ``key``, and ``path`` still holds the bytes
    they were cut from (hashing the file is far cheaper than decoding, VAD and voice vectors)."""
    return (
        segments > 0
        and stored_key == key
        and isinstance(stored_sha256, str)
        and path.is_file()
        and file_sha256(path) == stored_sha256
    )


@dataclass
class _Track:
    """The segments of one decoded track (the mix, or one channel) with their speaker ids and voice vectors."""

    channel: int | None
    segments: list[Segment]
    speaker_ids: list[str]
    vectors: np.ndarray


def _channel_count(path: Path, max_episode_s: float) -> int:
    """The channel count the container declares (nothing decoded)."""
    with EpisodeReader(path, max_duration_s=max_episode_s) as reader:
        return reader.header.channels


def _mixed(
    episode: str,
    speakers: SpeakerHint,
    decoded: DecodedEpisode,
    regions: list[tuple[int, int]],
    min_s: float,
    max_s: float,
) -> list[_Track]:
    """The mixed-down episode as one track, its speakers found by voice (no track when the VAD heard no speech)."""
    segments, who = segment_and_diarize(
        episode,
        decoded.wave,
        min_s=min_s,
        max_s=max_s,
        n_speakers=speakers.count,
        min_speakers=speakers.minimum,
        max_speakers=speakers.maximum,
        regions=regions,
    )
    if not segments:
        return []
    return [_Track(None, segments, who.speaker_ids, who.vectors)]


def _decode_tracks(
    path: Path,
    episode: str,
    speakers: SpeakerHint,
    max_episode_s: float,
    min_s: float,
    max_s: float,
    channels: ChannelMode,
    decoded_store: DecodedEpisodes | None,
) -> tuple[str, EpisodeHeader, list[_Track]]:
    """Decode, segment and embed the episode as one mixed track or one track per channel (see the module doc).

    Raises :class:`EpisodeRejected`; a silent channel of a split episode has no segments, all silent is a rejection.
    """
    count = _channel_count(path, max_episode_s) if channels == "split" else 1
    if count < 2:
        decoded, regions = _decode_and_keep(path, max_episode_s, None, decoded_store)
        _check_identity(path, episode, decoded.sha256)
        return decoded.sha256, decoded.header, _mixed(episode, speakers, decoded, regions, min_s, max_s)
    tracks: list[_Track] = []
    first: tuple[str, EpisodeHeader] | None = None
    for channel in range(1, count + 1):
        try:
            decoded, regions = _decode_and_keep(path, max_episode_s, channel, decoded_store)
        except EpisodeRejected as rejected:
            if rejected.reason != SILENT_REASON:
                raise
            continue
        if first is None:
            _check_identity(path, episode, decoded.sha256)
            first = (decoded.sha256, decoded.header)
        segments = segment_episode(decoded.wave, min_s=min_s, max_s=max_s, regions=regions)
        if segments:
            vectors = voice_vectors(decoded.wave, segments)
            tracks.append(_Track(channel, segments, [f"{episode}:C{channel}"] * len(segments), vectors))
        del decoded
    if first is None:
        raise EpisodeRejected(path, f"every channel is {SILENT_REASON}")
    return *first, tracks


def _decode_and_keep(
    path: Path, max_episode_s: float, channel: int | None, store: DecodedEpisodes | None
) -> tuple[DecodedEpisode, list[tuple[int, int]]]:
    """Decode the episode (or one channel), keep the result in ``store``, so the later steps of the run (and any
    other process on this home) map it instead of decoding again, and find its speech regions while it decodes."""
    started = time.monotonic()
    with StreamedSpeechRegions() as vad:
        decoded = decode_episode(path, max_duration_s=max_episode_s, channel=channel, on_decoded=vad.feed)
        if store is not None:
            store.store(decoded.sha256, channel, decoded.wave)
            store.record_decode(decoded.sha256, channel, str(path), decoded.duration_s, time.monotonic() - started)
        return decoded, vad.regions(decoded.wave)


def _check_identity(path: Path, episode: str, sha256: str) -> None:
    if episode.startswith(SET_PREFIX) and episode != episode_set_name(sha256):
        raise EpisodeRejected(path, f"file content changed since it was registered as {episode} (SHA-256 differs)")


def _texts(path: Path, tracks: list[_Track], rejections: list[Rejection]) -> tuple[list[list[str | None]], Path | None]:
    """Each track's segment transcripts from a ``.vtt``/``.srt`` beside the episode (``None`` where none)."""
    empty = [[None] * len(track.segments) for track in tracks]
    sidecar = find_sidecar(path)
    if sidecar is None:
        return empty, None
    try:
        cues = parse_sidecar(sidecar)
    except SidecarError as error:
        rejections.append(Rejection(None, str(sidecar), "transcript", f"{error}; ASR transcribes the episode"))
        return empty, None
    return [map_cues(cues, track.segments) for track in tracks], sidecar


def ingest_episode(
    path: Path,
    episode: str,
    speakers: SpeakerHint = NO_HINT,
    max_episode_s: float = DEFAULT_MAX_EPISODE_S,
    min_s: float = DEFAULT_MIN_S,
    max_s: float = DEFAULT_MAX_S,
    channels: ChannelMode = "mix",
    decoded_dir: Path | None = None,
) -> EpisodeIngest:
    """Decode ``path`` (streaming), cut it into ``[min_s, max_s]`` segments, find its speakers (``speakers``: the
    count or bounds on it, if known; with ``channels='split'`` a speaker per channel) and map a ``.vtt``/``.srt``
    beside it onto the segments.

    ``episode`` names the evaluation set; a set named ``ep-<sha prefix>`` whose file no longer hashes to that
    prefix is rejected (the inbox file was replaced by other bytes, which are a new episode of their own). The
    decoded audio is kept in ``decoded_dir`` (:mod:`emojudge_models.episodes.decoded`) for the steps that follow.
    """
    key = ingest_key(path, speakers, min_s, max_s, channels) if Path(path).is_file() else None
    try:
        store = None if decoded_dir is None else DecodedEpisodes(decoded_dir)
        sha, header, tracks = _decode_tracks(path, episode, speakers, max_episode_s, min_s, max_s, channels, store)
    except EpisodeRejected as rejected:
        return _rejected(path, rejected.reason)
    if not tracks:
        return _rejected(path, "no speech found (the voice activity detector marked none)")
    rejections: list[Rejection] = []
    texts, sidecar = _texts(path, tracks, rejections)
    rows = [
        {
            "utterance_id": segment_id(sha, segment.start_s, segment.end_s, track.channel),
            "speaker_id": speaker,
            "transcript": text,
            "transcript_source": "sidecar" if text else None,
            "audio_path": str(path),
            "audio_sha256": segment_audio_sha256(sha, segment.start_s, segment.end_s, track.channel),
            "duration_s": round(segment.duration_s, 4),
            "sample_rate_hz": header.sample_rate_hz,
            "channels": header.channels,
            "episode_sha256": sha,
            "start_s": segment.start_s,
            "end_s": segment.end_s,
            "channel": track.channel,
        }
        for track, track_texts in zip(tracks, texts, strict=True)
        for segment, speaker, text in zip(track.segments, track.speaker_ids, track_texts, strict=True)
    ]
    utterances = pd.DataFrame(rows, columns=EPISODE_COLUMNS).sort_values(["start_s", "utterance_id"])
    utterances = utterances.reset_index(drop=True).astype({"channel": "Int64"})
    vectors = np.concatenate([track.vectors for track in tracks])
    speaker_of = np.array([speaker for track in tracks for speaker in track.speaker_ids])
    spoken = utterances.groupby("speaker_id")["duration_s"].agg(["count", "sum"])
    speaker_rows = pd.DataFrame(
        [
            {
                "speaker_id": speaker,
                "episode_sha256": sha,
                "n_segments": int(spoken.loc[speaker, "count"]),
                "speech_s": round(float(spoken.loc[speaker, "sum"]), 4),
                "centroid": vectors[speaker_of == speaker].mean(axis=0).astype(np.float32).tolist(),
            }
            for speaker in dict.fromkeys(utterances["speaker_id"])
        ],
        columns=SPEAKER_COLUMNS,
    )
    return EpisodeIngest(utterances, speaker_rows, rejections, str(sidecar) if sidecar else None, key)
