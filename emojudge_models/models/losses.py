"""Training losses: class-weighted focal loss (categories) and 1 − CCC (attributes)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

CCC_EPS = 1e-8
"""Added to the CCC denominator so that two equal constant series give 0, not NaN."""


def class_alpha(labels: Sequence[int] | np.ndarray, n_classes: int) -> torch.Tensor:
    """Class-balancing focal-loss alpha from train-set label frequencies.

    alpha_c = N / (K · n_c) over the K classes present (scikit-learn's "balanced" weights): inverse frequency,
    normalised so that the average weight per training example is 1 and the loss keeps the scale of plain
    cross-entropy. Classes absent from ``labels`` get weight 0 (they never occur in the training loss).
    """
    labels = np.asarray(labels, dtype=np.int64)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"class_alpha needs a non-empty 1-D array of class indices, got shape {labels.shape}")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"class indices must lie in [0, {n_classes}), got {labels.min()}..{labels.max()}")
    present = np.unique(labels)
    alpha = np.zeros(n_classes, dtype=np.float32)
    alpha[present] = compute_class_weight("balanced", classes=present, y=labels)
    return torch.from_numpy(alpha)


class WeightedFocalLoss(nn.Module):
    """Focal loss −alpha_y (1 − p_y)^gamma log p_y, averaged over the batch (Lin et al., 2017).

    With ``gamma=0`` and ``alpha`` None (or all ones) it is exactly the mean cross-entropy.
    """

    def __init__(self, alpha: torch.Tensor | None = None, gamma: float = 2.0) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"focal gamma must be >= 0, got {gamma}")
        self.gamma = gamma
        self.register_buffer("alpha", None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=-1).gather(1, targets.long().unsqueeze(1)).squeeze(1)
        loss = -log_p
        if self.gamma > 0:
            loss = loss * (1.0 - log_p.exp()).clamp_min(0.0).pow(self.gamma)
        if self.alpha is not None:
            loss = loss * self.alpha[targets.long()]
        return loss.mean()


def ccc(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Concordance correlation coefficient along dim 0, population moments: (N,) -> scalar, (N, K) -> (K,)."""
    x, y = x.float(), y.float()
    mean_x, mean_y = x.mean(dim=0), y.mean(dim=0)
    var_x = x.var(dim=0, unbiased=False)
    var_y = y.var(dim=0, unbiased=False)
    covariance = ((x - mean_x) * (y - mean_y)).mean(dim=0)
    return 2.0 * covariance / (var_x + var_y + (mean_x - mean_y).pow(2) + CCC_EPS)


class CCCLoss(nn.Module):
    """Sum over the attribute columns (arousal, valence, dominance) of 1 − CCC(prediction, target)."""

    def forward(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if predictions.shape != targets.shape or predictions.ndim != 2:
            raise ValueError(
                f"CCCLoss needs predictions and targets of equal shape (N, K), "
                f"got {tuple(predictions.shape)} and {tuple(targets.shape)}"
            )
        return (1.0 - ccc(predictions, targets)).sum()
