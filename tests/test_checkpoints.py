import json
from pathlib import Path

import pytest
import torch

from emojudge_models.models import heads
from emojudge_models.models.checkpoints import load_checkpoint, read_checkpoint_config, save_checkpoint
from emojudge_models.models.heads import EnsembleConfig, EnsembleEmotionModel, HeadConfig, build_head_model


@pytest.mark.parametrize(
    ("pooling", "kind"), [("attentive", "audio_head"), ("meanstd", "audio_head"), ("none", "vector_head")]
)
def test_head_round_trip_gives_identical_logits(tmp_path: Path, pooling: str, kind: str) -> None:
    torch.manual_seed(0)
    config = HeadConfig(
        task="categorical", input_dim=6, pooling=pooling, attention_dim=4, hidden_dim=8, n_hidden_layers=3
    )
    model = build_head_model(config).eval()
    with torch.no_grad():  # move the zero-initialised residual gates so the round trip checks real weights
        for block in model.mlp.layers[1:]:
            block.gate.fill_(0.5)
    inputs = (torch.randn(3, 6),) if pooling == "none" else (torch.randn(3, 5, 6), torch.ones(3, 5, dtype=bool))

    directory = save_checkpoint(model, {"lr": 1e-4}, tmp_path / "head")
    restored = load_checkpoint(directory, "cpu")

    assert type(restored) is type(model) and restored.config == config and not restored.training
    assert torch.equal(restored(*inputs), model(*inputs))
    document = json.loads((directory / "config.json").read_text())
    assert document["kind"] == kind and document["code_version"] == heads.CODE_VERSION
    assert document["metadata"] == {"lr": 1e-4}
    assert (directory / "model.safetensors").is_file()


def test_loading_a_directory_without_a_checkpoint_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        load_checkpoint(tmp_path, "cpu")
    (tmp_path / "config.json").write_text(json.dumps({"kind": "fusion"}))
    with pytest.raises(ValueError, match="not an emojudge checkpoint"):
        read_checkpoint_config(tmp_path)


def test_saving_an_unknown_model_type_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="Linear"):
        save_checkpoint(torch.nn.Linear(2, 2), {}, tmp_path)


@pytest.mark.parametrize("task", ["categorical", "attributes"])
def test_ensemble_averages_its_members_and_round_trips(tmp_path: Path, task: str) -> None:
    torch.manual_seed(0)
    members = [
        build_head_model(HeadConfig(task=task, input_dim=6, pooling=p, attention_dim=4, hidden_dim=8)).eval()
        for p in ("attentive", "meanstd")
    ]
    ensemble = EnsembleEmotionModel.of(members)
    frames, mask = torch.randn(3, 5, 6), torch.ones(3, 5, dtype=bool)
    with torch.no_grad():
        outputs = [m(frames, mask) for m in members]
        got = ensemble(frames, mask)
    if task == "categorical":
        expected = (torch.softmax(outputs[0], -1) + torch.softmax(outputs[1], -1)) / 2
        torch.testing.assert_close(torch.softmax(got, -1), expected)
    else:
        torch.testing.assert_close(got, (outputs[0] + outputs[1]) / 2)

    restored = load_checkpoint(save_checkpoint(ensemble, {}, tmp_path / "ensemble"), "cpu")
    assert isinstance(restored, EnsembleEmotionModel) and restored.config == ensemble.config
    assert read_checkpoint_config(tmp_path / "ensemble")["kind"] == "audio_ensemble"
    with torch.no_grad():
        assert torch.equal(restored(frames, mask), got)


def test_ensemble_members_must_agree() -> None:
    with pytest.raises(ValueError, match="share task"):
        EnsembleConfig((HeadConfig(task="categorical", input_dim=6), HeadConfig(task="categorical", input_dim=7)))
    with pytest.raises(ValueError, match="at least one"):
        EnsembleConfig(())
