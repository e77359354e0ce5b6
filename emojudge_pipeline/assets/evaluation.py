"""Asset ``evaluation``: metrics per stage and split (tables metrics, confusion_matrices) with pictures in the UI."""

import dagster as dg
import pandas as pd

from emojudge_models.evaluation.evaluate import evaluate
from emojudge_models.evaluation.metrics import markdown_table
from emojudge_models.evaluation.plots import confusion_png
from emojudge_models.labels import EMOTIONS
from emojudge_models.store import warehouse
from emojudge_pipeline.assets.common import image_metadata, rounded
from emojudge_pipeline.partitions import eval_sets_partitions
from emojudge_pipeline.resources import WarehouseResource

SETS_SHOWN = 10
"""Labelled sets whose F1-macro every evaluation materialisation shows, so the asset's overview (its latest
materialisation, often an unlabelled inbox episode) still shows how the models score where the truth is known."""


def _headline_split(metrics: pd.DataFrame) -> str:
    """The split shown first in the UI: held-out test rows where there are any, else every labelled row."""
    return "test" if (metrics["split"] == "test").any() else "all"


@dg.asset(
    partitions_def=eval_sets_partitions,
    deps=["fused_predictions", "predictions"],
    group_name="evaluation",
    kinds={"duckdb"},
    description="F1-macro, accuracy, per-class scores and CCC for the audio, text, fused and refined stages.",
)
def evaluation(context: dg.AssetExecutionContext, warehouse_db: WarehouseResource) -> dg.MaterializeResult:
    eval_set = context.partition_key
    with warehouse_db.connect() as con:
        rows = con.execute(warehouse.sql_text("evaluation/evaluation_rows.sql"), [eval_set]).df()
    result = evaluate(rows)
    metrics = result.metrics_frame().assign(run_id=context.run.run_id)
    confusions = result.confusion_frame().assign(run_id=context.run.run_id)
    with warehouse_db.connect() as con:
        warehouse.write_partitions(
            con,
            eval_set,
            [warehouse.PartitionWrite("metrics", metrics), warehouse.PartitionWrite("confusion_matrices", confusions)],
        )
        labelled = warehouse.query_df(con, "evaluation/labelled_sets_f1.sql", [SETS_SHOWN])
    overview = {
        f"f1_macro/{r.eval_set}/{r.stage}": rounded(r.f1_macro) for r in labelled.itertuples() if r.eval_set != eval_set
    }
    if rows.empty:
        note = "unlabelled evaluation set: predictions only, no metrics; the labelled sets' F1-macro below"
        return dg.MaterializeResult(metadata={"note": note, **overview})
    split = _headline_split(metrics)
    shown = metrics[metrics["split"] == split].astype(object).where(metrics.notna(), None).to_dict("records")
    metadata: dict = {
        "headline_split": split,
        "labelled_rows": len(rows),
        "metrics": dg.MetadataValue.md(markdown_table(shown)),
        **{f"judge/{name}": value for name, value in result.judge.items()},
    }
    overall = metrics[(metrics["split"] == split) & metrics["label"].isna()]
    for record in overall.itertuples():
        metadata[f"{record.stage}/{record.task}/{record.metric}"] = rounded(record.value)
    for stage in ("fused", "refined"):
        if (split, stage) in result.confusions:
            png = confusion_png(result.confusions[(split, stage)], EMOTIONS, f"{eval_set} {split}: {stage}")
            metadata[f"confusion_{stage}"] = image_metadata(png)
    return dg.MaterializeResult(metadata={**metadata, **overview})
