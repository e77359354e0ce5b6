"""Which models the training step builds, how an audio policy assembles them, and the key of a training request.

The default audio policy, ``logreg`` (settings ``audio_pooling``), fits the scikit-learn logistic regression on
per-clip mean+std of models/linear_probe.py, C chosen on development: under nested speaker-grouped CV on RAVDESS it
generalised to unseen speakers better than every torch head and ensemble (bench/RESULTS.md, issue 20).
Audio head candidates (:data:`AUDIO_HEADS`): the paper's attentive head, mean+std pooling with the same MLP, and
a linear probe on standardised mean+std trained by AdamW. The ``ensemble`` policy trains :data:`ENSEMBLE_HEADS`
(meanstd and probe) and averages them; ``auto`` trains every head candidate and keeps the one with the best
development score; a candidate's name trains that one alone. The ensemble leaves the attentive
head out because, under nested speaker-grouped CV on RAVDESS (bench/RESULTS.md, "Nested speaker-grouped CV"), the
meanstd + probe average generalised better to unseen speakers than the three-head one (fused F1-macro 0.642 vs 0.604
on the outer folds) in about half the training time. Text models are a head with one hidden layer on cached
vectors, or a fine-tuned encoder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from emojudge_models.features.datasets import SplitData
from emojudge_models.features.speaker_norm import FULL_SPEAKER_UTTERANCES, MIN_SPEAKER_UTTERANCES
from emojudge_models.models.heads import CODE_VERSION as HEADS_CODE_VERSION
from emojudge_models.models.heads import EnsembleConfig, EnsembleEmotionModel, HeadConfig, output_dim
from emojudge_models.models.keys import data_key, model_key
from emojudge_models.models.linear_probe import C_GRID, MAX_ITER, LinearProbeConfig, fit_linear_probe
from emojudge_models.models.linear_probe import CODE_VERSION as LINEAR_PROBE_CODE_VERSION
from emojudge_models.models.loop import (
    EpochCallback,
    TrainConfig,
    TrainResult,
    dev_metric,
    dev_metric_name,
    run_inference,
)
from emojudge_models.models.text_classifier import CODE_VERSION as TEXT_CODE_VERSION
from emojudge_models.models.training import (
    FrameItems,
    HeadTrainingConfig,
    frame_input_dim,
    frame_plan,
    train_audio_head,
)

AUDIO_HEADS: dict[str, dict[str, Any]] = {
    "attentive": {"pooling": "attentive"},
    "meanstd": {"pooling": "meanstd"},
    "probe": {"pooling": "meanstd", "n_hidden_layers": 0},
}
"""Audio head candidates: HeadConfig arguments beyond task and input size."""

LINEAR_PROBE = "logreg"
"""The scikit-learn logistic-regression probe (models/linear_probe.py), trained alone under its name."""

AUDIO_POLICIES: tuple[str, ...] = ("ensemble", "auto", LINEAR_PROBE)
ENSEMBLE_HEADS: tuple[str, ...] = ("meanstd", "probe")
"""The heads the ``ensemble`` policy averages (chosen by nested speaker-grouped CV, see the module docstring)."""

HEAD_TRAINING = TrainConfig()
"""Head training defaults (lr, epochs and patience from the settings: lr 1e-3, not the fine-tuning 1e-5, measured
best for heads on cached features)."""


def model_kind(modality: str, text_training: str) -> str:
    """The ``model_registry.kind`` of a modality's model: ``audio_head``, ``text_head`` or ``text_finetune``."""
    if modality == "audio":
        return "audio_head"
    return "text_finetune" if text_training == "finetune" else "text_head"


def check_audio_policy(policy: str) -> str:
    """``policy`` if it is ``ensemble``, ``auto``, ``logreg`` or a head's name; else ValueError listing the
    choices."""
    if policy not in AUDIO_POLICIES and policy not in AUDIO_HEADS:
        raise ValueError(f"must be one of {', '.join((*AUDIO_POLICIES, *AUDIO_HEADS))}, not {policy!r}")
    return policy


def audio_candidates(policy: str) -> tuple[str, ...]:
    """The heads ``policy`` trains: :data:`ENSEMBLE_HEADS` for ``ensemble``, every candidate for ``auto``, else the
    one named."""
    if check_audio_policy(policy) == "ensemble":
        return ENSEMBLE_HEADS
    return tuple(AUDIO_HEADS) if policy == "auto" else (policy,)


def audio_head_config(candidate: str, task: str, input_dim: int, train: TrainConfig) -> HeadTrainingConfig:
    return HeadTrainingConfig(head=HeadConfig(task=task, input_dim=input_dim, **AUDIO_HEADS[candidate]), train=train)


def text_head_config(task: str, input_dim: int, train: TrainConfig) -> HeadTrainingConfig:
    """The text head on cached utterance vectors: one hidden layer, no pooling."""
    return HeadTrainingConfig(
        head=HeadConfig(task=task, input_dim=input_dim, pooling="none", n_hidden_layers=1), train=train
    )


@dataclass
class AudioTraining:
    """What an audio policy produced: the chosen model and its config, and every candidate trained on the way."""

    result: TrainResult
    config: HeadTrainingConfig | EnsembleConfig | LinearProbeConfig
    candidates: dict[str, TrainResult]

    @property
    def scores(self) -> dict[str, dict[str, float]]:
        """Development score (and best epoch) per candidate, plus ``ensemble`` when the policy averaged them."""
        scores = {name: {"dev": r.dev_metric, "best_epoch": r.best_epoch} for name, r in self.candidates.items()}
        if isinstance(self.config, EnsembleConfig):
            scores["ensemble"] = {"dev": self.result.dev_metric}
        return scores


def train_audio_policy(
    train_items: FrameItems,
    dev_items: FrameItems,
    *,
    policy: str,
    task: str,
    train: TrainConfig,
    device: torch.device | str,
    seed: int,
    on_epoch: Callable[[str], EpochCallback | None] = lambda _: None,
    log: Callable[[str], None] = lambda _: None,
) -> AudioTraining:
    """Train the heads of ``policy`` on (frames, target) items or streamed splits and assemble them.

    ``ensemble`` averages every candidate and scores the average on development; ``auto`` keeps the candidate
    with the best development score; a candidate's name trains that one. ``on_epoch(candidate)`` gives each
    candidate's epoch callback.
    """
    if check_audio_policy(policy) == LINEAR_PROBE:
        result = fit_linear_probe(
            train_items, dev_items, task=task, seed=seed, c_grid=C_GRID, max_iter=MAX_ITER, log=log
        )
        return AudioTraining(result, result.model.config, {LINEAR_PROBE: result})
    device = torch.device(device)
    input_dim = frame_input_dim(train_items)
    trained: dict[str, tuple[TrainResult, HeadTrainingConfig]] = {}
    for candidate in audio_candidates(policy):
        config = audio_head_config(candidate, task, input_dim, train)
        result = train_audio_head(train_items, dev_items, config, device, seed, on_epoch=on_epoch(candidate))
        trained[candidate] = (result, config)
    candidates = {name: result for name, (result, _) in trained.items()}
    if policy != "ensemble":
        best, config = max(trained.values(), key=lambda pair: pair[0].dev_metric)
        return AudioTraining(best, config, candidates)
    ensemble = EnsembleEmotionModel.of([result.model for result in candidates.values()]).to(device)
    dev_plan, _, _ = frame_plan(dev_items, input_dim, task, train.batch_size, "development", device)
    outputs, targets = run_inference(ensemble, dev_plan.ordered(), device, output_dim(task))
    metric = dev_metric(task, outputs, targets)
    log(f"ensemble of {', '.join(candidates)}: development {dev_metric_name(task)} {metric:.4f}")
    history = [{"head": name, **row} for name, result in candidates.items() for row in result.history]
    result = TrainResult(
        model=ensemble,
        history=history,
        best_epoch=max(r.best_epoch for r in candidates.values()),
        dev_metric_name=dev_metric_name(task),
        dev_metric=metric,
    )
    return AudioTraining(result, ensemble.config, candidates)


def split_data_key(name: str, encoder_key: str, split: SplitData) -> str:
    """Names exactly which rows and targets of a split (read through ``encoder_key``) trained a model."""
    rows = zip(split.rows["eval_set"], split.rows["utterance_id"], map(str, split.targets), strict=True)
    return data_key(name, encoder_key, rows)


def training_request_key(
    kind: str,
    *,
    encoder_key: str,
    train: SplitData,
    dev: SplitData,
    seed: int,
    audio_policy: str,
    speaker_norm: str,
    head_training: TrainConfig,
    text_encoder: Any,
) -> str:
    """Identifies a training request before it runs (data, encoder, settings, code), so a repeat is a cache hit.

    Only the settings that ``kind`` uses enter the key: the audio policy and speaker normalisation for audio
    heads, the head training settings for heads (the C grid and iteration cap for the ``logreg`` probe instead),
    the text encoder for a fine-tuned text model.
    """
    probe = kind == "audio_head" and audio_policy == LINEAR_PROBE
    settings_used = {
        "seed": seed,
        "pooling": audio_policy if kind == "audio_head" else None,
        "audio_heads": list(audio_candidates(audio_policy)) if kind == "audio_head" else None,
        "speaker_norm": speaker_norm if kind == "audio_head" else None,
        "head_training": asdict(head_training) if kind != "text_finetune" and not probe else None,
        "text_encoder": text_encoder if kind == "text_finetune" else None,
    }
    if probe:
        settings_used |= {"c_grid": list(C_GRID), "max_iter": MAX_ITER}
    code_version = HEADS_CODE_VERSION
    if kind == "text_finetune":
        code_version = TEXT_CODE_VERSION
    elif probe:
        code_version = LINEAR_PROBE_CODE_VERSION
    return model_key(
        kind,
        data_keys=[split_data_key("train", encoder_key, train), split_data_key("development", encoder_key, dev)],
        hyperparameters=settings_used,
        code_version=code_version,
    )


def registry_hyperparameters(config: Any, seed: int, speaker_norm: str | None) -> dict[str, Any]:
    """``model_registry.hyperparameters`` of a trained model: its config, the seed, and for audio models
    (``speaker_norm`` given) the speaker normalisation applied to its frames."""
    hyper = {**config.to_dict(), "seed": seed}
    if speaker_norm is not None:
        hyper |= {
            "speaker_norm": speaker_norm,
            "min_speaker_utterances": MIN_SPEAKER_UTTERANCES,
            "full_speaker_utterances": FULL_SPEAKER_UTTERANCES,
        }
    return hyper
