"""Content keys of trained models: one hashing scheme for every model kind (audio heads, text models, fusion).

A key is the SHA-256 of a canonical JSON document (sorted keys, compact separators) of everything the model
depends on, so equal inputs give equal keys whatever order a dict was built in, and a repeat request finds the
model already registered under its key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

MODEL_KEY_CHARS = 20
DATA_KEY_CHARS = 16


def _digest(document: Any, chars: int) -> str:
    blob = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:chars]


def data_key(name: str, scope: str, rows: Iterable[Sequence[Any]]) -> str:
    """``{name}:{scope}:{16 hex}``: names exactly which rows (with their targets) fitted or selected a model.

    ``name`` says what the rows were used for (``train``, ``development``), ``scope`` what they were read
    through (an encoder key, ``fusion``); row order matters, as it does to a seeded trainer.
    """
    return f"{name}:{scope}:{_digest([list(row) for row in rows], DATA_KEY_CHARS)}"


def model_key(kind: str, *, data_keys: Iterable[str], hyperparameters: Mapping[str, Any], code_version: str) -> str:
    """20 hex characters naming a model of ``kind`` by its data, settings and code; data key order is ignored."""
    document = {
        "kind": kind,
        "data": sorted(data_keys),
        "hyperparameters": dict(hyperparameters),
        "code_version": code_version,
    }
    return _digest(document, MODEL_KEY_CHARS)
