"""Weight-free frame-level acoustic features (librosa), for machines without a GPU or pretrained weights.

Frames at 100 Hz (25 ms Hann window, 10 ms hop at 16 kHz), ``n_frames = 1 + n_samples // 160``. Columns:

==========  ====  ============================================================
columns     dims  feature
==========  ====  ============================================================
0-39          40  log mel-band power (natural log, 40 bands, 0-8 kHz)
40-79         40  delta of the log mel-band power (9-frame regression)
80             1  log RMS energy
81             1  delta of the log RMS energy
82             1  log F0 in Hz (YIN, 60-500 Hz; unvoiced frames carry YIN's guess)
83             1  zero-crossing rate (fraction of sample pairs changing sign)
==========  ====  ============================================================

A batch is zero-padded to its longest clip and transformed at once; every frame of a clip only sees that clip's
samples and zero padding, so its features are the same whichever batch it lands in.
"""

from __future__ import annotations

from typing import Any

import librosa
import numpy as np

from emojudge_models.sample_rate import SAMPLE_RATE_HZ

ACOUSTIC_VERSION = "1"
"""Bump when the feature definition below changes."""

HOP_LENGTH = 160
WIN_LENGTH = 400
N_FFT = 512
N_MELS = 40
F0_MIN_HZ = 60.0
F0_MAX_HZ = 500.0
YIN_FRAME_LENGTH = 640
LOG_FLOOR = 1e-6
DELTA_WIDTH = 9

LOG_MEL = slice(0, N_MELS)
DELTA_LOG_MEL = slice(N_MELS, 2 * N_MELS)
LOG_RMS = 2 * N_MELS
DELTA_LOG_RMS = LOG_RMS + 1
LOG_F0 = LOG_RMS + 2
ZERO_CROSSING_RATE = LOG_RMS + 3
DIM = LOG_RMS + 4


def _zero_crossing_rate(padded: np.ndarray, n_frames: int) -> np.ndarray:
    """Per-frame sign-change rate over ``WIN_LENGTH`` samples centred on each hop, (batch, n_frames)."""
    frames = librosa.util.frame(padded, frame_length=WIN_LENGTH, hop_length=HOP_LENGTH, axis=-1)[..., :n_frames]
    signs = np.signbit(frames)
    return (signs[..., 1:, :] != signs[..., :-1, :]).mean(axis=-2)


class AcousticEncoder:
    """Log-mel, energy, pitch and zero-crossing frames; see the module docstring for the column layout."""

    frame_rate_hz = SAMPLE_RATE_HZ / HOP_LENGTH
    dim = DIM

    def __init__(self) -> None:
        self._mel_basis = librosa.filters.mel(sr=SAMPLE_RATE_HZ, n_fft=N_FFT, n_mels=N_MELS).astype(np.float32)
        self.spec: dict[str, Any] = {
            "kind": "acoustic",
            "modality": "audio",
            "version": ACOUSTIC_VERSION,
            "librosa": ".".join(librosa.__version__.split(".")[:2]),
            "n_mels": N_MELS,
            "n_fft": N_FFT,
            "win_length": WIN_LENGTH,
            "hop_length": HOP_LENGTH,
            "f0_range_hz": [F0_MIN_HZ, F0_MAX_HZ],
        }

    def encode_batch(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        """Frames (1 + n_samples // 160, 84) per clip, computed for the whole zero-padded batch at once."""
        longest = max(len(w) for w in waves)
        batch = np.zeros((len(waves), longest), dtype=np.float32)
        for row, wave in enumerate(waves):
            batch[row, : len(wave)] = wave
        n_frames = 1 + longest // HOP_LENGTH
        spectrum = np.abs(
            librosa.stft(batch, n_fft=N_FFT, hop_length=HOP_LENGTH, win_length=WIN_LENGTH, pad_mode="constant")
        )
        power = spectrum**2
        log_mel = np.log(np.einsum("mf,bft->bmt", self._mel_basis, power) + LOG_FLOOR)
        log_rms = np.log(librosa.feature.rms(S=spectrum, frame_length=N_FFT)[:, 0] + LOG_FLOOR)
        f0 = librosa.yin(
            batch,
            fmin=F0_MIN_HZ,
            fmax=F0_MAX_HZ,
            sr=SAMPLE_RATE_HZ,
            frame_length=YIN_FRAME_LENGTH,
            hop_length=HOP_LENGTH,
            pad_mode="constant",
        )
        half_window = WIN_LENGTH // 2
        zcr = _zero_crossing_rate(np.pad(batch, ((0, 0), (half_window, half_window))), n_frames)
        outputs = []
        for row, wave in enumerate(waves):
            frames = 1 + len(wave) // HOP_LENGTH
            clip_log_mel = log_mel[row, :, :frames]
            clip_log_rms = log_rms[row, :frames]
            features = np.empty((frames, DIM), dtype=np.float32)
            features[:, LOG_MEL] = clip_log_mel.T
            features[:, DELTA_LOG_MEL] = librosa.feature.delta(clip_log_mel, width=DELTA_WIDTH, mode="nearest").T
            features[:, LOG_RMS] = clip_log_rms
            features[:, DELTA_LOG_RMS] = librosa.feature.delta(clip_log_rms, width=DELTA_WIDTH, mode="nearest")
            features[:, LOG_F0] = np.log(f0[row, :frames])
            features[:, ZERO_CROSSING_RATE] = zcr[row, :frames]
            outputs.append(features)
        return outputs
