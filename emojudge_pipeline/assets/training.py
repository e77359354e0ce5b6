"""Training assets, one per modality x task (a factory, not four copies): heads on the cached features.

Each reads the train and development splits of EMOJUDGE_TRAIN_SETS, selects the checkpoint by development
F1-macro (categorical) or mean CCC (attributes), writes safetensors + config.json under $EMOJUDGE_HOME/models/ and
a model_registry row.
"""

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import dagster as dg
import pandas as pd

from emojudge_models import registry, warehouse
from emojudge_models.checkpoints import model_key, save_checkpoint
from emojudge_models.datasets import SplitData, frames_for, labelled_rows, vectors_for
from emojudge_models.features.store import FeatureStore
from emojudge_models.heads import CODE_VERSION as HEADS_CODE_VERSION
from emojudge_models.heads import HeadConfig
from emojudge_models.labels import TASKS
from emojudge_models.profiles import text_encoder_path
from emojudge_models.text_classifier import CODE_VERSION as TEXT_CODE_VERSION
from emojudge_models.text_classifier import TextFinetuneConfig, finetune_text_classifier
from emojudge_models.training import HeadTrainingConfig, TrainConfig, TrainResult, train_audio_head, train_text_head
from emojudge_pipeline import settings
from emojudge_pipeline.assets.common import WAREHOUSE_POOL, markdown_preview
from emojudge_pipeline.resources import ModelsResource, WarehouseResource

MODALITIES = ("audio", "text")


def model_kind(modality: str, text_training: str) -> str:
    """The ``model_registry.kind`` of a modality's model."""
    if modality == "audio":
        return "audio_head"
    return "text_finetune" if text_training == "finetune" else "text_head"


def _data_key(encoder_key: str, split: SplitData, name: str) -> str:
    """Names exactly which rows and targets trained a model."""
    rows = [
        (e, u, str(t))
        for e, u, t in zip(split.rows["eval_set"], split.rows["utterance_id"], split.targets, strict=True)
    ]
    digest = hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]
    return f"{name}:{encoder_key}:{digest}"


def _train_config() -> TrainConfig:
    """Head training settings; lr 1e-3 (not the fine-tuning 1e-5) measured best for heads on cached features."""
    return TrainConfig(
        lr=float(settings.env("EMOJUDGE_HEAD_LR", "1e-3")),
        max_epochs=int(settings.env("EMOJUDGE_MAX_EPOCHS", "40")),
        patience=int(settings.env("EMOJUDGE_PATIENCE", "8")),
    )


def _epoch_logger(log, prefix: str = ""):
    def on_epoch(epoch: int, values: dict) -> None:
        log(f"{prefix}epoch {epoch}: " + ", ".join(f"{k}={v:.4g}" for k, v in values.items()))

    return on_epoch


AUDIO_HEADS = {
    "attentive": {"pooling": "attentive"},
    "meanstd": {"pooling": "meanstd"},
    "probe": {"pooling": "meanstd", "n_hidden_layers": 0},
}
"""Audio head candidates: the paper's attentive head, mean+std pooling with the same MLP, and a linear probe on
standardised mean+std (what small data often prefers). ``EMOJUDGE_AUDIO_POOLING=auto`` trains all three and keeps
the best development score."""


def _train_audio(store, key, train, dev, task, models, log) -> tuple[TrainResult, HeadTrainingConfig, dict]:
    """Train the configured head(s); with ``auto`` every candidate of AUDIO_HEADS, kept by development score."""
    train_items = list(zip(frames_for(store, train.rows, key), train.targets, strict=True))
    dev_items = list(zip(frames_for(store, dev.rows, key), dev.targets, strict=True))
    input_dim = train_items[0][0].shape[1]
    pooling = settings.env("EMOJUDGE_AUDIO_POOLING", "auto")
    if pooling != "auto" and pooling not in AUDIO_HEADS:
        raise dg.Failure(f"EMOJUDGE_AUDIO_POOLING must be auto or one of {', '.join(AUDIO_HEADS)}, not {pooling!r}")
    candidates = tuple(AUDIO_HEADS) if pooling == "auto" else (pooling,)
    scores, best = {}, None
    for candidate in candidates:
        config = HeadTrainingConfig(
            head=HeadConfig(task=task, input_dim=input_dim, **AUDIO_HEADS[candidate]), train=_train_config()
        )
        result = train_audio_head(
            train_items,
            dev_items,
            config,
            models.torch_device(),
            models.seed,
            on_epoch=_epoch_logger(log, f"{candidate} "),
        )
        scores[candidate] = result.dev_metric
        if best is None or result.dev_metric > best[0].dev_metric:
            best = (result, config)
    return best[0], best[1], scores


def _train_text_head(store, key, train, dev, task, models, log) -> tuple[TrainResult, HeadTrainingConfig, dict]:
    train_vectors, dev_vectors = vectors_for(store, train.rows, key), vectors_for(store, dev.rows, key)
    config = HeadTrainingConfig(
        head=HeadConfig(task=task, input_dim=train_vectors.shape[1], pooling="none", n_hidden_layers=1),
        train=_train_config(),
    )
    result = train_text_head(
        train_vectors,
        train.targets,
        dev_vectors,
        dev.targets,
        config,
        models.torch_device(),
        models.seed,
        on_epoch=_epoch_logger(log),
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
        on_epoch=_epoch_logger(log),
    )
    return result, config, {}


def _request_key(kind: str, key: str, train: SplitData, dev: SplitData, models: ModelsResource) -> str:
    """Identifies a training request before it runs (data, encoder, settings, code), so a repeat is a cache hit."""
    settings_used = {
        "kind": kind,
        "seed": models.seed,
        "pooling": settings.env("EMOJUDGE_AUDIO_POOLING", "auto"),
        "head_training": asdict(_train_config()) if kind != "text_finetune" else None,
        "text_encoder": models.resolved().text_encoder if kind == "text_finetune" else None,
    }
    code = HEADS_CODE_VERSION if kind != "text_finetune" else TEXT_CODE_VERSION
    return model_key([_data_key(key, train, "train"), _data_key(key, dev, "development")], settings_used, code)


def build_training_asset(modality: str, task: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"{modality}_model_{task}",
        deps=[f"{modality}_features"],
        group_name="training",
        pool=WAREHOUSE_POOL,
        kinds={"pytorch", "safetensors"},
        description=f"The {modality} {task} model trained on the cached {modality} features of the train split, "
        f"selected on the development split; registered in model_registry.",
    )
    def train_model(
        context: dg.AssetExecutionContext, warehouse_db: WarehouseResource, models: ModelsResource
    ) -> dg.MaterializeResult:
        sets = settings.train_sets()
        kind = model_kind(modality, models.resolved().text_training)
        with warehouse_db.connect() as con:
            key = warehouse.scalar(con, "queries/partition_encoder_key.sql", [sets[0], modality])
            if key is None:
                raise dg.Failure(
                    f"no {modality} features for training set {sets[0]!r}: materialise {modality}_features"
                )
            train = labelled_rows(con, sets, "train", key, task)
            dev = labelled_rows(con, sets, "development", key, task)
            if len(train) < 2 or len(dev) < 1:
                context.log.warning(f"{task}: {len(train)} train / {len(dev)} development labelled rows in {sets}")
                return dg.MaterializeResult(
                    metadata={"skipped": f"no {task} labels in the train/development splits of {', '.join(sets)}"}
                )
            mkey = _request_key(kind, key, train, dev, models)
            existing = registry.by_key(con, mkey)
            if existing is not None and (Path(existing.path) / "config.json").is_file():
                context.log.info(f"{kind} {task}: same data, encoder and settings as {mkey}; reusing it")
                return dg.MaterializeResult(
                    metadata={"model_key": mkey, "reused": True, f"dev_{existing.dev_metric_name}": existing.dev_metric}
                )
            store = FeatureStore(con, warehouse_db.features_root)
            context.log.info(f"training {kind} ({task}) on {len(train)} train / {len(dev)} development rows")
            if modality == "audio":
                result, config, candidates = _train_audio(store, key, train, dev, task, models, context.log.info)
            elif kind == "text_head":
                result, config, candidates = _train_text_head(store, key, train, dev, task, models, context.log.info)
            else:
                result, config, candidates = _finetune_text(train, dev, task, models, context.log.info)
        hyper = {**config.to_dict(), "seed": models.seed}
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
                ),
                context.run.run_id,
            )
        history = pd.DataFrame(result.history)
        return dg.MaterializeResult(
            metadata={
                "model_key": mkey,
                "reused": False,
                "kind": kind,
                f"dev_{result.dev_metric_name}": result.dev_metric,
                "best_epoch": result.best_epoch,
                "epochs": len(history),
                "train_rows": len(train),
                "development_rows": len(dev),
                "encoder_key": key,
                "pooling_candidates": dg.MetadataValue.json(candidates),
                "history": markdown_preview(history.round(4), rows=len(history)),
                "checkpoint": dg.MetadataValue.path(str(directory)),
            }
        )

    return train_model


training_assets = [build_training_asset(modality, task) for modality in MODALITIES for task in TASKS]
