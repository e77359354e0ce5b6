"""Frame-wise F0 tracking on 16 kHz mono waves: fast ``yin`` (with a voicing decision) or the slower ``pyin``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import librosa
import numpy as np

from emojudge_models.audio import TARGET_SR

PitchTracker = Literal["yin", "pyin"]
PITCH_TRACKERS: tuple[PitchTracker, ...] = ("yin", "pyin")
DEFAULT_TRACKER: PitchTracker = "yin"

FMIN_HZ = 60.0
FMAX_HZ = 600.0
HOP_LENGTH = 160
"""10 ms at 16 kHz; every frame-wise prosody feature uses this hop with centred frames."""
PITCH_FRAME_LENGTH = 1024
"""64 ms: more than two periods of ``FMIN_HZ``, as YIN needs."""
YIN_PERIODICITY_THRESHOLD = 0.5
"""A yin frame is voiced when the normalised autocorrelation at the detected period reaches this."""


@dataclass(frozen=True)
class PitchTrack:
    """F0 per 10 ms frame (NaN where unvoiced) and the voicing decision (same length)."""

    f0_hz: np.ndarray
    voiced: np.ndarray


def track_pitch(wave: np.ndarray, tracker: PitchTracker = DEFAULT_TRACKER) -> PitchTrack:
    """Track F0 of a 16 kHz mono wave; frames are centred at multiples of ``HOP_LENGTH``."""
    if tracker == "yin":
        return _track_yin(wave)
    if tracker == "pyin":
        return _track_pyin(wave)
    raise ValueError(f"unknown pitch tracker {tracker!r}; choose one of {PITCH_TRACKERS}")


def _track_pyin(wave: np.ndarray) -> PitchTrack:
    f0, voiced, _ = librosa.pyin(
        wave,
        fmin=FMIN_HZ,
        fmax=FMAX_HZ,
        sr=TARGET_SR,
        frame_length=PITCH_FRAME_LENGTH,
        hop_length=HOP_LENGTH,
    )
    return PitchTrack(f0_hz=np.where(voiced, f0, np.nan), voiced=voiced.astype(bool))


def _track_yin(wave: np.ndarray) -> PitchTrack:
    """librosa.yin for F0; a frame is voiced when the wave is periodic at that F0 (YIN always returns a period)."""
    f0 = librosa.yin(
        wave,
        fmin=FMIN_HZ,
        fmax=FMAX_HZ,
        sr=TARGET_SR,
        frame_length=PITCH_FRAME_LENGTH,
        hop_length=HOP_LENGTH,
    )
    voiced = periodicity_at(wave, f0) >= YIN_PERIODICITY_THRESHOLD
    return PitchTrack(f0_hz=np.where(voiced, f0, np.nan), voiced=voiced)


def periodicity_at(wave: np.ndarray, f0_hz: np.ndarray) -> np.ndarray:
    """Normalised autocorrelation of each centred pitch frame at the lag of its ``f0_hz`` (1 = periodic, ~0 = noise)."""
    half = PITCH_FRAME_LENGTH // 2
    frames = librosa.util.frame(np.pad(wave, half), frame_length=PITCH_FRAME_LENGTH, hop_length=HOP_LENGTH).T
    lags = np.rint(TARGET_SR / f0_hz).astype(np.int64)
    head = frames[:, :half]
    shifted = np.take_along_axis(frames, lags[:, None] + np.arange(half)[None, :], axis=1)
    energy = np.sqrt(np.einsum("ij,ij->i", head, head) * np.einsum("ij,ij->i", shifted, shifted))
    correlation = np.einsum("ij,ij->i", head, shifted)
    return np.divide(correlation, energy, out=np.zeros_like(correlation), where=energy > 0)
