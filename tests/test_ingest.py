"""Ingest: corpus readers, decoding, validation and the rejections each bad input earns."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import tone

from emojudge_models.ingest.audio import AudioRejected, decode
from emojudge_models.ingest.corpus import detect_format
from emojudge_models.ingest.splits import split_speakers
from emojudge_models.ingest.utterances import ingest_corpus


def test_ravdess_manifest_ingest(ravdess_dir: Path) -> None:
    result = ingest_corpus(ravdess_dir, "manifest")
    frame = result.utterances
    assert len(frame) == 168 and result.rejections == []
    assert set(frame["sample_rate_hz"]) == {48_000}
    assert frame["audio_sha256"].str.len().eq(64).all()
    assert frame["emotion"].value_counts().to_dict() == {e: 24 for e in frame["emotion"].unique()}
    assert frame["duration_s"].between(2.5, 6.0).all()
    assert (frame["transcript_source"] == "manifest").all()
    # speaker-independent split: 12 actors -> 8 / 2 / 2, and no speaker in two splits
    speakers_per_split = frame.groupby("split")["speaker_id"].nunique().to_dict()
    assert speakers_per_split == {"train": 8, "development": 2, "test": 2}
    assert frame.groupby("speaker_id")["split"].nunique().max() == 1
    assert result.split_source == "speaker-seeded" and result.split_seed == 13


@pytest.mark.reliability
def test_msp_layout_with_bad_inputs(msp_corpus: Path) -> None:
    assert detect_format(msp_corpus) == "msp"
    result = ingest_corpus(msp_corpus, "msp", max_duration_s=5.0)
    frame = result.utterances.set_index("utterance_id")
    assert len(frame) == 9
    assert frame.loc["MSP-PODCAST_0001_0000", "emotion"] == "angry"
    assert frame.loc["MSP-PODCAST_0001_0006", "emotion"] == "contempt"
    assert frame.loc["MSP-PODCAST_0001_0004", "split"] == "development"
    assert frame.loc["MSP-PODCAST_0001_0003", "channels"] == 2
    assert frame.loc["MSP-PODCAST_0001_0001", "sample_rate_hz"] == 44_100
    assert frame.loc["MSP-PODCAST_0001_0002", "arousal"] == pytest.approx(3.2)
    assert frame.loc["MSP-PODCAST_0001_0005", "transcript"] == "sentence number 5"
    assert frame.loc["MSP-PODCAST_0001_0005", "transcript_source"] == "sidecar"
    # a clip without transcript is kept, its transcript NULL, and the problem recorded
    assert pd.isna(frame.loc["MSP-PODCAST_0002_0000", "transcript"])
    reasons = {(r.utterance_id, r.stage): r.reason for r in result.rejections}
    assert "transcript file missing" in reasons[("MSP-PODCAST_0002_0000", "transcript")]
    assert "NaN or inf" in reasons[("MSP-PODCAST_0002_0001", "ingest")]
    assert "longer than the configured 5 s limit" in reasons[("MSP-PODCAST_0002_0002", "ingest")]
    assert "duplicate utterance id" in reasons[("MSP-PODCAST_0001_0000", "ingest")]
    assert result.split_source == "corpus"


@pytest.mark.reliability
def test_manifest_rejections_each_reason(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    (root / "audio").mkdir(parents=True)
    sf.write(root / "audio" / "good.wav", tone(1.0), 16_000)
    sf.write(root / "audio" / "good2.flac", tone(1.5, sr=22_050), 22_050)
    (root / "audio" / "empty.wav").write_bytes(b"")
    (root / "audio" / "corrupt.wav").write_bytes(b"RIFF....WAVEjunk")
    sf.write(root / "audio" / "short.wav", tone(0.3), 16_000)
    sf.write(root / "audio" / "silent.wav", np.zeros(16_000, dtype=np.float32), 16_000)
    (tmp_path / "outside.wav").write_bytes(b"")
    rows = [
        "utterance_id,path,emotion,transcript,speaker_id,gender",
        "good,audio/good.wav,happy,hello,s1,female",
        "good2,audio/good2.flac,sad,,s2,male",
        "empty,audio/empty.wav,sad,x,s1,female",
        "corrupt,audio/corrupt.wav,sad,x,s1,female",
        "short,audio/short.wav,sad,x,s1,female",
        "silent,audio/silent.wav,sad,x,s1,female",
        "escape,../outside.wav,sad,x,s1,female",
        "good,audio/good.wav,happy,again,s1,female",
        "joy,audio/good.wav,joy,x,s1,female",
        "missing,audio/missing.wav,sad,x,s1,female",
    ]
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    result = ingest_corpus(root, "manifest")
    assert sorted(result.utterances["utterance_id"]) == ["good", "good2"]
    good2 = result.utterances.set_index("utterance_id").loc["good2"]
    assert good2["sample_rate_hz"] == 22_050 and pd.isna(good2["transcript"])
    reasons = {r.utterance_id: r.reason for r in result.rejections}
    assert reasons["empty"] == "file is empty (0 bytes)"
    assert reasons["corrupt"] == "cannot decode audio corrupt.wav: Error in WAV file. No 'data' chunk marker"
    assert "shorter than the 0.5 s minimum" in reasons["short"]
    assert reasons["silent"].startswith("clip is all silence")
    assert reasons["escape"] == "audio path escapes the corpus root"
    assert reasons["good"].startswith("duplicate utterance id")
    assert "'joy' is not one of" in reasons["joy"]
    assert reasons["missing"] == "file not found"
    assert all(r.audio_path for r in result.rejections)


def test_bare_folder_is_unlabelled(tmp_path: Path) -> None:
    (tmp_path / "inbox" / "ep1").mkdir(parents=True)
    sf.write(tmp_path / "inbox" / "ep1" / "a.wav", tone(1.0), 16_000)
    sf.write(tmp_path / "inbox" / "b.wav", tone(2.0), 16_000)
    (tmp_path / "inbox" / "b.txt").write_text("a sidecar transcript")
    (tmp_path / "inbox" / "notes.md").write_text("not audio")
    assert detect_format(tmp_path / "inbox") == "folder"
    result = ingest_corpus(tmp_path / "inbox", "folder")
    frame = result.utterances.set_index("utterance_id")
    assert sorted(frame.index) == ["b", "ep1__a"]
    assert frame["split"].isna().all() and frame["emotion"].isna().all()
    assert frame.loc["b", "transcript"] == "a sidecar transcript"
    assert frame.loc["b", "transcript_source"] == "sidecar"


def test_decode_resamples_stereo_to_16k_mono(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    sf.write(path, tone(2.0, sr=48_000, channels=2), 48_000)
    decoded = decode(path)
    assert decoded.channels == 2 and decoded.orig_sample_rate_hz == 48_000
    assert decoded.wave.dtype == np.float32 and decoded.wave.ndim == 1
    assert len(decoded.wave) == 32_000 and decoded.duration_s == pytest.approx(2.0)
    with pytest.raises(AudioRejected, match="file not found"):
        decode(tmp_path / "nope.wav")


def test_split_speakers_is_seeded_and_disjoint() -> None:
    speakers = [f"s{i}" for i in range(10)]
    first, second = split_speakers(speakers, seed=3), split_speakers(speakers, seed=3)
    assert first == second
    assert sorted(first.values()).count("train") == 6
    assert split_speakers(speakers, seed=4) != first


REPO = Path(__file__).resolve().parents[1]


@pytest.mark.reliability
def test_truncated_wav_is_rejected_not_shortened(tmp_path: Path) -> None:
    """A half-copied WAV (header declares more data than the file holds) used to be scored as a shorter clip."""
    whole = tmp_path / "whole.wav"
    sf.write(whole, tone(3.0), 16_000, subtype="PCM_16")
    payload = whole.read_bytes()
    half = tmp_path / "half.wav"
    half.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(AudioRejected) as caught:
        decode(half)
    declared = 3 * 16_000 * 2
    assert caught.value.reason == (
        f"file is truncated: its header declares {declared} bytes of audio, the file holds {len(payload) // 2 - 44}"
    )
    assert decode(whole).duration_s == pytest.approx(3.0)


@pytest.mark.reliability
def test_directory_named_like_audio_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "x.wav").mkdir()
    with pytest.raises(AudioRejected) as caught:
        decode(tmp_path / "x.wav")
    assert caught.value.reason.startswith("not a file")


@pytest.mark.reliability
def test_same_bad_file_gets_the_same_reason(tmp_path: Path) -> None:
    """libsndfile names the BytesIO it was given (`<_io.BytesIO object at 0x7f...>`); reasons must not."""
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "garbage.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt \x02\x00\x00\x00zz" + bytes(range(200)))
    (root / "noise_ogg.ogg").write_bytes(os.urandom(4000))
    (root / "noise_flac.flac").write_bytes(b"fLaC" + os.urandom(4000))
    first = {r.utterance_id: r.reason for r in ingest_corpus(root, "folder").rejections}
    second = {r.utterance_id: r.reason for r in ingest_corpus(root, "folder").rejections}
    assert first == second and set(first) == {"garbage", "noise_ogg", "noise_flac"}
    for name, reason in first.items():
        assert "0x" not in reason and "object at" not in reason and "\n" not in reason
        assert reason.startswith("cannot decode audio ") and f"{name}." in reason


TWO_HOURS_S = 2 * 3600
PEAK_RSS_LIMIT_MB = 200
_REJECT_LONG = """
import sys
from pathlib import Path
from emojudge_models.ingest.utterances import ingest_corpus
result = ingest_corpus(Path(sys.argv[1]), "folder", max_duration_s=60.0)
assert len(result.utterances) == 0
print(result.rejections[0].reason)
"""
_PEAK_RSS_OF_CHILD = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, text=True)
print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, done.stdout.strip())
"""
"""Runs a command and prints its exit status, peak RSS (KiB) and output. The measuring process is this small
wrapper, not pytest: a child's ru_maxrss includes the RSS of the process it was forked from."""


@pytest.mark.reliability
def test_two_hour_file_is_rejected_from_its_header(tmp_path: Path) -> None:
    """A 2-hour 16 kHz WAV is rejected as over-long without being read: the ingesting process stays small
    (it peaked at 910 MB when the file was read and decoded before its duration was checked)."""
    root = tmp_path / "long"
    root.mkdir()
    block = tone(60.0)
    with sf.SoundFile(root / "two_hours.wav", "w", 16_000, 1, "PCM_16") as out:
        for minute in range(TWO_HOURS_S // 60):
            out.write(block if minute % 2 else np.zeros_like(block))
    assert (root / "two_hours.wav").stat().st_size > 200_000_000
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS_OF_CHILD, sys.executable, "-c", _REJECT_LONG, str(root)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    returncode, peak_kib, reason = done.stdout.split(" ", 2)
    assert returncode == "0", done.stderr[-2000:]
    assert reason.strip() == "clip is 7200.0 s long, longer than the configured 60 s limit"
    peak_mb = int(peak_kib) / 1024
    assert peak_mb < PEAK_RSS_LIMIT_MB, f"peak RSS {peak_mb:.0f} MB"
