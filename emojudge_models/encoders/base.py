"""The contract every encoder meets, and the key that makes its cached output addressable."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol, runtime_checkable

import numpy as np

SAMPLE_RATE_HZ = 16_000
"""Every audio encoder receives 16 kHz mono float32 waveforms."""


def encoder_key(spec: dict[str, Any]) -> str:
    """Stable short hash of an encoder spec: any change to the spec is a new key, never a stale read."""
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


@runtime_checkable
class AudioEncoder(Protocol):
    """Turns waveforms into frame-level features.

    ``spec`` holds everything that changes the output (kind, model id or path, revision or weights hash,
    layer selection, window policy, preprocessing version); ``encoder_key(spec)`` names the cache entry.
    """

    spec: dict[str, Any]
    frame_rate_hz: float
    dim: int

    def encode_batch(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        """Encode 16 kHz mono float32 clips together; returns one float32 (n_frames, dim) array per clip."""
        ...


@runtime_checkable
class TextEncoder(Protocol):
    """Turns transcripts into one utterance-level vector each (CLS or pooled)."""

    spec: dict[str, Any]
    dim: int

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        """Encode transcripts together; returns float32 (len(texts), dim)."""
        ...
