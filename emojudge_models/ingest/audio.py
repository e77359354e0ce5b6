"""Decoding, resampling and validation of audio clips.

Every clip is decoded to mono float32 at 16 kHz; :class:`AudioRejected` carries a reason a person can act on.
"""

from __future__ import annotations

import hashlib
import io
import threading
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

TARGET_SR = 16_000
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


def _read(path: Path, payload: bytes) -> tuple[np.ndarray, int]:
    """Samples of the file bytes ``payload`` as float32 (frames, channels), via libsndfile (WAV, FLAC, OGG, MP3)."""
    try:
        with _SOUNDFILE_LOCK:
            data, sr = sf.read(io.BytesIO(payload), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        raise AudioRejected(path, f"cannot decode audio: {error}") from None
    return data, int(sr)


def decode(
    path: Path | str,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    resample: bool = True,
    expected_sha256: str | None = None,
) -> DecodedAudio:
    """Decode ``path`` to mono float32, rejecting empty, corrupt, silent, non-finite, too short or too long clips.

    The file is read once: its bytes are hashed (and checked against ``expected_sha256``, the identity recorded at
    ingest) and decoded from memory. With ``resample`` (the default) the wave is at 16 kHz; without, it stays at
    the file's rate (validation only).
    """
    path = Path(path)
    if not path.is_file():
        raise AudioRejected(path, "file not found")
    payload = path.read_bytes()
    if not payload:
        raise AudioRejected(path, "file is empty (0 bytes)")
    sha256 = hashlib.sha256(payload).hexdigest()
    if expected_sha256 is not None and sha256 != expected_sha256:
        raise AudioRejected(path, "file content changed since ingest (SHA-256 differs); re-run ingest")
    data, sr = _read(path, payload)
    channels = data.shape[1]
    if data.shape[0] == 0:
        raise AudioRejected(path, "file decodes to zero samples")
    if not np.isfinite(data).all():
        raise AudioRejected(path, "samples contain NaN or inf")
    duration_s = data.shape[0] / sr
    if duration_s < MIN_DURATION_S:
        raise AudioRejected(path, f"clip is {duration_s:.2f} s long, shorter than the {MIN_DURATION_S} s minimum")
    if duration_s > max_duration_s:
        raise AudioRejected(
            path, f"clip is {duration_s:.1f} s long, longer than the configured {max_duration_s:g} s limit"
        )
    mono = data.mean(axis=1)
    if float(np.abs(mono).max()) < SILENCE_PEAK:
        raise AudioRejected(path, "clip is all silence (peak below -80 dBFS)")
    if resample and sr != TARGET_SR:
        mono = librosa.resample(mono, orig_sr=sr, target_sr=TARGET_SR, res_type="soxr_hq")
    wave = np.ascontiguousarray(mono, dtype=np.float32)
    return DecodedAudio(wave=wave, orig_sample_rate_hz=sr, channels=channels, duration_s=duration_s, sha256=sha256)


def load_wave(path: Path | str, max_duration_s: float = DEFAULT_MAX_DURATION_S) -> np.ndarray:
    """The 16 kHz mono float32 samples of ``path`` (shortcut for encoders and prosody)."""
    return decode(path, max_duration_s).wave
