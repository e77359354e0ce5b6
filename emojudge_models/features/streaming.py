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
(shard row, length, target, group: tens of bytes each) is all that grows with the data. The batch order is a fixed
function of (seed, epoch, buffer size, workers); a model's key does not include the last two, as it does not
include the device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
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
    utterance_ids: np.ndarray
    content_sha256: np.ndarray
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
                f"{name} item {index} ({self.utterance_ids[index]}): stored frames have shape "
                f"({self.lengths[index]}, {self.dims[index]}); need T >= 1 and D = {input_dim}"
            )

    def capacity(self, workers: int, batch_size: int) -> int:
        """Utterances one worker's buffer holds: its share of ``buffer_size``, a whole number of batches."""
        share = self.buffer_size // max(workers, 1)
        return max(batch_size, share - share % batch_size)

    def read_unit(self, unit: Unit) -> Iterator[tuple[int, np.ndarray]]:
        """(item index, float16 frames) for every item of ``unit``, checked against the stored digests."""
        rows = [
            (
                self.utterance_ids[i],
                self.content_sha256[i],
                unit.file,
                int(self.rows[i]),
                int(self.lengths[i]),
                int(self.dims[i]),
            )
            for i in unit.items
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


def shard_units(store: FeatureStore, eval_sets: Sequence[str], files: Sequence[str], rows: np.ndarray) -> list[Unit]:
    """Item indices grouped by (eval set, shard, row group), in shard row order; each shard's footer is read once."""
    frame = pd.DataFrame({"eval_set": eval_sets, "file": files, "row": rows})
    units: list[Unit] = []
    starts: dict[str, np.ndarray] = {}
    for (eval_set, file), part in frame.groupby(["eval_set", "file"], sort=True):
        if file not in starts:
            metadata = pq.ParquetFile(store.root / file).metadata
            starts[file] = np.cumsum([0] + [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)])
        part = part.sort_values("row", kind="stable")
        groups = np.searchsorted(starts[file], part["row"].to_numpy(), side="right") - 1
        items = part.index.to_numpy()
        for group in np.unique(groups):
            units.append(Unit(str(eval_set), str(file), items[groups == group]))
    return units
