"""Speaker-independent train/development/test splits for corpora that have none of their own."""

from __future__ import annotations

import random
from collections.abc import Sequence

DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)


def split_speakers(
    speakers: Sequence[str], seed: int = 13, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
) -> dict[str, str]:
    """Assign each speaker to train/development/test, seeded, with at least one speaker per non-empty split.

    Every utterance of a speaker lands in the same split, so development and test speakers are never seen in training.
    """
    unique = sorted(set(speakers))
    if not unique:
        return {}
    random.Random(seed).shuffle(unique)
    n = len(unique)
    if n < 3:
        return dict.fromkeys(unique, "train")
    n_dev = max(1, round(n * fractions[1]))
    n_test = max(1, round(n * fractions[2]))
    n_train = max(1, n - n_dev - n_test)
    assignment = {}
    for index, speaker in enumerate(unique):
        if index < n_train:
            assignment[speaker] = "train"
        elif index < n_train + n_dev:
            assignment[speaker] = "development"
        else:
            assignment[speaker] = "test"
    return assignment
