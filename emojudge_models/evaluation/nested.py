"""Nested speaker-grouped cross-validation: an honest estimate of accuracy on speakers no choice has seen.

Plain k-fold CV that also picks the head, its settings or the fusion strategy by the same folds' test scores reports
the best of many tries, not what the chosen pipeline will score on new speakers. Here every choice is made inside
the outer training speakers only:

- outer folds: the sorted speakers in ``n_outer`` consecutive groups; fold k tests on group k;
- inner folds (per outer fold, on its training speakers only): the remaining groups in turn are the inner test;
  of the others, the next group is the development split (early stopping, fusion C, the guarded fusion's choice)
  and the rest train;
- the candidate with the best mean inner score is refitted on all the outer training speakers (development: the
  group after the outer test group) and scored once on the outer test speakers.

A candidate is a function of a :class:`Split` (index arrays into the corpus) returning predictions for
``split.test`` under named outputs (``{"audio": ..., "fused": ...}``); the inner choice uses ``select_on``.
:func:`speaker_bootstrap` gives an interval over speakers (clips of one speaker are not independent).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from emojudge_models.evaluation.metrics import f1_macro_of_indices

Candidate = Callable[["Split"], Mapping[str, np.ndarray]]
Metric = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class Split:
    """Corpus indices of one fit: ``train`` fits, ``dev`` selects epochs and C, ``test`` is only predicted."""

    train: np.ndarray
    dev: np.ndarray
    test: np.ndarray


def speaker_groups(speakers: Sequence[str], n_groups: int) -> list[tuple[str, ...]]:
    """The sorted distinct speakers cut into ``n_groups`` consecutive groups of (nearly) equal size."""
    names = sorted({str(s) for s in speakers})
    if n_groups < 3 or len(names) < n_groups:
        raise ValueError(
            f"nested CV needs at least 3 speaker groups of one speaker or more, got {n_groups} groups "
            f"for {len(names)} speakers"
        )
    return [tuple(chunk) for chunk in np.array_split(np.array(names, dtype=object), n_groups)]


def _split(speakers: np.ndarray, test: tuple[str, ...], dev: tuple[str, ...], pool: Sequence[str]) -> Split:
    in_pool = np.isin(speakers, list(pool))
    in_test, in_dev = np.isin(speakers, list(test)), np.isin(speakers, list(dev))
    return Split(np.flatnonzero(in_pool & ~in_test & ~in_dev), np.flatnonzero(in_dev), np.flatnonzero(in_test))


def outer_splits(speakers: Sequence[str], n_groups: int) -> list[Split]:
    """Fold k: test group k, development group k+1 (mod n), train the rest (the refit of the chosen candidate)."""
    speakers = np.asarray([str(s) for s in speakers])
    groups = speaker_groups(speakers, n_groups)
    every = [s for group in groups for s in group]
    return [_split(speakers, groups[k], groups[(k + 1) % n_groups], every) for k in range(n_groups)]


def inner_splits(speakers: Sequence[str], n_groups: int, outer_fold: int) -> list[Split]:
    """The inner folds of outer fold ``outer_fold``: only its training and development speakers, never its test."""
    speakers = np.asarray([str(s) for s in speakers])
    groups = speaker_groups(speakers, n_groups)
    inner = [group for k, group in enumerate(groups) if k != outer_fold]
    pool = [s for group in inner for s in group]
    return [_split(speakers, inner[j], inner[(j + 1) % len(inner)], pool) for j in range(len(inner))]


@dataclass
class OuterFold:
    """One outer fold: the inner scores of every candidate, the choice, and the chosen candidate's test outputs."""

    index: int
    test_speakers: tuple[str, ...]
    inner_scores: dict[str, list[float]]
    chosen: str
    test: np.ndarray
    predictions: dict[str, np.ndarray]
    scores: dict[str, float] = field(default_factory=dict)


@dataclass
class NestedResult:
    folds: list[OuterFold]
    select_on: str

    def predictions(self, output: str) -> tuple[np.ndarray, np.ndarray]:
        """(corpus indices, predictions) of ``output`` over every outer test clip."""
        return (
            np.concatenate([fold.test for fold in self.folds]),
            np.concatenate([fold.predictions[output] for fold in self.folds]),
        )

    def fold_scores(self, output: str) -> list[float]:
        return [fold.scores[output] for fold in self.folds]


def nested_cv(
    speakers: Sequence[str],
    labels: np.ndarray,
    candidates: Mapping[str, Candidate],
    *,
    n_groups: int,
    select_on: str,
    metric: Metric = f1_macro_of_indices,
    log: Callable[[str], None] = lambda _: None,
) -> NestedResult:
    """Run nested speaker-grouped CV of ``candidates``; ties in the inner mean go to the first candidate listed."""
    if not candidates:
        raise ValueError("nested_cv needs at least one candidate")
    labels = np.asarray(labels)
    folds = []
    for k, outer in enumerate(outer_splits(speakers, n_groups)):
        inner = inner_splits(speakers, n_groups, k)
        inner_scores: dict[str, list[float]] = {}
        for name, candidate in candidates.items():
            inner_scores[name] = [metric(labels[s.test], candidate(s)[select_on]) for s in inner]
            log(f"outer {k} {name}: inner {select_on} {np.mean(inner_scores[name]):.3f}")
        chosen = max(inner_scores, key=lambda name: np.mean(inner_scores[name]))
        predictions = {key: np.asarray(value) for key, value in candidates[chosen](outer).items()}
        scores = {key: metric(labels[outer.test], value) for key, value in predictions.items()}
        test_speakers = tuple(sorted(set(np.asarray([str(s) for s in speakers])[outer.test])))
        folds.append(OuterFold(k, test_speakers, inner_scores, chosen, outer.test, predictions, scores))
        log(f"outer {k} chose {chosen}: test " + ", ".join(f"{key} {v:.3f}" for key, v in scores.items()))
    return NestedResult(folds, select_on)


def speaker_bootstrap(
    speakers: Sequence[str],
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    metric: Metric = f1_macro_of_indices,
) -> tuple[float, float]:
    """Percentile interval of ``metric`` over the pooled clips when speakers are resampled with replacement."""
    speakers = np.asarray([str(s) for s in speakers])
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    names = np.unique(speakers)
    clips = {name: np.flatnonzero(speakers == name) for name in names}
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_resamples):
        chosen = np.concatenate([clips[name] for name in rng.choice(names, size=len(names))])
        values.append(metric(y_true[chosen], y_pred[chosen]))
    tail = (1.0 - level) / 2
    return float(np.quantile(values, tail)), float(np.quantile(values, 1.0 - tail))
