"""The model registry (table ``model_registry``): every trained head and fusion model, with its lineage."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from emojudge_models.store.warehouse import sql_text


@dataclass(frozen=True)
class RegisteredModel:
    """One ``model_registry`` row."""

    model_key: str
    kind: str
    task: str
    path: str
    train_eval_sets: list[str]
    hyperparameters: dict[str, Any]
    dev_metric_name: str
    dev_metric: float | None
    encoder_key: str | None = None
    input_model_keys: list[str] = field(default_factory=list)
    trained_on: str | None = None
    """``shipped:<corpus>``, ``synthetic:<sets>`` or ``sets:<sets>`` (models/selection.py); None before v12."""


def git_revision() -> str | None:
    """The code's git commit (with ``-dirty`` when the work tree has changes), or None outside a checkout."""
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{rev}-dirty" if dirty else rev


def register(con: duckdb.DuckDBPyConnection, model: RegisteredModel, run_id: str, sql: str = "register_model") -> None:
    """Insert (or replace, for an identical key) the model's registry row; ``sql="register_shipped_model"`` inserts
    a shipped model's row once and afterwards only updates its path and encoder key."""
    con.execute(
        sql_text(f"models/{sql}.sql"),
        [
            model.model_key,
            model.kind,
            model.task,
            model.encoder_key,
            model.input_model_keys or None,
            model.train_eval_sets,
            json.dumps(model.hyperparameters, sort_keys=True, default=str),
            model.dev_metric_name,
            model.dev_metric,
            model.path,
            git_revision(),
            run_id,
            model.trained_on,
        ],
    )


def _fetch_models(cursor: duckdb.DuckDBPyConnection) -> list[RegisteredModel]:
    names = [column[0] for column in cursor.description]
    models = []
    for row in cursor.fetchall():
        record = dict(zip(names, row, strict=True))
        models.append(
            RegisteredModel(
                model_key=record["model_key"],
                kind=record["kind"],
                task=record["task"],
                path=record["path"],
                train_eval_sets=list(record["train_eval_sets"]),
                hyperparameters=json.loads(record["hyperparameters"]),
                dev_metric_name=record["dev_metric_name"],
                dev_metric=record["dev_metric"],
                encoder_key=record["encoder_key"],
                input_model_keys=list(record["input_model_keys"] or []),
                trained_on=record["trained_on"],
            )
        )
    return models


def for_encoder(con: duckdb.DuckDBPyConnection, kind: str, task: str, encoder_key: str) -> list[RegisteredModel]:
    """Every model of ``kind`` and ``task`` registered for ``encoder_key``, newest first."""
    return _fetch_models(con.execute(sql_text("models/models_for_encoder.sql"), [kind, task, encoder_key]))


def fusion_models(con: duckdb.DuckDBPyConnection, task: str) -> list[RegisteredModel]:
    """Every fusion model of ``task``, newest first."""
    return _fetch_models(con.execute(sql_text("models/fusion_models.sql"), [task]))


def by_key(con: duckdb.DuckDBPyConnection, model_key: str) -> RegisteredModel | None:
    found = _fetch_models(con.execute(sql_text("models/model_by_key.sql"), [model_key]))
    return found[0] if found else None


def count(con: duckdb.DuckDBPyConnection) -> int:
    """How many models are registered, of any kind: zero means nothing has been trained in this warehouse."""
    return int(con.execute(sql_text("models/count_models.sql")).fetchone()[0])
