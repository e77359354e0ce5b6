"""Which registered or shipped model scores an evaluation set, and what every model was trained on.

A set is scored, per modality and task, by the newest model registered for its encoder that may score it:
- a model trained on the user's own sets (``trained_on`` ``sets:...``) scores every set;
- a model trained on the generated synthetic demo corpus (``synthetic:...``) scores only the sets it was trained
  on, unless the user opts in (``EMOJUDGE_USE_DEMO_MODELS=1``): tones through formant filters say nothing about a
  human voice, and scored a newcomer's real clips at chance (issue 30);
- with neither, the shipped real-speech model for the encoder (models/shipped.py), if there is one.
A set whose text modality has no usable model gets no text logits, so fusion scores it from audio alone. A fusion
model is applied only to logits of the very models it was fitted on (:func:`choose_fusion`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from emojudge_models.models.registry import RegisteredModel
from emojudge_models.models.shipped import SHIPPED_PREFIX, ShippedModel

SYNTHETIC_PREFIX = "synthetic:"
SETS_PREFIX = "sets:"


def synthetic_sets(set_paths: Iterable[tuple[str, str]], demo_manifest: Path) -> set[str]:
    """The evaluation sets whose corpus is the generated demo corpus (its manifest, ``demo_manifest``)."""
    target = demo_manifest.resolve()
    return {name for name, path in set_paths if Path(path).resolve() == target}


def trained_on(train_sets: Sequence[str], synthetic: set[str]) -> str:
    """``model_registry.trained_on`` of a model trained on ``train_sets``: synthetic when any of them is."""
    prefix = SYNTHETIC_PREFIX if synthetic.intersection(train_sets) else SETS_PREFIX
    return prefix + ",".join(train_sets)


def described(model: RegisteredModel) -> str:
    """What ``model`` was trained on, also for a row from before v12 (its training sets)."""
    return model.trained_on or SETS_PREFIX + ",".join(model.train_eval_sets)


def origin(model: RegisteredModel, synthetic: set[str]) -> str:
    """``shipped``, ``synthetic`` or ``user``; a row from before v12 (no trained_on) is told by its sets."""
    if model.trained_on is None:
        return "synthetic" if synthetic.intersection(model.train_eval_sets) else "user"
    if model.trained_on.startswith(SHIPPED_PREFIX):
        return "shipped"
    return "synthetic" if model.trained_on.startswith(SYNTHETIC_PREFIX) else "user"


def shipped_registration(model: ShippedModel, encoder_key: str) -> RegisteredModel:
    """The ``model_registry`` row of a shipped model used with features of ``encoder_key``."""
    return RegisteredModel(
        model_key=model.model_key,
        kind=f"{model.modality}_head",
        task=model.task,
        path=str(model.path),
        train_eval_sets=[],
        hyperparameters=model.hyperparameters,
        dev_metric_name="f1_macro_grouped_cv",
        dev_metric=model.dev_metric,
        encoder_key=encoder_key,
        trained_on=model.trained_on,
    )


@dataclass(frozen=True)
class Choice:
    """The model that scores a set's modality and task (None: none may), whether it is shipped, and why."""

    model: RegisteredModel | None
    shipped: ShippedModel | None
    reason: str


def choose_model(
    candidates: Sequence[RegisteredModel],
    eval_set: str,
    synthetic: set[str],
    use_demo_models: bool,
    shipped: ShippedModel | None,
    encoder_key: str,
) -> Choice:
    """The newest candidate (registered for the set's encoder, newest first) that may score ``eval_set``, else the
    shipped model, else none; ``reason`` says which rule decided."""
    passed_over = 0
    for model in candidates:
        kind = origin(model, synthetic)
        if kind == "user":
            return Choice(model, None, f"trained on your sets ({described(model)})")
        if kind == "synthetic" and (eval_set in model.train_eval_sets or use_demo_models):
            why = "this set is its training set" if eval_set in model.train_eval_sets else "EMOJUDGE_USE_DEMO_MODELS=1"
            return Choice(model, None, f"trained on the synthetic demo corpus; used because {why}")
        passed_over += kind == "synthetic"
    demo_note = (
        f"; {passed_over} model(s) trained on the synthetic demo corpus passed over (EMOJUDGE_USE_DEMO_MODELS=1 uses "
        "them)"
        if passed_over
        else ""
    )
    if shipped is not None:
        return Choice(
            shipped_registration(shipped, encoder_key),
            shipped,
            f"shipped real-speech model ({shipped.trained_on}; card {shipped.card}){demo_note}",
        )
    return Choice(None, None, f"none registered for this encoder and none shipped{demo_note}")


def choose_fusion(fusion_models: Sequence[RegisteredModel], used: set[str]) -> RegisteredModel | None:
    """The newest fusion model fitted on exactly the audio and text models in ``used`` (their keys), else None:
    logits of other models are fused by no model (each utterance takes its audio, else its text, prediction)."""
    for model in fusion_models:
        if used <= set(model.input_model_keys):
            return model
    return None
