"""Late fusion: C selection on synthetic logits, 8-column probabilities, ridge recovery, save/load, the guard."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from emojudge_models.evaluation.metrics import attribute_metrics, categorical_metrics, f1_macro_of_indices
from emojudge_models.fusion.models import (
    C_GRID,
    FUSION_TOLERANCE,
    FusionModel,
    fit_attribute_fusion,
    fit_categorical_fusion,
    fit_guarded_fusion,
    fusion_feature_names,
    fusion_features,
    modality_reliability,
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


def guarded_sets(
    seed: int, text: str, audio_signal: float = 2.0, n_train: int = 20, n_dev: int = 20
) -> tuple[np.ndarray, ...]:
    """Train, development and test sets whose text half is ``informative``, ``constant``, ``noise`` or ``missing``."""
    rng = np.random.default_rng(seed)
    sets = []
    for n in (n_train, n_dev, 10):
        X, y = class_logits(rng, n, signal=audio_signal)
        if text == "constant":
            X[:, N_CLASSES:] = np.linspace(-1.0, 1.0, N_CLASSES)
        elif text == "noise":
            X[:, N_CLASSES:] = rng.normal(0.0, 1.0, (y.size, N_CLASSES))
        elif text == "missing":
            X[:, N_CLASSES:] = np.nan
        sets += [X, y]
    return tuple(sets)


@pytest.mark.parametrize("text", ["constant", "noise", "missing"])
def test_a_text_modality_at_chance_or_missing_gets_no_weight(text: str) -> None:
    train_X, train_y, dev_X, dev_y, test_X, _ = guarded_sets(7, text)

    model = fit_guarded_fusion("categorical", train_X, train_y, dev_X, dev_y)

    assert model.modalities == ("audio",)
    assert model.rule.startswith("audio alone (")
    assert model.reliability["audio"]["reliable"] and not model.reliability["text"]["reliable"]
    assert model.reliability["text"]["present"] is (text != "missing")
    assert np.array_equal(model.predict(test_X), test_X[:, :N_CLASSES].argmax(axis=1))
    proba = model.predict_proba(test_X)
    assert proba.shape == (test_X.shape[0], N_CLASSES) and np.allclose(proba.sum(axis=1), 1.0)
    assert model.hyperparameters()["estimator"] == "temperature_scaling" and model.C is None


def test_the_fast_f1_macro_matches_the_reported_metric() -> None:
    rng = np.random.default_rng(15)
    for size in (5, 40, 300):
        y_true, y_pred = rng.integers(0, 6, size), rng.integers(1, N_CLASSES, size)
        expected = categorical_metrics([EMOTIONS[i] for i in y_true], [EMOTIONS[i] for i in y_pred])["f1_macro"]
        assert f1_macro_of_indices(y_true, y_pred) == pytest.approx(expected, abs=1e-12)


def test_a_constant_prediction_scores_exactly_its_permutation_null() -> None:
    train_X, _, dev_X, dev_y, _, _ = guarded_sets(8, "constant")
    text = modality_reliability("categorical", train_X, dev_X, dev_y)["text"]
    assert text.present and text.dev_score == text.null_quantile == pytest.approx(text.null_mean, abs=1e-12)
    assert not text.reliable


def test_two_informative_modalities_are_fused_as_before() -> None:
    train_X, train_y, dev_X, dev_y, test_X, _ = guarded_sets(9, "informative")

    guarded = fit_guarded_fusion("categorical", train_X, train_y, dev_X, dev_y, fit_on="train+dev")
    plain = fit_categorical_fusion(train_X, train_y, dev_X, dev_y, fit_on="train+dev")

    assert guarded.modalities == ("audio", "text") and guarded.rule.startswith("both modalities fused")
    assert guarded.C == plain.C
    assert np.array_equal(guarded.predict_proba(test_X), plain.predict_proba(test_X))


def test_fusion_that_scores_below_the_better_modality_on_development_is_dropped() -> None:
    # Text is decisive on train, but on development it names the next class for half of the classes (a shift the
    # heads did not see): still above chance alone, yet the fusion fitted on train follows it and loses to audio.
    rng = np.random.default_rng(10)
    train_X, train_y = class_logits(rng, 30, signal=2.0)
    train_X[np.arange(train_y.size), N_CLASSES + train_y] += 4.0
    dev_X, dev_y = class_logits(rng, 40, signal=2.0)
    dev_X[:, N_CLASSES:] = rng.normal(0.0, 1.0, (dev_y.size, N_CLASSES))
    named = np.where(dev_y < N_CLASSES // 2, dev_y, (dev_y + 1) % N_CLASSES)
    dev_X[np.arange(dev_y.size), N_CLASSES + named] += 6.0
    plain = fit_categorical_fusion(train_X, train_y, dev_X, dev_y)

    model = fit_guarded_fusion("categorical", train_X, train_y, dev_X, dev_y)

    assert model.reliability["audio"]["reliable"] and model.reliability["text"]["reliable"]
    assert plain.dev_score < model.reliability["audio"]["dev_score"] - FUSION_TOLERANCE
    assert model.modalities == ("audio",)
    assert model.rule.startswith(f"audio alone: fusion scored {plain.dev_score:.3f}")
    assert model.dev_score == model.reliability["audio"]["dev_score"]


def test_single_modality_probabilities_are_temperature_scaled_on_development() -> None:
    train_X, train_y, dev_X, dev_y, test_X, _ = guarded_sets(11, "constant", audio_signal=1.0)
    overconfident = [X.copy() for X in (train_X, dev_X, test_X)]
    for X in overconfident:
        X[:, :N_CLASSES] *= 10.0

    model = fit_guarded_fusion("categorical", overconfident[0], train_y, overconfident[1], dev_y)

    assert model.estimator.temperature > 3.0
    proba = model.predict_proba(overconfident[1])
    raw = np.exp(overconfident[1][:, :N_CLASSES] - overconfident[1][:, :N_CLASSES].max(axis=1, keepdims=True))
    raw /= raw.sum(axis=1, keepdims=True)
    rows = np.arange(dev_y.size)
    assert -np.log(proba[rows, dev_y]).mean() < -np.log(raw[rows, dev_y] + 1e-300).mean() - 1.0
    assert np.array_equal(model.predict(overconfident[2]), overconfident[2][:, :N_CLASSES].argmax(axis=1))


def test_classes_unseen_in_training_stay_at_zero_for_a_single_modality() -> None:
    rng = np.random.default_rng(12)
    present = [i for i in range(N_CLASSES) if EMOTIONS[i] != "contempt"]
    train_X, train_y = class_logits(rng, 20, signal=3.0, classes=present)
    dev_X, dev_y = class_logits(rng, 10, signal=3.0, classes=present)
    for X in (train_X, dev_X):
        X[:, N_CLASSES:] = 0.0
    test_X, _ = class_logits(rng, 5, signal=3.0)

    model = fit_guarded_fusion("categorical", train_X, train_y, dev_X, dev_y)

    assert model.modalities == ("audio",)
    assert np.all(model.predict_proba(test_X)[:, emotion_index("contempt")] == 0.0)
    assert emotion_index("contempt") not in set(model.predict(test_X))


def test_attributes_with_a_constant_text_modality_are_the_audio_outputs() -> None:
    rng = np.random.default_rng(13)

    def attributes(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.uniform(1.0, 5.0, (n, 3))
        return fusion_features(y + rng.normal(0.0, 0.3, (n, 3)), np.full((n, 3), 3.0)), y

    (train_X, train_y), (dev_X, dev_y), (test_X, _) = attributes(100), attributes(60), attributes(10)
    model = fit_guarded_fusion("attributes", train_X, train_y, dev_X, dev_y)

    assert model.modalities == ("audio",) and model.hyperparameters()["estimator"] == "identity"
    assert np.array_equal(model.predict(test_X), test_X[:, :3])


def test_a_single_modality_model_round_trips_and_both_missing_is_refused(tmp_path) -> None:
    train_X, train_y, dev_X, dev_y, test_X, _ = guarded_sets(14, "missing")
    model = fit_guarded_fusion("categorical", train_X, train_y, dev_X, dev_y)
    loaded = FusionModel.load(model.save(tmp_path / "fusion.joblib"))
    assert np.array_equal(loaded.predict_proba(test_X), model.predict_proba(test_X))
    assert loaded.hyperparameters() == model.hyperparameters()

    train_X[:, :N_CLASSES] = np.nan
    with pytest.raises(ValueError, match="both are missing"):
        fit_guarded_fusion("categorical", train_X, train_y, dev_X, dev_y)
