"""Checks made when an evaluation set is registered, so a bad corpus fails at once in one line, not at ingest.

The corpus is read by the same readers the ingest asset uses (same CSV encodings, same required columns); no audio
is decoded here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from emojudge_models.ingest.corpus import (
    AUDIO_SUFFIXES,
    FORMATS,
    MSP_LABELS,
    CorpusEntry,
    detect_format,
    read_corpus,
)
from emojudge_models.ingest.tables import CorpusInvalid

MAX_NAME_LENGTH = 100
_NAME = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True)
class CorpusCheck:
    """What registration found: the layout used and how many listed audio files exist."""

    corpus_format: str
    audio_files: int


def check_set_name(name: str) -> None:
    """A set name is a partition key and a file-name part: letters, digits, ``._-``, 1 to 100 characters."""
    if not _NAME.fullmatch(name) or len(name) > MAX_NAME_LENGTH or set(name) == {"."}:
        raise CorpusInvalid(
            f"evaluation set name {name[:120]!r} is invalid: use 1 to {MAX_NAME_LENGTH} letters, digits, '.', '_' "
            "or '-' (not only dots)"
        )


def _check_layout(path: Path, corpus_format: str, detected: str) -> None:
    """Refuse a requested format whose files are not there (e.g. ``--format msp`` on a manifest corpus)."""
    if corpus_format not in FORMATS:
        raise CorpusInvalid(f"{path}: unknown corpus format {corpus_format!r}; expected one of {', '.join(FORMATS)}")
    if corpus_format == "msp":
        ok = path.is_dir() and (path / MSP_LABELS).is_file()
        needs = f"{MSP_LABELS.as_posix()} in a folder"
    elif corpus_format == "manifest":
        ok = (path.is_file() and path.suffix == ".csv") or (path / "manifest.csv").is_file()
        needs = "a manifest.csv (the file, or a folder holding it)"
    else:
        ok, needs = path.is_dir(), "a folder of audio files"
    if not ok:
        raise CorpusInvalid(
            f"{path}: --format {corpus_format} needs {needs}; this looks like a {detected} corpus "
            f"(use --format {detected} or leave --format out)"
        )


def _no_audio_message(path: Path, corpus_format: str, listed: int) -> str:
    if corpus_format == "folder":
        return f"{path}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in this folder or below"
    table = path / MSP_LABELS if corpus_format == "msp" else (path if path.is_file() else path / "manifest.csv")
    if listed == 0:
        return f"{table}: lists no usable clips (no rows, or every row rejected)"
    return f"{table}: none of the {listed} listed audio files exists (paths are relative to {table.parent})"


def check_corpus(path: Path, corpus_format: str | None = None) -> CorpusCheck:
    """Check the corpus at ``path`` can be ingested as ``corpus_format`` (default: detected from the layout).

    Raises :class:`CorpusInvalid` (one line naming the file) for an unreadable or misencoded CSV, missing required
    columns, a format that does not match the layout, or no audio file at all.
    """
    if not path.exists():
        raise CorpusInvalid(f"{path}: does not exist")
    detected = detect_format(path)
    corpus_format = corpus_format or detected
    _check_layout(path, corpus_format, detected)
    entries = [item for item in read_corpus(path, corpus_format) if isinstance(item, CorpusEntry)]
    present = sum(1 for entry in entries if entry.audio_path.is_file())
    if present == 0:
        raise CorpusInvalid(_no_audio_message(path, corpus_format, len(entries)))
    return CorpusCheck(corpus_format, present)


def check_eval_set(name: str, path: Path, corpus_format: str | None = None) -> CorpusCheck:
    """Everything ``emojudge eval-set add`` checks before registering ``name``: the name, then the corpus."""
    check_set_name(name)
    return check_corpus(path, corpus_format)


def check_repoint(name: str, registered: tuple[str, str] | None, corpus_format: str, path: Path, replace: bool) -> bool:
    """Whether registering ``name`` as ``corpus_format`` at ``path`` re-points a set already ``registered`` as
    (format, path) elsewhere; refused (one line) unless ``replace``, so a typo cannot silently swap a set's corpus
    (the training set's among them). Registering the same corpus again is not a re-point."""
    if registered is None or registered == (corpus_format, str(path)):
        return False
    if not replace:
        old_format, old_path = registered
        raise CorpusInvalid(
            f"evaluation set {name!r} already points at {old_path} ({old_format}); add --replace to point it at "
            f"{path} ({corpus_format})"
        )
    return True
