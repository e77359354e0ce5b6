"""The recipe of the shipped audio model, and its honest figure on unseen speakers.

The model is the pipeline's default audio model (``logreg``, models/linear_probe.py: L2 logistic regression on the
per-clip mean ++ std of speaker-normalised encoder frames). The pipeline chooses its C on a development split; a
shipped model has no user development split, so the recipe chooses C by speaker-grouped cross-validation over every
training speaker (``N_GROUPS`` groups, each held out in turn, F1-macro of the held-out clips pooled), then refits
at that C on every training clip.

:func:`nested_evaluation` is the recipe's figure: for each outer fold of speakers, the recipe runs on the other
speakers alone (C chosen by their own grouped CV) and predicts the held-out speakers once. The held-out speakers'
frames are normalised by their own statistics, as the pipeline normalises a scored set with speaker ids; the
``set_norm`` predictions normalise all held-out clips together instead, as a folder without speaker ids is.

**Speech copies.** RAVDESS clips hold about a second of silence around two seconds of speech, and the model pools
its frames over the whole clip; an episode's segments are speech with short pauses. Trained on the clips alone, the
model scored the held-out clips trimmed of their silence far worse than the clips as recorded (nested F1-macro 0.56
against 0.74, bench/RESULTS.md "Speech copies"). So every training clip also trains as its speech copy
(:func:`speech_copy`: the clip trimmed of leading and trailing silence, encoded on its own): same label, same
speaker group, normalised with the other copies of its speaker. :func:`nested_evaluation` reports both figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from emojudge_models.evaluation.metrics import f1_macro_of_indices
from emojudge_models.evaluation.nested import speaker_bootstrap, speaker_groups
from emojudge_models.features.speaker_norm import SpeakerNormaliser
from emojudge_models.models.linear_probe import (
    C_GRID,
    MAX_ITER,
    LinearProbeConfig,
    LinearProbeModel,
    fit_pooled_probe,
    pooled_stats,
)

RECIPE_VERSION = "shipped-logreg-grouped-cv-speech-copies-layer-3"
"""Bump when the recipe changes what it trains (part of the shipped model's key)."""
N_GROUPS = 6
"""Speaker groups of the cross-validation (RAVDESS actors 01-12: six groups of two actors)."""
TASK = "categorical"
TRIM_TOP_DB = 30.0
"""A speech copy keeps the clip from its first to its last stretch within this many dB of the clip's peak."""


def speech_copy(wave: np.ndarray) -> np.ndarray:
    """The clip trimmed of its leading and trailing silence (librosa's trim, :data:`TRIM_TOP_DB`)."""
    import librosa

    return librosa.effects.trim(wave, top_db=TRIM_TOP_DB)[0]


def normalised_stats(frames: Sequence[np.ndarray], speakers: Sequence[str | None], group: str = "set") -> np.ndarray:
    """(N, 2D) mean ++ std of each clip's frames after per-speaker z-normalisation, as the pipeline scores a set
    (speakers with too few clips, or no id, share their set's statistics)."""
    table = pd.DataFrame({"eval_set": group, "utterance_id": range(len(frames)), "speaker_id": list(speakers)})
    keys = list(zip(table["eval_set"], table["utterance_id"], strict=True))
    normaliser = SpeakerNormaliser.for_rows(table).add_all(zip(keys, frames, strict=True))
    return pooled_stats(normaliser.apply(keys, list(frames)))


def _config(x: np.ndarray, c: float | None, seed: int) -> LinearProbeConfig:
    return LinearProbeConfig(task=TASK, input_dim=x.shape[1] // 2, c_grid=C_GRID, max_iter=MAX_ITER, seed=seed, C=c)


def grouped_cv_scores(x: np.ndarray, y: np.ndarray, speakers: np.ndarray, seed: int = 0) -> dict[float, float]:
    """F1-macro of each C of :data:`C_GRID` over the clips of every speaker group, each predicted by the probe
    fitted on the other groups."""
    groups = speaker_groups(speakers, min(N_GROUPS, len(set(speakers))))
    scores = {}
    for c in C_GRID:
        predicted = np.empty(len(y), dtype=np.int64)
        for group in groups:
            held = np.isin(speakers, group)
            model = fit_pooled_probe(x[~held], y[~held], _config(x, c, seed))
            predicted[held] = predict_stats(model, x[held]).argmax(axis=1)
        scores[float(c)] = f1_macro_of_indices(y, predicted)
    return scores


def predict_stats(model: LinearProbeModel, x: np.ndarray) -> np.ndarray:
    """Log-probabilities (N, 8) of a fitted probe for pooled statistics (what its torch module computes from
    frames)."""
    buffers = {name: value.numpy().astype(np.float64) for name, value in model.state_dict().items()}
    logits = ((x - buffers["scaler_mean"]) / buffers["scaler_scale"]) @ buffers["weight"].T + buffers["bias"]
    return logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)


@dataclass(frozen=True)
class RecipeFit:
    """The refitted model and the cross-validation scores that chose its C."""

    model: LinearProbeModel
    cv_scores: dict[float, float]

    @property
    def C(self) -> float:
        return float(self.model.config.C)


def with_copies(x: np.ndarray, copies: np.ndarray | None, *aligned: np.ndarray) -> tuple[np.ndarray, ...]:
    """Training rows: the clips' statistics, then their speech copies' (when given), with the clips' labels and
    speakers repeated alongside."""
    if copies is None:
        return (x, *aligned)
    return (np.concatenate([x, copies]), *(np.concatenate([column, column]) for column in aligned))


def train(x: np.ndarray, y: np.ndarray, speakers: np.ndarray, seed: int = 0) -> RecipeFit:
    """C by grouped CV over ``speakers`` (first best on ties), then the probe refitted on every row. A clip and its
    speech copy share a speaker, so they are always held out together."""
    scores = grouped_cv_scores(x, y, speakers, seed)
    best = max(scores, key=lambda c: (scores[c], -C_GRID.index(c)))
    return RecipeFit(fit_pooled_probe(x, y, _config(x, best, seed)), scores)


@dataclass(frozen=True)
class LayerChoice:
    """The chosen layer (None: frames of one unnamed encoder), its fit, and each candidate's grouped-CV score."""

    layer: int | None
    fit: RecipeFit
    scores: dict[int | None, float]


def choose_layer(
    candidates: Mapping[int | None, np.ndarray], y: np.ndarray, speakers: np.ndarray, seed: int = 0
) -> LayerChoice:
    """The layer (a key of ``candidates``: training rows of each layer's frames) whose recipe fit scores the best
    grouped-CV F1-macro at its chosen C; ties go to the lower layer (fewer layers to run)."""
    fits = {layer: train(x, y, speakers, seed) for layer, x in candidates.items()}
    scores = {layer: fit.cv_scores[fit.C] for layer, fit in fits.items()}
    best = max(fits, key=lambda layer: (scores[layer], -(layer or 0)))
    return LayerChoice(best, fits[best], scores)


@dataclass(frozen=True)
class NestedFigures:
    """Held-out predictions of every outer fold, and the figures reported from them."""

    y: np.ndarray
    speakers: np.ndarray
    predicted: np.ndarray
    predicted_set_norm: np.ndarray
    predicted_speech: np.ndarray | None
    folds: list[dict]

    def summary(self) -> dict:
        low, high = speaker_bootstrap(self.speakers, self.y, self.predicted)
        fold_f1 = [fold["f1_macro"] for fold in self.folds]
        summary = {
            "f1_macro_mean_of_folds": round(float(np.mean(fold_f1)), 4),
            "f1_macro_pooled": round(f1_macro_of_indices(self.y, self.predicted), 4),
            "speaker_bootstrap_95": [round(low, 4), round(high, 4)],
            "accuracy_pooled": round(float(np.mean(self.y == self.predicted)), 4),
            "f1_macro_pooled_set_norm": round(f1_macro_of_indices(self.y, self.predicted_set_norm), 4),
        }
        if self.predicted_speech is not None:
            summary["f1_macro_pooled_speech_copies"] = round(f1_macro_of_indices(self.y, self.predicted_speech), 4)
        return {**summary, "folds": self.folds}


def nested_evaluation(
    frames: Sequence[np.ndarray] | Mapping[int | None, Sequence[np.ndarray]],
    y: np.ndarray,
    speakers: np.ndarray,
    speech_frames: Sequence[np.ndarray] | Mapping[int | None, Sequence[np.ndarray]] | None = None,
    seed: int = 0,
    train_on_copies: bool = True,
) -> NestedFigures:
    """The recipe under nested speaker-grouped CV: each outer group held out, the recipe (C, and the layer when
    ``frames`` maps layers to their frames, chosen by grouped CV on the remaining speakers alone) fitted on the rest
    (with their speech copies, when ``speech_frames`` gives them, unless ``train_on_copies`` is false: the recipe of
    before, for comparison) and scored once on it: on the clips, and on their speech copies."""
    speakers = np.asarray([str(s) for s in speakers])
    by_layer = frames if isinstance(frames, Mapping) else {None: frames}
    speech_by_layer = (
        speech_frames if isinstance(speech_frames, Mapping) or speech_frames is None else {None: speech_frames}
    )
    x = {layer: normalised_stats(layer_frames, speakers) for layer, layer_frames in by_layer.items()}
    copies = (
        None if speech_by_layer is None else {layer: normalised_stats(speech_by_layer[layer], speakers) for layer in x}
    )
    predicted = np.empty(len(y), dtype=np.int64)
    predicted_set = np.empty(len(y), dtype=np.int64)
    predicted_speech = None if copies is None else np.empty(len(y), dtype=np.int64)
    folds = []
    for index, group in enumerate(speaker_groups(speakers, N_GROUPS)):
        held = np.isin(speakers, group)
        candidates = {}
        for layer in x:
            train_copies = None if copies is None or not train_on_copies else copies[layer][~held]
            candidates[layer], labels, groups = with_copies(x[layer][~held], train_copies, y[~held], speakers[~held])
        choice = choose_layer(candidates, labels, groups, seed)
        layer, fit = choice.layer, choice.fit
        predicted[held] = predict_stats(fit.model, x[layer][held]).argmax(axis=1)
        if predicted_speech is not None:
            predicted_speech[held] = predict_stats(fit.model, copies[layer][held]).argmax(axis=1)
        held_frames = [by_layer[layer][i] for i in np.flatnonzero(held)]
        predicted_set[held] = predict_stats(fit.model, normalised_stats(held_frames, [None] * len(held_frames))).argmax(
            axis=1
        )
        folds.append(
            {
                "fold": index,
                "test_speakers": list(group),
                "C": fit.C,
                **({"layer": layer} if layer is not None else {}),
                "f1_macro": round(f1_macro_of_indices(y[held], predicted[held]), 4),
            }
        )
    return NestedFigures(y, speakers, predicted, predicted_set, predicted_speech, folds)
