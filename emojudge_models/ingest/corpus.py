"""Readers for the corpus layouts EmoJudge ingests: MSP-Podcast, a generic manifest.csv, a bare folder.

Each reader yields :class:`CorpusEntry` candidates and :class:`Rejection` records for entries that fail before any
audio is decoded (duplicate ids, paths escaping the corpus root, unknown labels, missing transcripts).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from emojudge_models.ingest.language import language_tag
from emojudge_models.ingest.tables import CorpusInvalid, read_table
from emojudge_models.labels import EMOTIONS, MSP_CODES

FORMATS = ("msp", "manifest", "folder")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")
MSP_SPLITS = {
    "train": "train",
    "development": "development",
    "dev": "development",
    "test": "test",
    "test1": "test",
    "test2": "test",
    "test3": "test",
}
"""Corpus split names (lower-cased) to EmoJudge's train/development/test; MSP-Podcast has Test1..Test3."""
MSP_LABELS = Path("Labels") / "labels_consensus.csv"
MSP_COLUMNS = ("FileName", "EmoClass")
MANIFEST_COLUMNS = ("path",)
"""Columns a labels / manifest CSV must have; every other column is optional."""


@dataclass(frozen=True)
class CorpusEntry:
    """One candidate utterance before decoding; ``split`` is None where the corpus has no split of its own."""

    utterance_id: str
    audio_path: Path
    emotion: str | None = None
    arousal: float | None = None
    valence: float | None = None
    dominance: float | None = None
    speaker_id: str | None = None
    gender: str | None = None
    transcript: str | None = None
    transcript_source: str | None = None
    split: str | None = None
    transcript_problem: str | None = None
    language: str | None = None
    """The utterance's stated language (a manifest's ``language`` column); None where not stated."""


@dataclass(frozen=True)
class Rejection:
    """Why an input was not used; ``stage`` says where it was caught."""

    utterance_id: str | None
    audio_path: str | None
    stage: str
    reason: str


def detect_format(path: Path) -> str:
    """Guess the layout of ``path``: MSP-Podcast folders, a manifest.csv, or a bare folder of audio."""
    if path.is_file() and path.suffix == ".csv":
        return "manifest"
    if (path / MSP_LABELS).is_file():
        return "msp"
    if (path / "manifest.csv").is_file():
        return "manifest"
    if path.is_dir():
        return "folder"
    raise CorpusInvalid(f"{path}: not a corpus (no Labels/labels_consensus.csv, manifest.csv or audio folder)")


def utterance_id_from_path(relative: str | Path) -> str:
    """The utterance id of a clip known only by its path: the relative path without suffix, ``/`` as ``__``."""
    return Path(relative).with_suffix("").as_posix().replace("/", "__")


def _inside(root: Path, candidate: Path) -> bool:
    """Whether ``candidate`` names a place under ``root``, by its path: ``..`` climbing out escapes, a symlink inside
    the corpus does not (a corpus may link its audio folder in from elsewhere)."""
    return Path(os.path.normpath(candidate)).is_relative_to(os.path.normpath(root))


def _files_below(root: Path) -> list[Path]:
    """Every file under ``root``, by path, following symlinked folders (each real folder read once, so a link
    loop ends)."""
    found: list[Path] = []
    visited: set[str] = set()
    for folder, subfolders, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in visited:
            subfolders.clear()
            continue
        visited.add(real)
        found.extend(Path(folder) / name for name in names)
    return sorted(path for path in found if path.is_file())


def _text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _number(value: object) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _read_transcript(path: Path) -> tuple[str | None, str | None]:
    """(text, problem): the sidecar transcript or why it could not be used."""
    if not path.is_file():
        return None, f"transcript file missing: {path.name}"
    try:
        text = path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError as error:
        return None, f"transcript {path.name} is not valid UTF-8 ({error.reason} at byte {error.start})"
    if not text:
        return None, f"transcript {path.name} is empty"
    return text, None


class _Deduplicator:
    """Keeps the first entry of each utterance id and rejects the rest."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def check(self, utterance_id: str, audio_path: str) -> Rejection | None:
        if utterance_id in self.seen:
            return Rejection(
                utterance_id,
                audio_path,
                "ingest",
                f"duplicate utterance id (first seen for {self.seen[utterance_id]})",
            )
        self.seen[utterance_id] = audio_path
        return None


def read_msp(root: Path) -> Iterator[CorpusEntry | Rejection]:
    """MSP-Podcast layout: Labels/labels_consensus.csv, Audios/*.wav, Transcripts/*.txt."""
    labels_path = root / MSP_LABELS
    if not labels_path.is_file():
        raise CorpusInvalid(f"{root}: the MSP-Podcast layout needs {MSP_LABELS.as_posix()}")
    table = read_table(labels_path, MSP_COLUMNS)
    dedup = _Deduplicator()
    for record in table.to_dict("records"):
        file_name = record["FileName"].strip()
        utterance_id = Path(file_name).stem
        audio_path = root / "Audios" / file_name
        if rejection := dedup.check(utterance_id, file_name):
            yield rejection
            continue
        if not _inside(root, audio_path):
            yield Rejection(utterance_id, file_name, "ingest", "audio path escapes the corpus root")
            continue
        code = record["EmoClass"].strip().upper()
        if code and code not in MSP_CODES and code != "X":
            yield Rejection(utterance_id, file_name, "ingest", f"unknown EmoClass code {code!r}")
            continue
        transcript, problem = _read_transcript(root / "Transcripts" / f"{utterance_id}.txt")
        split = MSP_SPLITS.get(record.get("Split_Set", "").strip().lower())
        yield CorpusEntry(
            utterance_id=utterance_id,
            audio_path=audio_path,
            emotion=MSP_CODES.get(code),
            arousal=_number(record.get("EmoAct")),
            valence=_number(record.get("EmoVal")),
            dominance=_number(record.get("EmoDom")),
            speaker_id=_text(record.get("SpkrID")),
            gender=_text(record.get("Gender")),
            transcript=transcript,
            transcript_source="sidecar" if transcript else None,
            split=split,
            transcript_problem=problem,
        )


def read_manifest(manifest: Path) -> Iterator[CorpusEntry | Rejection]:
    """Generic manifest.csv: path (relative to the manifest) and optional utterance_id (default: from the path),
    emotion, transcript, speaker_id, gender, arousal/valence/dominance, split and language columns."""
    root = manifest.parent
    table = read_table(manifest, MANIFEST_COLUMNS)
    dedup = _Deduplicator()
    for record in table.to_dict("records"):
        relative = record["path"].strip()
        if "utterance_id" in table.columns:
            utterance_id = record["utterance_id"].strip()
        else:
            utterance_id = utterance_id_from_path(relative) if relative else ""
        if not relative:
            yield Rejection(utterance_id or None, None, "ingest", "empty path in manifest")
            continue
        if not utterance_id:
            yield Rejection(None, relative, "ingest", "empty utterance_id in manifest")
            continue
        if rejection := dedup.check(utterance_id, relative):
            yield rejection
            continue
        audio_path = root / relative
        if Path(relative).is_absolute() or not _inside(root, audio_path):
            yield Rejection(utterance_id, relative, "ingest", "audio path escapes the corpus root")
            continue
        emotion = _text(record.get("emotion"))
        if emotion is not None:
            emotion = emotion.lower()
            if emotion not in EMOTIONS:
                yield Rejection(
                    utterance_id,
                    relative,
                    "ingest",
                    f"emotion {emotion!r} is not one of {', '.join(EMOTIONS)}",
                )
                continue
        transcript = _text(record.get("transcript"))
        source = "manifest" if transcript else None
        if transcript is None and "transcript" not in table.columns:
            sidecar, _problem = _read_transcript(audio_path.with_suffix(".txt"))
            transcript, source = sidecar, ("sidecar" if sidecar else None)
        yield CorpusEntry(
            utterance_id=utterance_id,
            audio_path=audio_path,
            emotion=emotion,
            arousal=_number(record.get("arousal")),
            valence=_number(record.get("valence")),
            dominance=_number(record.get("dominance")),
            speaker_id=_text(record.get("speaker_id")),
            gender=_text(record.get("gender")),
            transcript=transcript,
            transcript_source=source,
            split=MSP_SPLITS.get((record.get("split") or "").strip().lower()),
            language=language_tag(record.get("language")),
        )


def read_folder(root: Path) -> Iterator[CorpusEntry | Rejection]:
    """A bare folder of audio (recursively, symlinked folders too), unlabelled; a ``.txt`` beside a clip is its
    transcript."""
    dedup = _Deduplicator()
    for path in _files_below(root):
        if path.suffix.lower() not in AUDIO_SUFFIXES:
            continue
        relative = path.relative_to(root)
        utterance_id = utterance_id_from_path(relative)
        if rejection := dedup.check(utterance_id, relative.as_posix()):
            yield rejection
            continue
        if not _inside(root, path):
            yield Rejection(utterance_id, relative.as_posix(), "ingest", "audio path escapes the corpus root")
            continue
        transcript, _problem = _read_transcript(path.with_suffix(".txt"))
        yield CorpusEntry(
            utterance_id=utterance_id,
            audio_path=path,
            transcript=transcript,
            transcript_source="sidecar" if transcript else None,
        )


def read_corpus(path: Path, corpus_format: str) -> Iterator[CorpusEntry | Rejection]:
    """Dispatch to the reader for ``corpus_format`` (one of :data:`FORMATS`)."""
    if corpus_format == "msp":
        return read_msp(path)
    if corpus_format == "manifest":
        return read_manifest(path if path.suffix == ".csv" else path / "manifest.csv")
    if corpus_format == "folder":
        return read_folder(path)
    raise ValueError(f"unknown corpus format {corpus_format!r}; expected one of {', '.join(FORMATS)}")
