"""Decoding, resampling and validation of audio clips, and reading episode segments as clips.

Every clip is decoded to mono float32 at 16 kHz; :class:`AudioRejected` carries a reason a person can act on.
An utterance is either a clip file or a :class:`SegmentSource` (``[start_s, end_s)`` of a podcast episode);
:func:`load_wave` reads both, so features, ASR and prosody treat them as one kind of thing.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import librosa
import numpy as np
import pandas as pd
import soundfile as sf

from emojudge_models.sample_rate import SAMPLE_RATE_HZ

if TYPE_CHECKING:
    from emojudge_models.episodes.decode import DecodedEpisode

MIN_DURATION_S = 0.5
DEFAULT_MAX_DURATION_S = 60.0
SILENCE_PEAK = 1e-4
"""A clip whose absolute peak stays below this (-80 dBFS) is treated as all silence."""

_SOUNDFILE_LOCK = threading.Lock()
"""Serialises soundfile calls. cffi 2.x realizes C types lazily without a lock on GIL builds (python-cffi/cffi
#271), so two threads decoding at once (features/loader.py) could abort the process with ``realize_c_type.c ...
Assertion failed``; only the libsndfile read is serialised, resampling stays parallel."""


class AudioRejected(ValueError):
    """A clip that cannot be used; ``reason`` says why in words a person can act on."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class DecodedAudio:
    """A decoded clip plus what the original file was, including the SHA-256 of its bytes."""

    wave: np.ndarray
    orig_sample_rate_hz: int
    channels: int
    duration_s: float
    sha256: str


def file_sha256(path: Path | str) -> str:
    """SHA-256 of the file bytes: the clip's identity in every cache."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_OBJECT_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")
EXACT_LENGTH_SUFFIXES = (".wav", ".flac")
"""Formats whose header states the exact number of frames (read with soundfile.info); others use PyAV."""


def stable_text(message: str) -> str:
    """``message`` on one line without object reprs or memory addresses, so one fault always reads the same."""
    message = _ADDRESS.sub("", _OBJECT_REPR.sub("the file", message))
    return " ".join(message.split())


@dataclass(frozen=True)
class AudioHeader:
    """What a file's header says, read without decoding the samples."""

    sample_rate_hz: int
    channels: int
    duration_s: float
    frames: int | None
    """Exact frame count for WAV/FLAC; None where the container only estimates a duration."""


def _wav_shortfall(path: Path) -> tuple[int, int] | None:
    """(declared, present) bytes of the RIFF ``data`` chunk when the file holds fewer than its header declares.

    libsndfile silently reads a half-copied WAV as a shorter clip; the chunk sizes in the header tell the truth.
    A streaming header (size 0 or 0xFFFFFFFF, or RF64) declares nothing and is not checked.
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        riff = handle.read(12)
        if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
            return None
        offset = 12
        while offset + 8 <= size:
            handle.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
            if chunk_id == b"data":
                present = size - offset - 8
                if chunk_size in (0, 0xFFFFFFFF) or chunk_size <= present:
                    return None
                return chunk_size, present
            offset += 8 + chunk_size + (chunk_size & 1)
    return None


def read_header(path: Path) -> AudioHeader:
    """Sample rate, channels and duration from the header: soundfile.info for WAV/FLAC, PyAV for the rest."""
    if path.suffix.lower() in EXACT_LENGTH_SUFFIXES:
        try:
            with _SOUNDFILE_LOCK:
                info = sf.info(str(path))
        except (sf.LibsndfileError, RuntimeError) as error:
            raise AudioRejected(path, f"cannot decode audio {path.name}: {_libsndfile_cause(error)}") from None
        return AudioHeader(int(info.samplerate), int(info.channels), info.frames / info.samplerate, int(info.frames))
    import av  # only for MP3/OGG headers; its FFmpeg libraries cost ~25 MB in every decode worker

    try:
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            duration = container.duration / av.time_base if container.duration else None
            if duration is None and stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            return AudioHeader(int(stream.sample_rate or 0), int(stream.channels or 0), duration or 0.0, None)
    except (av.FFmpegError, IndexError, ValueError) as error:
        cause = stable_text(getattr(error, "strerror", None) or str(error)) or type(error).__name__
        raise AudioRejected(path, f"cannot decode audio {path.name}: {cause}") from None


def _libsndfile_cause(error: Exception) -> str:
    """libsndfile's own words for ``error``, without the file object it was handed."""
    cause = getattr(error, "error_string", None) or str(error)
    return stable_text(cause).rstrip(".") or type(error).__name__


def _read(path: Path, payload: bytes) -> tuple[np.ndarray, int]:
    """Samples of the file bytes ``payload`` as float32 (frames, channels), via libsndfile (WAV, FLAC, OGG, MP3)."""
    try:
        with _SOUNDFILE_LOCK:
            data, sr = sf.read(io.BytesIO(payload), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        raise AudioRejected(path, f"cannot decode audio {path.name}: {_libsndfile_cause(error)}") from None
    return data, int(sr)


def _check_file(path: Path, max_duration_s: float) -> AudioHeader:
    """Reject from the file system and the header alone: not a file, empty, truncated WAV, too long."""
    if not path.exists():
        raise AudioRejected(path, "file not found")
    if not path.is_file():
        raise AudioRejected(path, "not a file (a directory or device)")
    if path.stat().st_size == 0:
        raise AudioRejected(path, "file is empty (0 bytes)")
    if path.suffix.lower() == ".wav" and (shortfall := _wav_shortfall(path)):
        declared, present = shortfall
        raise AudioRejected(
            path, f"file is truncated: its header declares {declared} bytes of audio, the file holds {present}"
        )
    header = read_header(path)
    if header.duration_s > max_duration_s:
        raise AudioRejected(path, _too_long(header.duration_s, max_duration_s))
    return header


def _too_long(duration_s: float, max_duration_s: float) -> str:
    return f"clip is {duration_s:.1f} s long, longer than the configured {max_duration_s:g} s limit"


def decode(
    path: Path | str,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    resample: bool = True,
    expected_sha256: str | None = None,
) -> DecodedAudio:
    """Decode ``path`` to mono float32, rejecting empty, corrupt, truncated, silent, non-finite, too short or too
    long clips.

    The header is checked first, so an over-long or truncated file is rejected without reading its samples. Then
    the file is read once: its bytes are hashed (and checked against ``expected_sha256``, the identity recorded at
    ingest) and decoded from memory. With ``resample`` (the default) the wave is at 16 kHz; without, it stays at
    the file's rate (validation only).
    """
    path = Path(path)
    header = _check_file(path, max_duration_s)
    payload = path.read_bytes()
    sha256 = hashlib.sha256(payload).hexdigest()
    if expected_sha256 is not None and sha256 != expected_sha256:
        raise AudioRejected(path, "file content changed since ingest (SHA-256 differs); re-run ingest")
    data, sr = _read(path, payload)
    channels = data.shape[1]
    if data.shape[0] == 0:
        raise AudioRejected(path, "file decodes to zero samples")
    if header.frames is not None and data.shape[0] < header.frames:
        raise AudioRejected(
            path, f"file is truncated: its header declares {header.frames} frames, {data.shape[0]} decode"
        )
    if not np.isfinite(data).all():
        raise AudioRejected(path, "samples contain NaN or inf")
    duration_s = data.shape[0] / sr
    if duration_s < MIN_DURATION_S:
        raise AudioRejected(path, f"clip is {duration_s:.2f} s long, shorter than the {MIN_DURATION_S} s minimum")
    if duration_s > max_duration_s:
        raise AudioRejected(path, _too_long(duration_s, max_duration_s))
    mono = data.mean(axis=1)
    if float(np.abs(mono).max()) < SILENCE_PEAK:
        raise AudioRejected(path, "clip is all silence (peak below -80 dBFS)")
    if resample and sr != SAMPLE_RATE_HZ:
        mono = librosa.resample(mono, orig_sr=sr, target_sr=SAMPLE_RATE_HZ, res_type="soxr_hq")
    wave = np.ascontiguousarray(mono, dtype=np.float32)
    return DecodedAudio(wave=wave, orig_sample_rate_hz=sr, channels=channels, duration_s=duration_s, sha256=sha256)


@dataclass(frozen=True)
class SegmentSource:
    """The stretch ``[start_s, end_s)`` of an episode file, read like a clip (an utterance row with start/end set)."""

    path: str
    start_s: float
    end_s: float
    episode_sha256: str | None = None
    """The episode's SHA-256 recorded at ingest; when given, the file must still hash to it."""
    channel: int | None = None
    """The 1-based channel the segment was cut from (a split episode); ``None``: the channels' mean."""

    def __str__(self) -> str:
        track = "" if self.channel is None else f" c{self.channel}"
        return f"{self.path}[{self.start_s:.2f}-{self.end_s:.2f}s{track}]"


AudioSource = str | Path | SegmentSource
"""What an utterance's audio is: a clip file, or a segment of an episode file."""

EPISODE_SOURCE_MAX_S = 24 * 3600.0
"""Upper bound when an episode is decoded for its segments (ingest already enforced EMOJUDGE_MAX_EPISODE_S)."""


def _missing(value: object) -> bool:
    """NULL as read through pandas: None, NaN (DOUBLE columns) or ``pd.NA`` (nullable INTEGER columns)."""
    return value is None or bool(pd.isna(value))


def audio_source(
    path: str | Path,
    start_s: float | None = None,
    end_s: float | None = None,
    episode_sha256: str | None = None,
    channel: float | None = None,
) -> AudioSource:
    """The audio of an utterance row: its clip file, or its episode segment when ``start_s``/``end_s`` are set
    (of one ``channel`` when set, else of the channels' mean).

    NULLs read through pandas arrive as NaN or None; both mean "a clip" (or, for ``channel``, "mixed down").
    """
    if _missing(start_s) or _missing(end_s):
        return str(path)
    sha = None if not isinstance(episode_sha256, str) else episode_sha256
    track = None if _missing(channel) else int(channel)
    return SegmentSource(str(path), float(start_s), float(end_s), sha, track)


class _EpisodeCache:
    """The last decoded episode of this process: segments are read in runs from one episode, so one is kept.

    Decoding an hour takes seconds and ~230 MB; decoding it once per segment would cost minutes. Threads (the feature
    loader's decode workers) share the entry; a lock makes the first one decode and the others wait for it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[str, int, int, int | None] | None = None
        self._episode: DecodedEpisode | None = None
        self.decodes = 0
        """How many episodes this process decoded (a test counts them)."""

    @staticmethod
    def _key_of(path: Path, stat: os.stat_result, channel: int | None) -> tuple[str, int, int, int | None]:
        return str(path.resolve()), stat.st_size, stat.st_mtime_ns, channel

    def keep(
        self, path: Path, episode: DecodedEpisode, stat_before: os.stat_result, channel: int | None = None
    ) -> None:
        """Hold an episode decoded elsewhere (ingest), so the steps after it in this process cut its segments
        without decoding the file again; skipped when the file changed since ``stat_before`` (taken before decoding).
        """
        try:
            stat = path.stat()
        except OSError:
            return
        key = self._key_of(path, stat, channel)
        if key == self._key_of(path, stat_before, channel):
            with self._lock:
                self._key, self._episode = key, episode

    def get(self, path: Path, channel: int | None = None) -> DecodedEpisode:
        from emojudge_models.episodes.decode import EpisodeRejected, decode_episode

        try:
            stat = path.stat()
        except OSError:
            raise AudioRejected(path, "episode file not found") from None
        key = self._key_of(path, stat, channel)
        with self._lock:
            if self._key != key or self._episode is None:
                self._key, self._episode = None, None
                try:
                    self._episode = decode_episode(
                        path, max_duration_s=EPISODE_SOURCE_MAX_S, min_duration_s=0.0, channel=channel
                    )
                except EpisodeRejected as rejected:
                    raise AudioRejected(path, rejected.reason) from None
                self._key = key
                self.decodes += 1
            return self._episode

    def clear(self) -> None:
        """Drop the cached episode (its memory is released once no segment view refers to it)."""
        with self._lock:
            self._key, self._episode = None, None


episode_cache = _EpisodeCache()


def load_segment(source: SegmentSource) -> np.ndarray:
    """The 16 kHz mono float32 samples of ``[start_s, end_s)`` of the episode, cut from its cached decode (a copy)."""
    path = Path(source.path)
    episode = episode_cache.get(path, source.channel)
    if source.episode_sha256 is not None and episode.sha256 != source.episode_sha256:
        raise AudioRejected(path, "episode content changed since ingest (SHA-256 differs); re-run ingest")
    start, end = round(source.start_s * SAMPLE_RATE_HZ), min(round(source.end_s * SAMPLE_RATE_HZ), len(episode.wave))
    if not 0 <= start < end:
        span = f"{source.start_s:.2f}-{source.end_s:.2f} s"
        raise AudioRejected(path, f"segment {span} lies outside the {episode.duration_s:.2f} s episode")
    return np.array(episode.wave[start:end], dtype=np.float32)


def load_wave(source: AudioSource, max_duration_s: float = DEFAULT_MAX_DURATION_S) -> np.ndarray:
    """The 16 kHz mono float32 samples of a clip file or an episode segment (encoders, ASR and prosody use it)."""
    if isinstance(source, SegmentSource):
        return load_segment(source)
    return decode(source, max_duration_s).wave
