"""Feature store and extraction runners: caching, keys, integrity, partition index, streaming pieces."""

from __future__ import annotations

import csv
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from tiny_models import save_tiny_roberta

from emojudge_models.encoders.acoustic import AcousticEncoder
from emojudge_models.encoders.base import encoder_key
from emojudge_models.encoders.hf import HFAudioEncoder, HFTextEncoder
from emojudge_models.features.batching import plan_batches
from emojudge_models.features.extract import (
    Clip,
    TextItem,
    extract_audio_features,
    extract_text_features,
    text_sha256,
)
from emojudge_models.features.loader import BackgroundLoader
from emojudge_models.features.store import CorruptShardError, FeatureStore, MissingFeaturesError
from emojudge_models.features.waveform_stats import (
    NormalizedAudioEncoder,
    compute_waveform_stats,
    load_waveform_stats,
    save_waveform_stats,
)
from emojudge_models.ingest.audio import AudioRejected, file_sha256, load_wave
from emojudge_models.store import warehouse


class Counting:
    """Wraps an encoder and counts forward passes and the clips they saw."""

    def __init__(self, encoder) -> None:
        self.encoder = encoder
        self.spec = encoder.spec
        self.dim = encoder.dim
        self.frame_rate_hz = getattr(encoder, "frame_rate_hz", None)
        self.calls = 0
        self.inputs = 0
        self.seen: list = []

    def encode_batch(self, batch):
        self.calls += 1
        self.inputs += len(batch)
        self.seen.extend(batch)
        return self.encoder.encode_batch(batch)


class Sessions:
    """A FeatureStore ``connect`` over the test's connection that counts the sessions and knows when one is open."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.opened = 0
        self.is_open = False

    @contextmanager
    def __call__(self, publish: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        assert not self.is_open, "the store nested a session inside another"
        self.opened += 1
        self.is_open = True
        try:
            yield self.con
        finally:
            self.is_open = False


@pytest.fixture(scope="module")
def wavlm(tiny_wavlm: Path) -> HFAudioEncoder:
    return HFAudioEncoder(tiny_wavlm)


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    warehouse.migrate(connection)
    yield connection
    connection.close()


@pytest.fixture
def features_root(tmp_path: Path) -> Path:
    return tmp_path / "features"


@pytest.fixture(scope="module")
def ravdess_rows(ravdess_dir: Path) -> list[dict[str, str]]:
    with open(ravdess_dir / "manifest.csv", newline="") as handle:
        return list(csv.DictReader(handle))[:6]


def clips_of(rows: list[dict[str, str]], root: Path, eval_set: str = "dev") -> list[Clip]:
    return [Clip(eval_set, r["utterance_id"], root / r["path"], r["sha256"], float(r["duration_s"])) for r in rows]


def index_rows(con: duckdb.DuckDBPyConnection, eval_set: str, key: str) -> list[tuple]:
    return con.execute(
        """SELECT utterance_id, content_sha256, n_frames, dim, dtype, file, "row", run_id FROM feature_index
           WHERE eval_set = ? AND encoder_key = ? ORDER BY utterance_id""",
        [eval_set, key],
    ).fetchall()


def shards(root: Path, key: str) -> list[Path]:
    return sorted((root / key).glob("shard-*.parquet"))


def test_extraction_stores_frames_matching_the_model(
    con, features_root: Path, wavlm: HFAudioEncoder, ravdess_dir: Path, ravdess_rows
) -> None:
    counting = Counting(wavlm)
    clips = clips_of(ravdess_rows, ravdess_dir)
    store = FeatureStore(Sessions(con), features_root)
    report = extract_audio_features(store, counting, clips, run_id="run-1", batch_seconds=12.0)
    assert (report.computed, report.reused, report.failed) == (6, 0, [])
    assert 1 < counting.calls < 6, "clips must be batched, never one forward pass per clip"
    assert report.audio_seconds == pytest.approx(sum(c.duration_s for c in clips), abs=0.01)
    assert report.throughput_x_realtime > 0
    rows = index_rows(con, "dev", report.encoder_key)
    assert [r[0] for r in rows] == sorted(c.utterance_id for c in clips)
    duration = {c.utterance_id: c.duration_s for c in clips}
    for utterance_id, _, n_frames, dim, dtype, file, _, run_id in rows:
        assert dim == wavlm.model.config.hidden_size
        assert abs(n_frames - duration[utterance_id] * 50) <= 2
        assert (dtype, run_id) == ("float16", "run-1")
        assert (features_root / file).is_file()
    assert con.execute(
        "SELECT modality, kind, frame_rate_hz, dim FROM encoders WHERE encoder_key = ?", [report.encoder_key]
    ).fetchall() == [("audio", "hf", 50.0, 32)]

    read = dict(store.read_frames("dev", None, report.encoder_key))
    assert {u: f.shape for u, f in read.items()} == {r[0]: (r[2], r[3]) for r in rows}
    ids, vectors = store.read_vectors("dev", [clips[2].utterance_id, clips[0].utterance_id], report.encoder_key)
    assert ids == [clips[2].utterance_id, clips[0].utterance_id]
    assert vectors.shape == (2, 64)
    frames = read[clips[0].utterance_id].astype(np.float32)
    np.testing.assert_allclose(vectors[1], np.concatenate([frames.mean(0), frames.std(0)]), atol=2e-3)
    wave = load_wave(clips[0].audio_path)
    np.testing.assert_allclose(read[clips[0].utterance_id], wavlm.encode_batch([wave])[0], atol=5e-3, rtol=2e-3)
    with pytest.raises(MissingFeaturesError, match="nope"):
        store.read_frames("dev", ["nope"], report.encoder_key)


def test_no_warehouse_session_is_open_while_the_model_runs(
    con, features_root: Path, ravdess_dir: Path, ravdess_rows, tmp_path: Path
) -> None:
    sessions = Sessions(con)
    store = FeatureStore(sessions, features_root)
    seen_open: list[bool] = []
    vectors_before_pass: list[int] = []

    class Watching(AcousticEncoder):
        def encode_batch(self, waves):
            seen_open.append(sessions.is_open)
            vectors_before_pass.append(con.execute("SELECT count(*) FROM utterance_vectors").fetchall()[0][0])
            return super().encode_batch(waves)

    clips = clips_of(ravdess_rows[:5], ravdess_dir)
    report = extract_audio_features(store, Watching(), clips, run_id="r", flush_every=1, batch_seconds=4.0)
    assert report.computed == 5 and len(seen_open) >= 3
    assert not any(seen_open)
    # One short session per completed shard: vectors of earlier shards are stored while later clips still encode.
    assert vectors_before_pass[-1] > 0
    assert len(index_rows(con, "dev", report.encoder_key)) == 5

    texts = [f"sentence number {i} about the door" for i in range(7)]
    text_sessions = Sessions(con)
    text_store = FeatureStore(text_sessions, tmp_path / "text-features")

    class WatchingText(HFTextEncoder):
        def encode_batch(self, batch):
            seen_open.append(text_sessions.is_open)
            return super().encode_batch(batch)

    encoder = WatchingText(save_tiny_roberta(tmp_path / "roberta", texts * 5))
    items = [TextItem("dev", f"t{i}", t) for i, t in enumerate(texts)]
    text = extract_text_features(text_store, encoder, items, run_id="r", batch_size=2, write_every=4)
    assert text.computed == 7 and not any(seen_open)
    # register + stored lookup, two vector groups (4 and 3), one index replacement.
    assert text_sessions.opened == 5
    assert con.execute("SELECT count(*) FROM utterance_vectors WHERE modality = 'text'").fetchone()[0] == 7


def test_rerun_of_an_unchanged_partition_does_no_forward_pass(
    con, features_root: Path, wavlm: HFAudioEncoder, ravdess_dir: Path, ravdess_rows
) -> None:
    clips = clips_of(ravdess_rows, ravdess_dir)
    first = extract_audio_features(FeatureStore(Sessions(con), features_root), wavlm, clips, run_id="run-1")
    counting = Counting(wavlm)
    second = extract_audio_features(FeatureStore(Sessions(con), features_root), counting, clips, run_id="run-2")
    assert counting.calls == 0
    assert (second.encoder_key, second.computed, second.reused, second.frames) == (first.encoder_key, 0, 6, 0)
    rows = index_rows(con, "dev", first.encoder_key)
    assert len(rows) == 6 and {r[7] for r in rows} == {"run-2"}
    assert len(shards(features_root, first.encoder_key)) == 1


def test_same_clip_under_other_ids_and_eval_sets_is_computed_once(
    con, features_root: Path, wavlm: HFAudioEncoder, ravdess_dir: Path, ravdess_rows
) -> None:
    row = ravdess_rows[0]
    path, sha, duration = ravdess_dir / row["path"], row["sha256"], float(row["duration_s"])
    clips = [
        Clip("a", "u1", path, sha, duration),
        Clip("a", "u2", path, sha, duration),
        Clip("b", "x", path, sha, duration),
    ]
    counting = Counting(wavlm)
    store = FeatureStore(Sessions(con), features_root)
    report = extract_audio_features(store, counting, clips, run_id="r")
    assert counting.inputs == 1
    assert (report.computed, report.reused) == (1, 2)
    locations = {(r[5], r[6]) for s in ("a", "b") for r in index_rows(con, s, report.encoder_key)}
    assert len(locations) == 1
    later = extract_audio_features(store, counting, [Clip("c", "y", path, sha, duration)], run_id="r2")
    assert counting.inputs == 1 and later.reused == 1
    assert con.execute("SELECT count(*) FROM utterance_vectors").fetchone()[0] == 1


def test_changed_layer_is_a_new_key_and_recomputes(
    con, features_root: Path, tiny_wavlm: Path, wavlm: HFAudioEncoder, ravdess_dir: Path, ravdess_rows
) -> None:
    clips = clips_of(ravdess_rows[:3], ravdess_dir)
    last = extract_audio_features(FeatureStore(Sessions(con), features_root), wavlm, clips, run_id="r")
    counting = Counting(HFAudioEncoder(tiny_wavlm, layers=[1]))
    other = extract_audio_features(FeatureStore(Sessions(con), features_root), counting, clips, run_id="r")
    assert other.encoder_key != last.encoder_key
    assert (other.computed, other.reused, counting.inputs) == (3, 0, 3)
    assert len(index_rows(con, "dev", last.encoder_key)) == len(index_rows(con, "dev", other.encoder_key)) == 3


def corrupt_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(255 - b for b in data[middle : middle + 64])
    path.write_bytes(bytes(data))


@pytest.mark.reliability
def test_corrupt_shard_is_not_read_but_recomputed(
    con, features_root: Path, wavlm: HFAudioEncoder, ravdess_dir: Path, ravdess_rows
) -> None:
    clips = clips_of(ravdess_rows[:4], ravdess_dir)
    first = extract_audio_features(FeatureStore(Sessions(con), features_root), wavlm, clips, run_id="r1")
    original = dict(FeatureStore(Sessions(con), features_root).read_frames("dev", None, first.encoder_key))
    (shard,) = shards(features_root, first.encoder_key)
    corrupt_middle(shard)

    with pytest.raises(CorruptShardError, match="re-materialise"):
        list(FeatureStore(Sessions(con), features_root).read_frames("dev", None, first.encoder_key))
    assert not shard.exists() and shard.with_name(shard.name + ".corrupt").exists()

    counting = Counting(wavlm)
    again = extract_audio_features(FeatureStore(Sessions(con), features_root), counting, clips, run_id="r2")
    assert (again.computed, again.reused, counting.inputs) == (4, 0, 4)
    recovered = dict(FeatureStore(Sessions(con), features_root).read_frames("dev", None, first.encoder_key))
    for utterance_id, frames in original.items():
        np.testing.assert_array_equal(recovered[utterance_id], frames)


@pytest.mark.reliability
def test_corrupt_shard_is_caught_at_lookup_before_any_read(
    con, features_root: Path, wavlm: HFAudioEncoder, ravdess_dir: Path, ravdess_rows
) -> None:
    clips = clips_of(ravdess_rows[:2], ravdess_dir)
    first = extract_audio_features(FeatureStore(Sessions(con), features_root), wavlm, clips, run_id="r1")
    (shard,) = shards(features_root, first.encoder_key)
    corrupt_middle(shard)
    counting = Counting(wavlm)
    again = extract_audio_features(FeatureStore(Sessions(con), features_root), counting, clips, run_id="r2")
    assert (again.computed, counting.inputs) == (2, 2)
    assert shard.with_name(shard.name + ".corrupt").exists()


@pytest.mark.reliability
@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_truncated_or_missing_shard_is_recomputed(
    damage: str, con, features_root: Path, ravdess_dir: Path, ravdess_rows
) -> None:
    clips = clips_of(ravdess_rows[:3], ravdess_dir)
    encoder = AcousticEncoder()
    first = extract_audio_features(
        FeatureStore(Sessions(con), features_root), encoder, clips, run_id="r1", flush_every=2
    )
    damaged = max(shards(features_root, first.encoder_key), key=lambda f: pq.ParquetFile(f).metadata.num_rows)
    if damage == "truncate":
        damaged.write_bytes(damaged.read_bytes()[:-100])
    else:
        damaged.unlink()
    counting = Counting(encoder)
    again = extract_audio_features(
        FeatureStore(Sessions(con), features_root), counting, clips, run_id="r2", flush_every=2
    )
    assert again.computed == counting.inputs == 2
    assert again.reused == 1
    assert len(dict(FeatureStore(Sessions(con), features_root).read_frames("dev", None, first.encoder_key))) == 3


@pytest.mark.reliability
def test_bad_clips_are_reported_not_raised(
    con, features_root: Path, tmp_path: Path, ravdess_dir: Path, ravdess_rows
) -> None:
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(np.random.default_rng(0).bytes(5_000))
    good = clips_of(ravdess_rows[:2], ravdess_dir)
    changed = Clip("dev", "changed", good[0].audio_path, "0" * 64, good[0].duration_s)
    clips = [
        *good,
        Clip("dev", "missing", tmp_path / "nowhere.wav", "1" * 64, 2.0),
        Clip("dev", "garbage", garbage, file_sha256(garbage), 2.0),
        changed,
        good[1],
    ]
    report = extract_audio_features(FeatureStore(Sessions(con), features_root), AcousticEncoder(), clips, run_id="r")
    reasons = dict(report.failed)
    assert report.computed == 2
    assert set(reasons) == {"missing", "garbage", "changed", good[1].utterance_id}
    assert reasons["missing"] == "file not found"
    assert "cannot decode" in reasons["garbage"]
    assert "changed since ingest" in reasons["changed"]
    assert "duplicate utterance id" in reasons[good[1].utterance_id]
    assert [r[0] for r in index_rows(con, "dev", report.encoder_key)] == sorted(c.utterance_id for c in good)


@pytest.mark.reliability
def test_encoder_errors_become_per_clip_failures(con, features_root: Path, tmp_path: Path) -> None:
    class Fussy(AcousticEncoder):
        def encode_batch(self, waves):
            if any(len(w) > 30_000 for w in waves):
                raise RuntimeError("too long for this model")
            return super().encode_batch(waves)

    paths = []
    for name, seconds in (("short", 1.0), ("long", 2.5)):
        paths.append(tmp_path / f"{name}.wav")
        sf.write(paths[-1], np.sin(np.arange(int(seconds * 16_000)) / 10).astype(np.float32) * 0.3, 16_000)
    clips = [Clip("dev", p.stem, p, file_sha256(p), 1.0) for p in paths]
    report = extract_audio_features(FeatureStore(Sessions(con), features_root), Fussy(), clips, run_id="r")
    assert report.computed == 1
    assert report.failed == [("long", "encoder failed: RuntimeError: too long for this model")]


def test_partition_rerun_replaces_rows_and_leaves_other_sets(
    con, features_root: Path, ravdess_dir: Path, ravdess_rows
) -> None:
    store = FeatureStore(Sessions(con), features_root)
    encoder = AcousticEncoder()
    extract_audio_features(store, encoder, clips_of(ravdess_rows, ravdess_dir, "dev"), run_id="r1")
    extract_audio_features(store, encoder, clips_of(ravdess_rows[:2], ravdess_dir, "test"), run_id="r1")
    report = extract_audio_features(store, encoder, clips_of(ravdess_rows[:4], ravdess_dir, "dev"), run_id="r2")
    assert report.reused == 4
    assert len(index_rows(con, "dev", report.encoder_key)) == 4
    assert len(index_rows(con, "test", report.encoder_key)) == 2


def test_shards_are_flushed_every_n_clips_and_written_atomically(
    con, features_root: Path, ravdess_dir: Path, ravdess_rows
) -> None:
    clips = clips_of(ravdess_rows[:5], ravdess_dir)
    store = FeatureStore(Sessions(con), features_root)
    report = extract_audio_features(store, AcousticEncoder(), clips, run_id="r", flush_every=2, batch_seconds=4.0)
    files = shards(features_root, report.encoder_key)
    assert sorted(pq.ParquetFile(f).metadata.num_rows for f in files) == [1, 2, 2]
    assert not list((features_root / report.encoder_key).glob(".*partial"))
    read = dict(store.read_frames("dev", None, report.encoder_key))
    assert all(f.shape[1] == 84 for f in read.values()) and len(read) == 5
    counted = con.execute(
        f"SELECT count(*), sum(n_frames) FROM read_parquet('{features_root / report.encoder_key}/*.parquet')"
    ).fetchone()
    assert counted == (5, sum(f.shape[0] for f in read.values()))


def test_frames_read_as_float_lists_in_sql_and_format_1_shards_stay_readable(
    con, features_root: Path, ravdess_dir: Path, ravdess_rows
) -> None:
    store = FeatureStore(Sessions(con), features_root)
    report = extract_audio_features(store, AcousticEncoder(), clips_of(ravdess_rows[:3], ravdess_dir), run_id="r")
    read = dict(store.read_frames("dev", None, report.encoder_key))
    glob = f"{features_root / report.encoder_key}/*.parquet"
    sql_rows = con.execute(f"SELECT content_sha256, frames, typeof(frames) FROM read_parquet('{glob}')").fetchall()
    assert {row[2] for row in sql_rows} == {"FLOAT[]"}
    by_sha = {sha: np.array(values, np.float32) for sha, values, _ in sql_rows}
    for row in ravdess_rows[:3]:
        assert np.array_equal(by_sha[row["sha256"]], read[row["utterance_id"]].reshape(-1).astype(np.float32))
    # Rewrite the shards as format 1 (the same float16 bytes as one binary value per row): reads are unchanged.
    for path in shards(features_root, report.encoder_key):
        table = pq.read_table(path)
        legacy = [np.asarray(v, dtype="<f2").tobytes() for v in table.column("frames").to_pylist()]
        table = table.set_column(table.schema.get_field_index("frames"), "frames", pa.array(legacy, pa.binary()))
        pq.write_table(table, path, write_page_checksum=True)
    reopened = FeatureStore(Sessions(con), features_root)
    again = dict(reopened.read_frames("dev", None, report.encoder_key))
    assert again.keys() == read.keys()
    assert all(np.array_equal(again[k], read[k]) for k in read)


def test_several_writer_threads_store_every_clip_once(
    con, features_root: Path, ravdess_dir: Path, ravdess_rows
) -> None:
    clips = clips_of(ravdess_rows, ravdess_dir)
    store = FeatureStore(Sessions(con), features_root)
    report = extract_audio_features(
        store, AcousticEncoder(), clips, run_id="r", batch_seconds=4.0, flush_every=2, write_workers=3
    )
    assert report.computed == 6
    rows = index_rows(con, "dev", report.encoder_key)
    assert len({(r[5], r[6]) for r in rows}) == 6
    assert sum(pq.ParquetFile(f).metadata.num_rows for f in shards(features_root, report.encoder_key)) == 6
    assert con.execute("SELECT count(*) FROM utterance_vectors").fetchone()[0] == 6
    assert len(dict(store.read_frames("dev", None, report.encoder_key))) == 6


def write_wave(path: Path, wave: np.ndarray) -> Path:
    sf.write(path, wave, 16_000, subtype="FLOAT")
    return path


def test_waveform_stats_stream_exactly_and_normalise(con, features_root: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    waves = [(rng.standard_normal(16_000 * k) * 0.1 * k + 0.01 * k).astype(np.float32) for k in (1, 2, 3)]
    paths = [write_wave(tmp_path / f"w{k}.wav", w) for k, w in enumerate(waves)]
    stats = compute_waveform_stats([*paths, tmp_path / "absent.wav"], workers=2)
    everything = np.concatenate(waves).astype(np.float64)
    assert stats.mean == pytest.approx(everything.mean(), rel=1e-9)
    assert stats.std == pytest.approx(everything.std(), rel=1e-9)
    assert (stats.n_clips, stats.n_samples) == (3, everything.size)
    assert stats.rejected == ((str(tmp_path / "absent.wav"), "file not found"),)
    assert compute_waveform_stats(paths[:2]).stats_key != stats.stats_key

    save_waveform_stats(con, stats, ["train-b", "train-a"], run_id="r")
    loaded = load_waveform_stats(con, stats.stats_key)
    assert (loaded.mean, loaded.std, loaded.n_samples) == (stats.mean, stats.std, stats.n_samples)

    counting = Counting(AcousticEncoder())
    normalized = NormalizedAudioEncoder(counting, stats)
    assert encoder_key(normalized.spec) != encoder_key(counting.spec)
    normalized.encode_batch([waves[0]])
    np.testing.assert_allclose(counting.seen[0], (waves[0] - stats.mean) / stats.std, rtol=1e-5, atol=1e-6)

    clip = Clip("dev", "w0", paths[0], file_sha256(paths[0]), 1.0)
    store = FeatureStore(Sessions(con), features_root)
    plain = extract_audio_features(store, AcousticEncoder(), [clip], run_id="r")
    scaled = extract_audio_features(store, AcousticEncoder(), [clip], run_id="r", normalize=stats)
    assert scaled.encoder_key == encoder_key(normalized.spec) != plain.encoder_key
    assert scaled.computed == 1


def test_text_vectors_are_cached_by_text_hash(con, tmp_path: Path) -> None:
    texts = ["Kids are talking by the door", "Dogs are sitting by the door", "I am so happy today"]
    encoder = HFTextEncoder(save_tiny_roberta(tmp_path / "roberta", texts * 10))
    items = [
        TextItem("dev", "u1", texts[0]),
        TextItem("dev", "u2", texts[1]),
        TextItem("dev", "u3", texts[0]),
        TextItem("dev", "u4", "  "),
        TextItem("test", "v1", texts[2]),
    ]
    store = FeatureStore(Sessions(con), tmp_path / "features")
    counting = Counting(encoder)
    report = extract_text_features(store, counting, items, run_id="r", batch_size=2)
    assert (report.computed, report.reused, counting.inputs) == (3, 1, 3)
    assert report.failed == [("u4", "no transcript (empty or missing text)")]
    ids, vectors = store.read_vectors("dev", ["u3", "u1", "u2"], report.encoder_key)
    assert ids == ["u3", "u1", "u2"]
    np.testing.assert_allclose(vectors[0], vectors[1])
    np.testing.assert_allclose(vectors[1:], encoder.encode_batch(texts[:2]), atol=1e-5)
    assert index_rows(con, "test", report.encoder_key)[0][1:6] == (text_sha256(texts[2]), 1, 32, "float32", None)

    again = extract_text_features(store, counting, items[:3], run_id="r2")
    assert (again.computed, again.reused, counting.inputs) == (0, 3, 3)
    assert len(index_rows(con, "dev", report.encoder_key)) == 3


def test_length_buckets_respect_the_padded_budget() -> None:
    durations = [9.0, 1.0, 3.0, 2.5, 8.0, 1.2, 30.0, 2.9]
    batches = plan_batches(durations, float, batch_seconds=10.0)
    flat = [d for batch in batches for d in batch]
    assert flat == sorted(durations, reverse=True)
    assert batches[0] == [30.0]
    for batch in batches:
        assert len(batch) == 1 or len(batch) * max(batch) <= 10.0
    assert plan_batches(durations, float, batch_seconds=100.0, max_items=3)[0] == [30.0, 9.0, 8.0]


def test_loader_keeps_order_reports_failures_and_stays_bounded() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def load(item: int) -> np.ndarray:
        with lock:
            started.append(item)
        if item % 5 == 0:
            raise AudioRejected(f"clip{item}", "broken on purpose")
        return np.full(3, item, dtype=np.float32)

    batches = [[b * 4 + i for i in range(4)] for b in range(10)]
    with BackgroundLoader(batches, load, workers=2, prefetch=1) as loader:
        iterator = iter(loader)
        first = next(iterator)
        time.sleep(0.3)
        assert len(started) <= 4 * 3, "decoding must not run ahead of the bounded queue"
        rest = list(iterator)
    assert first.items == [1, 2, 3] and first.failures == [(0, "broken on purpose")]
    assert [w[0] for w in first.waves] == [1.0, 2.0, 3.0]
    assert sum(len(b.items) + len(b.failures) for b in [first, *rest]) == 40


def test_loader_stops_cleanly_when_the_consumer_leaves_early() -> None:
    batches = ([i] for i in range(1_000))
    with BackgroundLoader(batches, lambda i: np.zeros(1), workers=2, prefetch=2) as loader:
        for loaded in loader:
            if loaded.items == [3]:
                break
    assert not any(t.name == "audio-feeder" and t.is_alive() for t in threading.enumerate())
