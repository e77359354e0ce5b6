import csv
import math
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emojudge_models.prosody import (
    PITCH_TRACKERS,
    ProsodyFailed,
    ProsodyValues,
    Thresholds,
    compute_many,
    compute_prosody,
    describe,
    prosody_version,
)

SR = 16_000


def harmonic_tone(f0_hz: float = 200.0, seconds: float = 1.0, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return sum(amplitude / k * np.sin(2 * np.pi * f0_hz * k * t) for k in range(1, 6)).astype(np.float32)


def sine(freq_hz: float, rms: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (rms * math.sqrt(2) * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def assert_no_nan(values: ProsodyValues) -> None:
    for field in fields(values):
        value = getattr(values, field.name)
        if isinstance(value, float):
            assert math.isfinite(value), field.name


BASE = ProsodyValues(
    duration_s=3.42,
    rms_mean_dbfs=-14.2,
    rms_peak_dbfs=-6.0,
    loudness_db=-15.0,
    f0_median_hz=230.0,
    f0_p10_hz=150.2,
    f0_p90_hz=379.6,
    f0_range_hz=229.4,
    f0_range_semitones=16.05,
    voiced_fraction=0.4,
    words_per_s=4.14,
    syllables_per_s=5.2,
    clipped_fraction=0.0,
    flags=(),
)


@pytest.mark.parametrize("tracker", PITCH_TRACKERS)
def test_harmonic_tone_median_f0_within_two_percent(tracker):
    values = compute_prosody(harmonic_tone(200.0), tracker=tracker)
    assert values.f0_median_hz == pytest.approx(200.0, rel=0.02)
    assert values.voiced_fraction > 0.9
    assert values.flags == ()


def test_sine_levels_and_a_weighting():
    at_1khz = compute_prosody(sine(1000.0, rms=0.1))
    assert at_1khz.rms_mean_dbfs == pytest.approx(-20.0, abs=0.5)
    assert at_1khz.rms_peak_dbfs == pytest.approx(-20.0, abs=0.5)
    assert at_1khz.loudness_db == pytest.approx(-20.0, abs=0.5)
    at_100hz = compute_prosody(sine(100.0, rms=0.1))
    assert at_100hz.rms_mean_dbfs == pytest.approx(-20.0, abs=0.5)
    assert at_100hz.loudness_db == pytest.approx(-20.0 - 19.1, abs=1.0)  # A-weighting is -19.1 dB at 100 Hz


def test_silence_is_flagged_and_described():
    values = compute_prosody(np.zeros(2 * SR, dtype=np.float32), transcript="")
    assert "silent" in values.flags
    assert values.rms_mean_dbfs is None and values.f0_median_hz is None and values.words_per_s is None
    assert_no_nan(values)
    assert describe(values) == "2.0 s (short); silent"


def test_near_silent_noise_is_flagged_silent():
    rng = np.random.default_rng(0)
    values = compute_prosody((1e-4 * rng.standard_normal(SR)).astype(np.float32))
    assert "silent" in values.flags
    assert values.rms_mean_dbfs == pytest.approx(-80.0, abs=1.0)


def test_clipped_signal_is_flagged():
    values = compute_prosody(np.clip(harmonic_tone(amplitude=2.0), -1.0, 1.0))
    assert "clipped" in values.flags
    assert values.clipped_fraction > 0.1
    assert "clipped (" in describe(values)
    assert "clipped" not in compute_prosody(harmonic_tone()).flags


@pytest.mark.parametrize("tracker", PITCH_TRACKERS)
def test_white_noise_has_no_f0(tracker):
    noise = (0.1 * np.random.default_rng(3).standard_normal(2 * SR)).astype(np.float32)
    values = compute_prosody(noise, tracker=tracker)
    assert "unvoiced" in values.flags
    assert values.f0_median_hz is None and values.f0_range_semitones is None
    assert "no voiced speech detected" in describe(values)
    assert_no_nan(values)


def test_very_short_clip():
    values = compute_prosody(harmonic_tone(seconds=0.2))
    assert values.duration_s == pytest.approx(0.2)
    assert "very_short" in values.flags
    assert values.f0_median_hz == pytest.approx(200.0, rel=0.02)
    assert describe(values).startswith("0.2 s (very short); loud (-12 dBFS mean); narrow pitch range (200-200 Hz")


def test_empty_wave_does_not_crash():
    values = compute_prosody(np.zeros(0, dtype=np.float32))
    assert values.flags == ("silent", "unvoiced", "very_short")
    assert describe(values) == "0.0 s (very short); silent"


def test_invalid_waves_and_tracker_are_rejected():
    with pytest.raises(ValueError, match="NaN or inf"):
        compute_prosody(np.array([0.1, np.nan], dtype=np.float32))
    with pytest.raises(ValueError, match="mono"):
        compute_prosody(np.zeros((2, SR), dtype=np.float32))
    with pytest.raises(ValueError, match="unknown pitch tracker"):
        compute_prosody(harmonic_tone(), tracker="crepe")


def test_speech_rates_ignore_leading_and_trailing_silence():
    gap = np.zeros(SR // 2, dtype=np.float32)
    bursts = []
    for _ in range(8):  # 8 "syllables" of 150 ms tone with 100 ms pauses: 4 per second over 2 s of speech
        bursts += [harmonic_tone(seconds=0.15) * np.hanning(int(0.15 * SR)).astype(np.float32), gap[: SR // 10]]
    wave = np.concatenate([gap, *bursts[:-1], gap])
    values = compute_prosody(wave, transcript="one two three four")
    assert values.words_per_s == pytest.approx(4 / 1.9, rel=0.05)  # 8 bursts + 7 pauses = 1.9 s span
    assert values.syllables_per_s == pytest.approx(8 / 1.9, rel=0.1)
    assert compute_prosody(wave, transcript=None).words_per_s is None
    assert compute_prosody(wave, transcript="  ").words_per_s is None


def test_describe_exact_text():
    assert describe(BASE) == (
        "3.4 s; loud (-14 dBFS mean); wide pitch range (150-380 Hz, 16 semitones); fast speech (4.1 words/s)"
    )
    quiet_slow = replace(
        BASE, duration_s=1.8, rms_mean_dbfs=-41.6, f0_p10_hz=98.4, f0_p90_hz=108.0, f0_range_semitones=1.61,
        words_per_s=None, syllables_per_s=2.96,
    )  # fmt: skip
    assert describe(quiet_slow) == (
        "1.8 s (short); quiet (-42 dBFS mean); narrow pitch range (98-108 Hz, 2 semitones); "
        "slow speech (3.0 syllables/s)"
    )
    middle = replace(
        BASE, duration_s=9.04, rms_mean_dbfs=-27.4, f0_p10_hz=180.0, f0_p90_hz=280.0, f0_range_semitones=7.65,
        words_per_s=2.7,
    )  # fmt: skip
    assert describe(middle) == (
        "9.0 s (long); moderate loudness (-27 dBFS mean); moderate pitch range (180-280 Hz, 8 semitones); "
        "average speech rate (2.7 words/s)"
    )
    one_semitone = replace(BASE, f0_p10_hz=200.0, f0_p90_hz=212.0, f0_range_semitones=1.009)
    assert "narrow pitch range (200-212 Hz, 1 semitone);" in describe(one_semitone)


def test_describe_flags_and_missing_values():
    assert describe(replace(BASE, duration_s=4.0, flags=("silent", "unvoiced"))) == "4.0 s; silent"
    broken = replace(
        BASE, duration_s=0.6, rms_mean_dbfs=-0.3, f0_median_hz=None, f0_p10_hz=float("nan"), f0_p90_hz=None,
        f0_range_semitones=None, words_per_s=None, syllables_per_s=float("nan"), clipped_fraction=0.0123,
        flags=("clipped", "unvoiced", "very_short"),
    )  # fmt: skip
    assert describe(broken) == (
        "0.6 s (very short); loud (0 dBFS mean); no voiced speech detected; clipped (1.2% of samples)"
    )


def test_describe_uses_given_thresholds():
    strict = Thresholds(quiet_below_dbfs=-10.0, loud_above_dbfs=-5.0, short_below_s=4.0, long_above_s=5.0)
    assert describe(BASE, strict).startswith("3.4 s (short); quiet (-14 dBFS mean);")


def test_thresholds_from_values_terciles_with_fallback():
    values = [replace(BASE, rms_mean_dbfs=-float(i), duration_s=float(i), words_per_s=None) for i in range(1, 61)]
    values.append(replace(BASE, rms_mean_dbfs=-200.0, duration_s=30.5, flags=("silent",)))
    learned = Thresholds.from_values(values)
    assert (learned.quiet_below_dbfs, learned.loud_above_dbfs) == (-40.33, -20.67)  # silent clip left out
    assert (learned.short_below_s, learned.long_above_s) == (21.0, 40.0)  # 61 durations: sorted[20], sorted[40]
    defaults = Thresholds()
    assert learned.slow_below_words_per_s == defaults.slow_below_words_per_s  # no words: default kept
    assert learned.wide_above_semitones == defaults.wide_above_semitones  # one distinct value: zero-width terciles
    assert Thresholds.from_values(values[:10]) == defaults  # too few clips: every default kept


def test_thresholds_must_be_ordered():
    with pytest.raises(ValueError, match="quiet_below_dbfs"):
        Thresholds(quiet_below_dbfs=-10.0, loud_above_dbfs=-20.0)


def test_prosody_version_tracks_tracker_and_thresholds():
    base = prosody_version("yin", Thresholds())
    assert base == prosody_version("yin", Thresholds())
    assert base.startswith("yin-") and len(base) == len("yin-") + 12
    assert prosody_version("pyin", Thresholds()) != base
    assert prosody_version("yin", Thresholds(loud_above_dbfs=-19.0)) != base
    with pytest.raises(ValueError):
        prosody_version("crepe", Thresholds())


def test_compute_many_inline_reports_failures_in_order(tmp_path):
    items = [
        ("tone", harmonic_tone(), "a b"),
        ("missing", tmp_path / "missing.wav", None),
        ("silence", np.zeros(SR, dtype=np.float32), None),
    ]
    results = list(compute_many(items, processes=1))
    assert [key for key, _ in results] == ["tone", "missing", "silence"]
    assert results[0][1].f0_median_hz == pytest.approx(200.0, rel=0.02)
    assert results[1][1] == ProsodyFailed("file not found")
    assert "silent" in results[2][1].flags


def test_compute_many_with_processes_matches_inline(tmp_path):
    items = []
    for i, f0 in enumerate((120.0, 200.0, 310.0)):
        path = tmp_path / f"tone{i}.wav"
        sf.write(path, harmonic_tone(f0), SR)
        items.append((i, str(path), None))
    items.append((3, tmp_path / "missing.wav", None))
    parallel = list(compute_many(items, processes=2))
    assert parallel == list(compute_many(items, processes=1))
    assert [key for key, _ in parallel] == [0, 1, 2, 3]
    assert [round(v.f0_median_hz, -1) for _, v in parallel[:3]] == [120.0, 200.0, 310.0]
    assert isinstance(parallel[3][1], ProsodyFailed)


def test_compute_many_cuts_episode_segments_for_its_workers(tmp_path):
    """Segments of an episode reach the workers as waves cut in this process from the episode's one decode: the
    same values as inline, and a segment outside the episode fails with the reason in its place."""
    import hashlib

    from emojudge_models.episodes.decoded import DecodedEpisodes
    from emojudge_models.episodes.sources import SegmentSource

    path = tmp_path / "episode.wav"
    gap = np.zeros(SR // 2, dtype=np.float32)
    sf.write(path, np.concatenate([harmonic_tone(120.0), gap, harmonic_tone(200.0), gap, harmonic_tone(310.0)]), SR)
    sha, decoded = hashlib.sha256(path.read_bytes()).hexdigest(), tmp_path / "decoded"
    items = [(i, SegmentSource(str(path), 1.5 * i, 1.5 * i + 1.0, sha, None, str(decoded)), None) for i in range(3)]
    items.append((3, SegmentSource(str(path), 20.0, 21.0, sha, None, str(decoded)), None))
    parallel = list(compute_many(items, processes=2))
    assert DecodedEpisodes(decoded).decodes(sha) == 1
    assert parallel == list(compute_many(items, processes=1))
    assert [round(v.f0_median_hz, -1) for _, v in parallel[:3]] == [120.0, 200.0, 310.0]
    assert parallel[3] == (3, ProsodyFailed("segment 20.00-21.00 s lies outside the 4.00 s episode"))


def test_ravdess_angry_clips_are_louder_than_sad(ravdess_dir: Path):
    with open(ravdess_dir / "manifest.csv", newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: row["utterance_id"])
    chosen = [row for emotion in ("angry", "sad") for row in [r for r in rows if r["emotion"] == emotion][:12]]
    items = [((row["emotion"], row["transcript"]), ravdess_dir / row["path"], row["transcript"]) for row in chosen]
    results = list(compute_many(items))
    assert not [v for _, v in results if isinstance(v, ProsodyFailed)]
    level = {e: np.mean([v.rms_mean_dbfs for (emo, _), v in results if emo == e]) for e in ("angry", "sad")}
    assert level["angry"] > level["sad"] + 5.0
    # Both RAVDESS sentences have 7 syllables; the energy-peak estimate should count about that many.
    counts = [v.syllables_per_s * len(text.split()) / v.words_per_s for (_, text), v in results]
    assert np.mean(counts) == pytest.approx(7.0, abs=1.5)
