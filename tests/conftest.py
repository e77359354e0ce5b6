"""Shared fixtures: the real RAVDESS clips, a temporary EMOJUDGE_HOME, synthetic corpora."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

RAVDESS_DIR = Path(
    os.environ.get("EMOJUDGE_RAVDESS_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "ravdess-dev")
)
"""The shared real clips (../shared/data/ravdess-dev beside the checkout; EMOJUDGE_RAVDESS_DIR overrides)."""


@pytest.fixture(scope="session")
def ravdess_dir() -> Path:
    if not (RAVDESS_DIR / "manifest.csv").is_file():
        pytest.skip(f"real RAVDESS clips not found at {RAVDESS_DIR} (set EMOJUDGE_RAVDESS_DIR)")
    return RAVDESS_DIR


@pytest.fixture(scope="module")
def tiny_wavlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny WavLM (real conv strides, 50 frames/s) saved with save_pretrained; no download."""
    from tiny_models import save_wavlm, tiny_wavlm_config

    return save_wavlm(tmp_path_factory.mktemp("wavlm"), tiny_wavlm_config())


@pytest.fixture
def emojudge_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh EMOJUDGE_HOME (and DAGSTER_HOME inside it) for one test."""
    home = tmp_path / "home"
    monkeypatch.setenv("EMOJUDGE_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    return home


def tone(seconds: float, sr: int = 16_000, f0: float = 180.0, level: float = 0.2, channels: int = 1) -> np.ndarray:
    """A harmonic tone (float32), shaped (samples,) or (samples, channels)."""
    t = np.arange(int(seconds * sr)) / sr
    wave = level * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6)) / 2
    wave = wave.astype(np.float32)
    return wave if channels == 1 else np.stack([wave] * channels, axis=1)


@pytest.fixture
def msp_corpus(tmp_path: Path) -> Path:
    """A small MSP-Podcast-style corpus: 8 good clips (stereo, 44.1 kHz, FLAC among them) and bad ones."""
    root = tmp_path / "msp"
    (root / "Audios").mkdir(parents=True)
    (root / "Transcripts").mkdir()
    (root / "Labels").mkdir()
    rows = []
    codes = "ASHUFDCN"
    for index, code in enumerate(codes):
        name = f"MSP-PODCAST_0001_{index:04d}.wav"
        sr = 44_100 if index % 2 else 16_000
        sf.write(root / "Audios" / name, tone(1.0 + index * 0.1, sr=sr, channels=2 if index == 3 else 1), sr)
        (root / "Transcripts" / f"MSP-PODCAST_0001_{index:04d}.txt").write_text(f"sentence number {index}")
        split = ["Train", "Train", "Train", "Train", "Development", "Development", "Test1", "Test1"][index]
        rows.append(
            f"{name},{code},{3 + index * 0.1:.1f},4.0,3.5,{100 + index % 3},{'Female' if index % 2 else 'Male'},{split}"
        )
    # a clip without transcript (kept, flagged), a NaN clip, an overlong clip, a bad EmoClass code
    sf.write(root / "Audios" / "MSP-PODCAST_0002_0000.wav", tone(1.2), 16_000)
    rows.append("MSP-PODCAST_0002_0000.wav,N,4.0,4.0,4.0,200,Male,Train")
    nan_wave = tone(1.0)
    nan_wave[100] = np.nan
    sf.write(root / "Audios" / "MSP-PODCAST_0002_0001.wav", nan_wave, 16_000, subtype="FLOAT")
    rows.append("MSP-PODCAST_0002_0001.wav,A,4.0,4.0,4.0,200,Male,Train")
    sf.write(root / "Audios" / "MSP-PODCAST_0002_0002.wav", tone(6.0), 16_000)
    rows.append("MSP-PODCAST_0002_0002.wav,S,4.0,4.0,4.0,200,Male,Train")
    rows.append("MSP-PODCAST_0001_0000.wav,Q,4.0,4.0,4.0,200,Male,Train")
    header = "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"
    (root / "Labels" / "labels_consensus.csv").write_text("\n".join([header, *rows]) + "\n")
    return root


FAULT_TOTALS = {"rows lost": 0, "duplicate rows": 0, "paid calls repeated": 0}
"""What the fault cases of this session measured, summed for the closing line."""


class FaultLedger:
    """What a fault case measured: rows lost, duplicate rows and paid calls repeated (each should be 0)."""

    def record(self, rows_lost: int = 0, duplicate_rows: int = 0, paid_calls_repeated: int = 0) -> None:
        FAULT_TOTALS["rows lost"] += rows_lost
        FAULT_TOTALS["duplicate rows"] += duplicate_rows
        FAULT_TOTALS["paid calls repeated"] += paid_calls_repeated


@pytest.fixture
def fault_ledger() -> FaultLedger:
    return FaultLedger()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """After a run that included fault cases, the one line `make reliability` promises."""
    reports = [
        report
        for key in ("passed", "failed", "error")
        for report in terminalreporter.stats.get(key, [])
        if getattr(report, "when", "call") == "call" and "reliability" in getattr(report, "keywords", {})
    ]
    if not reports:
        return
    documented = sum(report.passed for report in reports)
    measured = ", ".join(f"{name} {value}" for name, value in FAULT_TOTALS.items())
    terminalreporter.write_line(f"reliability: {len(reports)} cases, {documented} as documented, {measured}")
