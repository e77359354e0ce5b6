"""A truncated MP3 or M4A (a half-copied file) is rejected as truncated, the way a truncated WAV is, instead of being
scored as a shorter clip or episode.

The files are encoded at run time with PyAV from real RAVDESS clips and cut to 30% of their bytes, as an
interrupted copy leaves them.
"""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path

import av
import librosa
import numpy as np
import pytest

from emojudge_models.episodes.decode import EpisodeRejected, decode_episode
from emojudge_models.ingest.audio import AudioRejected, decode
from emojudge_models.ingest.utterances import ingest_corpus
from emojudge_pipeline import cli

RATE = 44_100
KEPT_SHARE = 0.3


def _speech(ravdess_dir: Path, seconds: float) -> np.ndarray:
    """RAVDESS clips back to back (mono float32 at 44.1 kHz), at least ``seconds`` long."""
    rows = list(csv.DictReader((ravdess_dir / "manifest.csv").open(encoding="utf-8")))
    parts, total = [], 0
    for row in rows:
        wave, _ = librosa.load(ravdess_dir / row["path"], sr=RATE)
        parts.append(wave)
        total += len(wave)
        if total >= seconds * RATE:
            break
    return np.concatenate(parts).astype(np.float32)


def _encode(path: Path, wave: np.ndarray, codec: str, options: dict[str, str] | None = None) -> Path:
    """Encode mono ``wave`` with PyAV's FFmpeg (``libmp3lame`` writes a Xing frame count, ``aac`` in MP4 a sample
    table); ``options`` go to the muxer (``movflags=+faststart`` puts the M4A index first)."""
    with av.open(str(path), "w", format="mp4" if path.suffix == ".m4a" else None, options=options or {}) as container:
        stream = container.add_stream(codec, rate=RATE)
        stream.layout = "mono"
        for offset in range(0, len(wave), 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(wave[None, offset : offset + 1024]), format="fltp", layout="mono"
            )
            frame.sample_rate = RATE
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def _cut(path: Path) -> Path:
    """The first 30% of ``path``'s bytes, beside it as ``cut-<name>``."""
    data = path.read_bytes()
    cut = path.with_name(f"cut-{path.name}")
    cut.write_bytes(data[: int(len(data) * KEPT_SHARE)])
    return cut


@pytest.mark.reliability
def test_a_truncated_mp3_clip_is_rejected_not_shortened(ravdess_dir: Path, tmp_path: Path) -> None:
    """An MP3 clip cut to 30% of its bytes was ingested as a 1 s clip; its Xing header declares 3.3 s."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    whole = _encode(corpus / "clip.mp3", _speech(ravdess_dir, 3.0), "libmp3lame")
    cut = _cut(whole)
    result = ingest_corpus(corpus, "folder", workers=1)
    assert result.utterances["utterance_id"].tolist() == ["clip"]
    [rejection] = [r for r in result.rejections if r.stage == "ingest"]
    assert rejection.utterance_id == "cut-clip" and rejection.reason.startswith(
        "file is truncated: its header declares"
    )
    declared = r"file is truncated: its header declares 3\.\d s of audio, [01]\.\d s decode"
    with pytest.raises(AudioRejected, match=declared):
        decode(cut)


def _episode_files(ravdess_dir: Path, root: Path) -> dict[str, Path]:
    wave = _speech(ravdess_dir, 40.0)
    return {
        "mp3": _encode(root / "show.mp3", wave, "libmp3lame"),
        "m4a, index last": _encode(root / "show.m4a", wave, "aac"),
        "m4a, index first": _encode(root / "fast.m4a", wave, "aac", {"movflags": "+faststart"}),
    }


@pytest.mark.reliability
def test_a_truncated_mp3_or_m4a_episode_is_rejected_as_truncated(ravdess_dir: Path, tmp_path: Path) -> None:
    """Cut to 30%: the MP3 decoded to a 12 s episode (scored as a short one), the M4A with its index first failed
    half way with FFmpeg's "Invalid data", the M4A with its index last could not be opened at all; each is now
    rejected as truncated, and the whole files still decode."""
    reasons = {}
    for kind, whole in _episode_files(ravdess_dir, tmp_path).items():
        assert decode_episode(whole).duration_s == pytest.approx(40.0, abs=3.0)
        with pytest.raises(EpisodeRejected) as caught:
            decode_episode(_cut(whole))
        reasons[kind] = caught.value.reason
    assert reasons["mp3"].startswith("file is truncated: its header declares 4")
    for kind in ("m4a, index last", "m4a, index first"):
        assert reasons[kind].startswith("file is truncated: its mdat box ends at byte "), reasons[kind]


def test_a_size_estimated_duration_never_calls_a_file_truncated(ravdess_dir: Path, tmp_path: Path) -> None:
    """An MP3 without a Xing frame declares nothing: FFmpeg estimates its duration from its size, which shrinks with
    the file, so the cut one is a shorter clip (nothing says otherwise), never a false 'truncated'."""
    plain = _encode(tmp_path / "plain.mp3", _speech(ravdess_dir, 3.0), "libmp3lame", {"write_xing": "0"})
    assert decode(_cut(plain)).duration_s == pytest.approx(KEPT_SHARE * decode(plain).duration_s, abs=0.2)


@pytest.mark.reliability
def test_inbox_run_rejects_a_truncated_mp3_episode(
    ravdess_dir: Path, emojudge_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMOJUDGE_INBOX_SETTLE_S", "0.2")
    cut = _cut(_encode(tmp_path / "show.mp3", _speech(ravdess_dir, 40.0), "libmp3lame"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli.main(["inbox", "add", str(cut)])
        cli.main(["inbox", "run"])
    name = out.getvalue().split()[0]
    assert f"{name}  rejected: file is truncated: its header declares 4" in out.getvalue()
