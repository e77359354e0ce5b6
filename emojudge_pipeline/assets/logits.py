"""Asset ``logits``: every registered audio and text model applied to one evaluation set."""

import json
from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd

from emojudge_models.features.datasets import frames_for, speaker_normaliser, vectors_for
from emojudge_models.features.speaker_norm import MIN_SPEAKER_UTTERANCES, SpeakerNormaliser
from emojudge_models.features.store import FeatureStore
from emojudge_models.labels import TASKS
from emojudge_models.models import registry
from emojudge_models.models.checkpoints import load_checkpoint
from emojudge_models.models.policy import model_kind
from emojudge_models.models.predict import predict_audio, predict_vectors
from emojudge_models.models.scoring import logits_rows
from emojudge_models.models.selection import Choice, choose_model, described, synthetic_sets
from emojudge_models.models.shipped import shipped_for
from emojudge_models.models.text_classifier import predict_texts
from emojudge_models.store import warehouse
from emojudge_pipeline.assets.training import MODALITIES
from emojudge_pipeline.partitions import eval_sets_partitions
from emojudge_pipeline.resources import ModelsResource, WarehouseResource

NO_MODEL = "no model registered: train first (emojudge materialize <training set>)"
"""Why scoring stops when nothing was trained for this warehouse (or for the partition's encoders)."""
SCORING_CHUNK = 128
"""Utterances whose features are read and scored together; bounds memory whatever the partition size."""


def _score(
    modality: str,
    kind: str,
    models: dict,
    store: FeatureStore,
    rows: pd.DataFrame,
    key: str,
    device: str,
    normalisers: dict[str, SpeakerNormaliser | None],
):
    """Outputs of every task's model for ``rows`` in order; each chunk's features are read once for all tasks.

    ``normalisers`` gives each task's audio model the speaker normalisation it was trained with (None: raw)."""
    outputs: dict[str, list[np.ndarray]] = {task: [] for task in models}
    for start in range(0, len(rows), SCORING_CHUNK):
        chunk = rows.iloc[start : start + SCORING_CHUNK]
        if modality == "audio":
            features, lengths = frames_for(store, chunk, key), chunk["n_frames"].tolist()
            keys = list(zip(chunk["eval_set"], chunk["utterance_id"], strict=True))
        elif kind == "text_head":
            features = vectors_for(store, chunk, key)
        else:
            features = chunk["transcript"].tolist()
        for task, model in models.items():
            if modality == "audio":
                normaliser = normalisers.get(task)
                inputs = features if normaliser is None else normaliser.apply(keys, features)
                outputs[task].append(predict_audio(model, inputs, device, lengths=lengths))
            elif kind == "text_head":
                outputs[task].append(predict_vectors(model, features, device))
            else:
                outputs[task].append(predict_texts(model, features, device))
    return {task: np.concatenate(parts) for task, parts in outputs.items()}


def _normalisers(store: FeatureStore, eval_set: str, key: str, registered: dict) -> dict:
    """Each task model's speaker normaliser over this evaluation set, built once and shared; None for models
    trained on raw frames."""
    wanted = {task: m.hyperparameters.get("speaker_norm", "none") == "speaker" for task, m in registered.items()}
    if not any(wanted.values()):
        return dict.fromkeys(registered)
    minimum = {m.hyperparameters.get("min_speaker_utterances", MIN_SPEAKER_UTTERANCES) for m in registered.values()}
    shared = speaker_normaliser(store, [eval_set], key, max(minimum))
    return {task: shared if wanted[task] else None for task in registered}


@dataclass(frozen=True)
class _Scoring:
    """What one modality of a partition is scored with: its encoder key, rows and chosen model per task."""

    modality: str
    kind: str
    key: str
    rows: pd.DataFrame
    choices: dict[str, Choice]

    @property
    def registered(self) -> dict[str, registry.RegisteredModel]:
        return {task: choice.model for task, choice in self.choices.items() if choice.model is not None}


def _choices(con, eval_set: str, modality: str, kind: str, key: str, policy: dict) -> dict[str, Choice]:
    """Per task, the model that may score ``eval_set`` (models/selection.py): the user's, the demo's, or shipped.
    ``policy``: ``use_demo_models``, the generated ``demo_manifest`` of this home and the ``shipped_root``."""
    synthetic = synthetic_sets(
        con.execute(warehouse.sql_text("models/eval_set_paths.sql")).fetchall(), policy["demo_manifest"]
    )
    spec = json.loads(warehouse.scalar(con, "features/encoder_spec.sql", [key]) or "{}")
    return {
        task: choose_model(
            registry.for_encoder(con, kind, task, key),
            eval_set,
            synthetic,
            policy["use_demo_models"],
            shipped_for(modality, task, spec, policy["shipped_root"]),
            key,
        )
        for task in TASKS
    }


def _read_scoring(
    con, eval_set: str, text_training: str, policy: dict, metadata: dict, log
) -> tuple[list[_Scoring], list[str]]:
    """Per modality, the rows and models to score (skips and choices noted in ``metadata``), and encoder keys with
    no model."""
    scorings, untrained = [], []
    for modality in MODALITIES:
        key = warehouse.scalar(con, "features/partition_encoder_key.sql", [eval_set, modality])
        if key is None:
            metadata[f"{modality}_skipped"] = "no features for this evaluation set"
            continue
        rows = con.execute(warehouse.sql_text("features/partition_features.sql"), [key, eval_set]).df()
        kind = model_kind(modality, text_training)
        if rows.empty:
            metadata[f"{modality}_skipped"] = "no utterance has features under the latest encoder"
            continue
        choices = _choices(con, eval_set, modality, kind, key, policy)
        for task, choice in choices.items():
            metadata[f"{modality}_{task}_model"] = choice.reason
            log.info(f"{modality} {task} model: {choice.reason}")
            if choice.model is None:
                metadata[f"{modality}_{task}_skipped"] = f"no {kind} model for encoder {key}: {choice.reason}"
        scoring = _Scoring(modality, kind, key, rows, choices)
        if scoring.registered:
            scorings.append(scoring)
        else:
            untrained.append(key)
    return scorings, untrained


@dg.asset(
    partitions_def=eval_sets_partitions,
    deps=["audio_features", "text_features", *[f"{m}_model_{t}" for m in MODALITIES for t in TASKS]],
    group_name="scoring",
    kinds={"pytorch", "duckdb"},
    description="Audio and text logits, probabilities and labels (table logits) per task from the newest model for "
    "the partition's encoder that may score it: the user's, the demo's for the demo corpus, else the shipped "
    "real-speech model (models/selection.py); metadata says which and what it was trained on.",
)
def logits(
    context: dg.AssetExecutionContext, warehouse_db: WarehouseResource, models: ModelsResource
) -> dg.MaterializeResult:
    eval_set = context.partition_key
    device = models.torch_device()
    frames, metadata = [], {}
    with warehouse_db.connect() as con:
        policy = {
            "use_demo_models": models.use_demo_models,
            "demo_manifest": warehouse_db.layout.demo_corpus / "manifest.csv",
            "shipped_root": models.shipped_root,
        }
        scorings, untrained = _read_scoring(
            con, eval_set, models.resolved().text_training, policy, metadata, context.log
        )
        if not scorings and registry.count(con) == 0:
            raise dg.Failure(NO_MODEL, allow_retries=False)
        if not scorings:
            raise dg.Failure(
                f"no model registered for encoder {', '.join(untrained)}: train first "
                "(emojudge materialize <training set>)",
                allow_retries=False,
            )
        for scoring in scorings:
            for choice in scoring.choices.values():
                if choice.shipped is not None:
                    registry.register(con, choice.model, context.run.run_id, sql="register_shipped_model")
    # Scoring runs outside any warehouse session; the store opens a short one per read of features.
    store = FeatureStore(warehouse_db.connect, warehouse_db.features_root)
    for scoring in scorings:
        modality, registered = scoring.modality, scoring.registered
        loaded = {task: load_checkpoint(m.path, device) for task, m in registered.items()}
        normalisers = _normalisers(store, eval_set, scoring.key, registered) if modality == "audio" else {}
        for task, normaliser in normalisers.items():
            if normaliser is not None:
                metadata[f"audio_{task}_speaker_norm"] = dg.MetadataValue.json(normaliser.summary())
        scored = _score(modality, scoring.kind, loaded, store, scoring.rows, scoring.key, device, normalisers)
        for task, outputs in scored.items():
            model_key = registered[task].model_key
            frames.append(
                logits_rows(scoring.rows["utterance_id"].tolist(), outputs, task).assign(
                    modality=modality, model_key=model_key
                )
            )
            metadata[f"{modality}_{task}_model_key"] = model_key
            metadata[f"{modality}_{task}_trained_on"] = described(registered[task])
            metadata[f"{modality}_{task}_rows"] = len(scoring.rows)
            context.log.info(f"{modality} {task}: {len(scoring.rows)} rows from {model_key}")
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["utterance_id"])
    table["run_id"] = context.run.run_id
    with warehouse_db.connect() as con:
        warehouse.replace_partition(con, "logits", eval_set, table)
    metadata["dagster/row_count"] = len(table)
    return dg.MaterializeResult(metadata=metadata)
