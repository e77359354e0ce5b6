from collections.abc import Sequence

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from emojudge_models.models.batches import BatchPlan, collate_frames
from emojudge_models.models.heads import AudioEmotionModel, HeadConfig
from emojudge_models.models.loop import TrainConfig
from emojudge_models.models.predict import predict_audio, predict_vectors
from emojudge_models.models.training import HeadTrainingConfig, train_audio_head, train_text_head

DIM = 6
N_CLASSES = 8
CLASS_MEANS = np.random.default_rng(123).normal(0.0, 1.5, size=(N_CLASSES, DIM))
ATTRIBUTE_WEIGHTS = np.random.default_rng(321).normal(size=(DIM, 3))


class SyntheticFrames(Sequence):
    """Lazily generated (frames, target) items: frames scatter around a class mean, lengths vary."""

    def __init__(self, n: int, seed: int, task: str = "categorical") -> None:
        rng = np.random.default_rng(seed)
        self.labels = rng.integers(0, N_CLASSES, size=n)
        self.lengths = rng.integers(2, 15, size=n)
        self.seed, self.task, self.reads = seed, task, 0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[np.ndarray, object]:
        self.reads += 1
        rng = np.random.default_rng([self.seed, index])
        label = int(self.labels[index])
        frames = (CLASS_MEANS[label] + rng.normal(0.0, 1.0, size=(self.lengths[index], DIM))).astype(np.float16)
        if self.task == "categorical":
            return frames, label
        return frames, (CLASS_MEANS[label] @ ATTRIBUTE_WEIGHTS).astype(np.float32)


def _config(task: str = "categorical", pooling: str = "attentive", epochs: int = 12) -> HeadTrainingConfig:
    return HeadTrainingConfig(
        head=HeadConfig(task=task, input_dim=DIM, pooling=pooling, attention_dim=8, hidden_dim=32, dropout=0.1),
        train=TrainConfig(lr=3e-3, batch_size=16, max_epochs=epochs, patience=epochs),
    )


@pytest.fixture(scope="module")
def categorical_run():
    epochs: list[tuple[int, dict[str, float]]] = []
    result = train_audio_head(
        SyntheticFrames(160, seed=0),
        SyntheticFrames(80, seed=1),
        _config(epochs=8),
        "cpu",
        seed=7,
        on_epoch=lambda epoch, metrics: epochs.append((epoch, metrics)),
    )
    return result, epochs


def test_audio_head_learns_separable_classes(categorical_run) -> None:
    result, _ = categorical_run
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < 0.5 * losses[0]
    assert result.dev_metric_name == "f1_macro"
    assert result.dev_metric > 0.6  # chance is about 0.125
    assert isinstance(result.model, AudioEmotionModel) and not result.model.training


def test_best_epoch_is_the_best_dev_epoch_and_callback_saw_every_epoch(categorical_run) -> None:
    result, epochs = categorical_run
    assert [epoch for epoch, _ in epochs] == list(range(1, 9))
    assert set(epochs[0][1]) >= {"train_loss", "dev_metric"}
    dev_scores = [row["dev_metric"] for row in result.history]
    assert result.dev_metric == max(dev_scores) == dev_scores[result.best_epoch - 1]


def test_returned_model_scores_the_selected_dev_metric(categorical_run) -> None:
    result, _ = categorical_run
    dev = SyntheticFrames(80, seed=1)
    predictions = predict_audio(result.model, dev, "cpu", batch_size=16).argmax(axis=1)
    assert f1_score(dev.labels, predictions, average="macro") == pytest.approx(result.dev_metric)


def test_same_seed_reproduces_the_dev_metric_exactly() -> None:
    runs = [
        train_audio_head(SyntheticFrames(48, seed=2), SyntheticFrames(24, seed=3), _config(epochs=3), "cpu", seed=11)
        for _ in range(2)
    ]
    timeless = [[{k: v for k, v in row.items() if k != "seconds"} for row in run.history] for run in runs]
    assert timeless[0] == timeless[1]
    assert runs[0].dev_metric == runs[1].dev_metric
    other_seed = train_audio_head(
        SyntheticFrames(48, seed=2), SyntheticFrames(24, seed=3), _config(epochs=3), "cpu", seed=12
    )
    assert other_seed.history[0]["train_loss"] != runs[0].history[0]["train_loss"]


def test_attribute_head_with_meanstd_pooling_reaches_high_ccc() -> None:
    result = train_audio_head(
        SyntheticFrames(160, seed=4, task="attributes"),
        SyntheticFrames(60, seed=5, task="attributes"),
        _config(task="attributes", pooling="meanstd", epochs=10),
        "cpu",
        seed=0,
    )
    assert result.dev_metric_name == "ccc_mean"
    assert result.dev_metric > 0.8


def test_items_are_read_one_batch_at_a_time_not_stacked() -> None:
    train, dev = SyntheticFrames(32, seed=6), SyntheticFrames(16, seed=7)
    train_audio_head(train, dev, _config(epochs=2), "cpu", seed=0)
    assert train.reads == 32 * 3  # one validating scan + one read per epoch
    assert dev.reads == 16 * 3


def test_predict_audio_returns_input_order_with_or_without_lengths() -> None:
    torch.manual_seed(0)
    model = AudioEmotionModel(HeadConfig(task="attributes", input_dim=DIM, attention_dim=4, hidden_dim=8)).eval()
    items = SyntheticFrames(20, seed=8)
    frames = [items[i][0] for i in range(20)]
    one_by_one = np.concatenate(
        [
            model(torch.from_numpy(f.astype(np.float32))[None], torch.ones(1, len(f), dtype=torch.bool)).detach()
            for f in frames
        ]
    )
    bucketed = predict_audio(model, frames, "cpu", batch_size=6, lengths=[len(f) for f in frames])
    in_order = predict_audio(model, items, "cpu", batch_size=6)
    np.testing.assert_allclose(bucketed, one_by_one, atol=1e-5)
    np.testing.assert_allclose(in_order, one_by_one, atol=1e-5)
    assert predict_audio(model, [], "cpu").shape == (0, 3)


def test_shuffled_batches_cover_every_item_once_group_lengths_and_depend_on_seed_and_epoch() -> None:
    lengths = np.random.default_rng(0).integers(1, 500, size=1000)
    plan = BatchPlan(list(range(1000)), lengths, 10, collate_frames(DIM, None))
    batches = list(plan.shuffled(seed=1, epoch=1).batch_sampler)
    assert sorted(i for batch in batches for i in batch) == list(range(1000))
    assert batches == list(plan.shuffled(seed=1, epoch=1).batch_sampler)
    assert batches != list(plan.shuffled(seed=1, epoch=2).batch_sampler)
    padded_frames = sum(len(batch) * lengths[batch].max() for batch in batches)
    assert padded_frames < 1.1 * lengths.sum()


def test_bad_items_are_named_in_the_error() -> None:
    train = [(np.zeros((4, DIM), np.float32), 0)] * 3 + [(np.zeros((4, DIM + 1), np.float32), 1)]
    dev = [(np.zeros((4, DIM), np.float32), 0)]
    with pytest.raises(ValueError, match=r"train item 3: frames have shape \(4, 7\)"):
        train_audio_head(train, dev, _config(), "cpu", seed=0)
    with pytest.raises(ValueError, match="development item 0: categorical target"):
        train_audio_head(train[:3], [(np.zeros((4, DIM), np.float32), 8)], _config(), "cpu", seed=0)
    with pytest.raises(ValueError, match="train item 0: frames have shape"):
        train_audio_head([(np.zeros((0, DIM), np.float32), 0)], dev, _config(), "cpu", seed=0)


def test_text_head_learns_from_cached_vectors() -> None:
    rng = np.random.default_rng(9)
    means = rng.normal(0.0, 2.0, size=(N_CLASSES, 16))

    def vectors(n: int) -> tuple[np.ndarray, list[int]]:
        labels = rng.integers(0, N_CLASSES, size=n)
        return (means[labels] + rng.normal(size=(n, 16))).astype(np.float32), labels.tolist()

    (train_x, train_y), (dev_x, dev_y) = vectors(200), vectors(80)
    config = HeadTrainingConfig(
        head=HeadConfig(task="categorical", input_dim=16, pooling="none", n_hidden_layers=0),
        train=TrainConfig(lr=1e-2, batch_size=32, max_epochs=15, patience=15),
    )
    result = train_text_head(train_x, train_y, dev_x, dev_y, config, "cpu", seed=0)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.dev_metric > 0.8
    dev_predictions = predict_vectors(result.model, dev_x, "cpu").argmax(axis=1)
    assert np.mean(dev_predictions == np.asarray(dev_y)) > 0.8
    with pytest.raises(ValueError, match="pooling must be 'none'"):
        train_text_head(train_x, train_y, dev_x, dev_y, _config(), "cpu", seed=0)


def test_audio_head_standardises_inputs_with_train_statistics(tmp_path) -> None:
    """Frames on wildly different scales are standardised by train-set statistics kept in the checkpoint."""
    from emojudge_models.models.checkpoints import load_checkpoint, save_checkpoint
    from emojudge_models.models.heads import HeadConfig

    rng = np.random.default_rng(0)
    scale = np.array([1.0, 1000.0, 0.001, 50.0], dtype=np.float32)
    items = [((rng.normal(size=(20 + i % 5, 4)) + i % 2) * scale, i % 2) for i in range(40)]
    config = HeadTrainingConfig(
        head=HeadConfig(task="categorical", input_dim=4, pooling="meanstd", hidden_dim=8, n_hidden_layers=1),
        train=TrainConfig(max_epochs=2, batch_size=8),
    )
    result = train_audio_head(items[:30], items[30:], config, "cpu", seed=0)
    frames = np.concatenate([f for f, _ in items[:30]]).astype(np.float64)
    np.testing.assert_allclose(result.model.standardizer.mean.numpy(), frames.mean(axis=0), rtol=1e-4)
    np.testing.assert_allclose(result.model.standardizer.std.numpy(), frames.std(axis=0), rtol=1e-4)
    restored = load_checkpoint(save_checkpoint(result.model, {}, tmp_path / "ckpt"), "cpu")
    np.testing.assert_allclose(restored.standardizer.std.numpy(), result.model.standardizer.std.numpy())
    frames_only = [f for f, _ in items[30:]]
    np.testing.assert_allclose(
        predict_audio(restored, frames_only, "cpu"),
        predict_audio(result.model, frames_only, "cpu"),
        rtol=1e-5,
        atol=1e-6,
    )
