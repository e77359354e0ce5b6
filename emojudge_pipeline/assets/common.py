"""Small helpers every asset shares: run ids, rejection rows, markdown previews."""

from __future__ import annotations

import base64

import dagster as dg
import pandas as pd

from emojudge_models.ingest.corpus import Rejection
from emojudge_models.store import warehouse


def record_rejections(con, eval_set: str, stages: tuple[str, ...], rejections: list[Rejection], run_id: str) -> int:
    """Replace this partition's rejections for ``stages`` with ``rejections`` (idempotent across reruns)."""
    frame = pd.DataFrame(
        [
            {"utterance_id": r.utterance_id, "audio_path": r.audio_path, "stage": r.stage, "reason": r.reason}
            for r in rejections
        ],
        columns=["utterance_id", "audio_path", "stage", "reason"],
    )
    frame["run_id"] = run_id
    return warehouse.replace_partition(con, "rejected_inputs", eval_set, frame, where={"stage": stages})


def markdown_preview(frame: pd.DataFrame, rows: int = 10) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.head(rows).to_markdown(index=False) if len(frame) else "_no rows_")


def image_metadata(png: bytes) -> dg.MetadataValue:
    """A PNG shown inline in the Dagster UI (markdown with a data URI)."""
    return dg.MetadataValue.md(f"![plot](data:image/png;base64,{base64.b64encode(png).decode()})")
