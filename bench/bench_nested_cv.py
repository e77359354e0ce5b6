"""Nested speaker-grouped CV on RAVDESS actors 01-12 (issue 20): accuracy on speakers no choice has seen.

Everything the pipeline chooses (the audio policy and its heads' sizes and weight decay, the epochs by early
stopping, the fusion's C and which modalities it keeps, the fusion fit strategy) is chosen inside each outer fold's
ten training actors, by five inner folds of 2 actors (emojudge_models/evaluation/nested.py); the chosen candidate
is refitted on the outer fold's 8 train + 2 development actors and scored once on its 2 test actors. The outer
folds are those of bench_ravdess_accuracy.py, so each candidate's outer scores are also its non-nested 6-fold
figure; the best of those (chosen by the test folds themselves) is the optimistic number plain CV reports.

Features: the local profile's default encoder (Whisper base, clip windows) and MiniLM text vectors, cached in
``--cache`` (keyed by encoder spec and the clips' hashes), frames z-normalised per speaker as the pipeline does.
Heads are trained by the library (models/training.py through models/policy.py's head configs), the text head by
train_text_head, fusion by fusion/strategy.py ``fit_fusion``; each trained head's logits are cached per split, so
reruns and new candidates built from cached heads are cheap.

Run by hand: ``python bench/bench_nested_cv.py [--threads 1] [--write]``; ``--write`` replaces the "## Nested
speaker-grouped CV" section of bench/RESULTS.md (the hand-written reading under it too).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import multiprocessing
import os
import platform
import re
import resource
import statistics
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.special import softmax
from train_shipped_model import encode

from emojudge_models.encoders.base import encoder_key
from emojudge_models.encoders.factory import build_audio_encoder, build_text_encoder
from emojudge_models.evaluation.metrics import f1_macro_of_indices
from emojudge_models.evaluation.nested import (
    NestedResult,
    Split,
    inner_splits,
    nested_cv,
    outer_splits,
    speaker_bootstrap,
)
from emojudge_models.features.speaker_norm import SpeakerNormaliser
from emojudge_models.fusion.strategy import fit_fusion
from emojudge_models.ingest.audio import load_wave
from emojudge_models.labels import EMOTIONS, emotion_index
from emojudge_models.models import linear_probe, shipped_recipe
from emojudge_models.models.heads import HeadConfig
from emojudge_models.models.linear_probe import pooled_stats
from emojudge_models.models.loop import TrainConfig
from emojudge_models.models.policy import AUDIO_HEADS, HEAD_TRAINING, text_head_config
from emojudge_models.models.predict import predict_audio, predict_vectors
from emojudge_models.models.training import HeadTrainingConfig, train_audio_head, train_text_head
from emojudge_models.profiles import PROFILES
from emojudge_models.sample_rate import SAMPLE_RATE_HZ

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared/data/ravdess-dev"
RESULTS = REPO / "bench/RESULTS.md"
SECTION = "## Nested speaker-grouped CV (RAVDESS actors 01-12)"
N_GROUPS = 6
SEED = 0
TASK = "categorical"


@dataclass(frozen=True)
class Member:
    """One head: HeadConfig arguments beyond task and input size, and the training settings."""

    head: dict[str, Any]
    train: TrainConfig = HEAD_TRAINING


MEMBERS: dict[str, Member] = {
    **{name: Member(dict(config)) for name, config in AUDIO_HEADS.items()},
    "meanstd-small": Member({"pooling": "meanstd", "hidden_dim": 64, "n_hidden_layers": 1}),
    "meanstd-wd": Member({"pooling": "meanstd"}, replace(HEAD_TRAINING, weight_decay=0.1)),
}
"""Heads trained per split: the shipped candidates (policy.AUDIO_HEADS) and simpler or more regularised ones."""

SHIPPED = "shipped"
"""The shipped default model's recipe (models/shipped_recipe.py): logreg with C by speaker-grouped CV over the
split's train and development actors, refitted on them; no text model ships, so its fused output is its audio one."""

AUDIO_MODELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ensemble": ("mean", ("attentive", "meanstd", "probe")),
    "auto": ("best-dev", ("attentive", "meanstd", "probe")),
    "probe": ("mean", ("probe",)),
    "meanstd": ("mean", ("meanstd",)),
    "meanstd-small": ("mean", ("meanstd-small",)),
    "ensemble-meanstd+probe": ("mean", ("meanstd", "probe")),
    "ensemble-small": ("mean", ("meanstd-small", "probe")),
    "ensemble-meanstd-wd+probe": ("mean", ("meanstd-wd", "probe")),
    "ensemble-meanstd+probe+small": ("mean", ("meanstd", "probe", "meanstd-small")),
    "logreg": ("logreg", ()),
    "ensemble-logreg+meanstd": ("mean", ("logreg", "meanstd")),
    "ensemble-logreg+probe": ("mean", ("logreg", "probe")),
    SHIPPED: ("shipped", ()),
}
"""Audio models: how member heads' outputs combine (mean of probabilities, the best on development, or the
shipped ``logreg`` probe, models/linear_probe.py: scikit-learn mean+std logistic regression, C on development)."""

FUSION_STRATEGIES = ("train", "development")


@dataclass
class Corpus:
    rows: list[dict[str, str]]
    labels: np.ndarray
    speakers: np.ndarray
    frames: list[np.ndarray]
    speech_stats: np.ndarray
    """Per-speaker normalised mean ++ std of each clip's speech copy (the shipped recipe trains on them too)."""
    text: np.ndarray
    audio_seconds: float
    encoder_spec: dict[str, Any]


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_corpus(data: Path, cache: Path) -> Corpus:
    """Manifest rows, Whisper base clip frames (per-speaker normalised) and MiniLM vectors, from the cache if there."""
    rows = list(csv.DictReader((data / "manifest.csv").open()))
    labels = np.array([emotion_index(row["emotion"]) for row in rows])
    speakers = np.array([row["speaker_id"] for row in rows])
    spec = PROFILES["local"].audio_encoder
    clips = digest([row["sha256"] for row in rows])
    path = cache / f"features-{digest(spec)}-{clips}.npz"
    if not path.exists():
        waves = [load_wave(data / row["path"]) for row in rows]
        encoder = build_audio_encoder(spec)
        started = time.perf_counter()
        frames = [f for start in range(0, len(waves), 16) for f in encoder.encode_batch(waves[start : start + 16])]
        print(f"encoded {len(frames)} clips in {time.perf_counter() - started:.0f} s", flush=True)
        text = build_text_encoder({"kind": "minilm"}).encode_batch([row["transcript"] for row in rows])
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(
            path,
            frames=np.concatenate(frames),
            lengths=np.array([len(f) for f in frames]),
            text=text,
            seconds=sum(len(w) for w in waves) / SAMPLE_RATE_HZ,
            spec=json.dumps(encoder.spec),
        )
    stored = np.load(path)
    frames = np.split(stored["frames"], np.cumsum(stored["lengths"])[:-1])
    table = pd.DataFrame({"eval_set": "ravdess", "utterance_id": range(len(rows)), "speaker_id": speakers})
    keys = list(zip(table["eval_set"], table["utterance_id"], strict=True))
    normaliser = SpeakerNormaliser.for_rows(table).add_all(zip(keys, frames, strict=True))
    _, speech, _ = encode(data, cache, spec, speech_copies=True)
    return Corpus(
        rows,
        labels,
        speakers,
        normaliser.apply(keys, frames),
        shipped_recipe.normalised_stats(speech, speakers),
        stored["text"],
        float(stored["seconds"]),
        json.loads(str(stored["spec"])),
    )


class Trainer:
    """Trains heads, the text head and fusion per split, caching every head's logits on disk."""

    def __init__(self, corpus: Corpus, cache: Path) -> None:
        self.corpus = corpus
        self.cache = cache / f"fits-{encoder_key(corpus.encoder_spec)}"
        self.cache.mkdir(parents=True, exist_ok=True)
        self.trained = 0

    def _cached(self, name: str, config: Any, split: Split, train: Callable[[], dict[str, np.ndarray]]):
        key = digest([name, config, split.train.tolist(), split.dev.tolist(), split.test.tolist(), SEED])
        path = self.cache / f"{name}-{key}.npz"
        if path.exists():
            return dict(np.load(path))
        outputs = train()
        np.savez(path, **outputs)
        self.trained += 1
        return outputs

    def head(self, name: str, split: Split) -> dict[str, np.ndarray]:
        """Logits on train, dev and test (and the development F1-macro) of one member head."""
        member = MEMBERS[name]
        frames, labels = self.corpus.frames, self.corpus.labels

        def train() -> dict[str, np.ndarray]:
            items = [(f, int(y)) for f, y in zip(frames, labels, strict=True)]
            head = HeadConfig(task=TASK, input_dim=frames[0].shape[1], **member.head)
            result = train_audio_head(
                [items[i] for i in split.train],
                [items[i] for i in split.dev],
                HeadTrainingConfig(head=head, train=member.train),
                "cpu",
                SEED,
            )
            out = {
                part: predict_audio(
                    result.model, [frames[i] for i in idx], "cpu", lengths=[len(frames[i]) for i in idx]
                )
                for part, idx in (("train", split.train), ("dev", split.dev), ("test", split.test))
            }
            return out | {"dev_f1": np.array(result.dev_metric), "best_epoch": np.array(result.best_epoch)}

        return self._cached(name, [member.head, member.train.__dict__], split, train)

    def logreg(self, split: Split) -> dict[str, np.ndarray]:
        """Log-probabilities of the shipped ``logreg`` probe (fit_linear_probe, scored through predict_audio)."""
        frames, labels = self.corpus.frames, self.corpus.labels

        def train() -> dict[str, np.ndarray]:
            items = [(f, int(y)) for f, y in zip(frames, labels, strict=True)]
            result = linear_probe.fit_linear_probe(
                [items[i] for i in split.train], [items[i] for i in split.dev], task=TASK, seed=SEED
            )
            out = {
                part: predict_audio(result.model, [frames[i] for i in idx], "cpu")
                for part, idx in (("train", split.train), ("dev", split.dev), ("test", split.test))
            }
            return out | {"dev_f1": np.array(result.dev_metric), "C": np.array(result.model.config.C)}

        key = [list(linear_probe.C_GRID), linear_probe.MAX_ITER, linear_probe.CODE_VERSION]
        return self._cached("logreg", key, split, train)

    def shipped(self, split: Split) -> dict[str, np.ndarray]:
        """Log-probabilities of the shipped model's recipe fitted on the split's train + development speakers and
        their speech copies."""
        stats, labels, speakers = pooled_stats(self.corpus.frames), self.corpus.labels, self.corpus.speakers

        def train() -> dict[str, np.ndarray]:
            pool = np.concatenate([split.train, split.dev])
            rows = shipped_recipe.with_copies(stats[pool], self.corpus.speech_stats[pool], labels[pool], speakers[pool])
            fit = shipped_recipe.train(*rows, SEED)
            out = {
                part: shipped_recipe.predict_stats(fit.model, stats[idx])
                for part, idx in (("train", split.train), ("dev", split.dev), ("test", split.test))
            }
            return out | {"C": np.array(fit.C)}

        return self._cached(SHIPPED, [shipped_recipe.RECIPE_VERSION, list(linear_probe.C_GRID)], split, train)

    def text(self, split: Split) -> dict[str, np.ndarray]:
        vectors, labels = self.corpus.text, self.corpus.labels

        def train() -> dict[str, np.ndarray]:
            config = text_head_config(TASK, vectors.shape[1], HEAD_TRAINING)
            result = train_text_head(
                vectors[split.train],
                labels[split.train].tolist(),
                vectors[split.dev],
                labels[split.dev].tolist(),
                config,
                "cpu",
                SEED,
            )
            return {
                part: predict_vectors(result.model, vectors[idx], "cpu")
                for part, idx in (("train", split.train), ("dev", split.dev), ("test", split.test))
            }

        return self._cached("text-head", HEAD_TRAINING.__dict__, split, train)

    def audio(self, model: str, split: Split) -> dict[str, np.ndarray]:
        """Log-probabilities of an audio model on train, dev and test."""
        combine, members = AUDIO_MODELS[model]
        if combine == "logreg":
            return self.logreg(split)
        if combine == "shipped":
            return self.shipped(split)
        heads = [self.logreg(split) if name == "logreg" else self.head(name, split) for name in members]
        if combine == "best-dev":
            heads = [max(heads, key=lambda h: float(h["dev_f1"]))]
        return {
            part: np.log(np.mean([softmax(h[part], axis=1) for h in heads], axis=0).clip(1e-12))
            for part in ("train", "dev", "test")
        }

    def candidate(self, model: str, strategy: str) -> Callable[[Split], Mapping[str, np.ndarray]]:
        """The pipeline on one split: audio model, text head, guarded fusion fitted with ``strategy``."""

        def run(split: Split) -> dict[str, np.ndarray]:
            if model == SHIPPED:
                audio = self.audio(model, split)["test"].argmax(axis=1)
                return {"audio": audio, "fused": audio, "text": audio}
            audio, text = self.audio(model, split), self.text(split)
            rows = pd.DataFrame(
                {
                    "split": ["train"] * len(split.train) + ["development"] * len(split.dev),
                    "emotion": [EMOTIONS[y] for y in self.corpus.labels[np.concatenate([split.train, split.dev])]],
                    "audio_logits": [*audio["train"], *audio["dev"]],
                    "text_logits": [*text["train"], *text["dev"]],
                }
            )
            fusion = fit_fusion(TASK, rows, strategy)
            fused = fusion.predict(np.hstack([audio["test"], text["test"]]))
            return {"audio": audio["test"].argmax(axis=1), "fused": fused, "text": text["test"].argmax(axis=1)}

        return run


_WORKER: dict[str, Trainer] = {}


def _start_worker(data: Path, cache: Path) -> None:
    torch.set_num_threads(1)
    _WORKER["trainer"] = Trainer(load_corpus(data, cache), cache)


def _train_one(task: tuple[str, Split]) -> None:
    name, split = task
    trainer = _WORKER["trainer"]
    if name == "text-head":
        trainer.text(split)
    elif name == "logreg":
        trainer.logreg(split)
    elif name == SHIPPED:
        trainer.shipped(split)
    else:
        trainer.head(name, split)


def prefill(corpus: Corpus, data: Path, cache: Path, models: list[str], workers: int) -> None:
    """Train every head the candidates need on every outer and inner split in ``workers`` processes (the cache)."""
    splits = outer_splits(corpus.speakers, N_GROUPS)
    splits += [s for k in range(N_GROUPS) for s in inner_splits(corpus.speakers, N_GROUPS, k)]
    names = {"text-head"}
    for model in models:
        combine, members = AUDIO_MODELS[model]
        names |= {"logreg"} if combine == "logreg" else {SHIPPED} if combine == "shipped" else set(members)
    tasks = [(name, split) for split in splits for name in sorted(names)]
    with multiprocessing.get_context("spawn").Pool(workers, _start_worker, (data, cache)) as pool:
        for done, _ in enumerate(pool.imap_unordered(_train_one, tasks), 1):
            if done % 20 == 0:
                print(f"prefill: {done}/{len(tasks)} fits", flush=True)


def candidates(trainer: Trainer, strategies: tuple[str, ...]) -> dict[str, Callable[[Split], Mapping[str, np.ndarray]]]:
    pool = {
        f"{model} / fusion {strategy}": trainer.candidate(model, strategy)
        for model in AUDIO_MODELS
        for strategy in strategies
        if model != SHIPPED
    }
    return pool | {f"{SHIPPED} / no fusion (audio only)": trainer.candidate(SHIPPED, "")}


def fmt(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def report(corpus: Corpus, nested: NestedResult, fixed: dict[str, dict[str, list[float]]], pooled: dict, meta: str):
    speakers, labels = corpus.speakers, corpus.labels
    lines = [SECTION, "", meta, ""]
    idx, fused = nested.predictions("fused")
    _, audio = nested.predictions("audio")
    low, high = speaker_bootstrap(speakers[idx], labels[idx], fused)
    a_low, a_high = speaker_bootstrap(speakers[idx], labels[idx], audio)
    best_fixed = max(fixed, key=lambda name: statistics.mean(fixed[name]["fused"]))
    lines += [
        "| protocol | fused F1-macro (mean of folds) | pooled over 168 clips | 95% speaker bootstrap | audio (mean) | "
        "audio 95% bootstrap | per fold (fused) |",
        "|---|---|---|---|---|---|---|",
        "| **nested** (choice inside each outer training fold) | "
        f"**{statistics.mean(nested.fold_scores('fused')):.3f}** "
        f"| {f1_macro_of_indices(labels[idx], fused):.3f} | {low:.3f} - {high:.3f} | "
        f"{statistics.mean(nested.fold_scores('audio')):.3f} | {a_low:.3f} - {a_high:.3f} | "
        f"{fmt(nested.fold_scores('fused'))} |",
        f"| non-nested: best candidate by the same test folds ({best_fixed}) | "
        f"{statistics.mean(fixed[best_fixed]['fused']):.3f} | {pooled[best_fixed]['fused']:.3f} | | "
        f"{statistics.mean(fixed[best_fixed]['audio']):.3f} | | {fmt(fixed[best_fixed]['fused'])} |",
        "",
        "Nested choices per outer fold: "
        + "; ".join(f"fold {f.index} (test {'+'.join(f.test_speakers)}): {f.chosen}" for f in nested.folds)
        + ".",
        "",
        "Every candidate as a fixed pipeline (no choice among candidates: its outer scores are honest for it alone; "
        "inner = mean over the 30 inner folds, what the nested choice sees):",
        "",
        "| candidate | fused F1 (outer mean) | fused pooled | fused 95% bootstrap | audio F1 (outer mean) | "
        "inner fused mean | chosen in folds | per fold (fused) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    chosen = Counter(f.chosen for f in nested.folds)
    for name, scores in sorted(fixed.items(), key=lambda item: -statistics.mean(item[1]["fused"])):
        inner = statistics.mean(v for f in nested.folds for v in f.inner_scores[name])
        b_low, b_high = pooled[name]["bootstrap"]
        lines.append(
            f"| {name} | **{statistics.mean(scores['fused']):.3f}** | {pooled[name]['fused']:.3f} | "
            f"{b_low:.3f} - {b_high:.3f} | {statistics.mean(scores['audio']):.3f} | {inner:.3f} | "
            f"{chosen.get(name, 0)} | {fmt(scores['fused'])} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/emojudge-nested-cache"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="*", default=list(AUDIO_MODELS))
    parser.add_argument("--strategies", nargs="*", default=list(FUSION_STRATEGIES))
    parser.add_argument("--workers", type=int, default=1, help="processes that train the heads first (1 thread each)")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    cpu_before = time.process_time()

    corpus = load_corpus(args.data, args.cache)
    if args.workers > 1:
        prefill(corpus, args.data, args.cache, args.models, args.workers)
    trainer = Trainer(corpus, args.cache)
    pool = {k: v for k, v in candidates(trainer, tuple(args.strategies)).items() if k.split(" / ")[0] in args.models}
    nested = nested_cv(corpus.speakers, corpus.labels, pool, n_groups=N_GROUPS, select_on="fused", log=print)

    fixed: dict[str, dict[str, list[float]]] = {}
    pooled: dict[str, dict[str, Any]] = {}
    splits = outer_splits(corpus.speakers, N_GROUPS)
    for name, candidate in pool.items():
        outputs = [candidate(split) for split in splits]
        fixed[name] = {
            out: [f1_macro_of_indices(corpus.labels[s.test], o[out]) for s, o in zip(splits, outputs, strict=True)]
            for out in ("fused", "audio")
        }
        idx = np.concatenate([s.test for s in splits])
        fused = np.concatenate([o["fused"] for o in outputs])
        pooled[name] = {
            "fused": f1_macro_of_indices(corpus.labels[idx], fused),
            "bootstrap": speaker_bootstrap(corpus.speakers[idx], corpus.labels[idx], fused),
        }
    meta = (
        f"`bench/bench_nested_cv.py`, {date.today()}, {platform.machine()}, {os.cpu_count()} CPUs shared with other "
        f"work, torch {torch.__version__} ({args.threads} thread). {len(corpus.rows)} clips ({corpus.audio_seconds:.0f}"
        f" s), encoder {corpus.encoder_spec['model']} ({corpus.encoder_spec['window']} windows) with per-speaker "
        f"normalisation; {N_GROUPS} outer folds of 2 actors, 5 inner folds of 2 actors (inner: 6 train, "
        f"2 development, 2 test); heads TrainConfig lr {HEAD_TRAINING.lr:g}, max_epochs {HEAD_TRAINING.max_epochs}, "
        f"patience {HEAD_TRAINING.patience}, seed {SEED}; selection on inner fused F1-macro. {trainer.trained} "
        "models trained by the main process (the rest by the prefill workers or from the cache), "
        f"{(time.perf_counter() - started) / 60:.1f} min wall, {(time.process_time() - cpu_before) / 60:.1f} min "
        "CPU of the main process, peak RSS "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB, load average {load_before:.1f} at "
        f"start, {os.getloadavg()[0]:.1f} at end. F1-macro over the 7 RAVDESS classes; bootstrap: 2000 resamples "
        "of the 12 actors."
    )
    section = report(corpus, nested, fixed, pooled, meta)
    print(section)
    if args.write:
        text = RESULTS.read_text()
        pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
        text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
