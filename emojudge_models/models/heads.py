"""Emotion heads on frozen encoder features: statistics pooling, a residual fully connected stack, task output.

``AudioEmotionModel`` pools frame features (B, T, D) into one utterance vector and classifies it;
``VectorEmotionModel`` is the same head on features that are already one vector per utterance (text CLS
vectors, cached audio mean ++ std). Which one a ``HeadConfig`` builds is decided by its ``pooling``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from emojudge_models.labels import ATTRIBUTES, EMOTIONS, TASKS

CODE_VERSION = "heads-2"
"""Bump when a change to this module changes what a trained head computes (part of ``model_key``)."""

STD_EPS = 1e-6
"""Variance floor before the square root, keeping the std gradient finite for constant features."""

Pooling = Literal["attentive", "meanstd", "none"]
POOLINGS: tuple[str, ...] = ("attentive", "meanstd", "none")


def output_dim(task: str) -> int:
    """Number of model outputs for a task: 8 logits in EMOTIONS order, or arousal/valence/dominance."""
    if task == "categorical":
        return len(EMOTIONS)
    if task == "attributes":
        return len(ATTRIBUTES)
    raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")


@dataclass(frozen=True, kw_only=True)
class HeadConfig:
    """Architecture of an emotion head.

    ``pooling``: "attentive" (attentive statistics pooling), "meanstd" (masked mean ++ std, no parameters)
    or "none" (inputs are already utterance vectors). ``n_hidden_layers`` counts fully connected hidden
    layers; 0 makes the head a linear probe.
    """

    task: str
    input_dim: int
    pooling: Pooling = "attentive"
    attention_dim: int = 128
    hidden_dim: int = 256
    n_hidden_layers: int = 2
    dropout: float = 0.3

    def __post_init__(self) -> None:
        output_dim(self.task)
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; expected one of {', '.join(POOLINGS)}")
        if self.input_dim < 1 or self.hidden_dim < 1 or self.attention_dim < 1 or self.n_hidden_layers < 0:
            raise ValueError(f"head dimensions must be positive (n_hidden_layers >= 0), got {self}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _validate_mask(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Boolean (B, T) mask, True on real frames; every utterance must keep at least one frame."""
    if frames.ndim != 3 or mask.shape != frames.shape[:2]:
        raise ValueError(
            f"expected frames (B, T, D) and mask (B, T), got {tuple(frames.shape)} and {tuple(mask.shape)}"
        )
    mask = mask.to(torch.bool)
    if not bool(mask.any(dim=1).all()):
        raise ValueError("every utterance needs at least one unmasked frame; got a fully padded row")
    return mask


def _weighted_mean_std(frames: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(B, T, D) frames and (B, T) weights summing to 1 over T -> weighted mean ++ weighted std (B, 2D)."""
    mean = torch.einsum("bt,btd->bd", weights, frames)
    variance = torch.einsum("bt,btd->bd", weights, (frames - mean.unsqueeze(1)).pow(2))
    return torch.cat([mean, variance.clamp_min(STD_EPS).sqrt()], dim=-1)


class AttentiveStatisticsPooling(nn.Module):
    """Attentive statistics pooling (Okabe et al., 2018): e_t = v·tanh(W h_t + b), alpha = softmax_t(e).

    Returns the alpha-weighted mean ++ alpha-weighted std of the frames. Padded frames get a score of −inf,
    hence exactly zero weight, and their values never enter the sums. Statistics are computed in float32.
    """

    def __init__(self, input_dim: int, attention_dim: int) -> None:
        super().__init__()
        self.projection = nn.Linear(input_dim, attention_dim)
        self.score = nn.Linear(attention_dim, 1, bias=False)
        self.output_dim = 2 * input_dim

    def attention_weights(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attention weights (B, T), summing to 1 over the real frames of each utterance, 0 on padding."""
        mask = _validate_mask(frames, mask)
        scores = self.score(torch.tanh(self.projection(frames))).squeeze(-1).float()
        return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = self.attention_weights(frames, mask)
        with torch.autocast(device_type=frames.device.type, enabled=False):
            real_frames = frames.float().masked_fill(~mask.to(torch.bool).unsqueeze(-1), 0.0)
            return _weighted_mean_std(real_frames, weights)

    def attention_l2(self) -> torch.Tensor:
        """Squared L2 (Frobenius) norm of the attention projection matrix W, the regulariser added to the loss."""
        return self.projection.weight.pow(2).sum()


class MeanStdPooling(nn.Module):
    """Masked mean ++ std over real frames: the parameter-free probe to compare against attentive pooling."""

    def __init__(self, input_dim: int) -> None:
        super().__init__()
        self.output_dim = 2 * input_dim

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = _validate_mask(frames, mask)
        with torch.autocast(device_type=frames.device.type, enabled=False):
            weights = mask.float() / mask.sum(dim=1, keepdim=True)
            real_frames = frames.float().masked_fill(~mask.unsqueeze(-1), 0.0)
            return _weighted_mean_std(real_frames, weights)


class ResidualBlock(nn.Module):
    """x + g · Dropout(ReLU(LayerNorm(Linear(x)))) with the scalar gate g initialised to 0 (ReZero).

    Each hidden layer keeps the paper's Linear -> LayerNorm -> ReLU -> dropout shape; the zero gate makes a
    freshly built block exactly the identity, so stacking blocks cannot hurt the signal at initialisation,
    while g still receives a gradient on the first step. (Zero-initialising the Linear instead would leave
    LayerNorm normalising a zero vector and the block with no gradient to learn from.)
    """

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.layer = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim), nn.ReLU(), nn.Dropout(dropout))
        self.gate = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gate * self.layer(x)


class ResidualMLP(nn.Module):
    """Input layer Linear -> LayerNorm -> ReLU -> dropout, then residual hidden layers of the same width.

    ``n_hidden_layers=0`` is the identity (the task layer then acts directly on the input).
    """

    def __init__(self, input_dim: int, hidden_dim: int, n_hidden_layers: int, dropout: float) -> None:
        super().__init__()
        if n_hidden_layers == 0:
            self.layers = nn.Sequential()
            self.output_dim = input_dim
            return
        first = nn.Sequential(
            nn.Linear(input_dim, hidden_dim), nn.LayerNorm(hidden_dim), nn.ReLU(), nn.Dropout(dropout)
        )
        blocks = [ResidualBlock(hidden_dim, dropout) for _ in range(n_hidden_layers - 1)]
        self.layers = nn.Sequential(first, *blocks)
        self.output_dim = hidden_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class InputStandardizer(nn.Module):
    """Per-dimension (x - mean) / std with the train set's statistics, stored as buffers in the checkpoint.

    Encoder outputs mix scales (log-mel dB next to pitch in Hz; large activations in a few WavLM channels), and a
    head trained on raw values learns mostly the scale; identity until :meth:`fit` is called.
    """

    def __init__(self, input_dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(input_dim))
        self.register_buffer("std", torch.ones(input_dim))

    def fit(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype))
        self.std.copy_(torch.as_tensor(np.maximum(std, STD_EPS), dtype=self.std.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


class VectorEmotionModel(nn.Module):
    """Residual MLP + task layer on utterance vectors (B, D) -> logits (B, 8) or attributes (B, 3)."""

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        if config.pooling != "none":
            raise ValueError(
                f"VectorEmotionModel takes utterance vectors; config.pooling must be 'none', got {config.pooling!r}"
            )
        self.config = config
        self.standardizer = InputStandardizer(config.input_dim)
        self.mlp = ResidualMLP(config.input_dim, config.hidden_dim, config.n_hidden_layers, config.dropout)
        self.output = nn.Linear(self.mlp.output_dim, output_dim(config.task))

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.output(self.mlp(self.standardizer(vectors)))


class AudioEmotionModel(nn.Module):
    """Pooling over frame features + residual MLP + task layer: (B, T, D) frames, (B, T) mask -> (B, 8 | 3)."""

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        if config.pooling == "attentive":
            self.pooling: nn.Module = AttentiveStatisticsPooling(config.input_dim, config.attention_dim)
        elif config.pooling == "meanstd":
            self.pooling = MeanStdPooling(config.input_dim)
        else:
            raise ValueError("AudioEmotionModel pools frames; use VectorEmotionModel for pooling='none'")
        self.config = config
        self.standardizer = InputStandardizer(config.input_dim)
        self.mlp = ResidualMLP(self.pooling.output_dim, config.hidden_dim, config.n_hidden_layers, config.dropout)
        self.output = nn.Linear(self.mlp.output_dim, output_dim(config.task))

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.mlp(self.pooling(self.standardizer(frames), mask)))

    def attention_l2(self) -> torch.Tensor:
        """The pooling's attention penalty; 0 for parameter-free pooling."""
        if isinstance(self.pooling, AttentiveStatisticsPooling):
            return self.pooling.attention_l2()
        return self.output.weight.new_zeros(())


def build_head_model(config: HeadConfig) -> AudioEmotionModel | VectorEmotionModel:
    """The model a config describes: frame pooling -> AudioEmotionModel, pooling 'none' -> VectorEmotionModel."""
    return VectorEmotionModel(config) if config.pooling == "none" else AudioEmotionModel(config)


@dataclass(frozen=True)
class EnsembleConfig:
    """Several frame heads of one task and input size, averaged (see :class:`EnsembleEmotionModel`)."""

    members: tuple[HeadConfig, ...]

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("an ensemble needs at least one member head")
        if any(m.pooling == "none" for m in self.members):
            raise ValueError("ensemble members must pool frames (attentive or meanstd)")
        if len({(m.task, m.input_dim) for m in self.members}) != 1:
            raise ValueError(f"ensemble members must share task and input_dim, got {self.members}")

    @property
    def task(self) -> str:
        return self.members[0].task

    @property
    def input_dim(self) -> int:
        return self.members[0].input_dim

    def to_dict(self) -> dict[str, Any]:
        return {"members": [member.to_dict() for member in self.members]}

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> EnsembleConfig:
        return cls(tuple(HeadConfig(**member) for member in document["members"]))


class EnsembleEmotionModel(nn.Module):
    """The average of several frame heads: mean class probabilities, returned as log-probabilities (so softmax
    gives the mean back), or mean attribute predictions. Averaging is steadier than picking one head by a small
    development set."""

    def __init__(self, config: EnsembleConfig) -> None:
        super().__init__()
        self.config = config
        self.members = nn.ModuleList(AudioEmotionModel(member) for member in config.members)

    @classmethod
    def of(cls, models: list[AudioEmotionModel]) -> EnsembleEmotionModel:
        """An ensemble holding copies of trained heads' weights."""
        ensemble = cls(EnsembleConfig(tuple(model.config for model in models)))
        for member, model in zip(ensemble.members, models, strict=True):
            member.load_state_dict(model.state_dict())
        return ensemble.eval()

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        outputs = torch.stack([member(frames, mask).float() for member in self.members])
        if self.config.task == "categorical":
            return torch.log(torch.softmax(outputs, dim=-1).mean(dim=0).clamp_min(1e-12))
        return outputs.mean(dim=0)
