"""Models that ship inside the package, trained on real speech: what scores a set nobody has trained models for.

Each folder of ``emojudge_models/models/shipped/`` is a checkpoint (models/checkpoints.py: config.json and
model.safetensors) with its model card (MODEL_CARD.md) and figures (figures.json). Its config metadata names the
model (``model_key``), what it was trained on (``trained_on``, e.g. ``shipped:ravdess-actors-01-12``), its task and
modality, and the spec of the encoder whose frames it expects. A shipped model fits a partition's features when
their encoder spec equals its own in everything but the device and compute type (int8 on CPU, float16 on a GPU:
the same weights and window, frames within rounding), see :func:`fits_encoder`.

The weights are rebuilt from the shared corpus by ``bench/train_shipped_model.py``
(recipe: models/shipped_recipe.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from torch import nn

from emojudge_models.encoders.base import encoder_key
from emojudge_models.features.speaker_norm import MIN_SPEAKER_UTTERANCES
from emojudge_models.models.checkpoints import CONFIG_FILE, WEIGHTS_FILE, read_checkpoint_config
from emojudge_models.models.keys import model_key
from emojudge_models.models.linear_probe import CODE_VERSION as LINEAR_PROBE_CODE_VERSION
from emojudge_models.models.shipped_recipe import TRIM_TOP_DB

SHIPPED_ROOT = Path(__file__).resolve().parent / "shipped"
CARD_FILE = "MODEL_CARD.md"
FIGURES_FILE = "figures.json"
SHIPPED_PREFIX = "shipped:"
"""``trained_on`` of every shipped model starts with this (model_registry.trained_on, v_predictions)."""
DEVICE_FIELDS = ("device", "compute_type")
"""Encoder spec fields that do not change which frames a model expects (only their rounding)."""


def encoder_identity(spec: dict[str, Any]) -> dict[str, Any]:
    """An encoder spec without the device and compute type (of its parts too, for a ``concat`` encoder)."""
    identity = {name: value for name, value in spec.items() if name not in DEVICE_FIELDS}
    if isinstance(identity.get("parts"), list):
        identity["parts"] = [encoder_identity(part) for part in identity["parts"]]
    return identity


@dataclass(frozen=True)
class ShippedModel:
    """One shipped checkpoint, as its config metadata describes it."""

    name: str
    path: Path
    model_key: str
    trained_on: str
    modality: str
    task: str
    encoder_spec: dict[str, Any]
    hyperparameters: dict[str, Any]
    dev_metric: float | None

    @property
    def card(self) -> Path:
        return self.path / CARD_FILE

    def fits_encoder(self, spec: dict[str, Any]) -> bool:
        """Whether features of an encoder with ``spec`` are what this model was trained on."""
        return encoder_identity(spec) == encoder_identity(self.encoder_spec)


def _read(folder: Path) -> ShippedModel:
    metadata = read_checkpoint_config(folder)["metadata"]
    return ShippedModel(
        name=metadata["name"],
        path=folder,
        model_key=metadata["model_key"],
        trained_on=metadata["trained_on"],
        modality=metadata["modality"],
        task=metadata["task"],
        encoder_spec=metadata["encoder_spec"],
        hyperparameters=metadata["hyperparameters"],
        dev_metric=metadata.get("cv_f1_macro"),
    )


@cache
def _shipped(root: Path) -> tuple[ShippedModel, ...]:
    folders = sorted(p.parent for p in root.glob(f"*/{CONFIG_FILE}") if (p.parent / WEIGHTS_FILE).is_file())
    return tuple(_read(folder) for folder in folders)


def shipped_models(root: Path = SHIPPED_ROOT) -> tuple[ShippedModel, ...]:
    """Every shipped checkpoint under ``root`` (read once per process)."""
    return _shipped(root)


def shipped_for(modality: str, task: str, spec: dict[str, Any], root: Path = SHIPPED_ROOT) -> ShippedModel | None:
    """The shipped model of ``modality`` and ``task`` that takes features of an encoder with ``spec``, or None."""
    found = [m for m in shipped_models(root) if m.modality == modality and m.task == task and m.fits_encoder(spec)]
    return found[0] if found else None


def weights_digest(model: nn.Module) -> str:
    """16 hex characters of the model's weights (part of a shipped model's key)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()[:16]


def model_metadata(
    name: str, trained_on: str, encoder_spec: dict[str, Any], model: nn.Module, recipe: str, cv_f1_macro: float
) -> dict[str, Any]:
    """The config metadata of a shipped audio model (categorical): its key, training data, encoder and settings."""
    hyperparameters = {
        **model.config.to_dict(),
        "speaker_norm": "speaker",
        "min_speaker_utterances": MIN_SPEAKER_UTTERANCES,
        "recipe": recipe,
    }
    key = model_key(
        "audio_head",
        data_keys=[f"{trained_on}:{weights_digest(model)}"],
        hyperparameters=hyperparameters,
        code_version=LINEAR_PROBE_CODE_VERSION,
    )
    return {
        "name": name,
        "model_key": key,
        "trained_on": trained_on,
        "modality": "audio",
        "task": model.config.task,
        "encoder_spec": encoder_spec,
        "encoder_key": encoder_key(encoder_spec),
        "hyperparameters": hyperparameters,
        "cv_f1_macro": cv_f1_macro,
        "licence": "CC BY-NC-SA 4.0",
    }


def model_card(metadata: dict[str, Any], figures: dict[str, Any]) -> str:
    """MODEL_CARD.md of a shipped model trained on RAVDESS actors 01-12 (bench/train_shipped_model.py)."""
    nested = figures["nested_speaker_grouped_cv"]
    folds = "; ".join(
        f"{'+'.join(f['test_speakers'])}: {f['f1_macro']:.3f} (C {f['C']:g}"
        + (f", layer {f['layer']})" if "layer" in f else ")")
        for f in nested["folds"]
    )
    low, high = nested["speaker_bootstrap_95"]
    layer_word = " and the encoder layer" if "layer" in figures else ""
    numbers = [speaker.removeprefix("ravdess_actor") for speaker in figures["speakers"]]
    consecutive = [int(number) for number in numbers] == list(range(int(numbers[0]), int(numbers[0]) + len(numbers)))
    actors = f"{numbers[0]}-{numbers[-1]}" if consecutive and len(numbers) > 2 else ", ".join(numbers)
    n, groups = len(numbers), len(nested["folds"])
    actors_option = "" if n == 12 else f" --actors {','.join(numbers)}"
    speech = nested.get("f1_macro_pooled_speech_copies")
    speech_copies = "not measured" if speech is None else f"{speech:.3f}"
    spec = json.dumps(encoder_identity(metadata["encoder_spec"]), sort_keys=True)
    encoder_note = "the `local` profile's default: Whisper base CTranslate2, each clip at its own length"
    if "layer" in figures:
        encoder_note += f", the frames of its encoder layer {figures['layer']} of 6 (encoders/ct2_layers.py)"
    layer_choice = (
        ""
        if "layer" not in figures
        else f" The encoder layer is chosen the same way, among Whisper base's layers 1-6 (each one's best C compared; "
        f"grouped-CV F1-macro by layer: {figures['cv_scores_by_layer']}): layer {figures['layer']}."
    )
    return f"""# {metadata["name"]}

The audio emotion model EmoJudge uses, with the encoder below, for any evaluation set nobody has trained models
for (a fresh home, a folder of your own clips, a podcast episode). Categorical task only (8 EmoJudge classes); no
arousal, valence or dominance (the corpus has no such ratings). Model key `{metadata["model_key"]}`, `trained_on`
`{metadata["trained_on"]}` (the value in `model_registry.trained_on` and `v_predictions`).

## Licence: CC BY-NC-SA 4.0 (non-commercial, attribution, share-alike)

These weights are derived from RAVDESS and carry its licence, Creative Commons Attribution-NonCommercial-ShareAlike
4.0 International (https://creativecommons.org/licenses/by-nc-sa/4.0/): **no commercial use**; credit the corpus
as below; share derivatives under the same licence. The rest of EmoJudge is MIT; this folder is not.
Attribution: Livingstone SR, Russo FA (2018) The Ryerson Audio-Visual Database of Emotional Speech and Song
(RAVDESS). PLoS ONE 13(5): e0196391. https://doi.org/10.1371/journal.pone.0196391 (Zenodo 10.5281/zenodo.1188976).

## Training data

RAVDESS speech, actors {actors}, repetition 1: {figures["clips"]} clips of acted North-American English, two
fixed sentences. Classes present: {", ".join(figures["classes_trained"])}. RAVDESS "calm"
is not used; contempt does not occur, so the model never predicts it (its logit is fixed at -30).

## What it expects

Frames of the encoder `{spec}` ({encoder_note}), on any device or compute type. Frames are z-normalised per
speaker over the scored set before pooling (speaker normalisation, features/speaker_norm.py); clips without a
speaker id, or of a speaker with fewer than {MIN_SPEAKER_UTTERANCES} clips, are normalised with their whole set's
statistics, so score several clips together: a set of one clip normalises to nothing and gets a constant label.

## How it was trained

`python bench/train_shipped_model.py --data ../shared/data/ravdess-dev --name {metadata["name"]}{actors_option}`
rebuilds this folder from the clips (read by path, never copied). Recipe `{metadata["hyperparameters"]["recipe"]}`
(emojudge_models/models/shipped_recipe.py): per-speaker z-normalised frames, per-clip mean ++ std
({2 * metadata["hyperparameters"]["input_dim"]} values), standardised, L2 logistic regression. Every clip trains
twice: as recorded (about a second of silence around the speech) and as its speech copy (trimmed of leading and
trailing silence, {TRIM_TOP_DB:g} dB under its peak, encoded on its own), so that speech cut from an episode,
with little silence around it, is scored as well as a studio clip. C chosen from {{0.001, 0.01, 0.1, 1, 10}}
by speaker-grouped CV over the {n} actors ({groups} groups, a clip and its copy always together; F1-macro by C:
{figures["cv_scores_by_C"]}), chosen C = {figures["C"]:g}, then refitted on all {figures["clips"]} clips and
their copies.{layer_choice}

## Figures on unseen speakers (nested, speaker-grouped)

Nested CV over actors {actors}: each of {groups} groups of actors held out in turn, the whole recipe (C{layer_word}
included, by grouped CV on the other actors alone) run on the other actors and scored once on the held-out group:

| figure | value |
|---|---|
| F1-macro, mean of 6 outer folds | **{nested["f1_macro_mean_of_folds"]:.3f}** |
| F1-macro, {figures["clips"]} held-out clips pooled | {nested["f1_macro_pooled"]:.3f} |
| F1-macro pooled, the held-out clips trimmed of their silence (speech copies) | {speech_copies} |
| speaker bootstrap 95% interval (pooled) | {low:.3f} - {high:.3f} |
| accuracy, pooled | {nested["accuracy_pooled"]:.3f} |
| F1-macro pooled, held-out clips normalised as one set without speaker ids | {nested["f1_macro_pooled_set_norm"]:.3f} |

Per fold (held-out actors: F1-macro, what was chosen): {folds}. Measured {figures["measured"]}.
These are figures on the same corpus (unseen actors, same sentences and studio); expect less on spontaneous speech,
other languages and noisy recordings. Train your own models on labelled data of your domain to replace it
(`EMOJUDGE_TRAIN_SETS`, `emojudge materialize <set>`): a set is scored by user-trained models when there are any.
"""
