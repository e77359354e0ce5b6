"""The training policy: which heads each audio policy trains, how it assembles them, and the request key."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from emojudge_models.features.datasets import SplitData
from emojudge_models.features.speaker_norm import SpeakerNormaliser
from emojudge_models.models.heads import AudioEmotionModel, EnsembleEmotionModel
from emojudge_models.models.loop import TrainConfig
from emojudge_models.models.policy import (
    AUDIO_HEADS,
    ENSEMBLE_HEADS,
    HEAD_TRAINING,
    audio_candidates,
    check_audio_policy,
    model_kind,
    train_audio_policy,
    training_request_key,
)
from emojudge_pipeline.assets.training import _train_audio, _train_config
from emojudge_pipeline.resources import TrainingResource


class FramesStore:
    """Frames by utterance id."""

    def __init__(self, frames: dict[str, np.ndarray]) -> None:
        self.frames = frames


def _split(ids: list[str], labels: list[int], speakers: list[str]) -> SplitData:
    rows = pd.DataFrame({"eval_set": "s", "utterance_id": ids, "speaker_id": speakers, "n_frames": 12})
    return SplitData(rows, labels)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    ids = [f"u{i}" for i in range(24)]
    labels = [i % 3 for i in range(24)]
    speakers = [f"spk{i % 4}" for i in range(24)]
    frames = {u: (rng.normal(size=(12, 6)) + 3 * y).astype(np.float16) for u, y in zip(ids, labels, strict=True)}
    train = _split(ids[:16], labels[:16], speakers[:16])
    dev = _split(ids[16:], labels[16:], speakers[16:])
    return FramesStore(frames), train, dev


def test_candidates_per_policy() -> None:
    assert audio_candidates("ensemble") == ENSEMBLE_HEADS == ("meanstd", "probe")
    assert audio_candidates("auto") == ("attentive", "meanstd", "probe")
    assert audio_candidates("probe") == ("probe",)
    with pytest.raises(ValueError, match="ensemble, auto, logreg, attentive, meanstd, probe, not 'max'"):
        audio_candidates("max")
    assert check_audio_policy("meanstd") == "meanstd"
    assert (model_kind("audio", "finetune"), model_kind("text", "head"), model_kind("text", "finetune")) == (
        "audio_head",
        "text_head",
        "text_finetune",
    )


@pytest.mark.parametrize("policy", ["ensemble", "auto"])
def test_policies_train_every_candidate(data, policy: str) -> None:
    training = TrainingResource(audio_pooling=policy, max_epochs=3)
    store, train, dev = data
    rows = pd.concat([train.rows, dev.rows])
    normaliser = SpeakerNormaliser.for_rows(rows, min_utterances=2).add_all(
        (("s", u), store.frames[u]) for u in rows["utterance_id"]
    )
    models = SimpleNamespace(torch_device=lambda: "cpu", seed=0)
    debug: list[str] = []
    info: list[str] = []
    inputs = []
    for split in (train, dev):
        keys = [("s", u) for u in split.utterance_ids]
        frames = normaliser.apply(keys, [store.frames[u] for u in split.utterance_ids])
        inputs.append(list(zip(frames, split.targets, strict=True)))
    log = SimpleNamespace(debug=debug.append, info=info.append)
    trained = _train_audio(inputs, "categorical", models, training, log)
    result, config, scores = trained.result, trained.config, trained.scores
    heads = set(ENSEMBLE_HEADS if policy == "ensemble" else AUDIO_HEADS)
    assert set(trained.candidates) == heads and heads <= set(scores)
    assert sum(line.startswith("probe epoch ") for line in debug) == len(trained.candidates["probe"].history)
    assert not any(" epoch " in line for line in info)
    if policy == "ensemble":
        assert isinstance(result.model, EnsembleEmotionModel) and len(result.model.members) == len(ENSEMBLE_HEADS)
        assert config == result.model.config
        assert scores["ensemble"]["dev"] == result.dev_metric
        assert {row["head"] for row in result.history} == heads
    else:
        assert isinstance(result.model, AudioEmotionModel) and config.head == result.model.config
        assert result.dev_metric == max(s["dev"] for s in scores.values()) and "ensemble" not in scores
    assert 0.0 <= result.dev_metric <= 1.0


def test_a_named_candidate_trains_alone(data) -> None:
    store, train, dev = data
    items = [(store.frames[u], y) for u, y in zip(train.utterance_ids, train.targets, strict=True)]
    dev_items = [(store.frames[u], y) for u, y in zip(dev.utterance_ids, dev.targets, strict=True)]
    trained = train_audio_policy(
        items, dev_items, policy="probe", task="categorical", train=TrainConfig(max_epochs=2), device="cpu", seed=0
    )
    assert list(trained.candidates) == ["probe"] and list(trained.scores) == ["probe"]
    assert trained.config.head.n_hidden_layers == 0 and trained.config.head.pooling == "meanstd"
    assert trained.result is trained.candidates["probe"]


def test_default_head_training_is_the_policy_default() -> None:
    assert _train_config(TrainingResource()) == HEAD_TRAINING


def _request(kind: str, data, **changes) -> str:
    _, train, dev = data
    settings = {
        "encoder_key": "enc",
        "train": train,
        "dev": dev,
        "seed": 0,
        "audio_policy": "ensemble",
        "speaker_norm": "speaker",
        "head_training": HEAD_TRAINING,
        "text_encoder": {"kind": "minilm"},
    }
    return training_request_key(kind, **(settings | changes))


def test_request_key_tracks_only_the_settings_a_kind_uses(data) -> None:
    _, train, dev = data
    audio, text = _request("audio_head", data), _request("text_head", data)
    assert audio == _request("audio_head", data) and audio != text
    assert _request("audio_head", data, audio_policy="auto") != audio
    assert _request("audio_head", data, speaker_norm="none") != audio
    assert _request("audio_head", data, seed=1) != audio
    assert _request("audio_head", data, encoder_key="other") != audio
    assert _request("audio_head", data, head_training=TrainConfig(lr=5e-4)) != audio
    relabelled = SplitData(train.rows, [(y + 1) % 3 for y in train.targets])
    assert _request("audio_head", data, train=relabelled) != audio
    assert _request("audio_head", data, train=dev, dev=train) != audio
    assert _request("text_head", data, audio_policy="auto", speaker_norm="none") == text
    finetune = _request("text_finetune", data)
    assert _request("text_finetune", data, head_training=TrainConfig(lr=5e-4)) == finetune
    assert _request("text_finetune", data, text_encoder={"kind": "hf", "model": "x"}) != finetune


def test_request_key_covers_the_ensembles_heads(data, monkeypatch) -> None:
    """Changing which heads the ensemble averages must not reuse a model trained with the old ones."""
    from emojudge_models.models import policy

    before = _request("audio_head", data)
    monkeypatch.setattr(policy, "ENSEMBLE_HEADS", ("attentive", "meanstd", "probe"))
    assert _request("audio_head", data) != before
    assert _request("text_head", data) == _request("text_head", data, audio_policy="auto")
