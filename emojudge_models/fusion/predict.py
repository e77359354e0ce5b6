"""Fused predictions per utterance, from whatever modalities each utterance has.

The rule, per utterance: with both audio and text logits, the fusion model's output; with one modality only (no
transcript, an empty ASR result, an encoder failure), that modality's own output (its model's class probabilities,
or its arousal/valence/dominance), so one missing modality never costs an utterance its prediction. With no fusion
model fitted on the set's audio and text models (``fitted`` None: e.g. a set scored by the shipped audio model),
an utterance with both takes its audio output. The ``modalities`` column records which rule applied
(``audio+text``, ``audio`` or ``text``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emojudge_models.fusion import data
from emojudge_models.fusion.models import FusionModel
from emojudge_models.labels import ATTRIBUTES, EMOTIONS

NO_FUSION_KEY = "none"
"""``fused_predictions.fusion_model_key`` of rows no fusion model scored (each took one modality's output)."""


def fused_rows(fitted: FusionModel | None, rows: pd.DataFrame, task: str, fusion_model_key: str) -> pd.DataFrame:
    """``fused_predictions`` rows for the output of ``fusion/logits_with_truth.sql`` (one task); ``fitted`` None
    scores every utterance from its audio output where it has one (``fusion_model_key`` then :data:`NO_FUSION_KEY`)."""
    audio, text = data.present(rows, "audio"), data.present(rows, "text")
    if fitted is None:
        text = text & ~audio
    both = audio & text
    out = pd.DataFrame(
        {
            "utterance_id": rows["utterance_id"].to_numpy(),
            "task": task,
            "fusion_model_key": fusion_model_key,
            "modalities": np.where(both, "audio+text", np.where(audio, "audio", "text")),
        }
    )
    X = data.features(rows)
    if task == "categorical":
        values = np.zeros((len(rows), len(EMOTIONS)))
        if both.any():
            values[both] = fitted.predict_proba(X[both])
        column = "probabilities"
    else:
        values = np.zeros((len(rows), len(ATTRIBUTES)))
        if both.any():
            values[both] = fitted.predict(X[both])
        column = "attributes"
    for modality, only in (("audio", audio & ~text), ("text", text & ~audio)):
        if only.any():
            values[only] = np.stack(rows.loc[only, f"{modality}_{column}"].map(np.asarray).to_numpy())
    if task == "categorical":
        out["probabilities"] = list(values.astype(np.float32))
        out["predicted_label"] = [EMOTIONS[i] for i in values.argmax(axis=1)]
        out["audio_label"] = rows["audio_label"].to_numpy()
        out["text_label"] = rows["text_label"].to_numpy()
        out["modalities_agree"] = np.where(both, out["audio_label"] == out["text_label"], None)
    else:
        out["predicted_attributes"] = list(values.astype(np.float32))
    return out
