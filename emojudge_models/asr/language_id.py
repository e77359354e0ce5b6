"""Spoken-language identification with the multilingual Whisper model the pipeline already has.

The ASR's default, tiny.en, is English-only and cannot tell languages apart; the multilingual Whisper base
(CTranslate2), whose encoder's layer 2 gives the local profile's audio frames, can. :class:`LanguageDetector` uses the
ASR's own model when it is a multilingual CTranslate2 Whisper, else the packaged base, whole (the audio encoder's copy
is cut after layer 2 and cannot detect a language); :func:`load_whisper_model` shares one loaded copy per model,
device, compute type and threads. Each clip's first ``DETECTION_WINDOW_S`` seconds are zero-padded
to that length, encoded, and CTranslate2's ``detect_language`` gives the probability of every language.

Why a 10-s window: on a 2-core CPU the full 30-s window cost about 0.9 CPU-s per clip, 10 s about 0.15, the clip's
own length about 0.06; on RAVDESS English (8 clips) all three found English at 0.95-0.99, while on a 1-s German
sentence (espeak-ng) the clip's own length said Russian (0.35) and 10 s German (0.90).

An episode's speaker is asked once (:meth:`LanguageDetector.detect_speaker`): up to ``SPEAKER_SAMPLE_S`` of their
segments, spread over the episode, in one 30-s window, whose language and probability every segment of theirs takes.
Per segment, language identification was half of the transcripts step of a built hour (113 of 216 s for 1,027
segments, bench/RESULTS.md); per speaker it is one window each, and more speech than any one segment to decide on. A
speaker who changes language within an episode gets the language of most of the sample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emojudge_models.encoders.base import encoder_key
from emojudge_models.encoders.whisper_ct2 import (
    DEFAULT_MODEL,
    default_compute_type,
    load_whisper_model,
    resolve_model,
    weights_sha256,
)
from emojudge_models.episodes.sources import SegmentSource, load_audio
from emojudge_models.ingest.audio import AudioRejected
from emojudge_models.sample_rate import SAMPLE_RATE_HZ

DETECTION_WINDOW_S = 10.0
SPEAKER_SAMPLE_S = 30.0
"""Speech of one episode speaker that decides their language: Whisper's own window, as faster-whisper uses."""
SPEAKER_SAMPLE_SEGMENTS = 16
"""Segments read for a speaker's sample at most, spread evenly over their turns in the episode."""
MEL_FRAMES_PER_SECOND = 100
BATCH_SIZE = 8


class LanguageDetector:
    """The most probable spoken language of each clip, with its probability."""

    def __init__(self, asr_options: Mapping[str, Any]) -> None:
        device = str(asr_options.get("device", "cpu"))
        compute_type = default_compute_type(device)
        model = asr_options.get("model")
        source = resolve_model(DEFAULT_MODEL)
        if model is not None and str(asr_options.get("kind", "whisper-ct2")) == "whisper-ct2":
            candidate = resolve_model(model)
            if load_whisper_model(candidate, device, compute_type, 0).model.is_multilingual:
                source = candidate
        self.model = load_whisper_model(source, device, compute_type, 0)
        self.spec = {
            "kind": "whisper-ct2-langid",
            "model": source.name,
            "weights_sha256": weights_sha256(source),
            "window_s": DETECTION_WINDOW_S,
        }
        self.key = f"langid-{source.name}-{encoder_key(self.spec)[:12]}"

    def detect(self, clips: Sequence[np.ndarray | str | Path | SegmentSource]) -> list[tuple[str, float]]:
        """(language tag, probability) per 16 kHz clip (a wave, an audio file or an episode segment), in order."""
        import ctranslate2
        from faster_whisper.audio import pad_or_trim

        frames = int(DETECTION_WINDOW_S * MEL_FRAMES_PER_SECOND)
        found: list[tuple[str, float]] = []
        for start in range(0, len(clips), BATCH_SIZE):
            waves = [_wave(clip) for clip in clips[start : start + BATCH_SIZE]]
            mels = np.stack([pad_or_trim(self.model.feature_extractor(w)[..., :-1], frames) for w in waves])
            encoded = self.model.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mels)))
            for ranked in self.model.model.detect_language(encoded):
                token, probability = ranked[0]
                found.append((token.strip("<|>"), float(probability)))
        return found

    def detect_speaker(self, segments: Sequence[np.ndarray | str | Path | SegmentSource]) -> tuple[str, float] | None:
        """(language tag, probability) of one speaker from their segments in time order: a sample of up to
        ``SPEAKER_SAMPLE_S`` seconds of segments spread over the episode, encoded in one window. Unreadable segments
        are left out; None when none can be read."""
        import ctranslate2
        from faster_whisper.audio import pad_or_trim

        waves = speaker_sample(segments)
        if not waves:
            return None
        mel = self.model.feature_extractor(np.concatenate(waves))[..., :-1]
        mel = pad_or_trim(mel, int(SPEAKER_SAMPLE_S * MEL_FRAMES_PER_SECOND))[None]
        encoded = self.model.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel)))
        token, probability = self.model.model.detect_language(encoded)[0][0]
        return token.strip("<|>"), float(probability)


def speaker_sample(
    segments: Sequence[np.ndarray | str | Path | SegmentSource], sample_s: float = SPEAKER_SAMPLE_S
) -> list[np.ndarray]:
    """Waves of up to :data:`SPEAKER_SAMPLE_SEGMENTS` segments, evenly spaced over ``segments`` (time order), in
    order, until they hold ``sample_s`` seconds; unreadable ones are skipped."""
    picks = np.unique(np.linspace(0, len(segments) - 1, min(len(segments), SPEAKER_SAMPLE_SEGMENTS)).round())
    waves: list[np.ndarray] = []
    held = 0
    for index in picks.astype(int):
        try:
            wave = _wave(segments[index])
        except AudioRejected:
            continue
        waves.append(wave)
        held += len(wave)
        if held >= sample_s * SAMPLE_RATE_HZ:
            break
    return waves


def _wave(clip: np.ndarray | str | Path | SegmentSource) -> np.ndarray:
    if isinstance(clip, str | Path | SegmentSource):
        return load_audio(clip)
    return np.asarray(clip, dtype=np.float32)
