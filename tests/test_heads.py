import numpy as np
import pytest
import torch
from torch import nn

from emojudge_models.models.heads import (
    AttentiveStatisticsPooling,
    AudioEmotionModel,
    HeadConfig,
    MeanStdPooling,
    ResidualBlock,
    ResidualMLP,
    VectorEmotionModel,
    build_head_model,
)


def _frames_and_mask(lengths: list[int], dim: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    frames = torch.randn(len(lengths), max(lengths), dim, generator=generator)
    mask = torch.arange(max(lengths)).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    return frames, mask


@pytest.mark.parametrize("pooling", [AttentiveStatisticsPooling(6, 4), MeanStdPooling(6)])
def test_pooling_outputs_mean_and_std_per_utterance(pooling: nn.Module) -> None:
    frames, mask = _frames_and_mask([5, 2, 7])
    assert pooling(frames, mask).shape == (3, 12)
    assert pooling.output_dim == 12


def test_padded_frames_get_exactly_zero_attention_weight() -> None:
    torch.manual_seed(0)
    pooling = AttentiveStatisticsPooling(6, 4)
    frames, mask = _frames_and_mask([5, 2, 7])
    weights = pooling.attention_weights(frames, mask)
    assert torch.all(weights[~mask] == 0)
    assert torch.all(weights[mask] > 0)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(3))


@pytest.mark.parametrize("pooling", [AttentiveStatisticsPooling(6, 4), MeanStdPooling(6)])
def test_appending_padding_does_not_change_the_output(pooling: nn.Module) -> None:
    frames, mask = _frames_and_mask([5, 2, 7])
    garbage = 1e3 * torch.randn(3, 4, 6)
    longer_frames = torch.cat([frames, garbage], dim=1)
    longer_mask = torch.cat([mask, torch.zeros(3, 4, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(pooling(longer_frames, longer_mask), pooling(frames, mask), rtol=0, atol=1e-6)


def test_float_mask_is_accepted_like_a_boolean_one() -> None:
    pooling = AttentiveStatisticsPooling(6, 4)
    frames, mask = _frames_and_mask([5, 2, 7])
    torch.testing.assert_close(pooling(frames, mask.float()), pooling(frames, mask))


def test_meanstd_pooling_equals_numpy_statistics_of_real_frames() -> None:
    frames, mask = _frames_and_mask([5, 2, 7])
    pooled = MeanStdPooling(6)(frames, mask).numpy()
    for row, length in enumerate([5, 2, 7]):
        real = frames[row, :length].numpy()
        np.testing.assert_allclose(pooled[row], np.concatenate([real.mean(0), real.std(0)]), rtol=1e-5, atol=1e-6)


def test_attentive_pooling_with_flat_scores_reduces_to_mean_std() -> None:
    pooling = AttentiveStatisticsPooling(6, 4)
    nn.init.zeros_(pooling.score.weight)
    frames, mask = _frames_and_mask([5, 2, 7])
    torch.testing.assert_close(pooling(frames, mask), MeanStdPooling(6)(frames, mask))


def test_fully_padded_utterance_is_rejected() -> None:
    frames, mask = _frames_and_mask([3, 1])
    mask[1] = False
    with pytest.raises(ValueError, match="fully padded"):
        AttentiveStatisticsPooling(6, 4)(frames, mask)


def test_attention_l2_is_squared_norm_of_projection_matrix_and_has_gradient() -> None:
    pooling = AttentiveStatisticsPooling(6, 4)
    penalty = pooling.attention_l2()
    torch.testing.assert_close(penalty, (pooling.projection.weight**2).sum())
    penalty.backward()
    torch.testing.assert_close(pooling.projection.weight.grad, 2 * pooling.projection.weight.detach())


def test_residual_block_is_identity_at_init_even_in_train_mode_then_learns() -> None:
    torch.manual_seed(0)
    block = ResidualBlock(16, dropout=0.5).train()
    x = torch.randn(8, 16)
    assert torch.equal(block(x), x)
    optimizer = torch.optim.SGD(block.parameters(), lr=0.1)
    block(x).pow(2).sum().backward()
    assert block.gate.grad is not None and block.gate.grad.abs() > 0
    optimizer.step()
    assert not torch.equal(block.eval()(x), x)


def test_residual_mlp_layers_and_widths() -> None:
    mlp = ResidualMLP(12, 16, n_hidden_layers=3, dropout=0.1)
    assert mlp(torch.randn(4, 12)).shape == (4, 16)
    assert [type(m) for m in mlp.layers[0]] == [nn.Linear, nn.LayerNorm, nn.ReLU, nn.Dropout]
    assert sum(isinstance(m, ResidualBlock) for m in mlp.layers) == 2
    x = torch.randn(4, 12)
    assert torch.equal(ResidualMLP(12, 16, n_hidden_layers=0, dropout=0.1)(x), x)


@pytest.mark.parametrize(("task", "n_outputs"), [("categorical", 8), ("attributes", 3)])
@pytest.mark.parametrize("pooling", ["attentive", "meanstd"])
def test_audio_model_output_shapes(task: str, n_outputs: int, pooling: str) -> None:
    model = AudioEmotionModel(HeadConfig(task=task, input_dim=6, pooling=pooling, attention_dim=4, hidden_dim=8))
    frames, mask = _frames_and_mask([5, 2, 7])
    assert model(frames, mask).shape == (3, n_outputs)
    expected_penalty = (model.pooling.projection.weight**2).sum() if pooling == "attentive" else torch.tensor(0.0)
    torch.testing.assert_close(model.attention_l2(), expected_penalty)


def test_vector_model_and_build_head_model_follow_pooling() -> None:
    config = HeadConfig(task="categorical", input_dim=6, pooling="none", n_hidden_layers=0)
    model = build_head_model(config)
    assert isinstance(model, VectorEmotionModel)
    assert model(torch.randn(4, 6)).shape == (4, 8)
    assert isinstance(build_head_model(HeadConfig(task="attributes", input_dim=6)), AudioEmotionModel)
    with pytest.raises(ValueError, match="VectorEmotionModel"):
        AudioEmotionModel(config)
    with pytest.raises(ValueError, match="pooling must be 'none'"):
        VectorEmotionModel(HeadConfig(task="categorical", input_dim=6))


def test_head_config_rejects_unknown_task_and_pooling() -> None:
    with pytest.raises(ValueError, match="unknown task"):
        HeadConfig(task="sentiment", input_dim=4)
    with pytest.raises(ValueError, match="unknown pooling"):
        HeadConfig(task="categorical", input_dim=4, pooling="max")
