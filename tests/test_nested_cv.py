"""Nested speaker-grouped CV (emojudge_models/evaluation/nested.py): no test speaker ever reaches a choice."""

from __future__ import annotations

import numpy as np
import pytest

from emojudge_models.evaluation.nested import (
    Split,
    inner_splits,
    nested_cv,
    outer_splits,
    speaker_bootstrap,
    speaker_groups,
)

N_SPEAKERS, CLIPS, GROUPS = 6, 4, 6


def synthetic(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    speakers = np.repeat([f"spk{i:02d}" for i in range(N_SPEAKERS)], CLIPS)
    labels = np.random.default_rng(seed).integers(0, 3, size=len(speakers))
    return speakers, labels


class Recorder:
    """A candidate that predicts the training majority (or a fixed class) and records every split it is given."""

    def __init__(self, labels: np.ndarray, constant: int | None = None) -> None:
        self.labels, self.constant, self.calls = labels, constant, []

    def __call__(self, split: Split) -> dict[str, np.ndarray]:
        self.calls.append(split)
        value = self.constant if self.constant is not None else np.bincount(self.labels[split.train]).argmax()
        return {"fused": np.full(len(split.test), value)}


def test_speaker_groups_cover_every_speaker_once():
    speakers, _ = synthetic()
    groups = speaker_groups(speakers, 3)
    assert groups == [("spk00", "spk01"), ("spk02", "spk03"), ("spk04", "spk05")]
    with pytest.raises(ValueError, match="at least 3 speaker groups"):
        speaker_groups(speakers, 2)


def test_inner_splits_never_hold_the_outer_test_speakers():
    speakers, _ = synthetic()
    for k, outer in enumerate(outer_splits(speakers, GROUPS)):
        test_speakers = set(speakers[outer.test])
        assert test_speakers == {f"spk{k:02d}"}
        assert set(speakers[outer.dev]) == {f"spk{(k + 1) % GROUPS:02d}"}
        assert len(outer.train) + len(outer.dev) + len(outer.test) == len(speakers)
        inner = inner_splits(speakers, GROUPS, k)
        assert len(inner) == GROUPS - 1
        for split in inner:
            used = np.concatenate([split.train, split.dev, split.test])
            assert not test_speakers & set(speakers[used])
            assert (
                len(set(split.train) | set(split.dev) | set(split.test))
                == len(used)
                == len(outer.train) + len(outer.dev)
            )
            assert not set(speakers[split.test]) & set(speakers[split.train])


def test_choices_see_only_training_speakers_and_the_test_is_predicted_once():
    speakers, labels = synthetic()
    majority, constant = Recorder(labels), Recorder(labels, constant=2)
    result = nested_cv(
        speakers, labels, {"majority": majority, "constant": constant}, n_groups=GROUPS, select_on="fused"
    )
    # each candidate: GROUPS - 1 inner fits per outer fold; the chosen one also one outer fit
    assert len(majority.calls) + len(constant.calls) == 2 * GROUPS * (GROUPS - 1) + GROUPS
    calls = {"majority": iter(majority.calls), "constant": iter(constant.calls)}
    for fold in result.folds:
        test = set(fold.test.tolist())
        for name in ("majority", "constant"):
            for _ in range(GROUPS - 1):
                split = next(calls[name])
                assert not test & set(np.concatenate([split.train, split.dev, split.test]).tolist())
            if fold.chosen == name:
                final = next(calls[name])
                np.testing.assert_array_equal(final.test, fold.test)
                assert not test & set(np.concatenate([final.train, final.dev]).tolist())
        means = {name: np.mean(scores) for name, scores in fold.inner_scores.items()}
        assert fold.chosen == max(means, key=means.get)


def test_the_test_speakers_labels_never_change_that_folds_choice():
    speakers, labels = synthetic()
    changed = labels.copy()
    changed[speakers == "spk03"] = 2  # the constant candidate would now be perfect on spk03
    runs = []
    for values in (labels, changed):
        candidates = {"majority": Recorder(values), "constant": Recorder(values, constant=2)}
        runs.append(nested_cv(speakers, values, candidates, n_groups=GROUPS, select_on="fused"))
    before, after = runs[0].folds[3], runs[1].folds[3]
    assert before.test_speakers == ("spk03",)
    assert before.inner_scores == after.inner_scores
    assert before.chosen == after.chosen
    assert after.scores["fused"] != before.scores["fused"]  # the test labels did change what the fold scores


def test_speaker_bootstrap_interval_brackets_the_pooled_score_and_collapses_when_perfect():
    speakers, labels = synthetic()
    noisy = labels.copy()
    noisy[::3] = (noisy[::3] + 1) % 3
    low, high = speaker_bootstrap(speakers, labels, noisy, n_resamples=500)
    assert 0.0 <= low < high <= 1.0
    assert speaker_bootstrap(speakers, labels, labels, n_resamples=50) == (1.0, 1.0)
