"""Feature-store assets: train-set waveform statistics, cached audio frames and text vectors per evaluation set."""

import dagster as dg

from emojudge_models.episodes.sources import audio_source
from emojudge_models.features.extract import (
    Clip,
    TextItem,
    extract_audio_features,
    extract_text_features,
    failed_share_error,
)
from emojudge_models.features.store import FeatureStore
from emojudge_models.features.waveform_stats import (
    compute_waveform_stats,
    load_waveform_stats,
    save_waveform_stats,
)
from emojudge_models.ingest.corpus import Rejection
from emojudge_models.ingest.language import asr_language, no_text_reason, text_blocked
from emojudge_models.store import warehouse
from emojudge_pipeline.assets.common import rejections_write, rounded
from emojudge_pipeline.partitions import eval_sets_partitions
from emojudge_pipeline.resources import IngestResource, ModelsResource, TrainingResource, WarehouseResource


@dg.asset(
    deps=["utterances"],
    group_name="features",
    kinds={"duckdb"},
    description="Mean and standard deviation of the train split's waveforms (the paper's input normalisation).",
)
def waveform_stats(
    context: dg.AssetExecutionContext, warehouse_db: WarehouseResource, training: TrainingResource
) -> dg.MaterializeResult:
    sets = training.train_sets
    with warehouse_db.connect() as con:
        paths = con.execute(warehouse.sql_text("features/train_split_audio.sql"), [sets]).df()["audio_path"]
    if paths.empty:
        raise dg.Failure(f"no train-split clips in EMOJUDGE_TRAIN_SETS={','.join(sets)}: materialise utterances first")
    stats = compute_waveform_stats(paths.tolist())
    with warehouse_db.connect() as con:
        save_waveform_stats(con, stats, sets, context.run.run_id)
    return dg.MaterializeResult(
        metadata={
            "stats_key": stats.stats_key,
            "mean": rounded(stats.mean),
            "std": rounded(stats.std),
            "clips": stats.n_clips,
            "audio_hours": round(stats.n_samples / 16_000 / 3600, 3),
            "rejected": len(stats.rejected),
        }
    )


def _failures(report, stage: str) -> list[Rejection]:
    return [Rejection(utterance_id, None, stage, reason) for utterance_id, reason in report.failed]


@dg.asset(
    partitions_def=eval_sets_partitions,
    deps=["utterances", "waveform_stats"],
    group_name="features",
    kinds={"parquet", "duckdb", "pytorch"},
    description="Frame-level audio features (fp16 Parquet shards, feature_index, pooled vectors), cached by audio "
    "SHA-256 and encoder key: a clip is never encoded twice.",
)
def audio_features(
    context: dg.AssetExecutionContext, warehouse_db: WarehouseResource, models: ModelsResource
) -> dg.MaterializeResult:
    eval_set = context.partition_key
    encoder = models.build_audio_encoder()
    with warehouse_db.connect() as con:
        clips = warehouse.query_df(con, "ingest/partition_utterances.sql", [eval_set])
        stats = None
        if models.resolved().normalize_waveform:
            latest = warehouse.scalar(con, "features/latest_waveform_stats.sql")
            if latest is None:
                raise dg.Failure("waveform normalisation needs the waveform_stats asset: materialise it first")
            stats = load_waveform_stats(con, latest)
    context.log.info(f"audio features of {len(clips)} clips with {encoder.spec.get('kind')} on {models.torch_device()}")
    # The store opens its own short sessions (lookups, one write per completed shard, the index at the end).
    decoded = warehouse_db.layout.decoded_episodes
    report = extract_audio_features(
        FeatureStore(warehouse_db.connect, warehouse_db.features_root),
        encoder,
        (
            Clip(
                eval_set,
                r.utterance_id,
                audio_source(r.audio_path, r.start_s, r.end_s, r.episode_sha256, r.channel, decoded),
                r.audio_sha256,
                r.duration_s,
            )
            for r in clips.itertuples()
        ),
        run_id=context.run.run_id,
        batch_seconds=models.batch_seconds,
        decode_workers=models.decode_workers,
        write_workers=models.write_workers,
        normalize=stats,
        on_progress=lambda done, total: context.log.info(f"encoded {done}/{total} new clips"),
        on_warning=context.log.warning,
    )
    with warehouse_db.connect() as con:
        failures = _failures(report, "audio_features")
        warehouse.write_partitions(con, eval_set, [rejections_write(("audio_features",), failures, context.run.run_id)])
    too_many = failed_share_error(report, models.max_failed_share)
    if too_many is not None:
        raise dg.Failure(
            f"audio_features[{eval_set}]: {too_many} (EMOJUDGE_MAX_FAILED_SHARE={models.max_failed_share:g}; "
            "every reason is in rejected_inputs)"
        )
    return dg.MaterializeResult(
        metadata={
            **report.as_metadata(),
            "frame_rate_hz": encoder.frame_rate_hz,
            "dim": encoder.dim,
            "encoder_spec": dg.MetadataValue.json(encoder.spec),
        }
    )


@dg.asset(
    partitions_def=eval_sets_partitions,
    deps=["transcripts"],
    group_name="features",
    kinds={"duckdb", "pytorch"},
    description="One text vector per transcript (CLS or mean-pooled), cached by text SHA-256 and encoder key; "
    "none for utterances in a language other than the ASR's (they are fused from audio alone).",
)
def text_features(
    context: dg.AssetExecutionContext,
    warehouse_db: WarehouseResource,
    models: ModelsResource,
    ingest: IngestResource,
) -> dg.MaterializeResult:
    eval_set = context.partition_key
    encoder = models.build_text_encoder()
    with warehouse_db.connect() as con:
        rows = warehouse.query_df(con, "ingest/partition_utterances.sql", [eval_set])
    language = asr_language(ingest.asr)
    blocked = text_blocked(rows["language"], rows["language_probability"], rows["transcript_source"], language)
    other_language = dict(zip(rows["utterance_id"], blocked, strict=True))
    report = extract_text_features(
        FeatureStore(warehouse_db.connect, warehouse_db.features_root),
        encoder,
        (
            TextItem(
                eval_set,
                r.utterance_id,
                r.transcript if isinstance(r.transcript, str) and not other_language[r.utterance_id] else None,
            )
            for r in rows.itertuples()
        ),
        run_id=context.run.run_id,
    )
    no_text = [
        Rejection(r.utterance_id, r.audio_path, "text_features", no_text_reason(r.language, language))
        for r in rows.itertuples()
        if other_language[r.utterance_id]
    ]
    failures = [f for f in _failures(report, "text_features") if not other_language.get(f.utterance_id, False)]
    with warehouse_db.connect() as con:
        rejected = [*failures, *no_text]
        warehouse.write_partitions(con, eval_set, [rejections_write(("text_features",), rejected, context.run.run_id)])
    return dg.MaterializeResult(
        metadata={
            **report.as_metadata(),
            "other_language": len(no_text),
            "dim": encoder.dim,
            "encoder_spec": dg.MetadataValue.json(encoder.spec),
        }
    )
