"""Frame-level features in fp16 Parquet shards, utterance vectors and the partition index in DuckDB.

Layout under ``root`` (``$EMOJUDGE_HOME/features``): ``<encoder_key>/shard-<UTC time, µs>-<random>.parquet``, one row
per clip content with columns

- ``content_sha256`` (string): the clip's audio SHA-256, the cache identity together with the encoder key;
- ``n_frames``, ``dim`` (int32);
- ``frames`` (``list<halffloat>``): the (n_frames, dim) matrix flattened row-major, float16. Python reads the
  list's value buffer zero-copy into numpy; DuckDB reads the column as ``FLOAT[]``. Shards of format 1 stored
  the same bytes as a ``binary`` value and stay readable;
- ``frames_sha256`` (string): SHA-256 of ``frames`` (hardware-accelerated on current x86), checked on every read.

Shards are immutable and content-addressed, so they are the cache: ``lookup`` scans the shards of a key
(two small columns each), not the index, and a clip stored for one eval set is found for any other. Shards
are written under a hidden temporary name, fsynced and renamed; their index rows and vectors are written only
after the rename. Pages carry CRC checksums; a shard that fails to parse, fails a CRC or a row digest is
renamed to ``*.corrupt`` (kept for inspection, never read again) and its clips count as not stored.

DuckDB reads every column, e.g.
``SELECT content_sha256, n_frames, dim, frames[1:dim] AS first_frame FROM read_parquet('<root>/<key>/*.parquet')``;
pooled vectors are in table ``utterance_vectors``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from emojudge_models.encoders.base import AudioEncoder, TextEncoder, encoder_key
from emojudge_models.store import warehouse
from emojudge_models.store.warehouse import Connect, sql_text

log = logging.getLogger(__name__)

SHARD_FORMAT_VERSION = "2"
FRAME_DTYPE = "float16"
TEXT_VECTOR_DTYPE = "float32"
ROW_GROUP_BYTES = 4 << 20
"""Target row-group size: a read of a few clips decodes at most this much of a shard."""
VECTOR_BATCH_ROWS = 2048
"""Rows per record batch of :meth:`FeatureStore.iter_item_vectors` and :func:`arrow_rows`."""

SHARD_SCHEMA = pa.schema(
    [
        ("content_sha256", pa.string()),
        ("n_frames", pa.int32()),
        ("dim", pa.int32()),
        ("frames", pa.list_(pa.float16())),
        ("frames_sha256", pa.string()),
    ],
    metadata={
        "emojudge.shard_format": SHARD_FORMAT_VERSION,
        "emojudge.frames": "float16 list, the (n_frames, dim) matrix flattened row-major",
    },
)

Verify = Literal["footer", "full"]
Modality = Literal["audio", "text"]


class CorruptShardError(RuntimeError):
    """A shard that cannot be trusted; it has been quarantined and its clips must be recomputed."""


class MissingFeaturesError(KeyError):
    """Requested utterances have no features under this encoder key in the index."""


@dataclass(frozen=True)
class StoredFrames:
    """Where one clip's frames live: ``file`` relative to the store root, and its row in that shard."""

    file: str
    row: int
    n_frames: int
    dim: int


@dataclass(frozen=True)
class IndexRow:
    """One ``feature_index`` row of a partition (``file``/``row`` are None for text vectors)."""

    utterance_id: str
    content_sha256: str
    n_frames: int
    dim: int
    dtype: str
    file: str | None = None
    row: int | None = None


def frames_digest(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def pooled_vector(frames: np.ndarray) -> np.ndarray:
    """Utterance-level audio vector: per-dimension mean ++ standard deviation of the frames, float32."""
    frames = frames.astype(np.float32, copy=False)
    return np.concatenate([frames.mean(axis=0), frames.std(axis=0)]).astype(np.float32)


def _frame_bytes(array: pa.Array | pa.ChunkedArray) -> list[memoryview]:
    """Zero-copy views of each row's little-endian float16 bytes, from a ``list<halffloat>`` (format 2) or a
    ``binary`` (format 1) column."""
    array = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    if pa.types.is_binary(array.type):
        _, offsets_buffer, data_buffer = array.buffers()
        item_bytes, data_offset = 1, 0
    else:
        _, offsets_buffer, _, data_buffer = array.buffers()
        item_bytes, data_offset = 2, array.values.offset
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[array.offset : array.offset + len(array) + 1]
    data = memoryview(data_buffer) if data_buffer is not None else memoryview(b"")
    return [
        data[(data_offset + start) * item_bytes : (data_offset + stop) * item_bytes]
        for start, stop in itertools.pairwise(offsets)
    ]


def _query_arrow(con: duckdb.DuckDBPyConnection, query: str, params: list[Any]) -> pa.Table:
    """Arrow table of a query (``to_arrow_table`` in DuckDB 2, ``fetch_arrow_table`` in 1.x)."""
    relation = con.sql(query, params=params)
    fetch = getattr(relation, "to_arrow_table", None) or relation.fetch_arrow_table
    return fetch()


def arrow_rows(con: duckdb.DuckDBPyConnection, name: str, params: list[Any]) -> pa.Table:
    """The rows of the SQL file ``name`` as an Arrow table, fetched record batch by record batch: a fraction of the
    transient memory of ``.df()`` or a relation's Arrow table for the same rows (no pandas conversion, no copy of the
    whole result inside DuckDB)."""
    return con.execute(sql_text(name), params).to_arrow_reader(VECTOR_BATCH_ROWS).read_all().combine_chunks()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _shard_table(entries: Sequence[tuple[str, np.ndarray]]) -> pa.Table:
    frames = [np.ascontiguousarray(f, dtype="<f2") for _, f in entries]
    sizes = np.array([f.size for f in frames], dtype=np.int64)
    if sizes.sum() >= 2**31:
        raise ValueError(f"a shard holds at most 2**31 frame values, got {sizes.sum()}; lower flush_bytes")
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
    data = np.concatenate([f.reshape(-1) for f in frames]) if frames else np.empty(0, "<f2")
    values = pa.Array.from_buffers(pa.float16(), len(data), [None, pa.py_buffer(data)])
    frames_array = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)
    return pa.table(
        {
            "content_sha256": [sha for sha, _ in entries],
            "n_frames": pa.array([f.shape[0] for f in frames], pa.int32()),
            "dim": pa.array([f.shape[1] for f in frames], pa.int32()),
            "frames": frames_array,
            "frames_sha256": [frames_digest(v) for v in _frame_bytes(frames_array)],
        },
        schema=SHARD_SCHEMA,
    )


class FeatureStore:
    """Cache of encoder outputs keyed by (content SHA-256, encoder key), and the per-eval-set index over it.

    ``connect`` opens a warehouse session (tables ``encoders``, ``feature_index``, ``utterance_vectors``), e.g.
    ``functools.partial(warehouse.connect, home)``: every method that touches the warehouse opens its own short
    session and closes it before returning (``read_frames`` closes it before reading any shard), so no session is
    held while frames are computed, read or trained on. ``root`` is the shard directory. One writer object at a
    time; ``write_shard`` alone may run on another thread.
    """

    def __init__(self, connect: Connect, root: Path) -> None:
        self.connect = connect
        self.root = Path(root)
        self._locations: dict[str, dict[str, StoredFrames]] = {}
        self._scanned: dict[str, set[str]] = {}
        self._verified: set[str] = set()

    # Encoders -------------------------------------------------------------------------------------------

    def register_encoder(self, encoder: AudioEncoder | TextEncoder, modality: Modality) -> str:
        """Record the encoder's spec in ``encoders`` (once; a read when already there) and return its key."""
        key = encoder_key(encoder.spec)
        with self.connect() as con:
            if con.execute(sql_text("features/encoder_known.sql"), [key]).fetchall():
                return key
            con.execute(
                sql_text("features/register_encoder.sql"),
                [
                    key,
                    modality,
                    str(encoder.spec.get("kind", type(encoder).__name__)),
                    json.dumps(encoder.spec, sort_keys=True, default=str),
                    getattr(encoder, "frame_rate_hz", None),
                    int(encoder.dim),
                ],
            )
        return key

    # Shards: scan, verify, quarantine -------------------------------------------------------------------

    def _quarantine(self, relative: str, reason: str) -> None:
        path = self.root / relative
        log.warning("feature shard %s is corrupt (%s); quarantined, its clips will be recomputed", path, reason)
        if path.exists():
            os.replace(path, path.with_name(path.name + ".corrupt"))
        self._verified.discard(relative)

    def _forget(self, key: str) -> None:
        self._locations.pop(key, None)
        self._scanned.pop(key, None)

    def _scan(self, key: str) -> dict[str, StoredFrames]:
        """Map content hash -> location for every readable shard of ``key`` (newest shard wins)."""
        directory = self.root / key
        names = sorted(p.name for p in directory.glob("shard-*.parquet")) if directory.is_dir() else []
        if not self._scanned.get(key, set()) <= set(names):
            self._forget(key)
        scanned = self._scanned.setdefault(key, set())
        locations = self._locations.setdefault(key, {})
        for name in names:
            if name in scanned:
                continue
            relative = f"{key}/{name}"
            try:
                table = pq.ParquetFile(directory / name).read(columns=["content_sha256", "n_frames", "dim"])
            except (OSError, pa.ArrowException) as error:
                self._quarantine(relative, f"unreadable: {error}")
                continue
            columns = table.to_pydict()
            for row, (sha, n_frames, dim) in enumerate(
                zip(columns["content_sha256"], columns["n_frames"], columns["dim"], strict=True)
            ):
                locations[sha] = StoredFrames(relative, row, n_frames, dim)
            scanned.add(name)
        return locations

    def _check_rows(self, relative: str, table: pa.Table) -> None:
        """Raise ``CorruptShardError`` unless every row's size and digest match its frames."""
        values = _frame_bytes(table.column("frames"))
        expected = zip(
            table.column("n_frames").to_pylist(),
            table.column("dim").to_pylist(),
            table.column("frames_sha256").to_pylist(),
            strict=True,
        )
        for row, (value, (n_frames, dim, digest)) in enumerate(zip(values, expected, strict=True)):
            if len(value) != n_frames * dim * 2 or frames_digest(value) != digest:
                raise CorruptShardError(f"{self.root / relative}: row {row} does not match its stored digest")

    def _verify_file(self, relative: str) -> bool:
        """Read every page (CRC-checked) and every row digest of a shard; quarantine it on any mismatch."""
        if relative in self._verified:
            return True
        try:
            shard = pq.ParquetFile(self.root / relative, page_checksum_verification=True)
            for group in range(shard.num_row_groups):
                self._check_rows(relative, shard.read_row_group(group))
        except (OSError, pa.ArrowException, CorruptShardError) as error:
            self._quarantine(relative, str(error))
            return False
        self._verified.add(relative)
        return True

    def lookup(self, key: str, content_hashes: Iterable[str], verify: Verify = "full") -> dict[str, StoredFrames]:
        """Stored frames among ``content_hashes``.

        ``verify="footer"`` trusts any shard whose footer and hash column read; ``"full"`` also checks every
        page CRC and row digest of the shards that hold a hit (once per shard per store object).
        """
        wanted = set(content_hashes)
        while True:
            locations = self._scan(key)
            hits = {sha: locations[sha] for sha in wanted if sha in locations}
            if verify == "footer":
                return hits
            bad = [f for f in sorted({loc.file for loc in hits.values()}) if not self._verify_file(f)]
            if not bad:
                return hits
            self._forget(key)

    # Writes ----------------------------------------------------------------------------------------------

    def write_shard(self, key: str, entries: Sequence[tuple[str, np.ndarray]]) -> list[StoredFrames]:
        """Write (content hash, float16 frames) rows as one new shard; file I/O only, safe on a worker thread."""
        directory = self.root / key
        directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        name = f"shard-{stamp}-{uuid.uuid4().hex[:8]}.parquet"
        partial = directory / f".{name}.partial"
        table = _shard_table(entries)
        row_bytes = max(1, table.column("frames").nbytes // max(1, len(entries)))
        pq.write_table(
            table,
            partial,
            row_group_size=max(1, ROW_GROUP_BYTES // row_bytes),
            compression="none",
            use_dictionary=False,
            write_statistics=["content_sha256", "n_frames", "dim"],
            write_page_checksum=True,
        )
        del table
        pa.default_memory_pool().release_unused()  # the shard's buffers: Arrow's pool would keep them
        _fsync(partial)
        os.replace(partial, directory / name)
        _fsync(directory)
        relative = f"{key}/{name}"
        return [StoredFrames(relative, row, f.shape[0], f.shape[1]) for row, (_, f) in enumerate(entries)]

    def remember(self, key: str, hashes: Sequence[str], stored: Sequence[StoredFrames]) -> None:
        """Make a shard written by ``write_shard`` visible to ``lookup`` without rescanning."""
        locations = self._scan(key)
        for sha, location in zip(hashes, stored, strict=True):
            locations[sha] = location
            self._scanned[key].add(Path(location.file).name)
            self._verified.add(location.file)

    def add_vectors(self, key: str, modality: Modality, hashes: Sequence[str], vectors: np.ndarray) -> None:
        """Insert utterance-level vectors (rows of ``vectors``); existing (key, hash) rows are kept."""
        if not hashes:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        offsets = pa.array(np.arange(len(hashes) + 1, dtype=np.int32) * vectors.shape[1])
        table = pa.table(
            {
                "content_sha256": list(hashes),
                "vector": pa.ListArray.from_arrays(offsets, pa.array(vectors.reshape(-1))),
            }
        )
        # Vectors matter to readers only with their index rows (replace_partition), whose session publishes them.
        with self.connect(publish=False) as con, _registered(con, "_emojudge_new_vectors", table):
            con.execute(sql_text("features/insert_vectors.sql"), [key, modality])

    def stored_vectors(self, key: str, content_hashes: Iterable[str]) -> set[str]:
        """The hashes among ``content_hashes`` that have an utterance vector under ``key``."""
        table = pa.table({"content_sha256": pa.array(sorted(set(content_hashes)), pa.string())})
        with self.connect() as con, _registered(con, "_emojudge_wanted", table):
            rows = con.execute(sql_text("features/stored_vectors.sql"), [key]).fetchall()
        return {sha for (sha,) in rows}

    def replace_partition(
        self, eval_set: str, modality: Modality, key: str, rows: Sequence[IndexRow], run_id: str
    ) -> None:
        """Replace the eval set's ``feature_index`` rows for (modality, key) in one transaction."""
        frame = pd.DataFrame(
            {
                "utterance_id": [r.utterance_id for r in rows],
                "modality": modality,
                "encoder_key": key,
                "content_sha256": [r.content_sha256 for r in rows],
                "n_frames": pd.array([r.n_frames for r in rows], dtype="int32"),
                "dim": pd.array([r.dim for r in rows], dtype="int32"),
                "dtype": [r.dtype for r in rows],
                "file": pd.array([r.file for r in rows], dtype="string"),
                "row": pd.array([r.row for r in rows], dtype="Int32"),
                "run_id": run_id,
            }
        )
        with self.connect() as con:
            warehouse.replace_partition(
                con, "feature_index", eval_set, frame, where={"modality": modality, "encoder_key": key}
            )

    # Reads -----------------------------------------------------------------------------------------------

    def speaker_rows(self, eval_sets: Sequence[str], key: str) -> pa.Table:
        """(eval_set, utterance_id, speaker_id, n_frames) of the utterances of ``eval_sets`` indexed under ``key``, in
        no particular order."""
        with self.connect() as con, _bounded_scan(con):
            return arrow_rows(con, "features/speaker_rows.sql", [key, list(eval_sets)])

    def _index_rows(
        self, eval_set: str, utterance_ids: Iterable[str] | None, key: str, modality: Modality
    ) -> list[tuple[Any, ...]]:
        wanted = None if utterance_ids is None else list(dict.fromkeys(utterance_ids))
        with self.connect() as con:
            rows = con.execute(
                sql_text("features/index_rows.sql"), [eval_set, key, modality, wanted, wanted]
            ).fetchall()
        if wanted is not None and len(rows) < len(wanted):
            missing = sorted(set(wanted) - {r[0] for r in rows})
            raise MissingFeaturesError(
                f"{len(missing)} utterance(s) of eval set {eval_set!r} have no {modality} features under encoder "
                f"{key} (first: {missing[:5]}); materialise the features first"
            )
        return rows

    def read_frames(
        self, eval_set: str, utterance_ids: Iterable[str] | None, key: str
    ) -> Iterator[tuple[str, np.ndarray]]:
        """Lazily yield (utterance_id, float16 (n_frames, dim)) in storage order, one row group in memory.

        ``utterance_ids=None`` reads the whole partition. Unknown ids raise ``MissingFeaturesError`` now;
        a shard failing its checks raises ``CorruptShardError`` (after quarantining it) instead of yielding.
        """
        rows = self._index_rows(eval_set, utterance_ids, key, "audio")
        by_file: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        for row in rows:
            by_file[row[2]].append(row)
        return self._iter_frames(eval_set, by_file)

    def _iter_frames(
        self, eval_set: str, by_file: dict[str, list[tuple[Any, ...]]]
    ) -> Iterator[tuple[str, np.ndarray]]:
        for relative, rows in by_file.items():
            yield from self.read_shard_rows(eval_set, relative, rows)

    def item_locations(self, items: pa.Table, key: str) -> pa.Table:
        """Where the audio frames of ``items`` (eval_set, utterance_id, item: 0..N-1) are stored: item,
        content_sha256, file, row, n_frames, dim of each item indexed under ``key``, in no particular order. The join
        runs in DuckDB, so no other utterance of the sets is read into Python."""
        with self.connect() as con, _registered(con, "_emojudge_items", items), _bounded_scan(con):
            return arrow_rows(con, "features/item_locations.sql", [key])

    def iter_item_vectors(
        self, items: pa.Table, key: str, batch_rows: int = VECTOR_BATCH_ROWS
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(item numbers (k,), float32 (k, dim)) of the stored vectors of ``items`` (eval_set, utterance_id, item)
        under ``key``, at most ``batch_rows`` at a time and in no particular order: memory bounded by one batch and
        DuckDB's bounded buffer pool whatever the set's size. The read session stays open until the iterator is
        exhausted or closed, so consume it without slow work in between."""
        with self.connect() as con, _registered(con, "_emojudge_items", items), _bounded_scan(con):
            reader = con.execute(sql_text("features/item_vectors.sql"), [key]).to_arrow_reader(batch_rows)
            for batch in reader:
                flat = batch.column("vector").flatten().to_numpy(zero_copy_only=False)
                yield batch.column("item").to_numpy(), flat.astype(np.float32).reshape(batch.num_rows, -1)

    def read_shard_rows(
        self, eval_set: str, relative: str, rows: Sequence[tuple[Any, ...]]
    ) -> Iterator[tuple[str, np.ndarray]]:
        """Lazily yield (utterance_id, float16 frames) for index rows (utterance_id, content_sha256, file, row,
        n_frames, dim) of the one shard ``relative``, by row group, in the given order within a row group; every row
        checked against its digest. No warehouse session: safe in a DataLoader worker process."""
        advice = f"re-materialise the audio features of eval set {eval_set!r} to recompute its clips"
        path = self.root / relative
        if not path.is_file():
            raise CorruptShardError(f"{path}: shard is missing; {advice}")
        try:
            shard = pq.ParquetFile(path, page_checksum_verification=True)
            group_starts = np.cumsum([0] + [shard.metadata.row_group(g).num_rows for g in range(shard.num_row_groups)])
            wanted_by_group: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
            for row in rows:
                wanted_by_group[int(np.searchsorted(group_starts, row[3], side="right")) - 1].append(row)
            for group, group_rows in sorted(wanted_by_group.items()):
                table = shard.read_row_group(group)
                values = _frame_bytes(table.column("frames"))
                hashes = table.column("content_sha256").to_pylist()
                digests = table.column("frames_sha256").to_pylist()
                for utterance_id, sha, _, row, n_frames, dim in group_rows:
                    local = row - int(group_starts[group])
                    value = values[local]
                    if (
                        hashes[local] != sha
                        or len(value) != n_frames * dim * 2
                        or frames_digest(value) != digests[local]
                    ):
                        raise CorruptShardError(f"{path}: row {row} does not match its index entry or digest")
                    yield utterance_id, np.frombuffer(value, dtype="<f2").reshape(n_frames, dim).copy()
                del table, values
                pa.default_memory_pool().release_unused()  # a decoded row group is several times its frames
        except (OSError, pa.ArrowException, CorruptShardError, IndexError) as error:
            self._quarantine(relative, str(error))
            self._forget(relative.split("/", 1)[0])
            raise CorruptShardError(f"{path}: {error}; {advice}") from error

    def read_vectors(
        self, eval_set: str, utterance_ids: Iterable[str] | None, key: str
    ) -> tuple[list[str], np.ndarray]:
        """(utterance ids, float32 (n, dim)) for audio (mean ++ std) or text vectors under ``key``.

        Rows follow ``utterance_ids`` when given (unknown ids raise ``MissingFeaturesError``), else id order.
        """
        wanted = None if utterance_ids is None else list(dict.fromkeys(utterance_ids))
        with self.connect() as con:
            table = _query_arrow(con, sql_text("features/read_vectors.sql"), [eval_set, key, wanted, wanted])
        ids = table.column("utterance_id").to_pylist()
        flat = table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        matrix = flat.astype(np.float32).reshape(len(ids), -1) if ids else np.empty((0, 0), np.float32)
        if wanted is None:
            return ids, matrix
        position = {utterance_id: i for i, utterance_id in enumerate(ids)}
        missing = [u for u in wanted if u not in position]
        if missing:
            raise MissingFeaturesError(
                f"{len(missing)} utterance(s) of eval set {eval_set!r} have no vectors under encoder {key} "
                f"(first: {missing[:5]}); materialise the features first"
            )
        return wanted, matrix[[position[u] for u in wanted]]


@contextmanager
def _bounded_scan(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """DuckDB's buffer pool and threads bounded for the statements inside the block (``features/bounded_scan.sql``):
    a scan over every vector of a set otherwise keeps each table block it read until the session ends."""
    con.execute(sql_text("features/bounded_scan.sql"))
    try:
        yield
    finally:
        con.execute(sql_text("features/unbounded_scan.sql"))


@contextmanager
def _registered(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> Iterator[None]:
    """An Arrow table visible to DuckDB as ``name`` for the statements inside the block."""
    con.register(name, table)
    try:
        yield
    finally:
        con.unregister(name)
