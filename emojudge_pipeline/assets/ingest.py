"""Asset ``utterances``: ingest one evaluation set (partition) into the warehouse."""

from pathlib import Path

import dagster as dg

from emojudge_models.ingest.tables import CorpusInvalid
from emojudge_models.ingest.utterances import ingest_corpus
from emojudge_models.store import warehouse
from emojudge_pipeline.assets.common import markdown_preview, record_rejections
from emojudge_pipeline.partitions import eval_sets_partitions
from emojudge_pipeline.resources import IngestResource, WarehouseResource


@dg.asset(
    partitions_def=eval_sets_partitions,
    group_name="ingest",
    kinds={"duckdb", "python"},
    description="Decoded and validated clips of one evaluation set (table utterances); rejects go to rejected_inputs.",
)
def utterances(
    context: dg.AssetExecutionContext, warehouse_db: WarehouseResource, ingest: IngestResource
) -> dg.MaterializeResult:
    eval_set = context.partition_key
    registered = warehouse_db.eval_set(eval_set)
    max_duration = ingest.max_duration_s
    context.log.info(f"ingesting {eval_set} ({registered['format']}) from {registered['path']}")
    try:
        result = ingest_corpus(
            Path(registered["path"]),
            registered["format"],
            max_duration_s=max_duration,
            on_progress=lambda done, total: context.log.info(f"decoded {done}/{total} clips"),
        )
    except CorpusInvalid as error:
        raise dg.Failure(str(error), allow_retries=False) from None
    frame = result.utterances.assign(run_id=context.run.run_id)
    with warehouse_db.connect() as con:
        warehouse.replace_partition(con, "utterances", eval_set, frame)
        n_rejected = record_rejections(con, eval_set, ("ingest", "transcript"), result.rejections, context.run.run_id)
        con.execute(warehouse.sql_text("ingest/record_split.sql"), [result.split_source, result.split_seed, eval_set])
    if frame.empty:
        raise dg.Failure(result.no_usable_clips(eval_set, registered["path"]), allow_retries=False)
    splits = frame["split"].fillna("unlabelled").value_counts().to_dict()
    reasons = result.rejections_frame()
    return dg.MaterializeResult(
        metadata={
            "accepted": len(frame),
            "rejected": n_rejected,
            "audio_hours": round(float(frame["duration_s"].sum()) / 3600, 3),
            "speakers": int(frame["speaker_id"].nunique()),
            "splits": dg.MetadataValue.json(splits),
            "split_source": result.split_source,
            "rejections": markdown_preview(reasons, rows=20),
            "preview": markdown_preview(frame[["utterance_id", "split", "emotion", "speaker_id", "duration_s"]]),
            "dagster/row_count": len(frame),
        }
    )
