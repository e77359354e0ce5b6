"""Rebuild the shipped audio model from the shared RAVDESS actors 01-12 (read by path; no clip enters the repository).

Encodes every clip with the local profile's audio encoder (Whisper base CTranslate2, clip windows), trains the
recipe of emojudge_models/models/shipped_recipe.py (per-speaker normalised mean+std, logistic regression, C by
speaker-grouped CV, refitted on all 12 actors), measures the recipe under nested speaker-grouped CV, and writes
``emojudge_models/models/shipped/<name>/`` (config.json, model.safetensors, figures.json, MODEL_CARD.md).

Run by hand: ``python bench/train_shipped_model.py [--data ../shared/data/ravdess-dev] [--name NAME]``; ``--name
ravdess-whisper-base-tinyen-logreg`` trains on base ++ tiny.en frames (the ``concat`` encoder) instead. The weights are
deterministic for the same frames (lbfgs, seed 0); frames computed on another CPU can differ in the last bits.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np

from emojudge_models.encoders.base import encoder_key
from emojudge_models.encoders.factory import build_audio_encoder
from emojudge_models.ingest.audio import load_wave
from emojudge_models.labels import EMOTIONS, emotion_index
from emojudge_models.models import shipped, shipped_recipe
from emojudge_models.models.checkpoints import save_checkpoint
from emojudge_models.profiles import PROFILES

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared/data/ravdess-dev"
TRAINED_ON = "shipped:ravdess-actors-01-12"
ENCODERS = {
    "ravdess-whisper-base-logreg": PROFILES["local"].audio_encoder,
    "ravdess-whisper-base-tinyen-logreg": {
        "kind": "concat",
        "parts": [PROFILES["local"].audio_encoder, {"kind": "whisper-ct2", "model": "tiny.en", "window": "clip"}],
    },
}
"""Shipped model name -> the encoder whose frames it is trained on: the local profile's default, and base ++ tiny.en
(bench/RESULTS.md, "Shipped model levers")."""


def encode(data: Path, cache: Path, config: dict = PROFILES["local"].audio_encoder) -> tuple[list[dict], list, dict]:
    """Manifest rows and each clip's encoder frames (cached in ``cache`` by the clips' hashes and the spec)."""
    rows = list(csv.DictReader((data / "manifest.csv").open()))
    encoder = build_audio_encoder(config, device="cpu")
    path = cache / f"frames-{encoder_key(encoder.spec)}-{encoder_key([r['sha256'] for r in rows])}.npz"
    if not path.exists():
        waves = [load_wave(data / row["path"]) for row in rows]
        frames = [f for start in range(0, len(waves), 16) for f in encoder.encode_batch(waves[start : start + 16])]
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, frames=np.concatenate(frames), lengths=[len(f) for f in frames])
    stored = np.load(path)
    frames = np.split(stored["frames"], np.cumsum(stored["lengths"])[:-1])
    # The feature store keeps frames as float16: train on what scoring will read.
    return rows, [f.astype(np.float16).astype(np.float32) for f in frames], encoder.spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/emojudge-shipped-cache"))
    parser.add_argument("--name", choices=ENCODERS, default=next(iter(ENCODERS)))
    args = parser.parse_args()
    out = shipped.SHIPPED_ROOT / args.name
    started = time.perf_counter()
    rows, frames, spec = encode(args.data, args.cache, ENCODERS[args.name])
    y = np.array([emotion_index(row["emotion"]) for row in rows])
    speakers = np.array([row["speaker_id"] for row in rows])
    nested = shipped_recipe.nested_evaluation(frames, y, speakers)
    x = shipped_recipe.normalised_stats(frames, speakers)
    fit = shipped_recipe.train(x, y, speakers)
    figures = {
        "nested_speaker_grouped_cv": nested.summary(),
        "cv_scores_by_C": {str(c): round(v, 4) for c, v in fit.cv_scores.items()},
        "C": fit.C,
        "clips": len(rows),
        "speakers": sorted(set(speakers.tolist())),
        "classes_trained": sorted({EMOTIONS[i] for i in y}, key=EMOTIONS.index),
        "measured": f"{date.today()}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{time.perf_counter() - started:.0f} s wall",
    }
    metadata = shipped.model_metadata(
        args.name, TRAINED_ON, spec, fit.model, shipped_recipe.RECIPE_VERSION, round(fit.cv_scores[fit.C], 4)
    )
    save_checkpoint(fit.model, metadata, out)
    (out / shipped.FIGURES_FILE).write_text(json.dumps(figures, indent=2) + "\n")
    (out / shipped.CARD_FILE).write_text(shipped.model_card(metadata, figures))
    print(json.dumps({k: v for k, v in figures.items() if k != "speakers"}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
