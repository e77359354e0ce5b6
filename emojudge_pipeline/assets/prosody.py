"""Asset ``prosody``: librosa prosody values and the plain-English description the judge reads."""

import os
from dataclasses import asdict, fields

import dagster as dg
import pandas as pd

from emojudge_models.episodes.sources import audio_source
from emojudge_models.ingest.corpus import Rejection
from emojudge_models.prosody import (
    ProsodyFailed,
    ProsodyValues,
    Thresholds,
    compute_many,
    describe,
    prosody_version,
)
from emojudge_models.store import warehouse
from emojudge_pipeline.assets.common import markdown_preview, rejections_write
from emojudge_pipeline.partitions import eval_sets_partitions
from emojudge_pipeline.resources import IngestResource, TrainingResource, WarehouseResource

PARALLEL_FROM_CLIPS = 400
"""Partitions with at least this many clips are spread over worker processes."""


def _thresholds(
    con, eval_set: str, own: dict[str, ProsodyValues], own_train: list[str], train_sets: list[str]
) -> tuple[Thresholds, str]:
    """Terciles over the configured train sets' train split (this partition's included), else the defaults."""
    stored = con.execute(warehouse.sql_text("prosody/train_prosody.sql"), [train_sets, eval_set]).df()
    names = [f.name for f in fields(ProsodyValues)]
    values = [
        ProsodyValues(
            **{k: (tuple(v) if k == "flags" else (None if pd.isna(v) else v)) for k, v in row.items() if k in names}
        )
        for row in stored.to_dict("records")
    ]
    values += [own[u] for u in own_train if u in own]
    if not values:
        return Thresholds(), "defaults (no train split)"
    return Thresholds.from_values(values), f"train-set terciles over {len(values)} clips"


@dg.asset(
    partitions_def=eval_sets_partitions,
    deps=["utterances", "transcripts"],
    group_name="prosody",
    kinds={"duckdb", "python"},
    description="Duration, level, loudness, pitch and rate per clip, and the description the LLM judge reads.",
)
def prosody(
    context: dg.AssetExecutionContext,
    warehouse_db: WarehouseResource,
    ingest: IngestResource,
    training: TrainingResource,
) -> dg.MaterializeResult:
    eval_set = context.partition_key
    tracker = ingest.pitch_tracker
    with warehouse_db.connect() as con:
        clips = warehouse.query_df(con, "ingest/partition_utterances.sql", [eval_set])
    processes = (os.cpu_count() or 1) if len(clips) >= PARALLEL_FROM_CLIPS else 1
    context.log.info(f"prosody of {len(clips)} clips with {tracker} on {processes} process(es)")
    values: dict[str, ProsodyValues] = {}
    failures: list[Rejection] = []
    transcripts = [text if isinstance(text, str) else None for text in clips["transcript"]]
    decoded = warehouse_db.layout.decoded_episodes
    sources = [
        audio_source(r.audio_path, r.start_s, r.end_s, r.episode_sha256, r.channel, decoded) for r in clips.itertuples()
    ]
    items = zip(clips["utterance_id"], sources, transcripts, strict=True)
    for utterance_id, outcome in compute_many(items, tracker=tracker, processes=processes):
        if isinstance(outcome, ProsodyFailed):
            failures.append(Rejection(utterance_id, None, "prosody", outcome.reason))
        else:
            values[utterance_id] = outcome
    with warehouse_db.connect() as con:
        own_train = clips.loc[clips["split"] == "train", "utterance_id"].tolist()
        thresholds, threshold_source = _thresholds(con, eval_set, values, own_train, training.train_sets)
        version = prosody_version(tracker, thresholds)
        sha = dict(zip(clips["utterance_id"], clips["audio_sha256"], strict=True))
        rows = pd.DataFrame(
            [
                {
                    "utterance_id": u,
                    "audio_sha256": sha[u],
                    "prosody_version": version,
                    **{**asdict(v), "flags": list(v.flags)},
                    "description": describe(v, thresholds),
                }
                for u, v in values.items()
            ],
            columns=[
                "utterance_id",
                "audio_sha256",
                "prosody_version",
                *[f.name for f in fields(ProsodyValues)],
                "description",
            ],
        )
        rows["run_id"] = context.run.run_id
        warehouse.write_partitions(
            con,
            eval_set,
            [warehouse.PartitionWrite("prosody", rows), rejections_write(("prosody",), failures, context.run.run_id)],
        )
    flags = pd.Series([f for v in values.values() for f in v.flags]).value_counts().to_dict()
    return dg.MaterializeResult(
        metadata={
            "clips": len(rows),
            "failed": len(failures),
            "pitch_tracker": tracker,
            "prosody_version": version,
            "thresholds": dg.MetadataValue.json(asdict(thresholds)),
            "threshold_source": threshold_source,
            **{f"flagged_{name}": int(flags.get(name, 0)) for name in ("silent", "clipped", "unvoiced", "very_short")},
            "descriptions": markdown_preview(rows[["utterance_id", "description"]]),
            "dagster/row_count": len(rows),
        }
    )
