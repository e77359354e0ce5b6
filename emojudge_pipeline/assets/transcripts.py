"""Asset ``transcripts``: ASR for every utterance without a transcript, cached by audio hash and ASR model key."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from emojudge_models.episodes.sources import audio_source
from emojudge_models.ingest.audio import AudioRejected
from emojudge_models.ingest.corpus import Rejection
from emojudge_models.ingest.language import asr_language, text_blocked
from emojudge_models.loaded_models import release_loaded_models
from emojudge_models.store import warehouse
from emojudge_pipeline.assets.common import markdown_preview, rejections_write
from emojudge_pipeline.partitions import eval_sets_partitions
from emojudge_pipeline.resources import IngestResource, WarehouseResource

ASR_CHUNK = 128
"""Clips decoded and transcribed together, and stored together; bounds memory whatever the partition size (128 clips
of at most 12 s are 100 MB of audio). The ASR batches windows of one length within a chunk, and its workers wait for
each other at a chunk's end: on the built hour's first 384 segments (2-vCPU AMD EPYC) chunks of 16 took 30.9 s,
of 128 26.8 s, all at once 26.2 s (bench/RESULTS.md)."""


def build_recognizer(options: Mapping[str, Any]):
    """The configured ASR (EMOJUDGE_ASR: JSON options; default the packaged Whisper tiny.en)."""
    from emojudge_models.asr.whisper import build_asr

    return build_asr(options)


def _transcribe_chunk(recognizer, chunk, failures: list[Rejection], decoded: Path) -> dict[str, str]:
    """Transcripts by audio hash for one chunk; if a clip cannot be decoded, the others still get theirs."""
    sources = [
        audio_source(r.audio_path, r.start_s, r.end_s, r.episode_sha256, r.channel, decoded) for r in chunk.itertuples()
    ]
    try:
        return dict(zip(chunk["audio_sha256"], recognizer.transcribe_clips(sources), strict=True))
    except AudioRejected:
        texts = {}
        for row, source in zip(chunk.itertuples(), sources, strict=True):
            try:
                texts[row.audio_sha256] = recognizer.transcribe_clips([source])[0]
            except AudioRejected as error:
                failures.append(Rejection(row.utterance_id, row.audio_path, "asr", error.reason))
        return texts


def build_language_detector(options: Mapping[str, Any]):
    """Spoken-language identification with the multilingual Whisper (the ASR's model if multilingual, else base)."""
    from emojudge_models.asr.language_id import LanguageDetector

    return LanguageDetector(options)


def _detect_languages(warehouse_db: WarehouseResource, eval_set: str, options: Mapping[str, Any], log) -> dict:
    """Detect and store the language of every utterance with none stated: an episode's segments once per speaker,
    other clips one by one; returns metadata."""
    with warehouse_db.connect() as con:
        todo = warehouse.query_df(con, "asr/undetected_languages.sql", [eval_set])
    if todo.empty:
        return {"languages_detected": 0}
    detector = build_language_detector(options)
    decoded = warehouse_db.layout.decoded_episodes

    def source(row):
        return audio_source(row.audio_path, row.start_s, row.end_s, row.episode_sha256, row.channel, decoded)

    found: list[list] = []
    by_speaker = todo["episode_sha256"].notna() & todo["speaker_id"].notna()
    speakers = todo[by_speaker].groupby(["episode_sha256", "speaker_id"], sort=False)
    for (_, speaker), turns in speakers:
        detected = detector.detect_speaker([source(row) for row in turns.itertuples()])
        if detected is not None:
            found += [[*detected, eval_set, utterance_id] for utterance_id in turns["utterance_id"]]
            log.info(f"speaker {speaker}: {detected[0]} ({detected[1]:.2f}) for {len(turns)} segments")
    clips = todo[~by_speaker]
    for start in range(0, len(clips), ASR_CHUNK):
        for row in clips.iloc[start : start + ASR_CHUNK].itertuples():
            try:
                language, probability = detector.detect([source(row)])[0]
            except AudioRejected:
                continue  # the ASR and the encoders report an unreadable clip
            found.append([language, probability, eval_set, row.utterance_id])
        log.info(f"detected the language of {min(start + ASR_CHUNK, len(clips))}/{len(clips)} clips")
    with warehouse_db.connect() as con:
        warehouse.write_partitions(con, eval_set, [], [("asr/set_detected_language.sql", row) for row in found])
    counts: dict[str, int] = {}
    for language, *_ in found:
        counts[language] = counts.get(language, 0) + 1
    return {
        "languages_detected": len(found),
        "languages_detected_by_speaker": int(by_speaker.sum()),
        "language_detector": detector.key,
        "detected_languages": counts,
    }


@dg.asset(
    partitions_def=eval_sets_partitions,
    deps=["utterances"],
    group_name="ingest",
    kinds={"duckdb", "python"},
    description="The spoken language of every clip with none stated (Whisper, utterances.language and "
    "language_probability), and machine transcripts (faster-whisper) where the corpus has none and the language is "
    "the ASR's; utterances.transcript_source says asr:<model key> for them.",
)
def transcripts(
    context: dg.AssetExecutionContext, warehouse_db: WarehouseResource, ingest: IngestResource
) -> dg.MaterializeResult:
    eval_set = context.partition_key
    detected = _detect_languages(warehouse_db, eval_set, ingest.asr_options(), context.log)
    release_loaded_models()  # the detector's Whisper: the ASR's model is loaded next, one at a time
    with warehouse_db.connect() as con:
        todo = warehouse.query_df(con, "asr/missing_transcripts.sql", [eval_set])
    language = asr_language(ingest.asr)
    other_language = text_blocked(todo["language"], todo["language_probability"], todo["transcript_source"], language)
    todo = todo[~other_language]
    if todo.empty:
        note = "every utterance has a transcript"
        if other_language.any():
            note = f"{int(other_language.sum())} utterances are not in the ASR's language ({language}): no ASR"
        return dg.MaterializeResult(
            metadata={
                "transcribed": 0,
                "reused": 0,
                "other_language": int(other_language.sum()),
                "note": note,
                **_shown(detected),
            }
        )
    recognizer = build_recognizer(ingest.asr_options())
    key = recognizer.asr_model_key
    source = f"asr:{key}"
    with warehouse_db.connect() as con:
        cached = dict(
            con.execute(warehouse.sql_text("asr/cached_asr.sql"), [key, todo["audio_sha256"].tolist()]).fetchall()
        )
    pending = todo[~todo["audio_sha256"].isin(cached)].drop_duplicates("audio_sha256")
    failures: list[Rejection] = []
    for start in range(0, len(pending), ASR_CHUNK):
        chunk = pending.iloc[start : start + ASR_CHUNK]
        texts = _transcribe_chunk(recognizer, chunk, failures, warehouse_db.layout.decoded_episodes)
        with warehouse_db.connect() as con:
            con.executemany(
                warehouse.sql_text("asr/insert_asr.sql"), [[key, sha, text, language] for sha, text in texts.items()]
            )
        cached.update(texts)
        context.log.info(f"transcribed {min(start + ASR_CHUNK, len(pending))}/{len(pending)} clips")
    updates = [
        [cached[row.audio_sha256], source, eval_set, row.utterance_id]
        for row in todo.itertuples()
        if row.audio_sha256 in cached
    ]
    with warehouse_db.connect() as con:
        warehouse.write_partitions(
            con,
            eval_set,
            [rejections_write(("asr",), failures, context.run.run_id)],
            [("asr/set_asr_transcript.sql", update) for update in updates],
        )
    shown = todo.assign(transcript=todo["audio_sha256"].map(cached))[["utterance_id", "transcript"]]
    return dg.MaterializeResult(
        metadata={
            "asr_model_key": key,
            "transcribed": len(pending) - len(failures),
            "reused": len(todo) - len(pending),
            "failed": len(failures),
            "other_language": int(other_language.sum()),
            "preview": markdown_preview(shown),
            **_shown(detected),
        }
    )


def _shown(detected: dict) -> dict:
    return {k: dg.MetadataValue.json(v) if isinstance(v, dict) else v for k, v in detected.items()}
