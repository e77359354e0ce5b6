"""Late fusion: C selection on synthetic logits, 8-column probabilities, ridge recovery, save/load."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from emojudge_models.evaluation.metrics import attribute_metrics
from emojudge_models.fusion.models import (
    C_GRID,
    FusionModel,
    fit_attribute_fusion,
    fit_categorical_fusion,
    fusion_feature_names,
    fusion_features,
)
from emojudge_models.labels import EMOTIONS, emotion_index

N_CLASSES = len(EMOTIONS)


def class_logits(
    rng: np.random.Generator, n_per_class: int, signal: float, classes: list[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Audio and text logits with unit Gaussian noise plus ``signal`` on the true class of each modality."""
    classes = list(range(N_CLASSES)) if classes is None else classes
    y = np.repeat(np.array(classes), n_per_class)
    audio = rng.normal(0.0, 1.0, (y.size, N_CLASSES))
    text = rng.normal(0.0, 1.0, (y.size, N_CLASSES))
    audio[np.arange(y.size), y] += signal
    text[np.arange(y.size), y] += signal
    return fusion_features(audio, text), y


def score_at(model: FusionModel, C: float) -> float:
    return dict(model.grid)[C]


def test_grid_is_log_spaced_over_six_decades() -> None:
    assert len(C_GRID) >= 13
    assert C_GRID[0] == pytest.approx(1e-3) and C_GRID[-1] == pytest.approx(1e3)
    assert np.allclose(np.diff(np.log10(C_GRID)), 0.5)


def test_fusion_features_concatenates_audio_then_text() -> None:
    audio = np.arange(16.0).reshape(2, 8)
    text = -np.arange(16.0).reshape(2, 8)
    X = fusion_features(audio, text)
    assert X.shape == (2, 16)
    assert np.array_equal(X[:, :8], audio) and np.array_equal(X[:, 8:], text)
    assert fusion_feature_names("categorical")[0] == "audio_angry"
    assert fusion_feature_names("categorical")[8] == "text_angry"
    with pytest.raises(ValueError, match="same number of rows"):
        fusion_features(audio, text[:1])


def test_strong_regularisation_wins_on_few_mislabelled_training_clips() -> None:
    # 6 clips per class, half of their labels replaced at random: an unregularised fit memorises the noise,
    # a heavily shrunk one keeps only the class-mean direction (the Bayes rule for this data).
    rng = np.random.default_rng(0)
    train_X, train_y = class_logits(rng, 6, signal=2.0)
    flipped = rng.random(train_y.size) < 0.5
    train_y[flipped] = rng.integers(0, N_CLASSES, flipped.sum())
    dev_X, dev_y = class_logits(rng, 50, signal=2.0)

    model = fit_categorical_fusion(train_X, train_y, dev_X, dev_y)

    assert model.C <= 0.1
    assert model.dev_score == max(score for _, score in model.grid)
    assert model.dev_score >= score_at(model, C_GRID[-1]) + 0.1


def test_weak_regularisation_wins_when_a_shared_nuisance_must_be_cancelled() -> None:
    # Every logit carries a large per-clip nuisance (mixed in with fixed weights); telling classes apart means
    # cancelling it exactly, which takes large weights that only a weak penalty allows.
    rng = np.random.default_rng(0)
    mixing = rng.normal(0.0, 1.0, 2 * N_CLASSES)

    def nuisance_logits(n_per_class: int) -> tuple[np.ndarray, np.ndarray]:
        X, y = class_logits(rng, n_per_class, signal=2.0)
        return 0.5 * X + rng.normal(0.0, 100.0, (y.size, 1)) * mixing, y

    train_X, train_y = nuisance_logits(30)
    dev_X, dev_y = nuisance_logits(50)

    model = fit_categorical_fusion(train_X, train_y, dev_X, dev_y)

    assert model.C >= 100.0
    assert model.dev_score >= score_at(model, C_GRID[0]) + 0.3


def test_probabilities_cover_all_eight_classes_when_contempt_is_missing() -> None:
    rng = np.random.default_rng(1)
    present = [i for i in range(N_CLASSES) if EMOTIONS[i] != "contempt"]
    train_X, train_y = class_logits(rng, 20, signal=3.0, classes=present)
    dev_X, dev_y = class_logits(rng, 10, signal=3.0, classes=present)
    test_X, _ = class_logits(rng, 5, signal=3.0)

    for class_balanced in (True, False):
        model = fit_categorical_fusion(train_X, train_y, dev_X, dev_y, class_balanced=class_balanced)
        proba = model.predict_proba(test_X)
        assert proba.shape == (test_X.shape[0], 8)
        assert np.allclose(proba.sum(axis=1), 1.0)
        assert np.all(proba[:, emotion_index("contempt")] == 0.0)
        assert emotion_index("contempt") not in set(model.predict(test_X))
        assert model.n_classes == 8


def test_predictions_follow_emotions_order() -> None:
    rng = np.random.default_rng(2)
    train_X, train_y = class_logits(rng, 20, signal=4.0)
    dev_X, dev_y = class_logits(rng, 10, signal=4.0)
    model = fit_categorical_fusion(train_X, train_y, dev_X, dev_y)
    test_X, test_y = class_logits(rng, 10, signal=4.0)
    predicted = model.predict(test_X)
    assert np.mean(predicted == test_y) > 0.9
    assert model.predict_labels(test_X) == [EMOTIONS[i] for i in predicted]


def test_train_plus_dev_refits_the_chosen_C_on_both_sets() -> None:
    rng = np.random.default_rng(3)
    train_X, train_y = class_logits(rng, 10, signal=1.5)
    dev_X, dev_y = class_logits(rng, 10, signal=1.5)
    test_X, _ = class_logits(rng, 5, signal=1.5)

    on_train = fit_categorical_fusion(train_X, train_y, dev_X, dev_y, fit_on="train")
    on_both = fit_categorical_fusion(train_X, train_y, dev_X, dev_y, fit_on="train+dev")
    assert on_both.C == on_train.C and on_both.grid == on_train.grid

    expected = make_pipeline(
        StandardScaler(), LogisticRegression(C=on_both.C, class_weight="balanced", max_iter=5000)
    ).fit(np.vstack([train_X, dev_X]), np.concatenate([train_y, dev_y]))
    assert np.allclose(on_both.predict_proba(test_X), expected.predict_proba(test_X), atol=1e-6)
    assert not np.allclose(on_both.predict_proba(test_X), on_train.predict_proba(test_X), atol=1e-3)
    assert on_both.hyperparameters()["fit_on"] == "train+dev"


def test_categorical_fusion_rejects_bad_inputs() -> None:
    rng = np.random.default_rng(4)
    X, y = class_logits(rng, 3, signal=1.0)
    with pytest.raises(ValueError, match=r"outside 0\.\.7"):
        fit_categorical_fusion(X, np.where(y == 0, 8, y), X, y)
    with pytest.raises(ValueError, match="single class"):
        fit_categorical_fusion(X, np.zeros_like(y), X, y)
    with pytest.raises(ValueError, match=r"train_X must be \(N, 16\)"):
        fit_categorical_fusion(X[:, :8], y, X, y)
    with pytest.raises(ValueError, match="fit_on"):
        fit_categorical_fusion(X, y, X, y, fit_on="dev")


def test_ridge_recovers_a_linear_attribute_map() -> None:
    rng = np.random.default_rng(5)
    mapping = rng.normal(0.0, 1.0, (6, 3))

    def attributes(n: int) -> tuple[np.ndarray, np.ndarray]:
        X = fusion_features(rng.normal(0.0, 1.0, (n, 3)), rng.normal(0.0, 1.0, (n, 3)))
        return X, X @ mapping + 0.1 * rng.normal(0.0, 1.0, (n, 3))

    train_X, train_y = attributes(300)
    dev_X, dev_y = attributes(100)
    test_X, test_y = attributes(100)
    model = fit_attribute_fusion(train_X, train_y, dev_X, dev_y)

    assert model.task == "attributes" and model.dev_metric_name == "ccc_mean"
    assert model.C >= 1.0
    assert model.dev_score > score_at(model, C_GRID[0]) + 0.3
    predicted = model.predict(test_X)
    assert predicted.shape == (100, 3)
    assert attribute_metrics(test_y, predicted)["ccc_mean"] > 0.9
    with pytest.raises(ValueError, match="only defined for categorical"):
        model.predict_proba(test_X)


def test_save_load_round_trip_keeps_predictions_and_metadata(tmp_path) -> None:
    rng = np.random.default_rng(6)
    train_X, train_y = class_logits(rng, 10, signal=2.0)
    dev_X, dev_y = class_logits(rng, 10, signal=2.0)
    test_X, _ = class_logits(rng, 5, signal=2.0)
    model = fit_categorical_fusion(train_X, train_y, dev_X, dev_y, class_balanced=False)

    loaded = FusionModel.load(model.save(tmp_path / "models" / "fusion.joblib"))

    assert np.array_equal(loaded.predict_proba(test_X), model.predict_proba(test_X))
    assert loaded.hyperparameters() == model.hyperparameters()
    assert (loaded.C, loaded.dev_score, loaded.dev_metric_name) == (model.C, model.dev_score, "f1_macro")
    assert loaded.grid == model.grid and loaded.feature_names == model.feature_names


def test_load_refuses_missing_and_foreign_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FusionModel.load(tmp_path / "absent.joblib")
    joblib.dump({"something": "else"}, tmp_path / "other.joblib")
    with pytest.raises(ValueError, match="not an EmoJudge fusion model"):
        FusionModel.load(tmp_path / "other.joblib")
