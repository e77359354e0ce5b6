"""Per-speaker normalisation over a speaker's few emotions (issue 32: why episode F1 stays under the isolated clips).

An isolated RAVDESS speaker is normalised over 14 clips spanning 7 emotions; in a built episode's ``turn`` regime a
diarized speaker may hold two or three emotions, and its normalisation then takes away part of the emotion itself.
For each outer fold of the shipped recipe's nested speaker-grouped CV (models/shipped_recipe.py, clips and speech
copies), each held-out speaker's speech copies are drawn as subsets of K of its emotions (20 draws for K < 7); the
subset is normalised with statistics that mix its own (weight w) with the training speakers' pooled frame
statistics (1 - w), as features/speaker_norm.py's ``shrink_toward`` mixes them, and scored. Accuracy over all
draws, per K and w (w = 1: what the pipeline does for a speaker with enough speech).

Run by hand: ``python bench/bench_speaker_norm_skew.py [--data ../shared/data/ravdess-dev]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from train_shipped_model import DEFAULT_CACHE, DEFAULT_DATA, encode, targets

from emojudge_models.evaluation.nested import speaker_groups
from emojudge_models.features.speaker_norm import STD_FLOOR, shrink_toward
from emojudge_models.models import shipped_recipe
from emojudge_models.models.linear_probe import pooled_stats

EMOTION_COUNTS = (2, 3, 4, 7)
WEIGHTS = (1.0, 0.75, 0.5, 0.25, 0.0)
DRAWS = 20


def moments(frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    stacked = np.concatenate(frames).astype(np.float64)
    return stacked.mean(axis=0), stacked.std(axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args()
    rows, frames, _ = encode(args.data, args.cache)
    _, speech, _ = encode(args.data, args.cache, speech_copies=True)
    y, speakers = targets(rows)
    x = shipped_recipe.normalised_stats(frames, speakers)
    copies = shipped_recipe.normalised_stats(speech, speakers)
    hits = {(k, w): [] for k in EMOTION_COUNTS for w in WEIGHTS}
    rng = np.random.default_rng(0)
    for group in speaker_groups(speakers, shipped_recipe.N_GROUPS):
        held = np.isin(speakers, group)
        train = shipped_recipe.with_copies(x[~held], copies[~held], y[~held], speakers[~held])
        model = shipped_recipe.train(*train).model
        pool = moments([speech[i] for i in np.flatnonzero(~held)])
        for speaker in group:
            clips = np.flatnonzero(speakers == speaker)
            for k in EMOTION_COUNTS:
                for _ in range(DRAWS if k < len(np.unique(y[clips])) else 1):
                    chosen = rng.choice(np.unique(y[clips]), size=min(k, len(np.unique(y[clips]))), replace=False)
                    subset = clips[np.isin(y[clips], chosen)]
                    own = moments([speech[i] for i in subset])
                    for w in WEIGHTS:
                        mean, std = shrink_toward(own, pool, w)
                        stats = pooled_stats([(speech[i] - mean) / np.maximum(std, STD_FLOOR) for i in subset])
                        predicted = shipped_recipe.predict_stats(model, stats).argmax(axis=1)
                        hits[k, w].extend(predicted == y[subset])
    print("| emotions of the speaker | " + " | ".join(f"w = {w:g}" for w in WEIGHTS) + " |")
    print("|---|" + "---|" * len(WEIGHTS))
    for k in EMOTION_COUNTS:
        print(f"| {k} | " + " | ".join(f"{np.mean(hits[k, w]):.3f}" for w in WEIGHTS) + " |")


if __name__ == "__main__":
    main()
