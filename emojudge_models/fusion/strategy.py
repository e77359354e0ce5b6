"""How the fusion model is fitted, and the key that names it.

Two strategies (``FIT_STRATEGIES``) choose which labelled rows fit the fusion and which select its C:
- ``train`` (default): fit on the train split's logits, select C on the development split, refit on both. The
  heads have seen the train split, so its logits are somewhat over-confident; selecting C on held-out rows
  corrects the regularisation for that.
- ``development``: fit only on held-out logits: the development split is cut (seeded, stratified) into a fitting
  half and a selection half, then the chosen C is refitted on the whole development split. Cleaner, but needs a
  large development split.

Rows are the labelled output of ``fusion/logits_with_truth.sql``: eval_set, utterance_id, split, the truth
columns, audio_logits / text_logits and the audio_model_key / text_model_key that produced them.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.model_selection import train_test_split

from emojudge_models.fusion import data
from emojudge_models.fusion.models import FusionModel, fit_guarded_fusion
from emojudge_models.models.keys import data_key, model_key

FIT_STRATEGIES: tuple[str, ...] = ("train", "development")
FUSION_CODE_VERSION = "fusion-2"
"""Bump when a change here or in fusion/models.py changes what a fitted fusion computes (part of its key)."""
MIN_DEVELOPMENT_ROWS = 4


def check_fit_strategy(strategy: str) -> str:
    if strategy not in FIT_STRATEGIES:
        raise ValueError(f"must be one of {', '.join(FIT_STRATEGIES)}, not {strategy!r}")
    return strategy


def selection_split(frame: pd.DataFrame, task: str, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded halves of the development rows (stratified by class where every class has two rows)."""
    stratify = None
    if task == "categorical" and frame["emotion"].value_counts().min() >= 2:
        stratify = frame["emotion"]
    fit, select = train_test_split(frame, test_size=0.5, random_state=seed, stratify=stratify)
    return fit, select


def enough_rows(rows: pd.DataFrame, strategy: str) -> bool:
    """Whether ``strategy`` can fit on these labelled rows: a few development rows, and train rows for ``train``."""
    n_dev = int((rows["split"] == "development").sum())
    return n_dev >= MIN_DEVELOPMENT_ROWS and not (strategy == "train" and n_dev == len(rows))


def fit_and_selection_rows(rows: pd.DataFrame, task: str, strategy: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows that fit the fusion and the rows that select its C, under ``strategy``."""
    development = rows[rows["split"] == "development"]
    if check_fit_strategy(strategy) == "train":
        return rows[rows["split"] == "train"], development
    return selection_split(development, task)


def fit_fusion(task: str, rows: pd.DataFrame, strategy: str) -> FusionModel:
    """Fit the fusion of ``task`` on labelled rows: C chosen on the selection rows, then refitted on both.

    Guarded (``fit_guarded_fusion``): a modality at chance or missing on the selection rows gets no weight, and the
    fused model is kept only if it is within a tolerance of the better single modality there.
    """
    fit_rows, select_rows = fit_and_selection_rows(rows, task, strategy)
    args = (
        data.features(fit_rows),
        data.targets(fit_rows, task),
        data.features(select_rows),
        data.targets(select_rows, task),
    )
    return fit_guarded_fusion(task, *args, class_balanced=True, fit_on="train+dev")


def input_model_keys(rows: pd.DataFrame) -> list[str]:
    """The audio and text models whose logits the fusion was fitted on, sorted."""
    return sorted(set(rows["audio_model_key"]) | set(rows["text_model_key"]))


def fusion_hyperparameters(model: FusionModel, strategy: str) -> dict[str, Any]:
    return {**model.hyperparameters(), "fit_strategy": strategy}


def fusion_model_key(task: str, rows: pd.DataFrame, model: FusionModel, strategy: str) -> str:
    """The fitted fusion's key: its input models, the rows and truth it saw (by split), its settings, the choices its
    fit made and its code.

    Not the scores behind those choices (development scores, permutation nulls, the rule's text quoting them): they
    are float sums over the input models' outputs, which differ in their last bits between a process with 2 BLAS
    threads and a cluster worker with 1, so the same fit would get two keys."""
    truth = map(str, data.targets(rows, task).tolist())
    seen = zip(rows["eval_set"], rows["utterance_id"], rows["split"], truth, strict=True)
    scores = ("rule", "reliability")
    hyperparameters = {k: v for k, v in fusion_hyperparameters(model, strategy).items() if k not in scores}
    hyperparameters["reliable"] = {modality: r["reliable"] for modality, r in model.reliability.items()}
    return model_key(
        "fusion",
        data_keys=[*input_model_keys(rows), data_key("fit", "fusion", seen)],
        hyperparameters=hyperparameters,
        code_version=FUSION_CODE_VERSION,
    )
