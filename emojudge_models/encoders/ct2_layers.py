"""A CTranslate2 Whisper model cut after an inner encoder layer, so ``encode`` returns that layer's frames.

CTranslate2's ``encode`` returns only the encoder's last layer, and the last layers of Whisper's encoder carry less
of how a thing is said than the middle ones (SUPERB and EmoBox probe every layer for that reason). CTranslate2
builds as many encoder layers as ``model.bin`` holds (``encoder/layer_0`` ... ``layer_N``), so a copy of the file
without the upper layers is the same model cut after layer ``N``: its frames are that layer's output, through the
encoder's final layer norm, computed by the same int8 kernels at the cost of ``N`` layers instead of all of them.
The decoder is kept as is (CTranslate2 loads it with the encoder); the cut model is for frames, never for text.

The file format is CTranslate2's binary version 6 (``ctranslate2/specs/model_spec.py``, ``_serialize``): a header,
then each variable's name, shape, type id and bytes, then aliases. Bytes are copied, never converted.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

BINARY_VERSION = 6
"""The only model.bin layout read here (CTranslate2 4.x writes it)."""
_ENCODER_LAYER = re.compile(r"encoder/layer_(\d+)/")
COPIED_FILES = ("config.json", "tokenizer.json", "vocabulary.txt", "preprocessor_config.json")
"""Files beside model.bin that the cut folder gets too (those present)."""


@dataclass(frozen=True)
class Variable:
    name: str
    header: bytes
    """Rank, dimensions, type id and byte count, exactly as stored."""
    data: bytes


@dataclass(frozen=True)
class ModelBin:
    spec_name: str
    revision: int
    variables: tuple[Variable, ...]
    aliases: tuple[tuple[str, str], ...]

    def encoder_layers(self) -> int:
        """How many encoder layers the file holds."""
        indices = {int(m.group(1)) for v in self.variables if (m := _ENCODER_LAYER.match(v.name))}
        return max(indices) + 1 if indices else 0

    def cut_after(self, layer: int) -> ModelBin:
        """The same model with encoder layers ``layer`` and above left out (``layer`` counts from 1)."""
        total = self.encoder_layers()
        if not 1 <= layer <= total:
            raise ValueError(f"encoder layer must be between 1 and {total}, got {layer}")
        kept = tuple(v for v in self.variables if not (m := _ENCODER_LAYER.match(v.name)) or int(m.group(1)) < layer)
        return ModelBin(self.spec_name, self.revision, kept, self.aliases)


def _read_exact(handle: BinaryIO, size: int, path: Path) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise ValueError(f"{path}: CTranslate2 model file ends early (truncated or not a model.bin)")
    return data


def _read_string(handle: BinaryIO, path: Path) -> str:
    (length,) = struct.unpack("<H", _read_exact(handle, 2, path))
    return _read_exact(handle, length, path)[:-1].decode("utf-8")


def read_model_bin(path: Path, data: bytes | None = None) -> ModelBin:
    """The variables of a CTranslate2 ``model.bin`` at ``path``, or in ``data`` (its bytes, ``path`` naming them
    in errors); ValueError naming the file if it is not binary version 6."""
    with io.BytesIO(data) if data is not None else open(path, "rb") as handle:
        (version,) = struct.unpack("<I", _read_exact(handle, 4, path))
        if version != BINARY_VERSION:
            raise ValueError(f"{path}: CTranslate2 binary version {version}, only {BINARY_VERSION} can be cut")
        spec_name = _read_string(handle, path)
        revision, count = struct.unpack("<II", _read_exact(handle, 8, path))
        variables = []
        for _ in range(count):
            name = _read_string(handle, path)
            (rank,) = struct.unpack("<B", _read_exact(handle, 1, path))
            dims = _read_exact(handle, 4 * rank, path)
            type_and_size = _read_exact(handle, 5, path)
            (size,) = struct.unpack("<I", type_and_size[1:])
            variables.append(Variable(name, bytes([rank]) + dims + type_and_size, _read_exact(handle, size, path)))
        (n_aliases,) = struct.unpack("<I", _read_exact(handle, 4, path))
        aliases = tuple((_read_string(handle, path), _read_string(handle, path)) for _ in range(n_aliases))
    return ModelBin(spec_name, revision, tuple(variables), aliases)


def _string(value: str) -> bytes:
    encoded = value.encode("utf-8") + b"\0"
    return struct.pack("<H", len(encoded)) + encoded


def model_bin_chunks(model: ModelBin) -> Iterator[bytes]:
    """The bytes of ``model`` as a ``model.bin``, in pieces (variables are not joined in memory)."""
    yield struct.pack("<I", BINARY_VERSION) + _string(model.spec_name)
    yield struct.pack("<II", model.revision, len(model.variables))
    for variable in model.variables:
        yield _string(variable.name) + variable.header
        yield variable.data
    yield struct.pack("<I", len(model.aliases))
    for alias, target in model.aliases:
        yield _string(alias) + _string(target)


def cut_folder(source: Path, layer: int, target: Path) -> Path:
    """``target``: the CTranslate2 folder ``source`` cut after encoder ``layer``, written once (under a temporary
    name, then renamed, so a reader never sees half a file); an existing ``target/model.bin`` is reused, its name
    (chosen by the caller from the source's hash and the layer) being its identity. OSError where it cannot be
    written."""
    weights = target / "model.bin"
    if not weights.is_file():
        model = read_model_bin(source / "model.bin").cut_after(layer)
        target.mkdir(parents=True, exist_ok=True)
        partial = target / f".model.bin.{os.getpid()}.{threading.get_ident()}.partial"
        try:
            with open(partial, "wb") as out:
                for chunk in model_bin_chunks(model):
                    out.write(chunk)
            os.replace(partial, weights)
        finally:
            partial.unlink(missing_ok=True)
    for name in COPIED_FILES:
        if (source / name).is_file() and not (target / name).is_file():
            copied = target / f".{name}.{os.getpid()}.{threading.get_ident()}.partial"
            shutil.copyfile(source / name, copied)
            os.replace(copied, target / name)
    return target
