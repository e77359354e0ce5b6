"""Extraction at scale (issue 21): on-device fp16 and pooling, out-of-memory halving, loud failure, keys by device
and dtype, the WavLM attention patch across transformers versions, and inputs of the paper profile."""

from __future__ import annotations

import inspect
import types
from functools import partial
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import soundfile as sf
import torch

from emojudge_models.encoders.acoustic import AcousticEncoder
from emojudge_models.encoders.base import StoreReadyAudioEncoder, encoder_key
from emojudge_models.encoders.hf import (
    HFAudioEncoder,
    HFTextEncoder,
    _PendingStoreFrames,
    _store_summary,
    _use_sdpa_for_wavlm,
    _wavlm_sdpa_self_attention,
)
from emojudge_models.features.batching import auto_batch_seconds, auto_lanes, split_to_budget
from emojudge_models.features.extract import (
    Clip,
    ExtractionReport,
    _check_frames,
    extract_audio_features,
    failed_share_error,
)
from emojudge_models.features.store import FeatureStore, pooled_vector
from emojudge_models.features.waveform_stats import (
    NormalizedAudioEncoder,
    WaveformStats,
    normalize_in_place,
    normalize_waveform,
)
from emojudge_models.ingest.audio import file_sha256
from emojudge_models.profiles import resolve
from emojudge_models.settings import Settings
from emojudge_models.store import warehouse


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    return FeatureStore(partial(warehouse.connect, tmp_path), tmp_path / "features")


def write_clips(directory: Path, seconds: list[float], eval_set: str = "dev") -> list[Clip]:
    directory.mkdir(parents=True, exist_ok=True)
    clips = []
    for index, length in enumerate(seconds):
        rng = np.random.default_rng(index)
        wave = (rng.standard_normal(int(length * 16_000)) * 0.1 + 0.02).astype(np.float32)
        path = directory / f"c{index}.wav"
        sf.write(path, wave, 16_000, subtype="FLOAT")
        clips.append(Clip(eval_set, f"c{index}", path, file_sha256(path), length))
    return clips


class OutOfMemoryAbove:
    """Wraps an encoder; a call with more than ``max_clips`` clips raises CUDA's out-of-memory error, as a GPU
    would. Records the size of every call."""

    def __init__(self, encoder, max_clips: int, store_ready: bool) -> None:
        self.encoder, self.max_clips = encoder, max_clips
        self.spec, self.dim, self.frame_rate_hz = encoder.spec, encoder.dim, encoder.frame_rate_hz
        self.calls: list[int] = []
        if store_ready:
            self.encode_for_store = self._encode_for_store

    def _check(self, waves) -> None:
        self.calls.append(len(waves))
        if len(waves) > self.max_clips:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    def encode_batch(self, waves):
        self._check(waves)
        return self.encoder.encode_batch(waves)

    def _encode_for_store(self, waves):
        self._check(waves)
        return self.encoder.encode_for_store(waves)


@pytest.mark.reliability
@pytest.mark.parametrize("store_ready", [True, False], ids=["on-device", "host"])
def test_out_of_memory_halves_the_batch_logs_once_and_continues(
    store_ready: bool, store: FeatureStore, tiny_wavlm: Path, tmp_path: Path
) -> None:
    encoder = HFAudioEncoder(tiny_wavlm)
    clips = write_clips(tmp_path / "audio", [2.0] * 8)
    wrapped = OutOfMemoryAbove(encoder, max_clips=2, store_ready=store_ready)
    assert isinstance(wrapped, StoreReadyAudioEncoder) == store_ready
    warnings: list[str] = []
    report = extract_audio_features(
        store,
        wrapped,
        clips,
        run_id="r",
        batch_seconds=8.0,
        decode_workers=1,
        write_workers=1,
        on_warning=warnings.append,
    )
    assert (report.computed, report.failed) == (8, [])
    # Planned: two batches of 4 clips (8 s padded). The first runs out of memory and is halved (2 + 2); the
    # second is cut to the halved budget before it runs, so it never fails.
    assert wrapped.calls == [4, 2, 2, 2, 2]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "out of memory" in warnings[0] and "halved to 4 s" in warnings[0]
    frames = dict(store.read_frames("dev", None, report.encoder_key))
    reference = encoder.encode_batch([sf.read(c.audio_path, dtype="float32")[0] for c in clips[:2]])
    np.testing.assert_allclose(frames["c0"].astype(np.float32), reference[0], atol=5e-3, rtol=2e-3)
    np.testing.assert_allclose(frames["c1"].astype(np.float32), reference[1], atol=5e-3, rtol=2e-3)


def test_a_single_clip_out_of_memory_fails_that_clip_only(store: FeatureStore, tmp_path: Path) -> None:
    class LongClipsDoNotFit(AcousticEncoder):
        def encode_batch(self, waves):
            if max(len(w) for w in waves) > 3 * 16_000:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory")
            return super().encode_batch(waves)

    clips = write_clips(tmp_path / "audio", [4.0, 1.0, 1.0])
    warnings: list[str] = []
    report = extract_audio_features(
        store, LongClipsDoNotFit(), clips, run_id="r", batch_seconds=20.0, on_warning=warnings.append
    )
    assert report.computed == 2
    assert report.failed == [("c0", "encoder failed: OutOfMemoryError: CUDA out of memory")]
    assert len(warnings) == 1


def test_on_device_store_frames_equal_the_host_path(store: FeatureStore, tiny_wavlm: Path, tmp_path: Path) -> None:
    """fp16 conversion, pooling and the stitching of long clips on the device give what the host path stores."""
    encoder = HFAudioEncoder(tiny_wavlm, max_chunk_s=4.0, chunk_overlap_s=1.0)
    waves = [
        np.random.default_rng(k).standard_normal(n).astype(np.float32) * 0.1 for k, n in ((0, 9 * 16_000), (1, 24_000))
    ]
    host = encoder.encode_batch(waves)
    device = encoder.encode_for_store(waves).result()
    for frames, ready in zip(host, device, strict=True):
        assert ready.frames.dtype == np.float16 and ready.frames.shape == frames.shape
        np.testing.assert_array_equal(ready.frames, frames.astype(np.float16))
        np.testing.assert_allclose(ready.pooled, pooled_vector(frames), rtol=1e-5, atol=1e-6)


def test_on_device_checks_give_the_host_reasons() -> None:
    dim = 3
    good = torch.arange(12, dtype=torch.float32).reshape(4, dim)
    nan = torch.ones((2, dim))
    nan[1, 2] = float("nan")
    huge = torch.full((2, dim), 1e6)
    empty = torch.zeros((0, dim))
    clips = [good, nan, huge, empty]
    half, summary = _store_summary(clips, dim)
    results = _PendingStoreFrames(half, summary, [len(c) for c in clips], dim).result()
    assert [r if isinstance(r, str) else None for r in results[1:]] == [
        _check_frames(c.numpy(), dim) for c in clips[1:]
    ]
    np.testing.assert_array_equal(results[0].frames, good.numpy().astype(np.float16))
    np.testing.assert_allclose(results[0].pooled, pooled_vector(good.numpy()), rtol=1e-6)


def test_split_to_budget_keeps_order_and_budget() -> None:
    seconds = [5.0, 4.0, 4.0, 3.0, 1.0, 1.0]
    groups = split_to_budget(seconds, 9.0)
    assert [list(g) for g in groups] == [[0], [1, 2], [3, 4, 5]]
    assert all(len(g) * max(seconds[i] for i in g) <= 9.0 for g in groups)
    assert [list(g) for g in split_to_budget([30.0, 2.0], 10.0)] == [[0], [1]]


def test_batch_and_lanes_by_device() -> None:
    assert auto_batch_seconds("cpu") == 100.0 == auto_batch_seconds("mps")
    assert auto_lanes("cpu", cpu_count=16) == (2, 1)
    assert auto_lanes("cuda:1", cpu_count=16) == (4, 12)
    assert auto_lanes("cuda", cpu_count=2) == (2, 2)
    assert Settings.from_env({}).batch_seconds is None
    assert Settings.from_env({"EMOJUDGE_WRITE_WORKERS": "3"}).write_workers == 3


def report_with(computed: int, reused: int, reasons: list[str]) -> ExtractionReport:
    return ExtractionReport("k", computed, reused, [(f"u{i}", r) for i, r in enumerate(reasons)])


def test_failed_share_is_one_line_with_the_common_reason() -> None:
    assert failed_share_error(report_with(3, 1, ["x"]), 0.5) is None
    assert failed_share_error(report_with(1, 0, ["x", "y"]), 0.7) is None
    message = failed_share_error(report_with(1, 0, ["bad", "bad", "worse"]), 0.5)
    assert message == "3 of 4 clips failed (75% > 50%); most common reason (2x): bad"
    every = failed_share_error(report_with(0, 0, ["encoder failed: TypeError: boom"] * 2), 1.0)
    assert every == "2 of 2 clips failed (every clip); most common reason (2x): encoder failed: TypeError: boom"
    assert failed_share_error(report_with(0, 0, []), 0.0) is None


@pytest.mark.reliability
def test_all_clips_failed_fails_the_audio_features_asset(
    msp_corpus: Path, emojudge_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from emojudge_pipeline import cli, resources
    from emojudge_pipeline.assets.features import audio_features
    from emojudge_pipeline.assets.ingest import utterances
    from emojudge_pipeline.resources import ModelsResource, WarehouseResource, default_ingest

    class Broken(AcousticEncoder):
        def encode_batch(self, waves):
            raise TypeError("_wavlm_sdpa_self_attention() takes 4 positional arguments but 5 were given")

    cli.add_eval_set("msp-fail", msp_corpus, "msp")
    home = WarehouseResource(home=str(emojudge_home))
    settings = Settings.from_env()
    assert dg.materialize(
        [utterances], partition_key="msp-fail", instance=cli.instance(),
        resources={"warehouse_db": home, "ingest": default_ingest(settings)},
    ).success  # fmt: skip
    monkeypatch.setattr(resources, "_cached_audio_encoder", lambda config, device: Broken())
    result = dg.materialize(
        [audio_features], partition_key="msp-fail", instance=cli.instance(), raise_on_error=False,
        resources={"warehouse_db": home, "models": ModelsResource(profile="acoustic", device="cpu")},
    )  # fmt: skip
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.error.message.strip()
    assert "\n" not in message
    assert "audio_features[msp-fail]: 10 of 10 clips failed (every clip)" in message
    assert "takes 4 positional arguments but 5 were given" in message
    with warehouse.connect(emojudge_home, read_only=True) as con:
        rejected = con.execute(
            "SELECT count(*) FROM rejected_inputs WHERE eval_set = 'msp-fail' AND stage = 'audio_features'"
        ).fetchone()[0]
    assert rejected == 10


def test_encoder_keys_differ_by_device_and_compute_dtype(tiny_wavlm: Path, tmp_path: Path) -> None:
    cpu32 = HFAudioEncoder(tiny_wavlm)
    cpu_bf16 = HFAudioEncoder(tiny_wavlm, dtype="bfloat16")
    other_device = HFAudioEncoder(tiny_wavlm, device="meta")
    assert (cpu32.spec["device"], cpu32.spec["compute_dtype"]) == ("cpu", "float32")
    assert (cpu_bf16.spec["compute_dtype"], other_device.spec["device"]) == ("bfloat16", "meta")
    assert len({encoder_key(e.spec) for e in (cpu32, cpu_bf16, other_device)}) == 3
    assert encoder_key(HFAudioEncoder(tiny_wavlm, dtype="float32").spec) == encoder_key(cpu32.spec)


def test_clip_norm_follows_the_preprocessor_and_is_in_the_key(tiny_wavlm: Path) -> None:
    follows = HFAudioEncoder(tiny_wavlm)
    off = HFAudioEncoder(tiny_wavlm, clip_norm=False)
    assert (follows.spec["clip_norm"], off.spec["clip_norm"]) == (True, False)
    assert encoder_key(follows.spec) != encoder_key(off.spec)
    wave = np.random.default_rng(3).standard_normal(16_000).astype(np.float32) * 0.2 + 0.1
    np.testing.assert_array_equal(off._waveform_inputs([wave])["input_values"].numpy()[0], wave)
    normed = follows._waveform_inputs([wave])["input_values"].numpy()[0]
    assert abs(normed.mean()) < 1e-5 and abs(normed.std() - 1) < 1e-3
    mask = follows._waveform_inputs([wave, wave[:8000]])["attention_mask"]
    assert mask.dtype == torch.int32 and mask.sum(dim=1).tolist() == [16_000, 8_000]


def test_paper_profile_normalises_by_the_train_set_only(tiny_wavlm: Path) -> None:
    paper = resolve("paper")
    assert paper.normalize_waveform and paper.audio_encoder_config["clip_norm"] is False
    own = resolve("paper", audio=f'{{"kind": "hf", "model": "{tiny_wavlm}", "clip_norm": true}}')
    assert not own.normalize_waveform and own.audio_encoder_config["clip_norm"] is True
    assert resolve("local").audio_encoder_config == resolve("local").audio_encoder
    stats = WaveformStats(mean=0.02, std=0.1, n_clips=1, n_samples=10, stats_key="s")
    with pytest.raises(ValueError, match="would cancel the train-set normalisation"):
        NormalizedAudioEncoder(HFAudioEncoder(tiny_wavlm), stats)
    keyed = NormalizedAudioEncoder(HFAudioEncoder(tiny_wavlm, clip_norm=False), stats)
    assert keyed.spec["waveform_stats_key"] == "s" and keyed.spec["clip_norm"] is False


def test_in_place_normalisation_equals_the_copying_one() -> None:
    stats = WaveformStats(mean=0.0123, std=0.0871, n_clips=1, n_samples=10, stats_key="s")
    wave = np.random.default_rng(0).standard_normal(10_000).astype(np.float32)
    expected = normalize_waveform(wave, stats)
    same = normalize_in_place(wave, stats)
    assert same is wave
    np.testing.assert_array_equal(same, expected)
    frozen = np.random.default_rng(1).standard_normal(100).astype(np.float32)
    frozen.flags.writeable = False
    np.testing.assert_array_equal(normalize_in_place(frozen, stats), normalize_waveform(frozen, stats))


def test_train_set_normalised_extraction_feeds_the_model_normalised_waves(
    store: FeatureStore, tiny_wavlm: Path, tmp_path: Path
) -> None:
    clips = write_clips(tmp_path / "audio", [1.5, 2.0])
    stats = WaveformStats(mean=0.02, std=0.1, n_clips=2, n_samples=56_000, stats_key="s")
    encoder = HFAudioEncoder(tiny_wavlm, clip_norm=False)
    report = extract_audio_features(store, encoder, clips, run_id="r", normalize=stats)
    assert report.encoder_key == encoder_key(NormalizedAudioEncoder(encoder, stats).spec)
    stored = dict(store.read_frames("dev", None, report.encoder_key))
    wave = sf.read(clips[0].audio_path, dtype="float32")[0]
    expected = encoder.encode_batch([normalize_waveform(wave, stats)])[0]
    np.testing.assert_allclose(stored["c0"].astype(np.float32), expected, atol=5e-3, rtol=2e-3)
    unnormalised = encoder.encode_batch([wave])[0]
    assert not np.allclose(stored["c0"].astype(np.float32), unnormalised, atol=5e-2)


def test_wavlm_attention_patch_takes_the_four_argument_call(tiny_wavlm: Path) -> None:
    """transformers 4.56-5.15 call ``torch_multi_head_self_attention(h, mask, bias, output_attentions)``; later
    versions drop the fourth. The SDPA replacement gives the eager result either way."""
    encoder = HFAudioEncoder(tiny_wavlm)
    attention = next(m for m in encoder.model.modules() if type(m).__name__ == "WavLMAttention")
    assert attention.torch_multi_head_self_attention.__func__ is _wavlm_sdpa_self_attention
    batch, length = 2, 7
    torch.manual_seed(0)
    hidden = torch.randn(batch, length, attention.embed_dim)
    bias = torch.randn(batch * attention.num_heads, length, length)
    mask = torch.ones(batch, length, dtype=torch.int32)
    mask[1, 5:] = 0
    eager = type(attention).torch_multi_head_self_attention
    n_eager = len(inspect.signature(eager).parameters)
    reference = eager(attention, hidden, mask, bias, *([False] * (n_eager - 4)))[0]
    with torch.inference_mode():
        for call in (
            lambda: attention.torch_multi_head_self_attention(hidden, mask, bias),
            lambda: attention.torch_multi_head_self_attention(hidden, mask, bias, False),
            lambda: attention.torch_multi_head_self_attention(hidden, mask, bias, output_attentions=False),
        ):
            output, weights = call()
            assert weights is None
            torch.testing.assert_close(output[0], reference[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(output[1, :5], reference[1, :5], atol=1e-5, rtol=1e-5)


def test_wavlm_attention_patch_leaves_an_unknown_signature_alone() -> None:
    class WavLMAttention(torch.nn.Module):
        def torch_multi_head_self_attention(self, states, bias):
            return states, None

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attention = WavLMAttention()

    model = Model()
    assert _use_sdpa_for_wavlm(model) == 0
    assert isinstance(model.attention.torch_multi_head_self_attention, types.MethodType)
    assert model.attention.torch_multi_head_self_attention.__func__ is WavLMAttention.torch_multi_head_self_attention


def test_text_encoder_key_holds_device_and_dtype(tmp_path: Path) -> None:
    from tiny_models import save_tiny_roberta

    path = save_tiny_roberta(tmp_path / "roberta", ["a b c", "d e f"] * 10)
    fp32, bf16 = HFTextEncoder(path), HFTextEncoder(path, dtype="bfloat16")
    assert (fp32.spec["device"], fp32.spec["compute_dtype"], bf16.spec["compute_dtype"]) == (
        "cpu",
        "float32",
        "bfloat16",
    )
    assert encoder_key(fp32.spec) != encoder_key(bf16.spec)


def test_vectors_of_several_shards_go_in_one_session(
    store: FeatureStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first shard's vectors are inserted at once, later ones together once the caller has done enough other
    work (here: never before the end), so index sessions do not cost one DuckDB open per shard."""
    from emojudge_models.features import extract

    monkeypatch.setattr(extract, "INDEX_IDLE_FACTOR", 1e9)
    inserted: list[int] = []
    add_vectors = store.add_vectors

    def counting_add_vectors(key, modality, hashes, vectors):
        inserted.append(len(hashes))
        add_vectors(key, modality, hashes, vectors)

    monkeypatch.setattr(store, "add_vectors", counting_add_vectors)
    clips = write_clips(tmp_path / "audio", [1.0] * 6)
    report = extract_audio_features(store, AcousticEncoder(), clips, run_id="r", flush_every=1, batch_seconds=2.0)
    assert report.computed == 6
    # Batches of two 1-s clips, one shard per clip: the first batch's two shards at once, the other four at the end.
    assert inserted == [2, 4]
    assert len(store.stored_vectors(report.encoder_key, [c.audio_sha256 for c in clips])) == 6
