"""Per-clip prosody values (level, loudness, F0 statistics, voicing, speech rate, clipping) of a 16 kHz mono wave.

All frame-wise measures use centred frames every 10 ms (``HOP_LENGTH``), so frame ``i`` of every measure is the same
moment. "Active" frames are those whose 25 ms RMS power lies within ``ACTIVE_RANGE_DB`` of the clip's loudest frame:
level, loudness and speech rates are measured over them so that leading and trailing silence does not dilute them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import librosa
import numpy as np
from scipy.ndimage import uniform_filter1d
from scipy.signal import find_peaks

from emojudge_models.prosody.pitch import DEFAULT_TRACKER, HOP_LENGTH, PitchTracker, track_pitch
from emojudge_models.sample_rate import SAMPLE_RATE_HZ

RMS_FRAME_LENGTH = 400
"""25 ms RMS frames."""
LOUDNESS_N_FFT = 512
ACTIVE_RANGE_DB = 35.0
SILENT_PEAK_DBFS = -60.0
"""A clip whose loudest 25 ms frame stays below this RMS level is flagged ``silent``."""
CLIP_LEVEL = 0.99
CLIPPED_FLAG_FRACTION = 0.001
"""Flag ``clipped`` when at least 0.1 % of the samples reach ``CLIP_LEVEL`` in magnitude."""
VERY_SHORT_S = 1.0
MIN_VOICED_FRAMES = 10
MIN_VOICED_SHARE = 0.15
"""Fewer voiced frames than 100 ms or than this share of the active frames: no F0 statistics and the ``unvoiced``
flag (noise gives a few voiced frames; RAVDESS speech has at least 28 % with yin)."""
SYLLABLE_SMOOTHING_FRAMES = 5
SYLLABLE_PROMINENCE_DB = 4.0
SYLLABLE_MIN_GAP_FRAMES = 10
"""Syllable nuclei are at least 100 ms apart. These three settings were picked on RAVDESS (7-syllable sentences)."""

FLAGS = ("silent", "clipped", "unvoiced", "very_short")


@dataclass(frozen=True)
class ProsodyValues:
    """One clip's row of the ``prosody`` table (values only); None where a value does not exist.

    - ``duration_s``: clip length.
    - ``rms_mean_dbfs``: 10·log10 of the mean power of the active 25 ms frames, re digital full scale (amplitude
      1.0), so a sine with RMS 0.1 (peak 0.141) reads -20 dBFS; None for an all-zero clip.
    - ``rms_peak_dbfs``: RMS level of the loudest 25 ms frame, same scale.
    - ``loudness_db``: A-weighted level over the active frames, same scale: each 32 ms Hann-windowed power
      spectrum is weighted by ``librosa.A_weighting`` and summed (calibrated so that a 1 kHz sine reads its RMS level
      and a 100 Hz sine 19 dB less), and the frame powers are averaged -- an LAeq in dB re full scale, not phon/LUFS.
    - ``f0_median_hz``, ``f0_p10_hz``, ``f0_p90_hz``: percentiles of F0 over voiced frames; ``f0_range_hz`` =
      p90 - p10, ``f0_range_semitones`` = 12·log2(p90 / p10). None for ``unvoiced`` clips (see ``MIN_VOICED_SHARE``).
    - ``voiced_fraction``: voiced frames / all frames (only active frames may be voiced).
    - ``words_per_s``: transcript words / speech span (first to last active frame); None without a transcript.
    - ``syllables_per_s``: transcript-free estimate: peaks of the smoothed A-weighted energy envelope (at least
      ``SYLLABLE_PROMINENCE_DB`` prominent, ``SYLLABLE_MIN_GAP_FRAMES`` apart) on active frames, per second of
      speech span; independent of the pitch tracker; None for silent clips.
    - ``clipped_fraction``: share of samples with magnitude >= ``CLIP_LEVEL``.
    - ``flags``: subset of ``FLAGS`` in that order.
    """

    duration_s: float
    rms_mean_dbfs: float | None
    rms_peak_dbfs: float | None
    loudness_db: float | None
    f0_median_hz: float | None
    f0_p10_hz: float | None
    f0_p90_hz: float | None
    f0_range_hz: float | None
    f0_range_semitones: float | None
    voiced_fraction: float
    words_per_s: float | None
    syllables_per_s: float | None
    clipped_fraction: float
    flags: tuple[str, ...]


def compute_prosody(
    wave: np.ndarray, transcript: str | None = None, tracker: PitchTracker = DEFAULT_TRACKER
) -> ProsodyValues:
    """Prosody values of a 16 kHz mono float wave; ``transcript`` (optional) only feeds ``words_per_s``."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"expected a mono wave (1-D samples), got shape {wave.shape}")
    if not np.isfinite(wave).all():
        raise ValueError("samples contain NaN or inf")
    duration_s = len(wave) / SAMPLE_RATE_HZ
    if len(wave) == 0:
        return _empty_values()

    frame_power = librosa.feature.rms(y=wave, frame_length=RMS_FRAME_LENGTH, hop_length=HOP_LENGTH)[0] ** 2
    peak_power = float(frame_power.max())
    active = frame_power >= peak_power * 10 ** (-ACTIVE_RANGE_DB / 10) if peak_power > 0 else frame_power > 0
    weighted_power = _a_weighted_frame_power(wave)
    pitch = track_pitch(wave, tracker, eligible=active)
    voiced = pitch.voiced
    clipped_fraction = float(np.mean(np.abs(wave) >= CLIP_LEVEL))

    silent = peak_power < 10 ** (SILENT_PEAK_DBFS / 10)
    n_voiced = int(voiced.sum())
    unvoiced = n_voiced < MIN_VOICED_FRAMES or n_voiced < MIN_VOICED_SHARE * int(active.sum())
    flags = tuple(
        name
        for name, present in zip(
            FLAGS,
            (silent, clipped_fraction >= CLIPPED_FLAG_FRACTION, unvoiced, duration_s < VERY_SHORT_S),
            strict=True,
        )
        if present
    )

    f0 = {} if unvoiced else _f0_statistics(pitch.f0_hz[voiced])
    span_s = _speech_span_s(active)
    syllables = None
    if not silent and span_s > 0:
        syllables = float(_count_syllables(weighted_power, active) / span_s)
    return ProsodyValues(
        duration_s=duration_s,
        rms_mean_dbfs=_db(float(frame_power[active].mean())) if active.any() else None,
        rms_peak_dbfs=_db(peak_power),
        loudness_db=_db(float(weighted_power[active].mean())) if active.any() else None,
        f0_median_hz=f0.get("median"),
        f0_p10_hz=f0.get("p10"),
        f0_p90_hz=f0.get("p90"),
        f0_range_hz=f0.get("range_hz"),
        f0_range_semitones=f0.get("range_semitones"),
        voiced_fraction=float(voiced.mean()),
        words_per_s=_words_per_s(transcript, span_s),
        syllables_per_s=syllables,
        clipped_fraction=clipped_fraction,
        flags=flags,
    )


def _empty_values() -> ProsodyValues:
    return ProsodyValues(
        duration_s=0.0,
        rms_mean_dbfs=None,
        rms_peak_dbfs=None,
        loudness_db=None,
        f0_median_hz=None,
        f0_p10_hz=None,
        f0_p90_hz=None,
        f0_range_hz=None,
        f0_range_semitones=None,
        voiced_fraction=0.0,
        words_per_s=None,
        syllables_per_s=None,
        clipped_fraction=0.0,
        flags=("silent", "unvoiced", "very_short"),
    )


def _db(power: float) -> float | None:
    return 10 * math.log10(power) if power > 0 else None


def _a_weighted_frame_power(wave: np.ndarray) -> np.ndarray:
    """Mean-square value per frame after A-weighting, scaled so a 1 kHz sine gives its own mean square."""
    spectrum = np.abs(librosa.stft(wave, n_fft=LOUDNESS_N_FFT, hop_length=HOP_LENGTH, window=_LOUDNESS_WINDOW)) ** 2
    return (_A_WEIGHTS @ spectrum) / (LOUDNESS_N_FFT * float(np.sum(_LOUDNESS_WINDOW**2)))


def _a_weights() -> np.ndarray:
    """Linear A-weighting power gain per one-sided FFT bin, doubled for bins that stand for +f and -f; DC gets 0."""
    freqs = librosa.fft_frequencies(sr=SAMPLE_RATE_HZ, n_fft=LOUDNESS_N_FFT)
    weights = np.zeros_like(freqs)
    weights[1:] = 10 ** (librosa.A_weighting(freqs[1:]) / 10)
    weights[1:-1] *= 2
    return weights


_LOUDNESS_WINDOW = librosa.filters.get_window("hann", LOUDNESS_N_FFT, fftbins=True)
_A_WEIGHTS = _a_weights()


def _f0_statistics(voiced_f0_hz: np.ndarray) -> dict[str, float]:
    p10, median, p90 = (float(v) for v in np.percentile(voiced_f0_hz, [10, 50, 90]))
    return {
        "median": median,
        "p10": p10,
        "p90": p90,
        "range_hz": p90 - p10,
        "range_semitones": 12 * math.log2(p90 / p10),
    }


def _speech_span_s(active: np.ndarray) -> float:
    """Seconds from the first to the last active frame (inclusive)."""
    indices = np.flatnonzero(active)
    if len(indices) == 0:
        return 0.0
    return (indices[-1] - indices[0] + 1) * HOP_LENGTH / SAMPLE_RATE_HZ


def _count_syllables(weighted_power: np.ndarray, active: np.ndarray) -> int:
    """Syllable nuclei: prominent peaks of the smoothed dB energy envelope that fall on active frames."""
    envelope_db = 10 * np.log10(np.maximum(weighted_power, 1e-12))
    envelope_db = uniform_filter1d(envelope_db, size=SYLLABLE_SMOOTHING_FRAMES, mode="nearest")
    peaks, _ = find_peaks(envelope_db, prominence=SYLLABLE_PROMINENCE_DB, distance=SYLLABLE_MIN_GAP_FRAMES)
    return int(active[peaks].sum())


def _words_per_s(transcript: str | None, span_s: float) -> float | None:
    if transcript is None or not transcript.strip() or span_s <= 0:
        return None
    return float(len(transcript.split()) / span_s)
