"""The weight-free librosa frame encoder: layout, frame rate, and that each column measures what it says."""

from __future__ import annotations

import csv
from pathlib import Path

import librosa
import numpy as np
import pytest

from emojudge_models.encoders import acoustic
from emojudge_models.encoders.acoustic import AcousticEncoder
from emojudge_models.encoders.base import AudioEncoder, encoder_key
from emojudge_models.ingest.audio import load_wave

SR = 16_000


def sine(seconds: float, hz: float, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (level * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def harmonic(seconds: float, f0: float, level: float = 0.2) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (level * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6)) / 2).astype(np.float32)


@pytest.fixture(scope="module")
def encoder() -> AcousticEncoder:
    return AcousticEncoder()


def test_layout_and_frame_rate(encoder: AcousticEncoder) -> None:
    assert isinstance(encoder, AudioEncoder)
    assert encoder.dim == 84 == acoustic.ZERO_CROSSING_RATE + 1
    assert encoder.frame_rate_hz == 100.0
    lengths = [8_000, 16_000, 33_333, 56_789]
    frames = encoder.encode_batch([sine(n / SR, 220) for n in lengths])
    assert [f.shape for f in frames] == [(1 + n // 160, 84) for n in lengths]
    assert all(f.dtype == np.float32 and np.isfinite(f).all() for f in frames)


def test_pitch_column_tracks_f0(encoder: AcousticEncoder) -> None:
    for f0 in (110.0, 180.0, 320.0):
        frames = encoder.encode_batch([harmonic(1.0, f0)])[0]
        estimated = np.exp(np.median(frames[10:-10, acoustic.LOG_F0]))
        assert estimated == pytest.approx(f0, rel=0.03)


def test_energy_column_follows_level(encoder: AcousticEncoder) -> None:
    quiet, loud = encoder.encode_batch([sine(1.0, 300, level=0.05), sine(1.0, 300, level=0.4)])
    gain = np.median(loud[5:-5, acoustic.LOG_RMS] - quiet[5:-5, acoustic.LOG_RMS])
    assert gain == pytest.approx(np.log(8.0), abs=0.01)
    assert np.abs(loud[5:-5, acoustic.DELTA_LOG_RMS]).max() < 1e-3


def test_log_mel_peak_sits_in_the_tone_band(encoder: AcousticEncoder) -> None:
    centres = librosa.mel_frequencies(n_mels=acoustic.N_MELS + 2, fmax=SR / 2)[1:-1]
    for hz in (500.0, 1_000.0, 3_000.0):
        frames = encoder.encode_batch([sine(0.5, hz)])[0]
        peak_band = int(np.argmax(np.median(frames[:, acoustic.LOG_MEL], axis=0)))
        assert peak_band == int(np.argmin(np.abs(centres - hz)))


def test_zero_crossing_rate_separates_noise_from_low_tone(encoder: AcousticEncoder) -> None:
    noise = (np.random.default_rng(0).standard_normal(SR) * 0.1).astype(np.float32)
    noisy, tonal = encoder.encode_batch([noise, sine(1.0, 100)])
    assert np.median(noisy[:, acoustic.ZERO_CROSSING_RATE]) == pytest.approx(0.5, abs=0.05)
    assert np.median(tonal[5:-5, acoustic.ZERO_CROSSING_RATE]) == pytest.approx(200 / SR, abs=0.002)


def test_frames_do_not_depend_on_batch_partners(encoder: AcousticEncoder) -> None:
    short = harmonic(0.73, 150)
    alone = encoder.encode_batch([short])[0]
    batched = encoder.encode_batch([harmonic(2.5, 200), short])[1]
    np.testing.assert_allclose(batched, alone, rtol=1e-5, atol=1e-5)


def test_spec_names_every_setting(encoder: AcousticEncoder) -> None:
    assert encoder.spec["kind"] == "acoustic"
    assert encoder.spec["hop_length"] == 160 and encoder.spec["n_mels"] == 40
    assert encoder_key(encoder.spec) == encoder_key(AcousticEncoder().spec)


def test_real_speech_gives_voiced_pitch_in_range(encoder: AcousticEncoder, ravdess_dir: Path) -> None:
    with open(ravdess_dir / "manifest.csv", newline="") as handle:
        row = next(csv.DictReader(handle))
    frames = encoder.encode_batch([load_wave(ravdess_dir / row["path"])])[0]
    assert frames.shape[0] == pytest.approx(float(row["duration_s"]) * 100, abs=2)
    loud = frames[:, acoustic.LOG_RMS] > np.percentile(frames[:, acoustic.LOG_RMS], 75)
    median_f0 = np.exp(np.median(frames[loud, acoustic.LOG_F0]))
    assert 70 < median_f0 < 300
