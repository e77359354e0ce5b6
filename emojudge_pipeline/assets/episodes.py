"""Asset ``episode_emotions``: the emotion timeline of an inbox episode, per speaker and time window."""

import dagster as dg

from emojudge_models.episodes.timeline import (
    SHARE_COLUMNS,
    emotion_timeline,
    episode_totals,
    save_picture,
    speaker_lines,
    timeline_png,
)
from emojudge_models.store import warehouse
from emojudge_pipeline.assets.common import image_metadata
from emojudge_pipeline.partitions import eval_sets_partitions
from emojudge_pipeline.resources import InboxResource, WarehouseResource


@dg.asset(
    partitions_def=eval_sets_partitions,
    deps=["predictions"],
    group_name="episodes",
    kinds={"duckdb", "python"},
    description="Per inbox episode, speaker and time window: seconds spoken, the share of each emotion and mean "
    "arousal/valence/dominance (table episode_emotions, view v_episode_timeline; segments in v_episode_segments). "
    "Each speaker's seconds and main emotions in the metadata; the timeline picture there and as "
    "episodes/timelines/<episode>.png under the home.",
)
def episode_emotions(
    context: dg.AssetExecutionContext, warehouse_db: WarehouseResource, inbox: InboxResource
) -> dg.MaterializeResult:
    eval_set = context.partition_key
    if warehouse_db.eval_set(eval_set)["format"] != "episode":
        return dg.MaterializeResult(metadata={"note": "not an inbox episode: no timeline", "dagster/row_count": 0})
    with warehouse_db.connect() as con:
        segments = warehouse.query_df(con, "episodes/episode_segments.sql", [eval_set])
    model_keys = segments.pop("fusion_model_key").dropna().unique()
    timeline = emotion_timeline(segments, inbox.timeline_window_s)
    timeline["fusion_model_key"] = model_keys[0] if len(model_keys) == 1 else None
    timeline["run_id"] = context.run.run_id
    with warehouse_db.connect() as con:
        warehouse.replace_partition(con, "episode_emotions", eval_set, timeline)
    metadata: dict = {"windows": len(timeline), "window_s": inbox.timeline_window_s, "dagster/row_count": len(timeline)}
    if len(segments):
        totals = episode_totals(segments).iloc[0]
        shares = {column.removeprefix("share_"): round(float(totals[column]), 3) for column in SHARE_COLUMNS}
        png = timeline_png(segments, title=f"emotion timeline: {eval_set}")
        picture = save_picture(png, warehouse_db.layout.timelines / f"{eval_set}.png")
        metadata.update(
            {f"speaker {speaker}": line for speaker, line in speaker_lines(segments).items()},
            timeline=image_metadata(png),
            timeline_png=dg.MetadataValue.path(str(picture)),
            speech_minutes=round(float(totals["speech_s"]) / 60, 2),
            speakers=int(totals["speakers"]),
            episode_shares=dg.MetadataValue.json(shares),
        )
    return dg.MaterializeResult(metadata=metadata)
