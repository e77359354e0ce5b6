"""Emotion timelines of episodes: per speaker and time window, per speaker, per episode; and a timeline PNG.

Input is one row per scored segment: ``episode_id``, ``speaker_id``, ``start_s``, ``end_s``, ``final_label`` (one of
:data:`~emojudge_models.labels.EMOTIONS`) and, where an attributes model exists, ``arousal``, ``valence``,
``dominance``. A segment that crosses a window boundary counts in each window for the seconds it spends there.
Shares are of speech seconds (``share_<emotion>`` columns, summing to 1 in every row); attribute means are weighted
by seconds and are NaN where no segment in the row has a value.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from emojudge_models.labels import ATTRIBUTES, EMOTIONS

DEFAULT_WINDOW_S = 30.0
SHARE_COLUMNS: tuple[str, ...] = tuple(f"share_{emotion}" for emotion in EMOTIONS)
REQUIRED_COLUMNS: tuple[str, ...] = ("episode_id", "speaker_id", "start_s", "end_s", "final_label")
EMOTION_COLOURS: dict[str, str] = {
    "angry": "#d62728",
    "sad": "#1f77b4",
    "happy": "#ffbf00",
    "surprise": "#ff7f0e",
    "fear": "#9467bd",
    "disgust": "#2ca02c",
    "contempt": "#8c564b",
    "neutral": "#b0b0b0",
}


def _checked(segments: pd.DataFrame) -> pd.DataFrame:
    """``segments`` with attribute columns present (NaN if absent), after checking columns and labels."""
    missing = [column for column in REQUIRED_COLUMNS if column not in segments.columns]
    if missing:
        raise ValueError(f"segment table lacks column(s) {', '.join(missing)}")
    unknown = sorted(set(segments["final_label"]) - set(EMOTIONS))
    if unknown:
        raise ValueError(f"unknown emotion label(s) {', '.join(map(str, unknown))}; expected one of {EMOTIONS}")
    if (segments["end_s"] < segments["start_s"]).any():
        raise ValueError("a segment ends before it starts (end_s < start_s)")
    table = segments.copy()
    for attribute in ATTRIBUTES:
        if attribute not in table.columns:
            table[attribute] = np.nan
    return table


def _aggregate(pieces: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Speech seconds, emotion shares and seconds-weighted attribute means of ``pieces`` (with ``seconds``) by keys."""
    work = pieces[keys].copy()
    work["speech_s"] = pieces["seconds"]
    for emotion, column in zip(EMOTIONS, SHARE_COLUMNS, strict=True):
        work[column] = np.where(pieces["final_label"] == emotion, pieces["seconds"], 0.0)
    for attribute in ATTRIBUTES:
        present = pieces[attribute].notna()
        work[f"_{attribute}_sum"] = np.where(present, pieces[attribute].fillna(0.0) * pieces["seconds"], 0.0)
        work[f"_{attribute}_s"] = np.where(present, pieces["seconds"], 0.0)
    grouped = work.groupby(keys, sort=True, dropna=False).sum().reset_index()
    speech = grouped["speech_s"].to_numpy()
    for column in SHARE_COLUMNS:
        grouped[column] = np.divide(grouped[column], speech, out=np.zeros(len(grouped)), where=speech > 0)
    for attribute in ATTRIBUTES:
        weight = grouped.pop(f"_{attribute}_s").to_numpy()
        total = grouped.pop(f"_{attribute}_sum").to_numpy()
        grouped[attribute] = np.divide(total, weight, out=np.full(len(grouped), np.nan), where=weight > 0)
    return grouped


def _windowed(table: pd.DataFrame, window_s: float) -> pd.DataFrame:
    """One row per (segment, window it touches) with the seconds it spends in that window."""
    rows = []
    for record in table.itertuples(index=False):
        first = math.floor(record.start_s / window_s)
        last = max(first, math.ceil(record.end_s / window_s) - 1)
        for window in range(first, last + 1):
            low, high = window * window_s, (window + 1) * window_s
            seconds = min(record.end_s, high) - max(record.start_s, low)
            if seconds > 0:
                rows.append({**record._asdict(), "window_start_s": low, "window_end_s": high, "seconds": seconds})
    columns = [*table.columns, "window_start_s", "window_end_s", "seconds"]
    return pd.DataFrame(rows, columns=columns)


def emotion_timeline(segments: pd.DataFrame, window_s: float = DEFAULT_WINDOW_S) -> pd.DataFrame:
    """Per episode, speaker and window: ``speech_s``, ``share_<emotion>`` for the 8 emotions, attribute means."""
    if window_s <= 0:
        raise ValueError(f"timeline window must be positive, got {window_s} s")
    pieces = _windowed(_checked(segments), window_s)
    return _aggregate(pieces, ["episode_id", "speaker_id", "window_start_s", "window_end_s"])


def speaker_totals(segments: pd.DataFrame) -> pd.DataFrame:
    """Per episode and speaker: ``speech_s``, emotion shares and attribute means over the whole episode."""
    table = _checked(segments)
    table["seconds"] = table["end_s"] - table["start_s"]
    return _aggregate(table, ["episode_id", "speaker_id"])


def episode_totals(segments: pd.DataFrame) -> pd.DataFrame:
    """Per episode: ``speech_s``, emotion shares, attribute means, and ``speakers`` (how many spoke)."""
    table = _checked(segments)
    table["seconds"] = table["end_s"] - table["start_s"]
    totals = _aggregate(table, ["episode_id"])
    counts = table.groupby("episode_id")["speaker_id"].nunique().rename("speakers").reset_index()
    return totals.merge(counts, on="episode_id")


def speaker_lines(segments: pd.DataFrame, top: int = 3) -> dict[str, str]:
    """Per speaker (in order of first speech), one line a reader takes in at a glance: seconds spoken and the
    speaker's ``top`` emotions by share, e.g. ``"42.5 s: neutral 55%, happy 30%, angry 15%"``."""
    totals = speaker_totals(segments)
    first = _checked(segments).sort_values("start_s").drop_duplicates("speaker_id")["speaker_id"].tolist()
    lines = {}
    for speaker in first:
        row = totals[totals["speaker_id"] == speaker].iloc[0]
        shares = sorted(((row[f"share_{e}"], e) for e in EMOTIONS if row[f"share_{e}"] > 0), reverse=True)[:top]
        named = ", ".join(f"{emotion} {share:.0%}" for share, emotion in shares)
        lines[str(speaker)] = f"{row['speech_s']:.1f} s: {named}"
    return lines


def timeline_png(segments: pd.DataFrame, title: str | None = None) -> bytes:
    """An emotion timeline of one episode as PNG: a lane per speaker, each segment a bar coloured by its emotion."""
    table = _checked(segments)
    episodes = table["episode_id"].unique()
    if len(episodes) != 1:
        raise ValueError(f"timeline_png draws one episode; got {len(episodes)}")
    first_seen = table.sort_values("start_s").drop_duplicates("speaker_id")["speaker_id"].tolist()
    end_s = float(table["end_s"].max()) if len(table) else 1.0

    figure = Figure(figsize=(10.0, 1.0 + 0.6 * max(1, len(first_seen))))
    axes = figure.add_subplot()
    for lane, speaker in enumerate(first_seen):
        rows = table[table["speaker_id"] == speaker]
        spans = list(zip(rows["start_s"], rows["end_s"] - rows["start_s"], strict=True))
        colours = [EMOTION_COLOURS[label] for label in rows["final_label"]]
        axes.broken_barh(spans, (lane - 0.4, 0.8), facecolors=colours)
    axes.set_yticks(range(len(first_seen)), labels=first_seen)
    axes.set_ylim(len(first_seen) - 0.5, -0.5)
    axes.set_xlim(0.0, end_s)
    axes.set_xlabel("time (s)")
    axes.set_title(title or f"emotion timeline: {episodes[0]}")
    handles = [Patch(facecolor=EMOTION_COLOURS[emotion], label=emotion) for emotion in EMOTIONS]
    axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def save_picture(png: bytes, path: Path) -> Path:
    """Write ``png`` to ``path`` whole or not at all (a reader never sees half a picture); returns ``path``. The
    temporary file carries the writer's pid, so a killed writer's is found and removed (``store.leftovers``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_bytes(png)
    os.replace(partial, path)
    return path
