"""Trained-model checkpoints: safetensors weights + config.json, in a directory named by the model key.

Layout of a checkpoint directory:
  config.json         {"kind", "code_version", "model": constructor arguments, "metadata": caller's dict}
  model.safetensors   all weights of a head or ensemble of heads (scaler and coefficients of a ``logreg`` probe);
                      only the linear head of a fine-tuned text model
  encoder/            fine-tuned text model only: encoder (save_pretrained) and its tokenizer
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from emojudge_models.models import heads, text_classifier
from emojudge_models.models.heads import (
    AudioEmotionModel,
    EnsembleConfig,
    EnsembleEmotionModel,
    HeadConfig,
    VectorEmotionModel,
    build_head_model,
)
from emojudge_models.models.linear_probe import CODE_VERSION as LINEAR_PROBE_CODE_VERSION
from emojudge_models.models.linear_probe import LinearProbeConfig, LinearProbeModel
from emojudge_models.models.text_classifier import TextEmotionClassifier

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
ENCODER_DIR = "encoder"
KINDS: tuple[str, ...] = ("audio_head", "audio_ensemble", "audio_logreg", "vector_head", "text_finetune")


def _cpu_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().cpu().contiguous() for name, tensor in state.items()}


def save_checkpoint(model: nn.Module, config: dict[str, Any], directory: str | Path) -> Path:
    """Write ``model`` to ``directory`` (created if needed); ``config`` is stored verbatim as metadata
    (hyperparameters, model_key, data keys). Returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(model, TextEmotionClassifier):
        kind, code_version, model_config = "text_finetune", text_classifier.CODE_VERSION, dict(model.config)
        model.encoder.save_pretrained(directory / ENCODER_DIR)
        model.tokenizer.save_pretrained(directory / ENCODER_DIR)
        weights = model.head.state_dict()
    elif isinstance(model, EnsembleEmotionModel):
        kind, code_version, model_config, weights = (
            "audio_ensemble",
            heads.CODE_VERSION,
            model.config.to_dict(),
            model.state_dict(),
        )
    elif isinstance(model, LinearProbeModel):
        kind, code_version = "audio_logreg", LINEAR_PROBE_CODE_VERSION
        model_config, weights = model.config.to_dict(), model.state_dict()
    elif isinstance(model, AudioEmotionModel | VectorEmotionModel):
        kind = "audio_head" if isinstance(model, AudioEmotionModel) else "vector_head"
        code_version, model_config, weights = heads.CODE_VERSION, model.config.to_dict(), model.state_dict()
    else:
        raise TypeError(f"cannot checkpoint a {type(model).__name__}; expected an emojudge head or text classifier")
    save_file(_cpu_tensors(weights), str(directory / WEIGHTS_FILE))
    document = {"kind": kind, "code_version": code_version, "model": model_config, "metadata": config}
    (directory / CONFIG_FILE).write_text(json.dumps(document, indent=2, sort_keys=True, default=str))
    return directory


def read_checkpoint_config(directory: str | Path) -> dict[str, Any]:
    """The parsed config.json of a checkpoint; raises naming the file when it is missing or not a checkpoint."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint config here")
    document = json.loads(path.read_text())
    if document.get("kind") not in KINDS or "model" not in document:
        raise ValueError(f"{path}: not an emojudge checkpoint (kind {document.get('kind')!r})")
    return document


def load_checkpoint(directory: str | Path, device: torch.device | str) -> nn.Module:
    """Rebuild the model described by the checkpoint's config.json, load its weights, move it to ``device``
    and put it in eval mode."""
    directory = Path(directory)
    document = read_checkpoint_config(directory)
    weights = load_file(str(directory / WEIGHTS_FILE))
    if document["kind"] == "text_finetune":
        settings = document["model"]
        model: nn.Module = TextEmotionClassifier(
            directory / ENCODER_DIR, settings["task"], settings["dropout"], settings["max_length"]
        )
        model.head.load_state_dict(weights)
    elif document["kind"] == "audio_logreg":
        model = LinearProbeModel(LinearProbeConfig.from_dict(document["model"]))
        model.load_state_dict(weights)
    elif document["kind"] == "audio_ensemble":
        model = EnsembleEmotionModel(EnsembleConfig.from_dict(document["model"]))
        model.load_state_dict(weights)
    else:
        model = build_head_model(HeadConfig(**document["model"]))
        model.load_state_dict(weights)
    return model.to(torch.device(device)).eval()
