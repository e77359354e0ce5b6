"""Timed transcripts shipped beside an episode (``.vtt`` or ``.srt``) mapped onto its segments.

Mapping rule: a cue's words are taken as evenly spread over the cue's time span; each word goes to the segment that
contains its time (the centre of its share of the span), or, when it falls between segments, to the nearest segment
within ``max_distance_s``; words further from any segment (a caption over music, say) are left out. A segment's
transcript is its words in time order. So a cue that straddles a segment boundary is split by time, never copied into
both segments, and a segment without any word gets ``None`` (to be transcribed by ASR instead).
"""

from __future__ import annotations

import bisect
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from emojudge_models.episodes.segment import Segment

SIDECAR_SUFFIXES = (".vtt", ".srt")
DEFAULT_MAX_DISTANCE_S = 1.0
_TIME = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{1,3})$")
_TAG = re.compile(r"<[^>]*>|\{\\[^}]*\}")


class SidecarError(ValueError):
    """A sidecar that cannot be read; the message names the file, the line and the cause."""


@dataclass(frozen=True)
class Cue:
    """One timed caption: seconds from the start of the episode and its plain text (markup removed)."""

    start_s: float
    end_s: float
    text: str


def find_sidecar(episode_path: Path | str) -> Path | None:
    """The ``.vtt`` (preferred) or ``.srt`` file with the episode's stem beside it, if there is one."""
    episode_path = Path(episode_path)
    for suffix in SIDECAR_SUFFIXES:
        candidate = episode_path.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def _seconds(stamp: str, path: Path, line_no: int) -> float:
    match = _TIME.match(stamp)
    if match is None:
        raise SidecarError(f"{path}: line {line_no}: bad timestamp {stamp!r} (expected HH:MM:SS.mmm)")
    hours, minutes, seconds, fraction = match.groups()
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(fraction.ljust(3, "0")) / 1000


def _clean(lines: Sequence[str]) -> str:
    """Caption text without VTT/SRT markup (voice, style and timestamp tags, ASS overrides) and entities."""
    text = " ".join(_TAG.sub("", line).strip() for line in lines)
    return " ".join(html.unescape(text).split())


def parse_sidecar(path: Path | str) -> list[Cue]:
    """The cues of a WebVTT or SubRip file, sorted by start time; header, NOTE, STYLE and REGION blocks are skipped."""
    path = Path(path)
    if path.suffix.lower() not in SIDECAR_SUFFIXES:
        raise SidecarError(f"{path}: not a sidecar transcript (expected {' or '.join(SIDECAR_SUFFIXES)})")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise SidecarError(f"{path}: not UTF-8 text") from None
    cues: list[Cue] = []
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    index = 0
    while index < len(lines):
        line = lines[index]
        if "-->" not in line:
            index += 1
            continue
        start_text, _, rest = line.partition("-->")
        end_text = rest.split()[0] if rest.split() else ""
        start_s = _seconds(start_text.strip(), path, index + 1)
        end_s = _seconds(end_text, path, index + 1)
        if end_s < start_s:
            raise SidecarError(f"{path}: line {index + 1}: cue ends before it starts")
        body: list[str] = []
        index += 1
        while index < len(lines) and lines[index].strip():
            body.append(lines[index])
            index += 1
        cue_text = _clean(body)
        if cue_text:
            cues.append(Cue(start_s=start_s, end_s=end_s, text=cue_text))
    return sorted(cues, key=lambda cue: (cue.start_s, cue.end_s))


def map_cues(
    cues: Sequence[Cue], segments: Sequence[Segment], max_distance_s: float = DEFAULT_MAX_DISTANCE_S
) -> list[str | None]:
    """Each segment's transcript from the cues, by the module's word-by-time rule; ``None`` where no word falls."""
    order = sorted(range(len(segments)), key=lambda i: segments[i].start_s)
    starts = [segments[i].start_s for i in order]
    words: list[list[tuple[float, str]]] = [[] for _ in segments]
    for cue in cues:
        tokens = cue.text.split()
        span = cue.end_s - cue.start_s
        for position, token in enumerate(tokens):
            at = cue.start_s + span * (position + 0.5) / len(tokens)
            target = _segment_at(at, order, starts, segments, max_distance_s)
            if target is not None:
                words[target].append((at, token))
    return [" ".join(token for _, token in sorted(found, key=lambda item: item[0])) or None for found in words]


def _segment_at(
    at: float, order: list[int], starts: list[float], segments: Sequence[Segment], max_distance_s: float
) -> int | None:
    """Index of the segment containing time ``at``, else the nearest one within ``max_distance_s``, else ``None``."""
    position = bisect.bisect_right(starts, at)
    best: tuple[float, int] | None = None
    for candidate in (position - 1, position):
        if 0 <= candidate < len(order):
            segment = segments[order[candidate]]
            distance = max(segment.start_s - at, at - segment.end_s, 0.0)
            if distance <= max_distance_s and (best is None or distance < best[0]):
                best = (distance, order[candidate])
    return None if best is None else best[1]
