"""Rebuild the shipped audio model from the shared RAVDESS actors 01-12 (read by path; no clip enters the repository).

Encodes every clip, and its speech copy (the clip trimmed of its silence), with Whisper base (CTranslate2, clip
windows) cut after each of its encoder layers (encoders/ct2_layers.py), trains the recipe of
emojudge_models/models/shipped_recipe.py (per-speaker normalised mean+std, logistic regression on clips and speech
copies, layer and C by speaker-grouped CV, refitted on all 12 actors), measures the recipe under nested
speaker-grouped CV (the layer chosen inside each outer fold), and writes ``emojudge_models/models/shipped/<name>/``
(config.json, model.safetensors, figures.json, MODEL_CARD.md). The local profile's encoder is the chosen layer's:
the build stops if the two differ.

Run by hand: ``python bench/train_shipped_model.py [--data ../shared/data/ravdess-dev] [--name NAME]``. The weights are
deterministic for the same frames (lbfgs, seed 0); frames computed on another CPU can differ in the last bits.
"""

from __future__ import annotations

import argparse
import csv
import functools
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
DEFAULT_CACHE = Path("/tmp/emojudge-shipped-cache")
"""Where encoded frames are kept between runs (shared by the benches that import :func:`encode`)."""
TRAINED_ON = "shipped:ravdess-actors-01-12"
BASE = {"kind": "whisper-ct2", "model": "base", "window": "clip"}
ENCODERS = {"ravdess-whisper-base-logreg": PROFILES["local"].audio_encoder}
"""Shipped model name -> the encoder whose frames it is trained on: the local profile's default (Whisper base's
chosen layer). Base ++ tiny.en frames, shipped before as a second model, scored below base's layer 2 at 1.5x the
encoding (bench/RESULTS.md, "Inner Whisper layers")."""
LAYERS = (1, 2, 3, 4, 5, 6)
"""The Whisper base encoder layers the recipe chooses among (6 is the last: all of them)."""


def layer_encoder(layer: int) -> dict:
    """The spec of Whisper base's frames after encoder layer ``layer``."""
    return {**BASE, "layer": layer}


@functools.cache
def _encoder(config: str):
    """One encoder per config for the process (clips and their speech copies share it; it names the cache)."""
    return build_audio_encoder(json.loads(config), device="cpu")


def targets(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Class indices and speaker ids of manifest rows."""
    return np.array([emotion_index(row["emotion"]) for row in rows]), np.array([row["speaker_id"] for row in rows])


def frames_of(waves: list[np.ndarray], config: dict = PROFILES["local"].audio_encoder) -> list[np.ndarray]:
    """Encoder frames of 16 kHz waves, 16 at a time, as the feature store keeps them (float16, read as float32)."""
    encoder = _encoder(json.dumps(config, sort_keys=True))
    frames = [f for start in range(0, len(waves), 16) for f in encoder.encode_batch(waves[start : start + 16])]
    return [f.astype(np.float16).astype(np.float32) for f in frames]


def encode(
    data: Path, cache: Path, config: dict = PROFILES["local"].audio_encoder, speech_copies: bool = False
) -> tuple[list[dict], list, dict]:
    """Manifest rows and each clip's encoder frames, or its speech copy's (``shipped_recipe.speech_copy``), cached
    in ``cache`` by the clips' hashes, the spec and the copy rule."""
    rows = list(csv.DictReader((data / "manifest.csv").open()))
    encoder = _encoder(json.dumps(config, sort_keys=True))
    copy = f"speech-{shipped_recipe.TRIM_TOP_DB:g}dB-" if speech_copies else ""
    path = cache / f"frames-{copy}{encoder_key(encoder.spec)}-{encoder_key([r['sha256'] for r in rows])}.npz"
    if not path.exists():
        waves = [load_wave(data / row["path"]) for row in rows]
        if speech_copies:
            waves = [shipped_recipe.speech_copy(wave) for wave in waves]
        frames = frames_of(waves, config)
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, frames=np.concatenate(frames), lengths=[len(f) for f in frames])
    stored = np.load(path)
    frames = np.split(stored["frames"], np.cumsum(stored["lengths"])[:-1])
    # The feature store keeps frames as float16: train on what scoring will read.
    return rows, [f.astype(np.float16).astype(np.float32) for f in frames], encoder.spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--name", choices=ENCODERS, default=next(iter(ENCODERS)))
    parser.add_argument(
        "--actors", default="", help="comma-separated actor numbers to train on (e.g. 07,08,09); default: all"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="the folder of shipped models to write into (EMOJUDGE_SHIPPED_MODELS); default: the package's",
    )
    args = parser.parse_args()
    build(
        args.data,
        args.cache,
        args.name,
        (args.out or shipped.SHIPPED_ROOT) / args.name,
        args.actors.split(",") if args.actors else None,
    )


def build(
    data: Path, cache: Path, name: str, out: Path, actors: list[str] | None = None, check_profile: bool = True
) -> dict:
    """Train shipped model ``name`` on ``actors`` (numbers; None: all), measure it, write its folder ``out``.
    ``check_profile``: stop unless the chosen layer is the local profile's (a bench training a fold's model passes
    False and scores with the fold's chosen layer: ``figures["layer"]``)."""
    started = time.perf_counter()
    configs = {layer: layer_encoder(layer) for layer in LAYERS}
    frames, speech_frames, specs = {}, {}, {}
    for layer, config in configs.items():
        rows, frames[layer], specs[layer] = encode(data, cache, config)
        _, speech_frames[layer], _ = encode(data, cache, config, speech_copies=True)
    if actors is not None:
        keep = [i for i, row in enumerate(rows) if row["speaker_id"].removeprefix("ravdess_actor") in actors]
        rows = [rows[i] for i in keep]
        frames = {layer: [f[i] for i in keep] for layer, f in frames.items()}
        speech_frames = {layer: [f[i] for i in keep] for layer, f in speech_frames.items()}
    y, speakers = targets(rows)
    nested = shipped_recipe.nested_evaluation(frames, y, speakers, speech_frames)
    candidates = {}
    for layer in configs:
        x = shipped_recipe.normalised_stats(frames[layer], speakers)
        copies = shipped_recipe.normalised_stats(speech_frames[layer], speakers)
        candidates[layer], labels, groups = shipped_recipe.with_copies(x, copies, y, speakers)
    choice = shipped_recipe.choose_layer(candidates, labels, groups)
    layer, fit = choice.layer, choice.fit
    if check_profile and configs[layer] != ENCODERS[name]:
        raise SystemExit(
            f"the recipe chose Whisper base layer {layer}, the local profile encodes {ENCODERS[name]}: set the "
            "profile's layer to the chosen one (emojudge_models/profiles.py) and build again"
        )
    spec = specs[layer]
    figures = {
        "nested_speaker_grouped_cv": nested.summary(),
        "cv_scores_by_C": {str(c): round(v, 4) for c, v in fit.cv_scores.items()},
        "C": fit.C,
        "layer": layer,
        "cv_scores_by_layer": {str(k): round(v, 4) for k, v in choice.scores.items()},
        "clips": len(rows),
        "speakers": sorted(set(speakers.tolist())),
        "classes_trained": sorted({EMOTIONS[i] for i in y}, key=EMOTIONS.index),
        "measured": f"{date.today()}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{time.perf_counter() - started:.0f} s wall",
    }
    trained_on = TRAINED_ON if actors is None else f"shipped:ravdess-actors-{'-'.join(sorted(actors))}"
    metadata = shipped.model_metadata(
        name, trained_on, spec, fit.model, shipped_recipe.RECIPE_VERSION, round(fit.cv_scores[fit.C], 4)
    )
    save_checkpoint(fit.model, metadata, out)
    (out / shipped.FIGURES_FILE).write_text(json.dumps(figures, indent=2) + "\n")
    (out / shipped.CARD_FILE).write_text(shipped.model_card(metadata, figures))
    print(json.dumps({k: v for k, v in figures.items() if k != "speakers"}, indent=2))
    print(f"wrote {out}")
    return figures


if __name__ == "__main__":
    main()
