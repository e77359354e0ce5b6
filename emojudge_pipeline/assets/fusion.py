"""Fusion assets: one fitted fusion model per task (unpartitioned) and ``fused_predictions`` per evaluation set."""

import dagster as dg
import pandas as pd

from emojudge_models.evaluation.plots import grid_curve_png
from emojudge_models.fusion import data as fusion_data
from emojudge_models.fusion.models import FusionModel
from emojudge_models.fusion.predict import NO_FUSION_KEY, fused_rows
from emojudge_models.fusion.strategy import (
    enough_rows,
    fit_fusion,
    fusion_hyperparameters,
    fusion_model_key,
    input_model_keys,
)
from emojudge_models.labels import TASKS
from emojudge_models.models import registry
from emojudge_models.models.selection import choose_fusion, synthetic_sets, trained_on
from emojudge_models.store import warehouse
from emojudge_pipeline.assets.common import image_metadata, markdown_preview, rounded, rounded_json
from emojudge_pipeline.partitions import eval_sets_partitions
from emojudge_pipeline.resources import TrainingResource, WarehouseResource


def build_fusion_model_asset(task: str) -> dg.AssetsDefinition:
    """The fusion model for ``task`` on the audio and text logits, C chosen on the development split."""

    @dg.asset(
        name=f"fusion_model_{task}",
        deps=["logits"],
        group_name="fusion",
        kinds={"scikitlearn"},
        description=f"Late fusion ({'logistic regression' if task == 'categorical' else 'ridge'}) of audio and "
        f"text {task} logits; C grid-searched on the development split; registered in model_registry.",
    )
    def fusion_model(
        context: dg.AssetExecutionContext, warehouse_db: WarehouseResource, training: TrainingResource
    ) -> dg.MaterializeResult:
        sets = training.train_sets
        strategy = training.fusion_fit
        splits = ["train", "development"]
        with warehouse_db.connect() as con:
            rows = con.execute(
                warehouse.sql_text("fusion/logits_with_truth.sql"), [task, task, sets, splits, splits]
            ).df()
            synthetic = synthetic_sets(
                con.execute(warehouse.sql_text("models/eval_set_paths.sql")).fetchall(),
                warehouse_db.layout.demo_corpus / "manifest.csv",
            )
        # Fitting needs both modalities; utterances with one are scored from it alone (fusion/predict.py).
        rows = fusion_data.complete(fusion_data.labelled(rows, task))
        n_dev = int((rows["split"] == "development").sum())
        if not enough_rows(rows, strategy):
            context.log.warning(f"too few {task} train/development logits in {sets}: fusion model not fitted")
            return dg.MaterializeResult(metadata={"skipped": f"too few labelled train/development rows in {sets}"})
        model = fit_fusion(task, rows, strategy)
        input_keys = input_model_keys(rows)
        hyper = fusion_hyperparameters(model, strategy)
        key = fusion_model_key(task, rows, model, strategy)
        path = model.save(warehouse_db.models_root / "fusion" / f"{key}.joblib")
        with warehouse_db.connect() as con:
            registry.register(
                con,
                registry.RegisteredModel(
                    model_key=key,
                    kind="fusion",
                    task=task,
                    path=str(path),
                    train_eval_sets=sets,
                    hyperparameters=hyper,
                    dev_metric_name=model.dev_metric_name,
                    dev_metric=model.dev_score,
                    input_model_keys=input_keys,
                    trained_on=trained_on(sets, synthetic),
                ),
                context.run.run_id,
            )
        grid = pd.DataFrame(model.grid, columns=["C", model.dev_metric_name])
        context.log.info(f"fusion {task}: {model.rule}; dev {model.dev_metric_name}={model.dev_score:.3f}")
        curve = {}
        if model.grid:
            curve = {
                "grid": markdown_preview(grid, rows=len(grid)),
                "grid_curve": image_metadata(grid_curve_png(model.grid, model.C, model.dev_metric_name)),
            }
        return dg.MaterializeResult(
            metadata={
                "fusion_model_key": key,
                "modalities": ", ".join(model.modalities),
                "rule": model.rule,
                "reliability": dg.MetadataValue.json(rounded_json(model.reliability)),
                "C": dg.MetadataValue.float(rounded(model.C)) if model.C is not None else dg.MetadataValue.null(),
                f"dev_{model.dev_metric_name}": rounded(model.dev_score),
                "fit_strategy": strategy,
                "train_rows": len(rows) - n_dev,
                "development_rows": n_dev,
                "input_model_keys": dg.MetadataValue.json(input_keys),
                **curve,
                "path": dg.MetadataValue.path(str(path)),
            }
        )

    return fusion_model


fusion_models = [build_fusion_model_asset(task) for task in TASKS]


@dg.asset(
    partitions_def=eval_sets_partitions,
    deps=["logits", *[f"fusion_model_{task}" for task in TASKS]],
    group_name="fusion",
    kinds={"duckdb"},
    description="Fused predictions (table fused_predictions) of one evaluation set, from the newest fusion model "
    "fitted on the set's audio and text models; without one (e.g. the shipped audio model alone), the audio "
    "prediction.",
)
def fused_predictions(context: dg.AssetExecutionContext, warehouse_db: WarehouseResource) -> dg.MaterializeResult:
    eval_set = context.partition_key
    frames, metadata = [], {}
    with warehouse_db.connect() as con:
        inputs = {
            task: (
                registry.fusion_models(con, task),
                con.execute(
                    warehouse.sql_text("fusion/logits_with_truth.sql"), [task, task, [eval_set], None, None]
                ).df(),
            )
            for task in TASKS
        }
    for task, (candidates, rows) in inputs.items():
        if rows.empty:
            metadata[f"{task}_skipped"] = "no logits"
            continue
        used = set(rows["audio_model_key"].dropna()) | set(rows["text_model_key"].dropna())
        model = choose_fusion(candidates, used)
        if model is None:
            frames.append(fused_rows(None, rows, task, NO_FUSION_KEY))
            metadata[f"{task}_fusion"] = "no fusion model fitted on this set's models: audio alone (else text)"
        else:
            frames.append(fused_rows(FusionModel.load(model.path), rows, task, model.model_key))
        metadata[f"{task}_single_modality_rows"] = int((frames[-1]["modalities"] != "audio+text").sum())
        metadata[f"{task}_fusion_model_key"] = frames[-1]["fusion_model_key"].iloc[0]
        metadata[f"{task}_rows"] = len(rows)
    fused = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["utterance_id", "task"])
    fused["run_id"] = context.run.run_id
    with warehouse_db.connect() as con:
        warehouse.replace_partition(con, "fused_predictions", eval_set, fused)
    categorical = fused[fused["task"] == "categorical"]
    if len(categorical):
        metadata["modalities_agree_share"] = rounded(categorical["modalities_agree"].mean())
        metadata["label_counts"] = dg.MetadataValue.json(categorical["predicted_label"].value_counts().to_dict())
    metadata["dagster/row_count"] = len(fused)
    return dg.MaterializeResult(metadata=metadata)
