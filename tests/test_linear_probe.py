"""The ``logreg`` audio model: C chosen on development only, checkpoint round trip, scoring, request key."""

from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.preprocessing import StandardScaler

from emojudge_models.features.datasets import SplitData
from emojudge_models.labels import EMOTIONS
from emojudge_models.models import linear_probe, policy
from emojudge_models.models.checkpoints import load_checkpoint, read_checkpoint_config, save_checkpoint
from emojudge_models.models.linear_probe import LinearProbeModel, fit_linear_probe, pooled_stats
from emojudge_models.models.loop import TrainConfig
from emojudge_models.models.policy import HEAD_TRAINING, train_audio_policy, training_request_key
from emojudge_models.models.predict import predict_audio
from emojudge_models.models.scoring import logits_rows


def _clips(rng, labels, shift: float) -> list[tuple[np.ndarray, int]]:
    """Clips of 5-20 frames of 4 dims whose mean moves with the label (plus noise), as float16 like the store."""
    items = []
    for y in labels:
        frames = rng.normal(size=(int(rng.integers(5, 21)), 4)) + shift * np.eye(4)[y % 4]
        items.append((frames.astype(np.float16), int(y)))
    return items


@pytest.fixture
def splits():
    rng = np.random.default_rng(0)
    train = _clips(rng, [i % 3 for i in range(30)], 1.0)
    dev = _clips(rng, [i % 3 for i in range(12)], 1.0)
    return train, dev


class RecordingLogisticRegression(LogisticRegression):
    """LogisticRegression that records the matrices it was fitted on."""

    fitted: ClassVar[list[np.ndarray]] = []

    def fit(self, X, y, sample_weight=None):
        RecordingLogisticRegression.fitted.append(np.asarray(X).copy())
        return super().fit(X, y, sample_weight)


def test_c_is_chosen_on_development_and_fits_see_train_rows_only(splits, monkeypatch) -> None:
    train, dev = splits
    RecordingLogisticRegression.fitted = []
    monkeypatch.setattr(linear_probe, "LogisticRegression", RecordingLogisticRegression)
    result = fit_linear_probe(train, dev, task="categorical", seed=0)

    x_train, x_dev = pooled_stats([f for f, _ in train]), pooled_stats([f for f, _ in dev])
    scaler = StandardScaler().fit(x_train)
    fitted = RecordingLogisticRegression.fitted
    assert len(fitted) == len(linear_probe.C_GRID)
    assert all(np.allclose(x, scaler.transform(x_train)) for x in fitted)
    model = result.model
    assert np.allclose(model.scaler_mean.numpy(), x_train.mean(axis=0))

    y_train, y_dev = [y for _, y in train], [y for _, y in dev]
    expected = []
    for c in linear_probe.C_GRID:
        reference = LogisticRegression(C=c, max_iter=linear_probe.MAX_ITER, random_state=0)
        reference.fit(scaler.transform(x_train), y_train)
        predicted = reference.predict(scaler.transform(x_dev))
        expected.append(f1_score(y_dev, predicted, average="macro"))
    best = int(np.argmax(expected))
    assert [row["C"] for row in result.history] == list(linear_probe.C_GRID)
    assert [row["dev_f1_macro"] for row in result.history] == pytest.approx(expected)
    assert (model.config.C, result.best_epoch) == (linear_probe.C_GRID[best], best + 1)
    assert result.dev_metric == pytest.approx(max(expected))


def test_checkpoint_round_trip_and_scoring_give_sklearns_probabilities(splits, tmp_path) -> None:
    train, dev = splits
    result = fit_linear_probe(train, dev, task="categorical", seed=0)
    frames = [f for f, _ in dev]
    before = predict_audio(result.model, frames, "cpu", lengths=[len(f) for f in frames])

    directory = save_checkpoint(result.model, {"model_key": "k"}, tmp_path / "ckpt")
    assert read_checkpoint_config(directory)["kind"] == "audio_logreg"
    loaded = load_checkpoint(directory, "cpu")
    assert isinstance(loaded, LinearProbeModel) and loaded.config == result.model.config
    after = predict_audio(loaded, frames, "cpu", lengths=[len(f) for f in frames])
    assert np.array_equal(before, after)

    x_train, x_dev = pooled_stats([f for f, _ in train]), pooled_stats(frames)
    scaler = StandardScaler().fit(x_train)
    reference = LogisticRegression(C=result.model.config.C, max_iter=linear_probe.MAX_ITER, random_state=0)
    reference.fit(scaler.transform(x_train), [y for _, y in train])
    expected = reference.predict_proba(scaler.transform(x_dev))
    rows = logits_rows([f"u{i}" for i in range(len(frames))], after, "categorical")
    probabilities = np.stack(rows["probabilities"])
    assert np.allclose(probabilities[:, :3], expected, atol=1e-5)
    assert probabilities[:, 3:].max() < 1e-10
    assert list(rows["predicted_label"]) == [EMOTIONS[y] for y in reference.predict(scaler.transform(x_dev))]


def test_attributes_probe_is_a_ridge_chosen_by_ccc(splits, tmp_path) -> None:
    rng = np.random.default_rng(1)
    train, dev = splits
    to_attributes = np.array([[1.0, 2.0, 3.0], [4.0, 2.0, 1.0], [2.0, 5.0, 2.0]])
    noisy = [(f, to_attributes[y] + rng.normal(scale=0.1, size=3)) for f, y in train]
    dev_noisy = [(f, to_attributes[y] + rng.normal(scale=0.1, size=3)) for f, y in dev]
    result = fit_linear_probe(noisy, dev_noisy, task="attributes", seed=0)
    outputs = predict_audio(result.model, [f for f, _ in dev], "cpu")
    assert outputs.shape == (len(dev), 3) and result.dev_metric_name == "ccc_mean" and result.dev_metric > 0.5
    loaded = load_checkpoint(save_checkpoint(result.model, {}, tmp_path / "a"), "cpu")
    assert np.array_equal(predict_audio(loaded, [f for f, _ in dev], "cpu"), outputs)


def test_the_logreg_policy_trains_the_probe_alone(splits) -> None:
    train, dev = splits
    trained = train_audio_policy(
        train, dev, policy="logreg", task="categorical", train=TrainConfig(max_epochs=1), device="cpu", seed=0
    )
    assert isinstance(trained.result.model, LinearProbeModel) and list(trained.candidates) == ["logreg"]
    assert trained.config == trained.result.model.config and trained.config.to_dict()["kind"] == "logreg"
    assert trained.scores == {"logreg": {"dev": trained.result.dev_metric, "best_epoch": trained.result.best_epoch}}


def test_request_key_covers_the_c_grid_not_the_head_training(monkeypatch) -> None:
    rows = pd.DataFrame({"eval_set": "s", "utterance_id": ["a", "b"], "speaker_id": ["x", "y"]})
    split = SplitData(rows, [0, 1])

    def key(**changes) -> str:
        settings = {
            "encoder_key": "enc",
            "train": split,
            "dev": split,
            "seed": 0,
            "audio_policy": "logreg",
            "speaker_norm": "speaker",
            "head_training": HEAD_TRAINING,
            "text_encoder": None,
        }
        return training_request_key("audio_head", **(settings | changes))

    before = key()
    assert key(head_training=TrainConfig(lr=5e-4)) == before
    assert key(audio_policy="ensemble") != before and key(speaker_norm="none") != before
    monkeypatch.setattr(policy, "C_GRID", (0.1, 1.0))
    assert key() != before
