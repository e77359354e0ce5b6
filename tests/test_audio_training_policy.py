"""The training asset's audio policies: ``ensemble`` averages every candidate, ``auto`` keeps one."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from emojudge_models.features.datasets import SplitData
from emojudge_models.features.speaker_norm import SpeakerNormaliser
from emojudge_models.models.heads import AudioEmotionModel, EnsembleEmotionModel
from emojudge_pipeline.assets.training import AUDIO_HEADS, _train_audio
from emojudge_pipeline.resources import TrainingResource


class FramesStore:
    """Just enough of FeatureStore for ``frames_for``: frames by utterance id."""

    def __init__(self, frames: dict[str, np.ndarray]) -> None:
        self.frames = frames

    def read_frames(self, eval_set: str, utterance_ids: list[str], key: str):
        return ((u, self.frames[u]) for u in utterance_ids)


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


@pytest.mark.parametrize("policy", ["ensemble", "auto"])
def test_policies_train_every_candidate(data, policy: str) -> None:
    training = TrainingResource(audio_pooling=policy, max_epochs=3)
    store, train, dev = data
    rows = pd.concat([train.rows, dev.rows])
    normaliser = SpeakerNormaliser.for_rows(rows, min_utterances=2).add_all(
        (("s", u), store.frames[u]) for u in rows["utterance_id"]
    )
    models = SimpleNamespace(torch_device=lambda: "cpu", seed=0)
    result, config, scores = _train_audio(
        store, "key", train, dev, "categorical", models, training, lambda _: None, normaliser
    )
    assert set(AUDIO_HEADS) <= set(scores)
    if policy == "ensemble":
        assert isinstance(result.model, EnsembleEmotionModel) and len(result.model.members) == len(AUDIO_HEADS)
        assert config == result.model.config
        assert scores["ensemble"]["dev"] == result.dev_metric
        assert {row["head"] for row in result.history} == set(AUDIO_HEADS)
    else:
        assert isinstance(result.model, AudioEmotionModel) and config.head == result.model.config
        assert result.dev_metric == max(s["dev"] for s in scores.values())
    assert 0.0 <= result.dev_metric <= 1.0
