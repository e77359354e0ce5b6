"""Frame-wise F0 tracking on 16 kHz mono waves: fast ``yin`` (with a voicing decision) or the slower ``pyin``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

import librosa
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import binary_opening

from emojudge_models.sample_rate import SAMPLE_RATE_HZ
from emojudge_models.settings import PitchTracker, default

PITCH_TRACKERS: tuple[PitchTracker, ...] = get_args(PitchTracker)
DEFAULT_TRACKER: PitchTracker = default("pitch_tracker")

FMIN_HZ = 60.0
FMAX_HZ = 600.0
HOP_LENGTH = 160
"""10 ms at 16 kHz; every frame-wise prosody feature uses this hop with centred frames."""
PITCH_FRAME_LENGTH = 1024
"""64 ms: more than two periods of ``FMIN_HZ``, as YIN needs."""
YIN_PERIODICITY_THRESHOLD = 0.6
"""A yin frame is voiced when the normalised autocorrelation at the detected period reaches this."""
YIN_CONTINUITY_FRAMES = 15
YIN_CONTINUITY_SEMITONES = 5.0
"""A yin frame further than this from the median F0 of the voiced frames within ±70 ms is dropped as a pitch error."""
YIN_MIN_RUN_FRAMES = 3
"""Voiced yin runs shorter than 30 ms are dropped (mostly errors at voicing onsets and offsets)."""


@dataclass(frozen=True)
class PitchTrack:
    """F0 per 10 ms frame (NaN where unvoiced) and the voicing decision (same length)."""

    f0_hz: np.ndarray
    voiced: np.ndarray


def track_pitch(
    wave: np.ndarray, tracker: PitchTracker = DEFAULT_TRACKER, eligible: np.ndarray | None = None
) -> PitchTrack:
    """Track F0 of a 16 kHz mono wave; frames are centred at multiples of ``HOP_LENGTH``.

    ``eligible`` (bool per frame, e.g. frames loud enough to be speech) restricts which frames may be voiced.
    """
    if tracker not in PITCH_TRACKERS:
        raise ValueError(f"unknown pitch tracker {tracker!r}; choose one of {PITCH_TRACKERS}")
    n_frames = 1 + len(wave) // HOP_LENGTH
    if eligible is None:
        eligible = np.ones(n_frames, dtype=bool)
    elif eligible.shape != (n_frames,):
        raise ValueError(f"eligible has shape {eligible.shape}, expected ({n_frames},) for this wave")
    f0, voiced = _track_yin(wave, eligible) if tracker == "yin" else _track_pyin(wave)
    voiced = voiced & eligible
    return PitchTrack(f0_hz=np.where(voiced, f0, np.nan), voiced=voiced)


def _track_pyin(wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f0, voiced, _ = librosa.pyin(
        wave,
        fmin=FMIN_HZ,
        fmax=FMAX_HZ,
        sr=SAMPLE_RATE_HZ,
        frame_length=PITCH_FRAME_LENGTH,
        hop_length=HOP_LENGTH,
    )
    return f0, voiced.astype(bool)


def _track_yin(wave: np.ndarray, eligible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """librosa.yin for F0 (it always returns a period); voiced = periodic at that F0, continuous, not too brief."""
    f0 = librosa.yin(
        wave,
        fmin=FMIN_HZ,
        fmax=FMAX_HZ,
        sr=SAMPLE_RATE_HZ,
        frame_length=PITCH_FRAME_LENGTH,
        hop_length=HOP_LENGTH,
    )
    in_range = (f0 >= FMIN_HZ) & (f0 <= FMAX_HZ)  # yin's search edges (e.g. 615 Hz) mark failed frames
    voiced = eligible & in_range & (periodicity_at(wave, f0) >= YIN_PERIODICITY_THRESHOLD)
    voiced &= _continuous(f0, voiced)
    voiced = binary_opening(voiced, structure=np.ones(YIN_MIN_RUN_FRAMES, dtype=bool))
    return f0, voiced


def _continuous(f0_hz: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """True for voiced frames within ``YIN_CONTINUITY_SEMITONES`` of their neighbourhood's median voiced F0."""
    padded = np.pad(np.where(voiced, f0_hz, np.nan), YIN_CONTINUITY_FRAMES // 2, constant_values=np.nan)
    windows = sliding_window_view(padded, YIN_CONTINUITY_FRAMES)[voiced]
    keep = np.zeros_like(voiced)
    local_median = np.nanmedian(windows, axis=1)
    keep[voiced] = np.abs(12 * np.log2(f0_hz[voiced] / local_median)) <= YIN_CONTINUITY_SEMITONES
    return keep


def periodicity_at(wave: np.ndarray, f0_hz: np.ndarray) -> np.ndarray:
    """Normalised autocorrelation of each centred pitch frame at the lag of its ``f0_hz`` (1 = periodic, ~0 = noise)."""
    half = PITCH_FRAME_LENGTH // 2
    frames = librosa.util.frame(np.pad(wave, half), frame_length=PITCH_FRAME_LENGTH, hop_length=HOP_LENGTH).T
    lags = np.rint(SAMPLE_RATE_HZ / f0_hz).astype(np.int64)
    head = frames[:, :half]
    shifted = np.take_along_axis(frames, lags[:, None] + np.arange(half)[None, :], axis=1)
    energy = np.sqrt(np.einsum("ij,ij->i", head, head) * np.einsum("ij,ij->i", shifted, shifted))
    correlation = np.einsum("ij,ij->i", head, shifted)
    return np.divide(correlation, energy, out=np.zeros_like(correlation), where=energy > 0)
