"""The fusion fit strategy (which rows fit, which select C) and the fusion model key, on small frames."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from emojudge_models.fusion.strategy import (
    check_fit_strategy,
    enough_rows,
    fit_and_selection_rows,
    fit_fusion,
    fusion_model_key,
    input_model_keys,
)
from emojudge_models.labels import EMOTIONS


def _rows(n_train: int = 32, n_dev: int = 32, seed: int = 0) -> pd.DataFrame:
    """Logits of four classes with signal on the true class, in both modalities."""
    rng = np.random.default_rng(seed)
    n = n_train + n_dev
    classes = np.arange(n) % 4
    audio = rng.normal(size=(n, len(EMOTIONS)))
    text = rng.normal(size=(n, len(EMOTIONS)))
    audio[np.arange(n), classes] += 3.0
    text[np.arange(n), classes] += 3.0
    return pd.DataFrame(
        {
            "eval_set": "s",
            "utterance_id": [f"u{i:03d}" for i in range(n)],
            "split": ["train"] * n_train + ["development"] * n_dev,
            "emotion": [EMOTIONS[c] for c in classes],
            "audio_logits": list(audio),
            "text_logits": list(text),
            "audio_model_key": "a1",
            "text_model_key": "t1",
        }
    )


def test_train_strategy_fits_on_train_and_selects_on_development() -> None:
    rows = _rows()
    fit, select = fit_and_selection_rows(rows, "categorical", "train")
    assert set(fit["split"]) == {"train"} and len(fit) == 32
    assert set(select["split"]) == {"development"} and len(select) == 32


def test_development_strategy_splits_development_in_seeded_stratified_halves() -> None:
    rows = _rows()
    fit, select = fit_and_selection_rows(rows, "categorical", "development")
    assert set(fit["split"]) == set(select["split"]) == {"development"}
    assert len(fit) == len(select) == 16 and not set(fit["utterance_id"]) & set(select["utterance_id"])
    assert fit["emotion"].value_counts().tolist() == [4, 4, 4, 4]
    again, _ = fit_and_selection_rows(rows, "categorical", "development")
    assert again["utterance_id"].tolist() == fit["utterance_id"].tolist()
    with pytest.raises(ValueError, match="train, development, not 'test'"):
        fit_and_selection_rows(rows, "categorical", "test")
    with pytest.raises(ValueError, match="must be one of train, development"):
        check_fit_strategy("both")


def test_enough_rows_needs_development_rows_and_train_rows_for_train() -> None:
    assert enough_rows(_rows(), "train")
    assert not enough_rows(_rows(n_dev=3), "train") and not enough_rows(_rows(n_dev=3), "development")
    only_dev = _rows(n_train=0, n_dev=8)
    assert not enough_rows(only_dev, "train") and enough_rows(only_dev, "development")


@pytest.mark.parametrize("strategy", ["train", "development"])
def test_fit_fusion_refits_on_both_and_separates_the_classes(strategy: str) -> None:
    rows = _rows()
    model = fit_fusion("categorical", rows, strategy)
    assert model.task == "categorical" and model.fit_on == "train+dev" and model.class_balanced
    held_out = _rows(seed=1)
    predicted = model.predict_labels(np.hstack([np.stack(held_out["audio_logits"]), np.stack(held_out["text_logits"])]))
    assert np.mean(np.asarray(predicted) == held_out["emotion"].to_numpy()) > 0.9


def test_fusion_model_key_tracks_inputs_rows_truth_and_strategy() -> None:
    rows = _rows()
    model = fit_fusion("categorical", rows, "train")
    key = fusion_model_key("categorical", rows, model, "train")
    assert key == fusion_model_key("categorical", rows.copy(), model, "train") and len(key) == 20
    assert input_model_keys(rows.assign(text_model_key="t2")) == ["a1", "t2"]
    relabelled = rows.copy()
    relabelled.loc[0, "emotion"] = EMOTIONS[5]
    moved = rows.copy()
    moved.loc[0, "split"] = "development"
    others = [
        fusion_model_key("categorical", rows.assign(audio_model_key="a2"), model, "train"),
        fusion_model_key("categorical", relabelled, model, "train"),
        fusion_model_key("categorical", moved, model, "train"),
        fusion_model_key("categorical", rows.iloc[1:], model, "train"),
        fusion_model_key("categorical", rows, model, "development"),
    ]
    assert len({key, *others}) == 1 + len(others)


def test_fusion_model_key_ignores_the_last_bits_of_the_scores_behind_its_choices() -> None:
    """The same fit on a cluster worker (one BLAS thread) and in one process (two) gave two keys: the development
    scores it records differ in their last bits. The key holds the choices (modalities, C, which were reliable)."""
    rows = _rows()
    model = fit_fusion("categorical", rows, "train")
    key = fusion_model_key("categorical", rows, model, "train")
    nudged = copy.deepcopy(model)
    for record in nudged.reliability.values():
        record["dev_score"] = np.nextafter(record["dev_score"], 1.0)
    assert fusion_model_key("categorical", rows, nudged, "train") == key
    nudged.modalities = ("audio",)
    assert fusion_model_key("categorical", rows, nudged, "train") != key
