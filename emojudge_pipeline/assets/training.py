"""Training assets, one per modality x task (a factory, not four copies): heads on the cached features.

Each reads the train and development splits of EMOJUDGE_TRAIN_SETS, selects the checkpoint by development
F1-macro (categorical) or mean CCC (attributes), writes safetensors + config.json under $EMOJUDGE_HOME/models/ and
a model_registry row.
"""

from pathlib import Path

import dagster as dg
import pandas as pd

from emojudge_models.features.datasets import frame_stream, labelled_rows, speaker_normaliser, vectors_for
from emojudge_models.features.store import FeatureStore
from emojudge_models.labels import TASKS
from emojudge_models.models import registry
from emojudge_models.models.checkpoints import save_checkpoint
from emojudge_models.models.loop import TrainConfig, TrainResult
from emojudge_models.models.policy import (
    AudioTraining,
    model_kind,
    registry_hyperparameters,
    text_head_config,
    train_audio_policy,
    training_request_key,
)
from emojudge_models.models.selection import synthetic_sets, trained_on
from emojudge_models.models.text_classifier import TextFinetuneConfig, finetune_text_classifier
from emojudge_models.models.training import train_text_head
from emojudge_models.profiles import text_encoder_path
from emojudge_models.store import warehouse
from emojudge_pipeline.assets.common import markdown_preview, rounded, rounded_json
from emojudge_pipeline.resources import ModelsResource, TrainingResource, WarehouseResource

MODALITIES = ("audio", "text")


def _train_config(training: TrainingResource) -> TrainConfig:
    """Head training settings of this run (defaults: the settings', as in policy.HEAD_TRAINING)."""
    return TrainConfig(lr=training.head_lr, max_epochs=training.max_epochs, patience=training.patience)


def _epoch_logger(log, prefix: str = ""):
    """Per-epoch lines for the DEBUG level; each model gets one INFO summary when it is done."""

    def on_epoch(epoch: int, values: dict) -> None:
        log(f"{prefix}epoch {epoch}: " + ", ".join(f"{k}={v:.4g}" for k, v in values.items()))

    return on_epoch


def _train_audio(inputs, task, models, training: TrainingResource, log) -> AudioTraining:
    """Train the configured audio policy on the train and development frames (streamed from the store)."""
    train_items, dev_items = inputs
    return train_audio_policy(
        train_items,
        dev_items,
        policy=training.audio_pooling,
        task=task,
        train=_train_config(training),
        device=models.torch_device(),
        seed=models.seed,
        on_epoch=lambda candidate: _epoch_logger(log.debug, f"{candidate} "),
        log=log.info,
    )


def _train_text_head(inputs, train, dev, task, models, training: TrainingResource, log):
    train_vectors, dev_vectors = inputs
    config = text_head_config(task, train_vectors.shape[1], _train_config(training))
    result = train_text_head(
        train_vectors,
        train.targets,
        dev_vectors,
        dev.targets,
        config,
        models.torch_device(),
        models.seed,
        on_epoch=_epoch_logger(log.debug),
    )
    return result, config, {}


def _finetune_text(train, dev, task, models, log) -> tuple[TrainResult, TextFinetuneConfig, dict]:
    config = TextFinetuneConfig(encoder_name_or_path=text_encoder_path(models.resolved()), task=task)
    result = finetune_text_classifier(
        train.rows["transcript"].tolist(),
        train.targets,
        dev.rows["transcript"].tolist(),
        dev.targets,
        config,
        models.torch_device(),
        models.seed,
        on_epoch=_epoch_logger(log.debug),
    )
    return result, config, {}


def _read_inputs(warehouse_db, sets, key, train, dev, modality, kind, training, log):
    """What training needs from the feature store, each read in the store's short sessions: audio frames as streams
    (read shard by shard while training, speaker-normalised on the fly), text vectors in memory."""
    store = FeatureStore(warehouse_db.connect, warehouse_db.features_root)
    if modality == "audio":
        normaliser = None
        if training.speaker_norm == "speaker":
            normaliser = speaker_normaliser(store, sets, key)
            log.info(f"speaker normalisation: {normaliser.summary()}")
        return tuple(
            frame_stream(store, split, key, normaliser, training.shuffle_buffer, training.loader_workers)
            for split in (train, dev)
        )
    if kind == "text_head":
        return vectors_for(store, train.rows, key), vectors_for(store, dev.rows, key)
    return None


def _request_key(kind: str, key: str, train, dev, models: ModelsResource, training: TrainingResource) -> str:
    return training_request_key(
        kind,
        encoder_key=key,
        train=train,
        dev=dev,
        seed=models.seed,
        audio_policy=training.audio_pooling if kind == "audio_head" else "",
        speaker_norm=training.speaker_norm if kind == "audio_head" else "",
        head_training=_train_config(training),
        text_encoder=models.resolved().text_encoder,
    )


def build_training_asset(modality: str, task: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"{modality}_model_{task}",
        deps=[f"{modality}_features"],
        group_name="training",
        kinds={"pytorch", "safetensors"},
        description=f"The {modality} {task} model trained on the cached {modality} features of the train split, "
        f"selected on the development split; registered in model_registry.",
    )
    def train_model(
        context: dg.AssetExecutionContext,
        warehouse_db: WarehouseResource,
        models: ModelsResource,
        training: TrainingResource,
    ) -> dg.MaterializeResult:
        sets = training.train_sets
        kind = model_kind(modality, models.resolved().text_training)
        with warehouse_db.connect() as con:
            key = warehouse.scalar(con, "features/partition_encoder_key.sql", [sets[0], modality])
            if key is None:
                raise dg.Failure(
                    f"no {modality} features for training set {sets[0]!r}: materialise {modality}_features"
                )
            synthetic = synthetic_sets(
                con.execute(warehouse.sql_text("models/eval_set_paths.sql")).fetchall(),
                warehouse_db.layout.demo_corpus / "manifest.csv",
            )
            train = labelled_rows(con, sets, "train", key, task)
            dev = labelled_rows(con, sets, "development", key, task)
            if len(train) < 2 or len(dev) < 1:
                context.log.warning(f"{task}: {len(train)} train / {len(dev)} development labelled rows in {sets}")
                return dg.MaterializeResult(
                    metadata={"skipped": f"no {task} labels in the train/development splits of {', '.join(sets)}"}
                )
            mkey = _request_key(kind, key, train, dev, models, training)
            existing = registry.by_key(con, mkey)
            if existing is not None and (Path(existing.path) / "config.json").is_file():
                context.log.info(f"{kind} {task}: same data, encoder and settings as {mkey}; reusing it")
                return dg.MaterializeResult(
                    metadata={
                        "model_key": mkey,
                        "reused": True,
                        f"dev_{existing.dev_metric_name}": rounded(existing.dev_metric),
                    }
                )
        inputs = _read_inputs(warehouse_db, sets, key, train, dev, modality, kind, training, context.log)
        # Training runs outside any warehouse session, so other writers (other sets' runs) are never held up.
        context.log.info(f"training {kind} ({task}) on {len(train)} train / {len(dev)} development rows")
        if modality == "audio":
            audio = _train_audio(inputs, task, models, training, context.log)
            result, config, candidates = audio.result, audio.config, audio.scores
        elif kind == "text_head":
            result, config, candidates = _train_text_head(inputs, train, dev, task, models, training, context.log)
        else:
            result, config, candidates = _finetune_text(train, dev, task, models, context.log)
        context.log.info(
            f"trained {kind} ({task}): development {result.dev_metric_name} {result.dev_metric:.4f} at epoch "
            f"{result.best_epoch} of {len(result.history)}"
        )
        hyper = registry_hyperparameters(config, models.seed, training.speaker_norm if modality == "audio" else None)
        directory = save_checkpoint(
            result.model,
            {"model_key": mkey, "hyperparameters": hyper, "encoder_key": key},
            warehouse_db.models_root / kind / mkey,
        )
        with warehouse_db.connect() as con:
            registry.register(
                con,
                registry.RegisteredModel(
                    model_key=mkey,
                    kind=kind,
                    task=task,
                    path=str(directory),
                    train_eval_sets=sets,
                    hyperparameters=hyper,
                    dev_metric_name=result.dev_metric_name,
                    dev_metric=result.dev_metric,
                    encoder_key=key,
                    trained_on=trained_on(sets, synthetic),
                ),
                context.run.run_id,
            )
        history = pd.DataFrame(result.history)
        return dg.MaterializeResult(
            metadata={
                "model_key": mkey,
                "reused": False,
                "kind": kind,
                f"dev_{result.dev_metric_name}": rounded(result.dev_metric),
                "best_epoch": result.best_epoch,
                "epochs": len(history),
                "train_rows": len(train),
                "development_rows": len(dev),
                "encoder_key": key,
                "pooling_candidates": dg.MetadataValue.json(rounded_json(candidates)),
                "history": markdown_preview(history.round(4), rows=len(history)),
                "checkpoint": dg.MetadataValue.path(str(directory)),
            }
        )

    return train_model


training_assets = [build_training_asset(modality, task) for modality in MODALITIES for task in TASKS]
