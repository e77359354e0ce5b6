"""Decoding, resampling and validation of audio clips.

Every clip is decoded to mono float32 at 16 kHz; :class:`AudioRejected` carries a reason a person can act on. An
utterance may also be a segment of a podcast episode: :mod:`emojudge_models.episodes.sources` reads both kinds.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

from emojudge_models.ingest.truncation import truncated_reason
from emojudge_models.sample_rate import SAMPLE_RATE_HZ

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
    bit_rate: int | None = None
    """The stream's bits per second where the container says (MP3, OGG); checks a declared duration for truncation."""


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
            bit_rate = int(stream.codec_context.bit_rate or 0) or None
            return AudioHeader(int(stream.sample_rate or 0), int(stream.channels or 0), duration or 0.0, None, bit_rate)
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
    """Decode ``path`` to mono float32, rejecting empty, corrupt, truncated (a WAV from its chunk sizes, an MP3 from
    its declared duration: :mod:`emojudge_models.ingest.truncation`), silent, non-finite, too short or too long clips.

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
    duration_s = data.shape[0] / sr
    if header.frames is None and (
        cut := truncated_reason(header.duration_s, duration_s, len(payload), header.bit_rate)
    ):
        raise AudioRejected(path, cut)
    if not np.isfinite(data).all():
        raise AudioRejected(path, "samples contain NaN or inf")
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


def load_wave(path: str | Path, max_duration_s: float = DEFAULT_MAX_DURATION_S) -> np.ndarray:
    """The 16 kHz mono float32 samples of a clip file (an episode segment: ``episodes.sources.load_audio``)."""
    return decode(path, max_duration_s).wave
