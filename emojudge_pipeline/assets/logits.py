"""Asset ``logits``: every registered audio and text model applied to one evaluation set."""

import dagster as dg
import pandas as pd

from emojudge_models import registry, warehouse
from emojudge_models.checkpoints import load_checkpoint
from emojudge_models.datasets import frames_for, vectors_for
from emojudge_models.features.store import FeatureStore
from emojudge_models.labels import TASKS
from emojudge_models.scoring import logits_rows
from emojudge_models.text_classifier import predict_texts
from emojudge_models.training import predict_audio, predict_vectors
from emojudge_pipeline.assets.common import WAREHOUSE_POOL
from emojudge_pipeline.assets.training import MODALITIES, model_kind
from emojudge_pipeline.partitions import eval_sets_partitions
from emojudge_pipeline.resources import ModelsResource, WarehouseResource


def _outputs(modality: str, kind: str, model, store: FeatureStore, rows: pd.DataFrame, key: str, device: str):
    if modality == "audio":
        return predict_audio(model, frames_for(store, rows, key), device, lengths=rows["n_frames"].tolist())
    if kind == "text_head":
        return predict_vectors(model, vectors_for(store, rows, key), device)
    return predict_texts(model, rows["transcript"].tolist(), device)


@dg.asset(
    partitions_def=eval_sets_partitions,
    deps=["audio_features", "text_features", *[f"{m}_model_{t}" for m in MODALITIES for t in TASKS]],
    group_name="scoring",
    pool=WAREHOUSE_POOL,
    kinds={"pytorch", "duckdb"},
    description="Audio and text logits, probabilities and labels (table logits) from the latest registered model "
    "for the partition's encoder and each task.",
)
def logits(
    context: dg.AssetExecutionContext, warehouse_db: WarehouseResource, models: ModelsResource
) -> dg.MaterializeResult:
    eval_set = context.partition_key
    device = models.torch_device()
    frames, metadata = [], {}
    with warehouse_db.connect() as con:
        store = FeatureStore(con, warehouse_db.features_root)
        for modality in MODALITIES:
            key = warehouse.scalar(con, "queries/partition_encoder_key.sql", [eval_set, modality])
            if key is None:
                metadata[f"{modality}_skipped"] = "no features for this evaluation set"
                continue
            rows = con.execute(warehouse.sql_text("queries/partition_features.sql"), [key, eval_set]).df()
            kind = model_kind(modality, models.resolved().text_training)
            for task in TASKS:
                model_row = registry.latest(con, kind, task, encoder_key=key)
                if model_row is None:
                    metadata[f"{modality}_{task}_skipped"] = f"no {kind} model registered for encoder {key}"
                    continue
                model = load_checkpoint(model_row.path, device)
                outputs = _outputs(modality, kind, model, store, rows, key, device)
                frames.append(
                    logits_rows(rows["utterance_id"].tolist(), outputs, task).assign(
                        modality=modality, model_key=model_row.model_key
                    )
                )
                metadata[f"{modality}_{task}_model_key"] = model_row.model_key
                metadata[f"{modality}_{task}_rows"] = len(rows)
                context.log.info(f"{modality} {task}: {len(rows)} rows from {model_row.model_key}")
        table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["utterance_id"])
        table["run_id"] = context.run.run_id
        warehouse.replace_partition(con, "logits", eval_set, table)
    metadata["dagster/row_count"] = len(table)
    return dg.MaterializeResult(metadata=metadata)
