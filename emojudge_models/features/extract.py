"""Extraction runners: compute what the store lacks, reuse what it has, and index the partition.

Audio: cache lookup by (audio SHA-256, encoder key) -> length-bucketed batches -> background decoding (and the
train-set waveform normalisation, in place, on the decoding threads) -> one padded forward pass per batch (an
encoder with ``encode_for_store`` converts to fp16 and pools on its device and copies back asynchronously) -> fp16
shards flushed every ``flush_every`` clips by writer threads -> ``feature_index`` rows of each eval set replaced in
one transaction. A CUDA out-of-memory halves the padded-audio budget for the rest of the run, with one log line.
Only clip metadata is held for the whole partition; audio and frames are held for a few batches and one shard at
a time. The warehouse is touched only in short sessions the store opens (lookups before, one vector insert per
group of completed shards or of text vectors, the index at the end), never while the model runs, so other
processes' writers are not held up by a long extraction.
Per-clip problems (undecodable file, changed file, encoder error, non-finite output) are returned in the
report, never raised; :func:`failed_share_error` says when there are too many of them for the run to count.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emojudge_models.encoders.base import FLOAT16_MAX, AudioEncoder, StoreFrames, TextEncoder, frame_problem
from emojudge_models.episodes.sources import AudioSource, SegmentSource, load_segment
from emojudge_models.features.batching import auto_batch_seconds, auto_lanes, plan_batches, split_to_budget
from emojudge_models.features.loader import BackgroundLoader, failure_reason
from emojudge_models.features.store import (
    FRAME_DTYPE,
    TEXT_VECTOR_DTYPE,
    FeatureStore,
    IndexRow,
    StoredFrames,
    Verify,
    pooled_vector,
)
from emojudge_models.features.waveform_stats import NormalizedAudioEncoder, WaveformStats, normalize_in_place
from emojudge_models.ingest.audio import DEFAULT_MAX_DURATION_S, decode
from emojudge_models.sample_rate import SAMPLE_RATE_HZ
from emojudge_models.settings import default

_LOG = logging.getLogger(__name__)

INDEX_IDLE_FACTOR = 9.0
"""Caller time between two vector-insert sessions, as a multiple of the last session's length (see
``_ShardWriter._insert_vectors``)."""

ProgressCallback = Callable[[int, int], None]
"""Called with (items done, items to compute) after every batch."""


@dataclass(frozen=True)
class Clip:
    eval_set: str
    utterance_id: str
    audio_path: AudioSource
    audio_sha256: str
    duration_s: float


@dataclass(frozen=True)
class TextItem:
    eval_set: str
    utterance_id: str
    text: str | None


@dataclass
class ExtractionReport:
    """What a run did. ``computed`` counts forward-passed contents; ``reused`` counts index rows served from the
    cache (stored earlier, or the same content under another id in this run); ``frames`` and ``audio_seconds``
    cover the computed clips, so ``throughput_x_realtime`` is the speed of the work actually done."""

    encoder_key: str
    computed: int = 0
    reused: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    frames: int = 0
    audio_seconds: float = 0.0
    wall_s: float = 0.0

    @property
    def throughput_x_realtime(self) -> float:
        return self.audio_seconds / self.wall_s if self.wall_s > 0 else 0.0

    def as_metadata(self) -> dict[str, Any]:
        """Flat values for asset metadata."""
        return {
            "encoder_key": self.encoder_key,
            "computed": self.computed,
            "reused": self.reused,
            "failed": len(self.failed),
            "frames": self.frames,
            "audio_seconds": round(self.audio_seconds, 3),
            "wall_s": round(self.wall_s, 3),
            "throughput_x_realtime": round(self.throughput_x_realtime, 2),
        }


def failed_share_error(report: ExtractionReport, max_share: float) -> str | None:
    """One line saying why a run whose clips mostly failed must not count as done (every clip failed, or more
    than ``max_share`` of them), with the most common reason; None when the run is fine."""
    total = report.computed + report.reused + len(report.failed)
    failed = len(report.failed)
    if failed == 0 or (failed < total and failed / total <= max_share):
        return None
    reason, count = Counter(reason for _, reason in report.failed).most_common(1)[0]
    share = "every clip" if failed == total else f"{failed / total:.0%} > {max_share:.0%}"
    return f"{failed} of {total} clips failed ({share}); most common reason ({count}x): {reason}"


def text_sha256(text: str) -> str:
    """Content hash of a transcript: SHA-256 of its UTF-8 bytes, exactly as given."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _unique_utterances(items: Iterable[Any], report: ExtractionReport) -> list[Any]:
    """Items with a first-seen (eval_set, utterance_id); later duplicates go to ``report.failed``."""
    seen: set[tuple[str, str]] = set()
    unique = []
    for item in items:
        identity = (item.eval_set, item.utterance_id)
        if identity in seen:
            report.failed.append((item.utterance_id, f"duplicate utterance id in eval set {item.eval_set!r}"))
            continue
        seen.add(identity)
        unique.append(item)
    return unique


def _load_clip(clip: Clip, max_duration_s: float) -> np.ndarray:
    """Decode a clip (one read) after checking its bytes still hash to the ingested SHA-256 (the cache identity);
    an episode segment is cut from its episode, which :func:`load_segment` checks against the episode's hash."""
    if isinstance(clip.audio_path, SegmentSource):
        return load_segment(clip.audio_path)
    return decode(clip.audio_path, max_duration_s, expected_sha256=clip.audio_sha256).wave


def _check_frames(frames: np.ndarray, dim: int, max_abs: float = FLOAT16_MAX) -> str | None:
    """Why an encoder output cannot be stored, or None when it can (two passes, no temporaries)."""
    if frames.ndim != 2 or frames.shape[1] != dim or frames.shape[0] == 0:
        return frame_problem(frames.shape, dim, True, 0.0)
    low, high = float(frames.min()), float(frames.max())
    if not (np.isfinite(low) and np.isfinite(high)):
        return "encoder output contains NaN or inf"
    if max(high, -low) > max_abs:
        return f"encoder output exceeds {max_abs:g}, the largest value the store keeps"
    return None


def _store_frames(output: np.ndarray, dim: int) -> StoreFrames | str:
    """Checks, fp16 frames and pooled vector of a float32 encoder output, on the host (encoders without
    ``encode_for_store``)."""
    reason = _check_frames(output, dim)
    return reason if reason is not None else StoreFrames(output.astype(np.float16), pooled_vector(output))


def _encode_guarded(encode: Callable[[list[Any]], Sequence[np.ndarray]], inputs: list[Any]) -> list[np.ndarray | str]:
    """Encoder outputs, or a failure reason per input; a failing batch is retried one input at a time."""
    try:
        outputs = list(encode(inputs))
        if len(outputs) != len(inputs):
            raise ValueError(f"encoder returned {len(outputs)} outputs for {len(inputs)} inputs")
        return outputs
    except Exception as error:  # noqa: BLE001 - a model failure is reported per clip, never raised
        if len(inputs) == 1:
            return [f"encoder failed: {failure_reason(error)}"]
        return [result for single in inputs for result in _encode_guarded(encode, [single])]


def _is_out_of_memory(error: BaseException) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(error, torch.cuda.OutOfMemoryError)


def _release_cached_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass(frozen=True)
class _Launched:
    """Part of a batch handed to the encoder: how many clips, and what yields their results (on a writer)."""

    count: int
    resolve: Callable[[], list[StoreFrames | str]]


class _BatchRunner:
    """Runs the encoder on the model thread. After a CUDA out-of-memory the padded-audio budget is halved for the
    failed batch (split and retried) and for every later one, with one log line each time; any other failure is
    retried one clip at a time, so only the clips that fail are reported."""

    def __init__(self, encoder: AudioEncoder, warn: Callable[[str], None]) -> None:
        self._encoder, self._warn = encoder, warn
        self._for_store = getattr(encoder, "encode_for_store", None)
        self.budget_s: float | None = None

    def __call__(self, waves: list[np.ndarray]) -> list[_Launched]:
        seconds = [len(w) / SAMPLE_RATE_HZ for w in waves]
        groups = [range(len(waves))] if self.budget_s is None else split_to_budget(seconds, self.budget_s)
        return [launched for group in groups for launched in self._run([waves[i] for i in group])]

    def _launch(self, waves: list[np.ndarray]) -> _Launched:
        if self._for_store is not None:
            return _Launched(len(waves), self._for_store(waves).result)
        outputs = list(self._encoder.encode_batch(waves))
        if len(outputs) != len(waves):
            raise ValueError(f"encoder returned {len(outputs)} outputs for {len(waves)} inputs")
        dim = self._encoder.dim
        return _Launched(len(waves), lambda: [_store_frames(output, dim) for output in outputs])

    def _run(self, waves: list[np.ndarray]) -> list[_Launched]:
        try:
            return [self._launch(waves)]
        except Exception as error:  # noqa: BLE001 - a model failure is reported per clip, never raised
            reason = f"encoder failed: {failure_reason(error)}"
            out_of_memory = _is_out_of_memory(error)
        # Retried only here, after the except block: its traceback (and the failed pass's tensors) is gone.
        if len(waves) == 1:
            return [_Launched(1, lambda: [reason])]
        if not out_of_memory:
            return [launched for wave in waves for launched in self._run([wave])]
        seconds = [len(w) / SAMPLE_RATE_HZ for w in waves]
        padded = len(waves) * max(seconds)
        self.budget_s = padded / 2
        _release_cached_memory()
        self._warn(
            f"CUDA out of memory on a batch of {len(waves)} clips ({padded:.0f} s padded): batch halved to "
            f"{self.budget_s:.0f} s of padded audio for the rest of the run"
        )
        groups = split_to_budget(seconds, self.budget_s)
        return [launched for group in groups for launched in self._run([waves[i] for i in group])]


@dataclass
class _Processed:
    """What the writer thread did with one batch: rejected clips, accepted clips, shards it completed."""

    failures: list[tuple[str, str]] = field(default_factory=list)
    accepted: list[tuple[str, int, int]] = field(default_factory=list)
    shards: list[tuple[list[str], list[StoredFrames], np.ndarray]] = field(default_factory=list)


def _resolve(launched: list[_Launched]) -> list[StoreFrames | str]:
    """Every clip's result in order; a part whose results cannot be fetched fails all of its clips."""
    results: list[StoreFrames | str] = []
    for part in launched:
        try:
            results.extend(part.resolve())
        except Exception as error:  # noqa: BLE001 - reported per clip, like an encoder failure
            results.extend([f"encoder failed: {failure_reason(error)}"] * part.count)
    return results


class _WriterLane:
    """One writer thread and the shard it is filling; everything here runs on that thread."""

    def __init__(self, store: FeatureStore, key: str, flush_every: int, flush_bytes: int) -> None:
        self._store, self._key = store, key
        self._flush_every, self._flush_bytes = flush_every, flush_bytes
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-writer")
        self._buffer: list[tuple[str, np.ndarray]] = []
        self._vectors: list[np.ndarray] = []
        self._buffered_bytes = 0

    def process(self, clips: list[tuple[str, int]], launched: list[_Launched], flush: bool) -> _Processed:
        result = _Processed()
        for (sha, n_samples), output in zip(clips, _resolve(launched), strict=True):
            if isinstance(output, str):
                result.failures.append((sha, output))
                continue
            self._buffer.append((sha, output.frames))
            self._vectors.append(output.pooled)
            self._buffered_bytes += output.frames.nbytes
            result.accepted.append((sha, output.frames.shape[0], n_samples))
            if len(self._buffer) >= self._flush_every or self._buffered_bytes >= self._flush_bytes:
                result.shards.append(self._write())
        if flush and self._buffer:
            result.shards.append(self._write())
        return result

    def _write(self) -> tuple[list[str], list[StoredFrames], np.ndarray]:
        hashes = [sha for sha, _ in self._buffer]
        stored = self._store.write_shard(self._key, self._buffer)
        vectors = np.stack(self._vectors)
        self._buffer, self._vectors, self._buffered_bytes = [], [], 0
        return hashes, stored, vectors


class _ShardWriter:
    """Fetches each batch's results (waiting for the device copy), writes fp16 frames on ``lanes`` worker threads
    (each filling its own shard), so the model's thread only runs the model. Results return in submission order
    to the caller's thread, the only one touching DuckDB: a shard's vectors are inserted after its file is renamed
    into place, several shards per session when shards complete faster than sessions are cheap. A crash between
    the two leaves shards without vectors, which the next run recomputes. At most two batches per lane wait,
    which bounds memory."""

    def __init__(self, store: FeatureStore, key: str, flush_every: int, flush_bytes: int, lanes: int = 1) -> None:
        if lanes < 1:
            raise ValueError(f"write_workers must be >= 1, got {lanes}")
        self._store, self._key = store, key
        self._lanes = [_WriterLane(store, key, flush_every, flush_bytes) for _ in range(lanes)]
        self._submitted = 0
        self._jobs: deque[Future[_Processed]] = deque()
        self._unindexed: list[tuple[list[str], np.ndarray]] = []
        self._next_insert = 0.0
        self.stored: dict[str, StoredFrames] = {}

    def submit(self, clips: list[tuple[str, int]], launched: list[_Launched]) -> list[_Processed]:
        """Queue (content hash, n_samples) per clip with the launched encoder work; returns finished batches."""
        lane = self._lanes[self._submitted % len(self._lanes)]
        self._submitted += 1
        self._jobs.append(lane.pool.submit(lane.process, clips, launched, False))
        return self._collect(keep=2 * len(self._lanes))

    def finish(self) -> list[_Processed]:
        """Write every lane's last partial shard and return all outstanding results."""
        self._jobs.extend(lane.pool.submit(lane.process, [], [], True) for lane in self._lanes)
        return self._collect(keep=0)

    def _collect(self, keep: int) -> list[_Processed]:
        finished = []
        while len(self._jobs) > keep:
            result = self._jobs.popleft().result()
            for hashes, stored, vectors in result.shards:
                self._store.remember(self._key, hashes, stored)
                self.stored.update(zip(hashes, stored, strict=True))
                self._unindexed.append((hashes, vectors))
            finished.append(result)
        self._insert_vectors(now=keep == 0)
        return finished

    def _insert_vectors(self, now: bool) -> None:
        """Insert the completed shards' vectors in one session: the first at once, later ones once the caller has
        spent ``INDEX_IDLE_FACTOR`` times the last session's length on other work, so index sessions (a DuckDB
        open, insert and checkpoint: 0.1-0.5 s here) cost the model's thread at most ~10% at any shard rate."""
        if not self._unindexed or (not now and time.perf_counter() < self._next_insert):
            return
        started = time.perf_counter()
        hashes = [sha for shard_hashes, _ in self._unindexed for sha in shard_hashes]
        self._store.add_vectors(self._key, "audio", hashes, np.concatenate([v for _, v in self._unindexed]))
        self._unindexed = []
        self._next_insert = time.perf_counter() + INDEX_IDLE_FACTOR * (time.perf_counter() - started)

    def __enter__(self) -> _ShardWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for lane in self._lanes:
            lane.pool.shutdown(wait=True, cancel_futures=True)


def _replace_partitions(
    store: FeatureStore,
    modality: str,
    key: str,
    eval_sets: Iterable[str],
    rows: dict[str, list[IndexRow]],
    run_id: str,
) -> None:
    for eval_set in eval_sets:
        store.replace_partition(eval_set, modality, key, rows.get(eval_set, []), run_id)


def _device_of(encoder: AudioEncoder) -> str:
    """The device an encoder runs on (``cpu`` for encoders that do not say)."""
    return str(getattr(encoder, "device", "cpu"))


def extract_audio_features(
    store: FeatureStore,
    encoder: AudioEncoder,
    clips: Iterable[Clip],
    *,
    run_id: str,
    batch_seconds: float | None = default("batch_seconds"),
    normalize: WaveformStats | None = None,
    flush_every: int = 256,
    flush_bytes: int = 256 << 20,
    decode_workers: int | None = default("decode_workers"),
    write_workers: int | None = default("write_workers"),
    prefetch_batches: int = 2,
    verify: Verify = "full",
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    on_progress: ProgressCallback | None = None,
    on_warning: Callable[[str], None] = _LOG.warning,
) -> ExtractionReport:
    """Frames for every clip under the encoder's key (with ``normalize``'s key when given), computing only
    contents the store lacks, then replace the ``feature_index`` rows of each eval set among ``clips``.

    ``batch_seconds`` bounds padded audio per forward pass (clips x longest clip); None: by the encoder's device
    (``batching.auto_batch_seconds``: 100 s on CPU, from free memory on CUDA, ~1,000 s on a large GPU). An
    out-of-memory halves it (``on_warning`` gets one line) and the run continues. ``decode_workers`` threads
    decode (and normalise) audio and ``write_workers`` threads write frames (each filling its own shard) while
    the model runs; None: by device (``batching.auto_lanes``). Memory: ``prefetch_batches + 2`` batches of
    audio, two batches of frames per writer and one shard per writer.
    """
    started = time.perf_counter()
    device = _device_of(encoder)
    lanes = auto_lanes(device)
    decode_workers, write_workers = decode_workers or lanes[0], write_workers or lanes[1]
    keyed: AudioEncoder = NormalizedAudioEncoder(encoder, normalize) if normalize is not None else encoder
    key = store.register_encoder(keyed, "audio")
    report = ExtractionReport(encoder_key=key)
    clip_list = _unique_utterances(clips, report)
    stored = store.lookup(key, {c.audio_sha256 for c in clip_list}, verify)
    cached_hashes = store.stored_vectors(key, stored)
    leaders: dict[str, Clip] = {}
    for clip in clip_list:
        if clip.audio_sha256 not in cached_hashes:
            leaders.setdefault(clip.audio_sha256, clip)
    budget = batch_seconds or (auto_batch_seconds(device) if leaders else 1.0)
    batches = plan_batches(list(leaders.values()), lambda c: c.duration_s, budget)
    failed_by_sha: dict[str, str] = {}

    def load(clip: Clip) -> np.ndarray:
        wave = _load_clip(clip, max_duration_s)
        return wave if normalize is None else normalize_in_place(wave, normalize)

    def absorb(results: list[_Processed]) -> None:
        for result in results:
            failed_by_sha.update(result.failures)
            for _, n_frames, n_samples in result.accepted:
                report.computed += 1
                report.frames += n_frames
                report.audio_seconds += n_samples / SAMPLE_RATE_HZ

    done = 0
    run = _BatchRunner(encoder, on_warning)
    with (
        BackgroundLoader(batches, load, decode_workers, prefetch_batches) as loader,
        _ShardWriter(store, key, flush_every, flush_bytes, write_workers) as writer,
    ):
        for loaded in loader:
            failed_by_sha.update((clip.audio_sha256, reason) for clip, reason in loaded.failures)
            launched = run(loaded.waves) if loaded.waves else []
            identities = [(c.audio_sha256, len(w)) for c, w in zip(loaded.items, loaded.waves, strict=True)]
            absorb(writer.submit(identities, launched))
            done += len(loaded.items) + len(loaded.failures)
            if on_progress is not None:
                on_progress(done, len(leaders))
        absorb(writer.finish())
    locations = {sha: stored[sha] for sha in cached_hashes} | writer.stored
    rows: dict[str, list[IndexRow]] = defaultdict(list)
    for clip in clip_list:
        sha = clip.audio_sha256
        if sha in failed_by_sha:
            report.failed.append((clip.utterance_id, failed_by_sha[sha]))
            continue
        if leaders.get(sha) is not clip:
            report.reused += 1
        location = locations[sha]
        rows[clip.eval_set].append(
            IndexRow(clip.utterance_id, sha, location.n_frames, location.dim, FRAME_DTYPE, location.file, location.row)
        )
    _replace_partitions(store, "audio", key, dict.fromkeys(c.eval_set for c in clip_list), rows, run_id)
    report.wall_s = time.perf_counter() - started
    return report


def extract_text_features(
    store: FeatureStore,
    encoder: TextEncoder,
    items: Iterable[TextItem],
    *,
    run_id: str,
    batch_size: int = 64,
    write_every: int = 1024,
    on_progress: ProgressCallback | None = None,
) -> ExtractionReport:
    """One vector per transcript into ``utterance_vectors`` (cached by SHA-256 of the text), then replace the
    text ``feature_index`` rows of each eval set among ``items``. Texts are batched in length order; vectors are
    written in one short session per ``write_every`` of them (and at the end)."""
    started = time.perf_counter()
    key = store.register_encoder(encoder, "text")
    report = ExtractionReport(encoder_key=key)
    item_list = _unique_utterances(items, report)
    usable = []
    for item in item_list:
        if item.text is None or not item.text.strip():
            report.failed.append((item.utterance_id, "no transcript (empty or missing text)"))
        else:
            usable.append((item, text_sha256(item.text)))
    present = store.stored_vectors(key, {sha for _, sha in usable})
    leaders: dict[str, TextItem] = {}
    for item, sha in usable:
        if sha not in present:
            leaders.setdefault(sha, item)
    pending = sorted(leaders.items(), key=lambda entry: len(entry[1].text or ""))
    failed_by_sha: dict[str, str] = {}
    good_hashes: list[str] = []
    good_vectors: list[np.ndarray] = []
    for start in range(0, len(pending), batch_size):
        batch = pending[start : start + batch_size]
        outputs = _encode_guarded(lambda texts: list(encoder.encode_batch(texts)), [i.text for _, i in batch])
        for (sha, _), output in zip(batch, outputs, strict=True):
            reason = output if isinstance(output, str) else _check_frames(output[None, :], encoder.dim, np.inf)
            if reason is None:
                good_hashes.append(sha)
                good_vectors.append(output)
                report.computed += 1
                report.frames += 1
            else:
                failed_by_sha[sha] = reason
        last = start + batch_size >= len(pending)
        if good_hashes and (len(good_hashes) >= write_every or last):
            store.add_vectors(key, "text", good_hashes, np.stack(good_vectors))
            good_hashes, good_vectors = [], []
        if on_progress is not None:
            on_progress(start + len(batch), len(pending))
    rows: dict[str, list[IndexRow]] = defaultdict(list)
    for item, sha in usable:
        if sha in failed_by_sha:
            report.failed.append((item.utterance_id, failed_by_sha[sha]))
            continue
        if leaders.get(sha) is not item:
            report.reused += 1
        rows[item.eval_set].append(IndexRow(item.utterance_id, sha, 1, encoder.dim, TEXT_VECTOR_DTYPE))
    _replace_partitions(store, "text", key, dict.fromkeys(i.eval_set for i in item_list), rows, run_id)
    report.wall_s = time.perf_counter() - started
    return report
