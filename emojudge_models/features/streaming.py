"""Training frames streamed from the feature store shard by shard, so memory is bounded by a buffer, not the data.

A :class:`FrameStream` describes one split without holding any frames: where each utterance's frames are stored,
its frame count and target, and the speaker normalisation to apply. Each epoch, :meth:`FrameStream.batches` gives a
torch ``IterableDataset`` for a ``DataLoader`` (``batch_size=None``: the dataset yields collated batches) that

- reads *units*, the rows of one shard row group (about ``store.ROW_GROUP_BYTES`` of frames), in an order shuffled
  by (seed, epoch), or in storage order for evaluation;
- gives unit ``i`` of that order to DataLoader worker ``i % workers``, so every utterance is yielded exactly once
  per epoch across the workers;
- fills a buffer of at most ``buffer_size / workers`` utterances per worker; when it is full (and at the end) the
  buffer is shuffled, sorted by length (little padding, as ``models.batches.BatchPlan``), cut into batches and
  emptied, its batches yielded in random order (in length order for evaluation);
- keeps frames float16 in the buffer and applies the speaker normalisation (each group's stored mean and std) to
  a batch's frames as it is collated.

Peak memory is the buffer, one decoded row group per worker and the batches in flight; the per-utterance metadata
is all that grows with the data, in numpy and Arrow arrays (shard row, length, dim, target, group, id and content
hash: about 130 bytes each for MSP-Podcast's ids), never as Python objects per utterance. The batch order is a fixed
function of (seed, epoch, buffer size, workers); a model's key does not include the last two, as it does not
include the device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from torch.utils.data import IterableDataset, get_worker_info

from emojudge_models.features.frame_stats import FrameStats
from emojudge_models.features.store import FeatureStore

Collate = Callable[[list[tuple[int, tuple[np.ndarray, Any]]]], Any]
"""Turns [(item index, (float32 frames, target))] into a batch (``models.batches.collate_frames``)."""


@dataclass(frozen=True)
class Unit:
    """The items of one split stored in one row group of one shard, in shard row order."""

    eval_set: str
    file: str
    items: np.ndarray


@dataclass
class Normalisation:
    """Per-item group index into per-group float32 mean and std (G, D): frames become (frames - mean) / std."""

    groups: np.ndarray
    means: np.ndarray
    stds: np.ndarray

    def apply(self, index: int, frames: np.ndarray) -> np.ndarray:
        group = self.groups[index]
        return (frames.astype(np.float32) - self.means[group]) / self.stds[group]


@dataclass
class FrameStream:
    """One split of stored frames, read shard by shard (see the module docstring); items are numbered 0..N-1 in the
    split's row order.

    ``frame_stats`` holds the per-dimension statistics of the split's (normalised) frames, computed from the stored
    utterance vectors without reading a frame: the heads' input standardisation.
    """

    store: FeatureStore
    utterance_ids: pa.Array
    content_sha256: pa.Array
    rows: np.ndarray
    lengths: np.ndarray
    dims: np.ndarray
    targets: Sequence[Any]
    units: list[Unit]
    frame_stats: FrameStats
    normalisation: Normalisation | None = None
    buffer_size: int = 1024
    num_workers: int = 0

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def dim(self) -> int:
        return int(self.dims[0])

    def check_dim(self, input_dim: int, name: str) -> None:
        """Raise naming the first item of the ``name`` split whose stored frames are not (T >= 1, input_dim)."""
        bad = np.flatnonzero((self.dims != input_dim) | (self.lengths < 1))
        if len(bad):
            index = int(bad[0])
            raise ValueError(
                f"{name} item {index} ({self.utterance_ids[index].as_py()}): stored frames have shape "
                f"({self.lengths[index]}, {self.dims[index]}); need T >= 1 and D = {input_dim}"
            )

    def capacity(self, workers: int, batch_size: int) -> int:
        """Utterances one worker's buffer holds: its share of ``buffer_size``, a whole number of batches."""
        share = self.buffer_size // max(workers, 1)
        return max(batch_size, share - share % batch_size)

    def read_unit(self, unit: Unit) -> Iterator[tuple[int, np.ndarray]]:
        """(item index, float16 frames) for every item of ``unit``, checked against the stored digests."""
        ids = self.utterance_ids.take(unit.items).to_pylist()
        hashes = self.content_sha256.take(unit.items).to_pylist()
        rows = [
            (utterance_id, sha, unit.file, int(self.rows[i]), int(self.lengths[i]), int(self.dims[i]))
            for utterance_id, sha, i in zip(ids, hashes, unit.items, strict=True)
        ]
        for index, (_, frames) in zip(
            unit.items, self.store.read_shard_rows(unit.eval_set, unit.file, rows), strict=True
        ):
            yield int(index), frames

    def batches(self, batch_size: int, collate: Collate, seed: Sequence[int] | None) -> ShardBatches:
        """One epoch's batches: shuffled by ``seed`` (e.g. [seed, epoch]), or in length order when None."""
        return ShardBatches(self, batch_size, collate, None if seed is None else list(seed))


class ShardBatches(IterableDataset):
    """One epoch of a :class:`FrameStream` as collated batches, split among the DataLoader's workers."""

    def __init__(self, stream: FrameStream, batch_size: int, collate: Collate, seed: list[int] | None) -> None:
        self.stream, self.batch_size, self.collate, self.seed = stream, batch_size, collate, seed

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        stream = self.stream
        if self.seed is None:
            order, rng = np.arange(len(stream.units)), None
        else:
            order = np.random.default_rng(self.seed).permutation(len(stream.units))
            rng = np.random.default_rng([*self.seed, worker])
        capacity = stream.capacity(workers, self.batch_size)
        buffer: list[tuple[int, np.ndarray]] = []
        for unit in order[worker::workers]:
            for item in stream.read_unit(stream.units[unit]):
                buffer.append(item)
                if len(buffer) == capacity:
                    yield from self._drain(buffer, rng)
                    buffer = []
        yield from self._drain(buffer, rng)

    def _drain(self, buffer: list[tuple[int, np.ndarray]], rng: np.random.Generator | None) -> Iterator[Any]:
        """The buffer's batches: shuffled, sorted by length, cut, yielded in random (or length) order."""
        if rng is not None:
            buffer = [buffer[i] for i in rng.permutation(len(buffer))]
        buffer = sorted(buffer, key=lambda item: len(item[1]))
        cuts = range(0, len(buffer), self.batch_size)
        starts = [cuts[i] for i in rng.permutation(len(cuts))] if rng is not None else cuts
        stream = self.stream
        for start in starts:
            items = buffer[start : start + self.batch_size]
            normalisation = stream.normalisation
            yield self.collate(
                [
                    (
                        index,
                        (
                            frames if normalisation is None else normalisation.apply(index, frames),
                            stream.targets[index],
                        ),
                    )
                    for index, frames in items
                ]
            )


def shard_units(
    store: FeatureStore, eval_sets: pa.Array | pa.ChunkedArray, files: pa.Array | pa.ChunkedArray, rows: np.ndarray
) -> list[Unit]:
    """Item indices grouped by (eval set, shard, row group), ordered by eval set, shard name and row group, each in
    shard row order; ``eval_sets``/``files`` name each item's set and shard. Each shard's footer is read once."""
    set_codes, set_names = _ranked_codes(eval_sets)
    file_codes, file_names = _ranked_codes(files)
    order = np.lexsort((rows, file_codes, set_codes))
    pairs = set_codes[order] * len(file_names) + file_codes[order]
    starts: dict[str, np.ndarray] = {}
    units: list[Unit] = []
    for part in np.split(order, np.flatnonzero(np.diff(pairs)) + 1) if len(order) else []:
        eval_set, file = set_names[set_codes[part[0]]], file_names[file_codes[part[0]]]
        if file not in starts:
            metadata = pq.ParquetFile(store.root / file).metadata
            starts[file] = np.cumsum([0] + [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)])
        groups = np.searchsorted(starts[file], rows[part], side="right") - 1
        for group in np.unique(groups):
            units.append(Unit(eval_set, file, part[groups == group]))
    return units


def _ranked_codes(values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """Each value's index (int64) into the sorted distinct values, and those values."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    encoded = pc.dictionary_encode(values)
    names = encoded.dictionary.to_pylist()
    rank = np.argsort(np.argsort(names, kind="stable")).astype(np.int64)
    return rank[encoded.indices.to_numpy()], sorted(names)
