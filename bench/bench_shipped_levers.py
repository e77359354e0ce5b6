"""Levers on the shipped model's recipe (issue 30 item 3), each under the recipe's own nested speaker-grouped CV.

Frames of Whisper base cut after each of its six encoder layers (encoders/ct2_layers.py; layer 6 is the whole
encoder), the layer chosen inside each outer fold (what the shipped model does), tiny.en's last layer, and base ++
tiny.en last layers concatenated frame by frame (both give 50 frames per second; the shorter clip length is kept),
each through models/shipped_recipe.py ``nested_evaluation`` (per-speaker normalisation, mean+std, logistic regression
with C by grouped CV inside every outer fold; trained on the clips and their speech copies with ``--copies``).
Frames are cached in ``--cache`` (shared with bench/train_shipped_model.py).

Run by hand: ``python bench/bench_shipped_levers.py [--data ../shared/data/ravdess-dev] [--copies]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from train_shipped_model import DEFAULT_CACHE, DEFAULT_DATA, encode, layer_encoder, targets

from emojudge_models.models import shipped_recipe

TINY = {"kind": "whisper-ct2", "model": "tiny.en", "window": "clip"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--copies", action="store_true", help="train on the clips and their speech copies")
    args = parser.parse_args()
    clips, speech = {}, {}
    for name, config in [*((f"base layer {k}", layer_encoder(k)) for k in range(1, 7)), ("tiny.en", TINY)]:
        rows, clips[name], _ = encode(args.data, args.cache, config)
        _, speech[name], _ = encode(args.data, args.cache, config, speech_copies=True)
    for both in (clips, speech):
        both["base ++ tiny.en"] = [
            np.concatenate([b[: len(t)], t[: len(b)]], axis=1)
            for b, t in zip(both["base layer 6"], both["tiny.en"], strict=True)
        ]
    y, speakers = targets(rows)
    layers = {k: clips[f"base layer {k}"] for k in range(1, 7)}
    layers_speech = {k: speech[f"base layer {k}"] for k in range(1, 7)}
    rows_to_run = [(name, clips[name], speech[name]) for name in clips]
    rows_to_run.append(("base, layer chosen inside each fold", layers, layers_speech))
    print(
        "| frames | F1-macro (mean of 6 outer folds) | pooled | speaker bootstrap 95% | pooled, speech copies "
        "| pooled, set norm | layers chosen | wall |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, frames, copies in rows_to_run:
        started = time.perf_counter()
        s = shipped_recipe.nested_evaluation(frames, y, speakers, copies, train_on_copies=args.copies).summary()
        low, high = s["speaker_bootstrap_95"]
        chosen = " ".join(str(fold["layer"]) for fold in s["folds"] if "layer" in fold) or "-"
        print(
            f"| {name} | **{s['f1_macro_mean_of_folds']:.3f}** | {s['f1_macro_pooled']:.3f} | {low:.3f} - {high:.3f} "
            f"| {s['f1_macro_pooled_speech_copies']:.3f} | {s['f1_macro_pooled_set_norm']:.3f} | {chosen} "
            f"| {time.perf_counter() - started:.0f} s |",
            flush=True,
        )


if __name__ == "__main__":
    main()
