"""Head training streamed from the feature store: every utterance once per epoch across workers, speaker
normalisation applied on the fly, statistics from the stored vectors, and memory bounded by the buffer."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from emojudge_models.features.datasets import frame_stream, frames_for, labelled_rows, speaker_normaliser
from emojudge_models.features.frame_stats import FrameStats
from emojudge_models.features.synthetic import ENCODER_KEY, EVAL_SET, build_synthetic_store
from emojudge_models.models.batches import StreamPlan, collate_frames
from emojudge_models.models.linear_probe import pooled_items
from emojudge_models.models.loop import TrainConfig
from emojudge_models.models.policy import ENSEMBLE_HEADS, train_audio_policy

REPO = Path(__file__).resolve().parents[1]
DIM = 4


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory):
    """600 utterances in 15 shards; the train split with its speaker-normalised frames read the old way."""
    built = build_synthetic_store(
        tmp_path_factory.mktemp("stream"), 600, dim=DIM, max_frames=12, speakers=12, shard_utterances=40
    )
    with built.store.connect() as con:
        train, dev = (labelled_rows(con, [EVAL_SET], s, ENCODER_KEY, "categorical") for s in ("train", "development"))
    normaliser = speaker_normaliser(built.store, [EVAL_SET], ENCODER_KEY)
    keys = list(zip(train.rows["eval_set"], train.rows["utterance_id"], strict=True))
    expected = normaliser.apply(keys, frames_for(built.store, train.rows, ENCODER_KEY))
    return built.store, train, dev, normaliser, expected


def _check_batch(indices, inputs, targets, expected, train) -> None:
    for row, index in enumerate(indices):
        frames = expected[index]
        assert int(inputs["mask"][row].sum()) == len(frames)
        np.testing.assert_allclose(inputs["frames"][row, : len(frames)].numpy(), frames, atol=1e-2)
    assert targets.tolist() == [train.targets[i] for i in indices]


@pytest.mark.parametrize("workers", [0, 2])
def test_every_training_utterance_is_yielded_once_per_epoch_across_workers(small_store, workers: int) -> None:
    store, train, _, normaliser, expected = small_store
    stream = frame_stream(store, train, ENCODER_KEY, normaliser, buffer_size=64, num_workers=workers)
    assert len(stream.units) > 2 * workers
    plan = StreamPlan(stream, 8, collate_frames(DIM, "categorical"))
    orders = []
    for epoch in (1, 2):
        seen: list[int] = []
        for indices, inputs, targets in plan.shuffled(seed=3, epoch=epoch):
            _check_batch(indices, inputs, targets, expected, train)
            seen += indices
        assert sorted(seen) == list(range(len(train)))
        orders.append(seen)
    assert orders[0] != orders[1], "each epoch reads shards and buffers in a new order"
    assert orders[0] == [i for indices, _, _ in plan.shuffled(seed=3, epoch=1) for i in indices]
    evaluated = [i for indices, _, _ in plan.ordered() for i in indices]
    assert sorted(evaluated) == list(range(len(train)))


def test_the_shuffle_buffer_bounds_how_far_an_utterance_travels(small_store) -> None:
    """With one reader, a buffer of 32 utterances is emptied before the next fills: the first 32 yielded
    utterances all come from the first shard units read."""
    store, train, _, normaliser, _ = small_store
    stream = frame_stream(store, train, ENCODER_KEY, normaliser, buffer_size=32, num_workers=0)
    plan = StreamPlan(stream, 8, collate_frames(DIM, "categorical"))
    first = [i for indices, _, _ in plan.shuffled(seed=0, epoch=1) for i in indices][:32]
    order = np.random.default_rng([0, 1]).permutation(len(stream.units))
    read_first: list[int] = []
    for unit in order:
        read_first += stream.units[unit].items.tolist()
        if len(read_first) >= 32:
            break
    assert set(first) == set(read_first[:32])


def test_statistics_come_from_the_stored_vectors_and_match_the_normalised_frames(small_store) -> None:
    store, train, _, normaliser, expected = small_store
    stream = frame_stream(store, train, ENCODER_KEY, normaliser)
    direct = FrameStats()
    for frames in expected:
        direct.add(frames)
    (mean, std), (want_mean, want_std) = stream.frame_stats.mean_std(), direct.mean_std()
    assert stream.frame_stats.count == direct.count == int(stream.lengths.sum())
    np.testing.assert_allclose(mean, want_mean, atol=1e-2)
    np.testing.assert_allclose(std, want_std, rtol=1e-2)
    raw = frame_stream(store, train, ENCODER_KEY, None)
    assert raw.normalisation is None and np.abs(raw.frame_stats.mean_std()[0]).max() > 1.0


def test_a_wrong_dimension_is_named_before_training(small_store) -> None:
    store, train, dev, normaliser, _ = small_store
    streams = [frame_stream(store, split, ENCODER_KEY, normaliser) for split in (train, dev)]
    streams[0].dims[3] = DIM + 1
    with pytest.raises(ValueError, match=rf"train item 3 \(u\d+\): stored frames have shape \(\d+, {DIM + 1}\)"):
        train_audio_policy(
            *streams, policy="probe", task="categorical", train=TrainConfig(max_epochs=1), device="cpu", seed=0
        )


def test_the_ensemble_policy_learns_from_streamed_frames(small_store) -> None:
    store, train, dev, normaliser, _ = small_store
    streams = [frame_stream(store, split, ENCODER_KEY, normaliser, 64, 0) for split in (train, dev)]
    trained = train_audio_policy(
        *streams, policy="ensemble", task="categorical", train=TrainConfig(max_epochs=4, lr=3e-3), device="cpu", seed=0
    )
    assert set(trained.scores) == {*ENSEMBLE_HEADS, "ensemble"}
    assert trained.result.dev_metric > 0.5  # 8 classes: chance is about 0.125


@pytest.mark.reliability
@pytest.mark.slow_fault
def test_training_peak_memory_is_bounded_by_the_buffer_not_the_data(tmp_path: Path) -> None:
    """20,000 utterances (about 150 MB of float16 frames, 110 MB in train): one epoch streamed from the store raises
    the peak resident memory of a warmed-up training process by less than the train frames' size (measured: 12-60 MB,
    the spread being the allocator's; reading them into memory, as before, took about twice their size: the frames
    and their normalised copy)."""
    build_synthetic_store(tmp_path, 20_000, dim=32, max_frames=200)
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    done = subprocess.run(
        [sys.executable, str(REPO / "tests" / "stream_rss.py"), str(tmp_path)],
        env={**os.environ, "PYTHONPATH": path, "MALLOC_ARENA_MAX": "2"},
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert measured["frames_mb"] > 100
    assert measured["peak_mb"] - measured["baseline_mb"] < measured["frames_mb"], measured


def test_the_training_asset_streams_the_frames_of_its_training_sets(tmp_path: Path) -> None:
    """The audio training asset on a synthetic store: two loader workers, the frames never read into a list."""
    import dagster as dg

    from emojudge_models.settings import Settings
    from emojudge_pipeline.assets.training import training_assets
    from emojudge_pipeline.definitions import build_definitions

    built = build_synthetic_store(tmp_path, 400, dim=DIM, max_frames=12, speakers=8, shard_utterances=50)
    settings = Settings(home=tmp_path, train_sets=[EVAL_SET], audio_pooling="probe", max_epochs=2, loader_workers=2)
    asset = next(a for a in training_assets if a.key.path == ["audio_model_categorical"])
    result = dg.materialize([asset], resources=build_definitions(settings).resources)
    metadata = result.asset_materializations_for_node("audio_model_categorical")[0].metadata
    with built.store.connect() as con:
        train = labelled_rows(con, [EVAL_SET], "train", ENCODER_KEY, "categorical")
        kind, hyper = con.execute("SELECT kind, hyperparameters FROM model_registry").fetchone()
    assert metadata["train_rows"].value == len(train) and metadata["epochs"].value == 2
    assert kind == "audio_head" and json.loads(hyper)["speaker_norm"] == "speaker"


def test_the_logreg_probe_pools_a_streamed_split_as_the_in_memory_frames(small_store) -> None:
    """The default audio model reads a streamed split one row group at a time: its pooled statistics and targets
    equal those of the speaker-normalised frames in memory, in item order."""
    store, train, _, normaliser, expected = small_store
    stream = frame_stream(store, train, ENCODER_KEY, normaliser, 64, 0)
    stats, targets = pooled_items(stream)
    want_stats, want_targets = pooled_items(list(zip(expected, train.targets, strict=True)))
    assert stats.shape == (len(train), 2 * DIM)
    np.testing.assert_allclose(stats, want_stats, atol=2e-2)
    assert targets.tolist() == want_targets.tolist()


def _kept_for_two_epochs(home: Path, n_utterances: int) -> tuple[int, int, int]:
    """(Python allocations, bytes) still held, once two epochs have been streamed, by what the training asset keeps
    across epochs (the train split's rows and targets, its stream; the normaliser is dropped as there), and the
    number of train utterances. Allocations are tracemalloc's blocks (Python objects, numpy arrays) made under
    emojudge_models (not pytest's own); bytes add what the Arrow pool holds."""
    built = build_synthetic_store(home, n_utterances, dim=DIM, max_frames=8, speakers=20, shard_utterances=10**6)
    gc.collect()
    arrow_before = pa.total_allocated_bytes()
    tracemalloc.start(64)
    with built.store.connect() as con:
        train = labelled_rows(con, [EVAL_SET], "train", ENCODER_KEY, "categorical")
    stream = frame_stream(
        built.store, train, ENCODER_KEY, speaker_normaliser(built.store, [EVAL_SET], ENCODER_KEY), 64, 0
    )
    plan = StreamPlan(stream, 16, collate_frames(DIM, "categorical"))
    for epoch in (1, 2):
        assert sum(len(indices) for indices, _, _ in plan.shuffled(seed=0, epoch=epoch)) == len(train)
    gc.collect()
    snapshot = tracemalloc.take_snapshot()
    tracemalloc.stop()
    held = [t for t in snapshot.traces if any("emojudge_models" in frame.filename for frame in t.traceback)]
    blocks, traced = len(held), sum(trace.size for trace in held)
    return blocks, traced + pa.total_allocated_bytes() - arrow_before, len(stream)


def test_streaming_bookkeeping_keeps_no_python_object_per_utterance(tmp_path: Path) -> None:
    """Ten times the utterances: the same number of Python allocations kept across epochs (arrays per split and
    per shard row group, none per utterance) and a few tens of bytes more per utterance (ids, hashes, shard rows,
    lengths, targets, groups in numpy and Arrow arrays). Before, each utterance kept two Python strings across
    epochs and the normaliser a dict entry during preparation (about 1.5 KB per utterance at the peak)."""
    _kept_for_two_epochs(tmp_path / "warm-up", 100)  # first-use allocations (imports, caches) out of the way
    small_blocks, small_bytes, small_n = _kept_for_two_epochs(tmp_path / "small", 200)
    large_blocks, large_bytes, large_n = _kept_for_two_epochs(tmp_path / "large", 2000)
    assert large_n > 9 * small_n
    assert large_blocks - small_blocks < 100, (small_blocks, large_blocks)
    assert (large_bytes - small_bytes) / (large_n - small_n) < 256, (small_bytes, large_bytes)
