"""Levers on the shipped model's recipe (issue 30 item 3), each under the recipe's own nested speaker-grouped CV.

Frames of Whisper base (the shipped model's encoder), of tiny.en, and of both concatenated frame by frame (both give
50 frames per second; the shorter clip length is kept), each through models/shipped_recipe.py ``nested_evaluation``
(per-speaker normalisation, mean+std, logistic regression with C by grouped CV inside every outer fold). Frames are
cached in ``--cache`` (bench/train_shipped_model.py's base frames are reused).

Run by hand: ``python bench/bench_shipped_levers.py [--data ../shared/data/ravdess-dev]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from train_shipped_model import DEFAULT_CACHE, DEFAULT_DATA, encode, targets

from emojudge_models.encoders.base import encoder_key
from emojudge_models.encoders.factory import build_audio_encoder
from emojudge_models.ingest.audio import load_wave
from emojudge_models.models import shipped_recipe

TINY = {"kind": "whisper-ct2", "model": "tiny.en", "window": "clip"}


def tiny_frames(rows: list[dict], data: Path, cache: Path) -> list[np.ndarray]:
    path = cache / f"tiny-{encoder_key(TINY)}-{encoder_key([r['sha256'] for r in rows])}.npz"
    if not path.exists():
        encoder = build_audio_encoder(TINY, device="cpu")
        waves = [load_wave(data / row["path"]) for row in rows]
        frames = [f for start in range(0, len(waves), 16) for f in encoder.encode_batch(waves[start : start + 16])]
        np.savez(path, frames=np.concatenate(frames), lengths=[len(f) for f in frames])
    stored = np.load(path)
    frames = np.split(stored["frames"], np.cumsum(stored["lengths"])[:-1])
    return [f.astype(np.float16).astype(np.float32) for f in frames]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args()
    rows, base, _ = encode(args.data, args.cache)
    tiny = tiny_frames(rows, args.data, args.cache)
    both = [np.concatenate([b[: len(t)], t[: len(b)]], axis=1) for b, t in zip(base, tiny, strict=True)]
    y, speakers = targets(rows)
    print("| frames | F1-macro (mean of 6 outer folds) | pooled | speaker bootstrap 95% | pooled, set norm | wall |")
    print("|---|---|---|---|---|---|")
    for name, frames in (("base (shipped)", base), ("tiny.en", tiny), ("base ++ tiny.en", both)):
        started = time.perf_counter()
        s = shipped_recipe.nested_evaluation(frames, y, speakers).summary()
        low, high = s["speaker_bootstrap_95"]
        print(
            f"| {name} | **{s['f1_macro_mean_of_folds']:.3f}** | {s['f1_macro_pooled']:.3f} | {low:.3f} - {high:.3f} "
            f"| {s['f1_macro_pooled_set_norm']:.3f} | {time.perf_counter() - started:.0f} s |",
            flush=True,
        )


if __name__ == "__main__":
    main()
