import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emojudge_models.models.losses import CCCLoss, WeightedFocalLoss, ccc, class_alpha


def _reference_ccc(x: np.ndarray, y: np.ndarray) -> float:
    covariance = np.mean((x - x.mean()) * (y - y.mean()))
    return 2 * covariance / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


@pytest.fixture
def logits_and_targets() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(32, 8, generator=generator) * 3, torch.randint(0, 8, (32,), generator=generator)


@pytest.mark.parametrize("alpha", [None, torch.ones(8)])
def test_focal_loss_is_cross_entropy_at_gamma_zero(logits_and_targets, alpha) -> None:
    logits, targets = logits_and_targets
    loss = WeightedFocalLoss(alpha=alpha, gamma=0.0)(logits, targets)
    torch.testing.assert_close(loss, F.cross_entropy(logits, targets))


def test_focal_loss_matches_its_formula_with_alpha_and_gamma(logits_and_targets) -> None:
    logits, targets = logits_and_targets
    alpha = torch.linspace(0.5, 2.0, 8)
    p = torch.softmax(logits, dim=1)[torch.arange(32), targets]
    expected = (-alpha[targets] * (1 - p) ** 2 * torch.log(p)).mean()
    torch.testing.assert_close(WeightedFocalLoss(alpha=alpha, gamma=2.0)(logits, targets), expected)


def test_focal_loss_down_weights_confident_correct_examples() -> None:
    logits = torch.tensor([[6.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    targets = torch.tensor([0])
    p_correct = torch.softmax(logits, dim=1)[0, 0]
    focal, cross_entropy = WeightedFocalLoss(gamma=2.0)(logits, targets), F.cross_entropy(logits, targets)
    assert focal < 1e-3 * cross_entropy
    torch.testing.assert_close(focal / cross_entropy, (1 - p_correct) ** 2)


def test_focal_loss_rejects_negative_gamma() -> None:
    with pytest.raises(ValueError, match="gamma"):
        WeightedFocalLoss(gamma=-1.0)


def test_class_alpha_is_inverse_frequency_with_unit_mean_weight_and_zero_for_absent_classes() -> None:
    labels = np.array([0] * 6 + [1] * 3 + [3] * 1)
    alpha = class_alpha(labels, n_classes=8).numpy()
    assert np.isfinite(alpha).all()
    np.testing.assert_allclose(alpha[[0, 1, 3]], [10 / (3 * 6), 10 / (3 * 3), 10 / (3 * 1)], rtol=1e-6)
    np.testing.assert_array_equal(alpha[[2, 4, 5, 6, 7]], 0.0)
    assert alpha[labels].mean() == pytest.approx(1.0)


def test_class_alpha_rejects_out_of_range_labels() -> None:
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        class_alpha([0, 8], n_classes=8)


def test_ccc_matches_reference_formula_on_random_data() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 3))
    y = 0.6 * x + rng.normal(0.3, 0.8, size=(50, 3))
    expected = [_reference_ccc(x[:, k], y[:, k]) for k in range(3)]
    result = ccc(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    np.testing.assert_allclose(result, expected, rtol=1e-5)
    assert float(ccc(torch.from_numpy(x[:, 0]), torch.from_numpy(y[:, 0]))) == pytest.approx(expected[0], rel=1e-5)


def test_ccc_loss_is_zero_for_identical_vectors_and_sums_one_minus_ccc() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = rng.normal(size=(40, 3)).astype(np.float32)
    loss = CCCLoss()
    assert float(loss(torch.from_numpy(x), torch.from_numpy(x))) == pytest.approx(0.0, abs=1e-6)
    expected = sum(1 - _reference_ccc(x[:, k].astype(np.float64), y[:, k].astype(np.float64)) for k in range(3))
    assert float(loss(torch.from_numpy(x), torch.from_numpy(y))) == pytest.approx(expected, rel=1e-5)


def test_ccc_loss_penalises_scale_and_shift_that_correlation_ignores() -> None:
    x = torch.linspace(-1, 1, 20).unsqueeze(1).repeat(1, 3)
    assert float(CCCLoss()(2 * x + 1, x)) > 0.5


def test_ccc_loss_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="equal shape"):
        CCCLoss()(torch.zeros(4, 3), torch.zeros(4, 2))
