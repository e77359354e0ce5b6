"""Ingest an evaluation set: read the corpus, decode and validate every clip, assign splits.

The result is the rows of table ``utterances`` plus the rejections of table ``rejected_inputs``; one bad clip never
sinks the set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from emojudge_models.ingest.audio import DEFAULT_MAX_DURATION_S, AudioRejected, decode
from emojudge_models.ingest.corpus import CorpusEntry, Rejection, read_corpus
from emojudge_models.ingest.splits import split_speakers

log = logging.getLogger(__name__)

UTTERANCE_COLUMNS = [
    "utterance_id",
    "split",
    "emotion",
    "arousal",
    "valence",
    "dominance",
    "speaker_id",
    "gender",
    "transcript",
    "transcript_source",
    "language",
    "audio_path",
    "audio_sha256",
    "duration_s",
    "sample_rate_hz",
    "channels",
]


@dataclass
class IngestResult:
    """Accepted utterances (``utterances`` columns, without eval_set/run_id), rejections and how splits were made."""

    utterances: pd.DataFrame
    rejections: list[Rejection] = field(default_factory=list)
    split_source: str = "none"
    split_seed: int | None = None

    def no_usable_clips(self, eval_set: str, path: str) -> str:
        """One line for a set where no clip survived: how many were rejected, the first reason, what to do."""
        rejected = [r for r in self.rejections if r.stage == "ingest"]
        example = f"; first: {rejected[0].reason}" if rejected else ""
        return (
            f"evaluation set {eval_set!r} has no usable clips ({len(rejected)} rejected{example}): fix the corpus at "
            f"{path} (see table rejected_inputs), then run emojudge materialize {eval_set} again"
        )

    def rejections_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [asdict(r) for r in self.rejections], columns=["utterance_id", "audio_path", "stage", "reason"]
        )


def _probe(entry: CorpusEntry, max_duration_s: float) -> dict | Rejection:
    """Decode one clip and return its utterance row, or the reason it was rejected."""
    try:
        decoded = decode(entry.audio_path, max_duration_s=max_duration_s, resample=False)
    except AudioRejected as rejected:
        return Rejection(entry.utterance_id, str(entry.audio_path), "ingest", rejected.reason)
    row = asdict(entry)
    row.update(
        audio_path=str(entry.audio_path),
        audio_sha256=decoded.sha256,
        duration_s=round(decoded.duration_s, 4),
        sample_rate_hz=decoded.orig_sample_rate_hz,
        channels=decoded.channels,
    )
    return row


def ingest_corpus(
    path: Path,
    corpus_format: str,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    split_seed: int = 13,
    workers: int = 2,
    on_progress: Callable[[int, int], None] | None = None,
) -> IngestResult:
    """Read, decode and validate the corpus at ``path``; assign speaker-independent splits where it has none."""
    entries: list[CorpusEntry] = []
    rejections: list[Rejection] = []
    for item in read_corpus(path, corpus_format):
        (rejections if isinstance(item, Rejection) else entries).append(item)
    rows: list[dict] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, outcome in enumerate(pool.map(lambda e: _probe(e, max_duration_s), entries), start=1):
            if isinstance(outcome, Rejection):
                log.warning("rejected %s: %s", outcome.audio_path, outcome.reason)
                rejections.append(outcome)
                continue
            rows.append(outcome)
            if outcome["transcript_problem"]:
                reason = f"{outcome['transcript_problem']}; clip kept without transcript (ASR fills it)"
                rejections.append(Rejection(outcome["utterance_id"], outcome["audio_path"], "transcript", reason))
            if on_progress and (done % 50 == 0 or done == len(entries)):
                on_progress(done, len(entries))
    frame = pd.DataFrame(rows, columns=UTTERANCE_COLUMNS)
    split_source = "corpus" if frame["split"].notna().any() else "none"
    labelled = frame["emotion"].notna() | frame["arousal"].notna()
    needs_split = labelled & frame["split"].isna()
    seed_used = None
    if needs_split.any():
        speakers = frame.loc[needs_split, "speaker_id"].fillna(frame.loc[needs_split, "utterance_id"])
        assignment = split_speakers(speakers.tolist(), seed=split_seed)
        frame.loc[needs_split, "split"] = speakers.map(assignment)
        split_source = "speaker-seeded" if split_source == "none" else "corpus+speaker-seeded"
        seed_used = split_seed
    return IngestResult(frame, rejections, split_source, seed_used)
