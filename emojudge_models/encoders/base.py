"""The contract every encoder meets, and the key that makes its cached output addressable."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

FLOAT16_MAX = float(np.finfo(np.float16).max)
"""The largest frame value the store keeps (frames are stored as float16)."""


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


@dataclass(frozen=True)
class StoreFrames:
    """One clip's frames as the feature store keeps them: float16 (n_frames, dim) frames and the float32
    utterance vector (per-dimension mean ++ standard deviation of the frames before fp16 rounding)."""

    frames: np.ndarray
    pooled: np.ndarray


def frame_problem(shape: tuple[int, ...], dim: int, finite: bool, max_abs: float) -> str | None:
    """Why frames of ``shape`` with these values cannot be stored, or None when they can."""
    if len(shape) != 2 or shape[1] != dim or shape[0] == 0:
        return f"encoder returned shape {shape}, expected (n_frames >= 1, {dim})"
    if not finite:
        return "encoder output contains NaN or inf"
    if max_abs > FLOAT16_MAX:
        return f"encoder output exceeds {FLOAT16_MAX:g}, the largest value the store keeps"
    return None


class PendingFrames(Protocol):
    """Frames of one batch still on their way from the device; ``result`` waits for them (any thread)."""

    def result(self) -> list[StoreFrames | str]:
        """Per clip, in order: the store-ready frames, or why the clip's output cannot be stored."""
        ...


@runtime_checkable
class StoreReadyAudioEncoder(AudioEncoder, Protocol):
    """An audio encoder that also converts to float16 and pools on its device, and copies the result back
    asynchronously, so the host thread that runs the model only launches work (see ``encoders/hf.py``)."""

    def encode_for_store(self, waves: list[np.ndarray]) -> PendingFrames:
        """Launch the batch; the returned object yields each clip's ``StoreFrames`` (or failure reason)."""
        ...


@runtime_checkable
class TextEncoder(Protocol):
    """Turns transcripts into one utterance-level vector each (CLS or pooled)."""

    spec: dict[str, Any]
    dim: int

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        """Encode transcripts together; returns float32 (len(texts), dim)."""
        ...
