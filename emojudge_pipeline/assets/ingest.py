"""Asset ``utterances``: ingest one evaluation set (partition) into the warehouse: a corpus of clips, or one podcast
episode cut into segments."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd

from emojudge_models.episodes.inbox import MISSING_STAGE, missing_rejection
from emojudge_models.episodes.ingest import can_reuse, ingest_episode, ingest_key
from emojudge_models.episodes.speakers import SpeakerHint
from emojudge_models.ingest.language import with_set_language
from emojudge_models.ingest.tables import CorpusInvalid
from emojudge_models.ingest.utterances import ingest_corpus
from emojudge_models.store import warehouse
from emojudge_pipeline.assets.common import markdown_preview, rejections_write
from emojudge_pipeline.partitions import eval_sets_partitions
from emojudge_pipeline.resources import IngestResource, WarehouseResource


@dg.asset(
    partitions_def=eval_sets_partitions,
    group_name="ingest",
    kinds={"duckdb", "python"},
    output_required=False,
    description="Decoded and validated clips of one evaluation set, or the segments of one inbox episode with their "
    "speakers (tables utterances, speakers); rejects go to rejected_inputs. A rejected episode materialises "
    "nothing, so its run skips every later asset.",
)
def utterances(
    context: dg.AssetExecutionContext, warehouse_db: WarehouseResource, ingest: IngestResource
) -> Iterator[dg.MaterializeResult | dg.AssetObservation]:
    eval_set = context.partition_key
    registered = warehouse_db.eval_set(eval_set)
    if registered["format"] == "episode":
        yield from _episode(context, warehouse_db, ingest, registered)
        return
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
    frame["language"] = with_set_language(frame["language"], ingest.set_languages.get(eval_set))
    with warehouse_db.connect() as con:
        _, n_rejected = warehouse.write_partitions(
            con,
            eval_set,
            [
                warehouse.PartitionWrite("utterances", frame),
                rejections_write(("ingest", "transcript"), result.rejections, context.run.run_id),
            ],
            [("ingest/record_split.sql", [result.split_source, result.split_seed, eval_set])],
        )
    if frame.empty:
        raise dg.Failure(result.no_usable_clips(eval_set, registered["path"]), allow_retries=False)
    splits = frame["split"].fillna("unlabelled").value_counts().to_dict()
    reasons = result.rejections_frame()
    yield dg.MaterializeResult(
        metadata={
            "accepted": len(frame),
            "rejected": n_rejected,
            "audio_hours": round(float(frame["duration_s"].sum()) / 3600, 3),
            "speakers": int(frame["speaker_id"].nunique()),
            "splits": dg.MetadataValue.json(splits),
            "split_source": result.split_source,
            "languages": dg.MetadataValue.json(frame["language"].fillna("unstated").value_counts().to_dict()),
            "rejections": markdown_preview(reasons, rows=20),
            "preview": markdown_preview(frame[["utterance_id", "split", "emotion", "speaker_id", "duration_s"]]),
            "dagster/row_count": len(frame),
        }
    )


def _speakers_hint(registered: dict) -> SpeakerHint:
    """The count and bounds registered with the episode (``inbox add --speakers/--min-speakers/--max-speakers``)."""

    def number(column: str) -> int | None:
        value = registered.get(column)
        return None if value is None or pd.isna(value) else int(value)

    return SpeakerHint(number("speakers_hint"), number("min_speakers"), number("max_speakers"))


def _missing(
    context: dg.AssetExecutionContext, warehouse_db: WarehouseResource, path: Path
) -> Iterator[dg.AssetObservation]:
    """The episode's file is gone (moved or deleted after it was registered): mark the episode missing, keep any rows
    it has, and materialise nothing, so the run skips every later asset and succeeds. The mark goes when a run finds
    the file again."""
    eval_set = context.partition_key
    rejection = missing_rejection(path)
    with warehouse_db.connect() as con:
        warehouse.write_partitions(con, eval_set, [rejections_write((MISSING_STAGE,), [rejection], context.run.run_id)])
    context.log.warning(f"episode {eval_set} missing: {rejection.reason}; skipped")
    yield dg.AssetObservation(
        asset_key=context.asset_key, partition=eval_set, metadata={"missing": rejection.reason, "path": str(path)}
    )


def _episode(
    context: dg.AssetExecutionContext, warehouse_db: WarehouseResource, ingest: IngestResource, registered: dict
) -> Iterator[dg.MaterializeResult | dg.AssetObservation]:
    """Decode, segment and diarize one episode; a rejected one leaves the partition empty and an observation.

    An episode already ingested with the same settings and bytes (a rescoring) keeps its rows: no decode, VAD or
    diarization, and the same segment ids, so every cached feature, transcript and judgment is found again."""
    eval_set = context.partition_key
    path = Path(registered["path"])
    run_id = context.run.run_id
    if not path.is_file():
        yield from _missing(context, warehouse_db, path)
        return
    hint = _speakers_hint(registered)
    key = ingest_key(path, hint, ingest.segment_min_s, ingest.segment_max_s, ingest.episode_channels)
    with warehouse_db.connect() as con:
        stored_key, stored_sha, segments, speakers = con.execute(
            warehouse.sql_text("episodes/ingested_episode.sql"), [eval_set]
        ).fetchone()
    if can_reuse(path, key, stored_key, stored_sha, segments):
        context.log.info(f"episode {eval_set}: {segments} segments and {speakers} speakers reused (same settings)")
        yield dg.MaterializeResult(
            metadata={"reused": True, "segments": segments, "speakers": speakers, "dagster/row_count": segments}
        )
        return
    context.log.info(f"ingesting episode {eval_set} from {path} (channels: {ingest.episode_channels})")
    result = ingest_episode(
        path,
        eval_set,
        speakers=hint,
        max_episode_s=ingest.max_episode_s,
        min_s=ingest.segment_min_s,
        max_s=ingest.segment_max_s,
        channels=ingest.episode_channels,
        decoded_dir=warehouse_db.layout.decoded_episodes,
    )
    if result.rejected_reason is not None and not path.is_file():  # it vanished while it was being read
        yield from _missing(context, warehouse_db, path)
        return
    frame = result.utterances.assign(run_id=run_id)
    frame["language"] = with_set_language(frame["language"], ingest.set_languages.get(eval_set))
    with warehouse_db.connect() as con:
        warehouse.write_partitions(
            con,
            eval_set,
            [
                warehouse.PartitionWrite("utterances", frame),
                warehouse.PartitionWrite("speakers", result.speakers.assign(run_id=run_id)),
                rejections_write(("ingest", "transcript", MISSING_STAGE), result.rejections, run_id),
            ],
            [
                ("ingest/record_split.sql", ["none", None, eval_set]),
                ("episodes/record_ingest_key.sql", [result.ingest_key, eval_set]),
            ],
        )
    if result.rejected_reason is not None:
        context.log.warning(f"episode {eval_set} rejected: {result.rejected_reason}")
        yield dg.AssetObservation(
            asset_key=context.asset_key,
            partition=eval_set,
            metadata={"rejected": result.rejected_reason, "path": str(path)},
        )
        return
    yield dg.MaterializeResult(
        metadata={
            "reused": False,
            "segments": len(frame),
            "speakers": len(result.speakers),
            "speech_minutes": round(float(frame["duration_s"].sum()) / 60, 2),
            "sidecar": result.sidecar or "none",
            "sidecar_transcripts": int((frame["transcript_source"] == "sidecar").sum()),
            "preview": markdown_preview(frame[["utterance_id", "speaker_id", "start_s", "end_s", "transcript"]]),
            "dagster/row_count": len(frame),
        }
    )
