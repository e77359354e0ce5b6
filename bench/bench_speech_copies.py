"""Speech copies in the shipped recipe (issue 32: emotions of episode segments): trained on the clips alone, or on the
clips and their speech copies, scored on held-out clips and on their speech copies.

A speech copy is the clip trimmed of leading and trailing silence (``shipped_recipe.speech_copy``: librosa, 30 dB
under the peak; how bench_episodes.py lays clips into episodes) and encoded on its own. Each row is the recipe's
nested speaker-grouped CV on RAVDESS actors 01-12 (models/shipped_recipe.py ``nested_evaluation``: 6 outer folds
of 2 actors, C chosen inside each by grouped CV on the other 10, a clip and its copy always in one group).
Frames are cached in ``--cache`` (shared with bench/train_shipped_model.py).

Run by hand: ``python bench/bench_speech_copies.py [--data ../shared/data/ravdess-dev] [--models NAME ...]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from train_shipped_model import DEFAULT_CACHE, DEFAULT_DATA, ENCODERS, encode, targets

from emojudge_models.models import shipped_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--models", nargs="+", choices=ENCODERS, default=list(ENCODERS))
    args = parser.parse_args()
    print("| frames of | trained on | F1-macro, mean of 6 folds | pooled: clips | pooled: speech copies | wall |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        rows, frames, _ = encode(args.data, args.cache, ENCODERS[name])
        _, speech, _ = encode(args.data, args.cache, ENCODERS[name], speech_copies=True)
        y, speakers = targets(rows)
        for copies in (False, True):
            started = time.perf_counter()
            s = shipped_recipe.nested_evaluation(frames, y, speakers, speech, train_on_copies=copies).summary()
            print(
                f"| {name} | {'clips + speech copies' if copies else 'clips'} | {s['f1_macro_mean_of_folds']:.3f} "
                f"| {s['f1_macro_pooled']:.3f} | {s['f1_macro_pooled_speech_copies']:.3f} "
                f"| {time.perf_counter() - started:.0f} s |",
                flush=True,
            )


if __name__ == "__main__":
    main()
