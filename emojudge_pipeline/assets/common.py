"""Small helpers every asset shares: run ids, rejection rows, markdown previews."""

from __future__ import annotations

import base64
from typing import Any

import dagster as dg
import pandas as pd

from emojudge_models.ingest.corpus import Rejection
from emojudge_models.store import warehouse


def rejections_write(stages: tuple[str, ...], rejections: list[Rejection], run_id: str) -> warehouse.PartitionWrite:
    """The partition write that replaces ``stages``' rejections with ``rejections`` (idempotent across reruns)."""
    frame = pd.DataFrame(
        [
            {"utterance_id": r.utterance_id, "audio_path": r.audio_path, "stage": r.stage, "reason": r.reason}
            for r in rejections
        ],
        columns=["utterance_id", "audio_path", "stage", "reason"],
    )
    frame["run_id"] = run_id
    return warehouse.PartitionWrite("rejected_inputs", frame, {"stage": stages})


METADATA_DIGITS = 4
"""Decimals of the floats the UI shows: an F1 of 0.7256, not 0.7255952380952381."""


def rounded(value: float | None, digits: int = METADATA_DIGITS) -> float | None:
    """A float for asset metadata: ``digits`` significant digits below 1 (0.7256; a waveform mean of -2.977e-05
    stays readable), ``digits`` decimals from 1 up; None stays None."""
    if value is None:
        return None
    value = float(value)
    return float(f"{value:.{digits}g}") if abs(value) < 1 else round(value, digits)


def rounded_json(value: Any) -> Any:
    """``value`` (dicts, lists, numbers) with every float :func:`rounded`, for ``MetadataValue.json``."""
    if isinstance(value, float):
        return rounded(value)
    if isinstance(value, dict):
        return {key: rounded_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [rounded_json(item) for item in value]
    return value


def markdown_preview(frame: pd.DataFrame, rows: int = 10) -> dg.MetadataValue:
    """The first ``rows`` rows as a markdown table, floats rounded to :data:`METADATA_DIGITS` decimals."""
    shown = frame.head(rows).round(METADATA_DIGITS)
    return dg.MetadataValue.md(shown.to_markdown(index=False) if len(frame) else "_no rows_")


def image_metadata(png: bytes) -> dg.MetadataValue:
    """A PNG shown inline in the Dagster UI (markdown with a data URI)."""
    return dg.MetadataValue.md(f"![plot](data:image/png;base64,{base64.b64encode(png).decode()})")
