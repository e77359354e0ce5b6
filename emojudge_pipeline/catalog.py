"""What the UI shows about each asset beyond its code: the warehouse table it writes (name and column schema) and
the code version of the logic that shapes its results.

The column schemas come from the packaged ``sql/store/schema.sql`` itself (created in an in-memory DuckDB when the
definitions load), so the UI never disagrees with the warehouse contract.
"""

from __future__ import annotations

import functools

import dagster as dg
import duckdb

from emojudge_models.features.store import SHARD_FORMAT_VERSION
from emojudge_models.fusion.strategy import FUSION_CODE_VERSION
from emojudge_models.judge import TEMPLATE_SHA256
from emojudge_models.models import heads, text_classifier
from emojudge_models.prosody import PROSODY_CODE_VERSION
from emojudge_models.store import warehouse

ASSET_TABLES = {
    "utterances": "utterances",
    "transcripts": "asr_transcripts",
    "waveform_stats": "waveform_stats",
    "audio_features": "feature_index",
    "text_features": "utterance_vectors",
    "audio_model_categorical": "model_registry",
    "audio_model_attributes": "model_registry",
    "text_model_categorical": "model_registry",
    "text_model_attributes": "model_registry",
    "logits": "logits",
    "prosody": "prosody",
    "fusion_model_categorical": "model_registry",
    "fusion_model_attributes": "model_registry",
    "fused_predictions": "fused_predictions",
    "llm_judgments": "llm_judgments",
    "predictions": "predictions",
    "evaluation": "metrics",
    "episode_emotions": "episode_emotions",
}
"""The warehouse table each asset writes (its main one, where it writes several)."""

JUDGE_VERSION = f"judge-{TEMPLATE_SHA256[:12]}"
HEADS_VERSION = f"{heads.CODE_VERSION}+{text_classifier.CODE_VERSION}"
CODE_VERSIONS = {
    "audio_features": f"shards-{SHARD_FORMAT_VERSION}",
    "text_features": f"shards-{SHARD_FORMAT_VERSION}",
    "audio_model_categorical": HEADS_VERSION,
    "audio_model_attributes": HEADS_VERSION,
    "text_model_categorical": HEADS_VERSION,
    "text_model_attributes": HEADS_VERSION,
    "logits": HEADS_VERSION,
    "prosody": f"prosody-{PROSODY_CODE_VERSION}",
    "fusion_model_categorical": FUSION_CODE_VERSION,
    "fusion_model_attributes": FUSION_CODE_VERSION,
    "fused_predictions": FUSION_CODE_VERSION,
    "llm_judgments": JUDGE_VERSION,
    "predictions": JUDGE_VERSION,
}
"""Versions of the code that decides an asset's values: bump the library constant, and the UI marks the asset stale."""


@functools.cache
def table_schemas() -> dict[str, dg.TableSchema]:
    """Column name, type and NOT NULL of every warehouse table, from the packaged schema."""
    con = duckdb.connect()
    try:
        con.execute(warehouse.sql_text("store/schema.sql"))
        rows = con.execute(
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
            "ORDER BY table_name, ordinal_position"
        ).fetchall()
    finally:
        con.close()
    columns: dict[str, list[dg.TableColumn]] = {}
    for table, name, data_type, nullable in rows:
        constraints = dg.TableColumnConstraints(nullable=nullable == "YES")
        columns.setdefault(table, []).append(dg.TableColumn(name, data_type, constraints=constraints))
    return {table: dg.TableSchema(columns=cols) for table, cols in columns.items()}


def describe(spec: dg.AssetSpec) -> dg.AssetSpec:
    """``spec`` with its table name, column schema and code version (assets not listed are returned as they are)."""
    name = spec.key.to_user_string()
    table = ASSET_TABLES.get(name)
    if table is not None:
        spec = spec.merge_attributes(
            metadata={
                "dagster/table_name": f"emojudge.main.{table}",
                "dagster/column_schema": table_schemas()[table],
            }
        )
    if name in CODE_VERSIONS:
        spec = spec.replace_attributes(code_version=CODE_VERSIONS[name])
    return spec
