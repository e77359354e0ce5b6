"""Speaker-independent F1-macro of every stage of the local profile on real RAVDESS speech (issues 4 and 12).

Six folds by actor: the 12 actors, sorted, form 6 pairs; fold k tests on pair k, selects models (epochs, head,
probe and fusion C) on pair k+1 (mod 6) and trains on the other 8 actors. Every clip is encoded once per encoder;
heads, probes, fusion and the local judge are the library's, with the pipeline's settings (TrainConfig lr=1e-3,
max_epochs=40, patience=8; text head with one hidden layer; fusion fit on train logits, C on development, refit on
both). One seed per model, fixed. Every encoder runs twice: on raw frames and on frames z-normalised per speaker
(``+spk``, emojudge_models/speaker_norm.py, the pipeline's default EMOJUDGE_SPEAKER_NORM=speaker).

Run by hand: ``.venv/bin/python bench/bench_ravdess_accuracy.py [--judge-per-fold N] [--folds K] [--write]``;
``--write`` replaces the "## RAVDESS speaker-independent accuracy" section of bench/RESULTS.md, including the
hand-written reading under its tables (write that again after a rerun).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import platform
import re
import resource
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from emojudge_models.encoders.factory import build_audio_encoder, build_text_encoder
from emojudge_models.evaluation.metrics import categorical_metrics
from emojudge_models.features.speaker_norm import SpeakerNormaliser
from emojudge_models.fusion.models import C_GRID, fit_categorical_fusion, fusion_features
from emojudge_models.ingest.audio import load_wave
from emojudge_models.judge import (
    ChatJudge,
    JudgeConfig,
    JudgeInput,
    LocalJudgeServer,
    build_requests,
    ensure_local_model,
)
from emojudge_models.labels import EMOTIONS, emotion_index
from emojudge_models.models import shipped_recipe
from emojudge_models.models.heads import EnsembleEmotionModel
from emojudge_models.models.linear_probe import pooled_stats
from emojudge_models.models.loop import dev_metric
from emojudge_models.models.policy import (
    AUDIO_HEADS,
    AUDIO_POLICIES,
    ENSEMBLE_HEADS,
    HEAD_TRAINING,
    text_head_config,
    train_audio_policy,
)
from emojudge_models.models.predict import predict_audio, predict_vectors
from emojudge_models.models.training import train_text_head
from emojudge_models.prosody import Thresholds, compute_prosody, describe
from emojudge_models.sample_rate import SAMPLE_RATE_HZ

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared/data/ravdess-dev"
RESULTS = REPO / "bench/RESULTS.md"
SECTION = "## RAVDESS speaker-independent accuracy"

AUDIO_ENCODERS: dict[str, dict[str, Any]] = {
    "acoustic": {"kind": "acoustic"},
    "whisper-clip": {"kind": "whisper-ct2", "window": "clip"},
    "whisper-full": {"kind": "whisper-ct2", "window": "full"},
}
SPEAKER_NORM = " +spk"
"""Suffix of an encoder's frames z-normalised per speaker."""
LOCAL_PROFILE_ENCODER = "whisper-clip" + SPEAKER_NORM
SHIPPED = "shipped (logreg, C by grouped CV)"
"""The shipped default model's recipe (models/shipped_recipe.py): its rows are the shipped model's figures."""
HEAD_LABELS = {"probe": "linear"}
"""Table names of the library's audio heads (emojudge_models/models/policy.py AUDIO_HEADS) where they differ: a
``probe`` row here is the scikit-learn baseline, so the library's ``probe`` head is called ``linear``."""
HEAD_NAMES = tuple(HEAD_LABELS.get(head, head) for head in AUDIO_HEADS)
N_FOLDS = 6
SEED = 0
ENCODE_CALL_CLIPS = 16


@dataclass
class Corpus:
    rows: list[dict[str, str]]
    waves: list[np.ndarray]
    labels: np.ndarray
    actors: np.ndarray

    @property
    def audio_seconds(self) -> float:
        return sum(len(w) for w in self.waves) / SAMPLE_RATE_HZ


@dataclass(frozen=True)
class Fold:
    index: int
    test_actors: tuple[str, ...]
    dev_actors: tuple[str, ...]
    train: np.ndarray
    dev: np.ndarray
    test: np.ndarray


@dataclass
class Scores:
    """Test F1-macro and accuracy per fold for each (stage, encoder, model) row of the table."""

    f1: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)
    accuracy: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)

    def add(self, row: tuple[str, str, str], y_true: np.ndarray, y_pred: np.ndarray) -> None:
        f1, accuracy = f1_and_accuracy(y_true, y_pred)
        self.f1.setdefault(row, []).append(f1)
        self.accuracy.setdefault(row, []).append(accuracy)


def f1_and_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
    metrics = categorical_metrics([EMOTIONS[i] for i in y_true], [EMOTIONS[i] for i in y_pred])
    return metrics["f1_macro"], metrics["accuracy"]


def load_corpus(data: Path) -> Corpus:
    rows = list(csv.DictReader((data / "manifest.csv").open()))
    waves = [load_wave(data / row["path"]) for row in rows]
    labels = np.array([emotion_index(row["emotion"]) for row in rows])
    return Corpus(rows, waves, labels, np.array([row["speaker_id"] for row in rows]))


def make_folds(actors: np.ndarray) -> list[Fold]:
    """Pairs of sorted actors: pair k is the test set of fold k and the development set of fold k-1."""
    names = sorted({str(actor) for actor in actors})
    if len(names) != 2 * N_FOLDS:
        raise ValueError(f"expected {2 * N_FOLDS} actors for {N_FOLDS} folds of 2, found {len(names)}")
    pairs = [tuple(names[2 * k : 2 * k + 2]) for k in range(N_FOLDS)]
    folds = []
    for k in range(N_FOLDS):
        test, dev = pairs[k], pairs[(k + 1) % N_FOLDS]
        in_test, in_dev = np.isin(actors, test), np.isin(actors, dev)
        folds.append(
            Fold(k, test, dev, np.flatnonzero(~in_test & ~in_dev), np.flatnonzero(in_dev), np.flatnonzero(in_test))
        )
    return folds


def encode_audio(name: str, waves: list[np.ndarray], audio_seconds: float) -> tuple[list[np.ndarray], float, float]:
    """Frames of every clip, and the encoder's x real time in wall-clock and in CPU time (all threads)."""
    encoder = build_audio_encoder(AUDIO_ENCODERS[name])
    frames: list[np.ndarray] = []
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(waves), ENCODE_CALL_CLIPS):
        frames += encoder.encode_batch(waves[start : start + ENCODE_CALL_CLIPS])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"encoded {name}: {frames[0].shape[1]} dims, {audio_seconds / wall:.1f}x real time (wall)", flush=True)
    return frames, audio_seconds / wall, audio_seconds / cpu


def speaker_normalised(frames: list[np.ndarray], corpus: Corpus) -> list[np.ndarray]:
    """Frames z-normalised with their speaker's statistics over all of that speaker's clips (no labels used)."""
    rows = pd.DataFrame({"eval_set": "ravdess", "utterance_id": range(len(frames)), "speaker_id": corpus.actors})
    keys = list(zip(rows["eval_set"], rows["utterance_id"], strict=True))
    normaliser = SpeakerNormaliser.for_rows(rows).add_all(zip(keys, frames, strict=True))
    return normaliser.apply(keys, frames)


def mean_std(frames: list[np.ndarray]) -> np.ndarray:
    return np.stack([np.concatenate([f.mean(axis=0), f.std(axis=0)]) for f in frames])


def probe_predictions(vectors: np.ndarray, labels: np.ndarray, fold: Fold) -> np.ndarray:
    """Standardised logistic regression fitted on train, C chosen by development F1-macro: test predictions."""
    best: tuple[float, Any] | None = None
    for C in C_GRID:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000, random_state=SEED))
        model.fit(vectors[fold.train], labels[fold.train])
        dev_f1 = f1_and_accuracy(labels[fold.dev], model.predict(vectors[fold.dev]))[0]
        if best is None or dev_f1 > best[0]:
            best = (dev_f1, model)
    return best[1].predict(vectors[fold.test])


def split_logits(model: torch.nn.Module, frames: list[np.ndarray], fold: Fold) -> dict[str, np.ndarray]:
    return {
        split: predict_audio(model, [frames[i] for i in indices], "cpu", lengths=[len(frames[i]) for i in indices])
        for split, indices in (("train", fold.train), ("dev", fold.dev), ("test", fold.test))
    }


def audio_heads(
    frames: list[np.ndarray], labels: np.ndarray, fold: Fold
) -> dict[str, tuple[dict[str, np.ndarray], float]]:
    """Train/dev/test logits and development F1-macro of each head, of ``auto`` over them and of ``ensemble`` (the
    mean of the ENSEMBLE_HEADS among them, as the pipeline's ensemble policy)."""
    items = [(f, int(y)) for f, y in zip(frames, labels, strict=True)]
    trained = train_audio_policy(
        [items[i] for i in fold.train],
        [items[i] for i in fold.dev],
        policy="auto",
        task="categorical",
        train=HEAD_TRAINING,
        device="cpu",
        seed=SEED,
    )
    out = {
        HEAD_LABELS.get(head, head): (split_logits(result.model, frames, fold), result.dev_metric)
        for head, result in trained.candidates.items()
    }
    out["auto"] = max((out[HEAD_LABELS.get(head, head)] for head in trained.candidates), key=lambda pair: pair[1])
    ensemble = EnsembleEmotionModel.of([trained.candidates[head].model for head in ENSEMBLE_HEADS])
    logits = split_logits(ensemble, frames, fold)
    out["ensemble"] = (logits, dev_metric("categorical", logits["dev"], labels[fold.dev]))
    return out


def text_head_logits(vectors: np.ndarray, labels: np.ndarray, fold: Fold) -> dict[str, np.ndarray]:
    config = text_head_config("categorical", vectors.shape[1], HEAD_TRAINING)
    result = train_text_head(
        vectors[fold.train],
        labels[fold.train].tolist(),
        vectors[fold.dev],
        labels[fold.dev].tolist(),
        config,
        "cpu",
        SEED,
    )
    return {
        split: predict_vectors(result.model, vectors[indices], "cpu")
        for split, indices in (("train", fold.train), ("dev", fold.dev), ("test", fold.test))
    }


def fused_probabilities(audio: dict[str, np.ndarray], text: dict[str, np.ndarray], labels: np.ndarray, fold: Fold):
    model = fit_categorical_fusion(
        fusion_features(audio["train"], text["train"]),
        labels[fold.train],
        fusion_features(audio["dev"], text["dev"]),
        labels[fold.dev],
        class_balanced=True,
        fit_on="train+dev",
    )
    return model.predict_proba(fusion_features(audio["test"], text["test"]))


@dataclass
class PipelineOutputs:
    """The local pipeline's test outputs on a fold (ensemble audio head, text head, fusion): what the judge sees."""

    fused: np.ndarray
    audio_pred: np.ndarray
    text_pred: np.ndarray


def shipped_predictions(
    frames: list[np.ndarray], speech: list[np.ndarray], labels: np.ndarray, actors: np.ndarray, fold: Fold
) -> np.ndarray:
    """The shipped model's recipe (models/shipped_recipe.py) run on the fold's 10 train and development actors and
    their speech copies (``speech``: frames of the clips trimmed of their silence; C by their own speaker-grouped CV,
    refitted on all 10): test predictions. No text model ships, so this is its fused label too."""
    pool = np.concatenate([fold.train, fold.dev])
    stats, copies = pooled_stats(frames), pooled_stats(speech)
    fit = shipped_recipe.train(*shipped_recipe.with_copies(stats[pool], copies[pool], labels[pool], actors[pool]))
    return shipped_recipe.predict_stats(fit.model, stats[fold.test]).argmax(axis=1)


def run_fold(
    fold: Fold,
    corpus: Corpus,
    frames: dict[str, list[np.ndarray]],
    speech: list[np.ndarray],
    text_vectors: np.ndarray,
    scores: Scores,
    picked: Counter,
) -> dict[str, PipelineOutputs]:
    """Score the text head, every audio model and both fusions of one fold, and the shipped model's recipe on the
    local profile's frames and their speech copies (``speech``); the pipeline's outputs per encoder."""
    labels = corpus.labels
    y_test = labels[fold.test]
    text = text_head_logits(text_vectors, labels, fold)
    scores.add(("text", "minilm", "head"), y_test, text["test"].argmax(axis=1))
    shipped = shipped_predictions(frames[LOCAL_PROFILE_ENCODER], speech, labels, corpus.actors, fold)
    for stage in ("audio", "fused"):
        scores.add((stage, LOCAL_PROFILE_ENCODER, SHIPPED), y_test, shipped)
    outputs = {}
    for name in frames:
        models = audio_heads(frames[name], labels, fold)
        for model, (logits, _) in models.items():
            scores.add(("audio", name, model), y_test, logits["test"].argmax(axis=1))
        picked[name, max(HEAD_NAMES, key=lambda head: models[head][1])] += 1
        scores.add(("audio", name, "probe"), y_test, probe_predictions(mean_std(frames[name]), labels, fold))
        for policy in (p for p in AUDIO_POLICIES if p in models):  # logreg: the probe rows, and the shipped row
            audio = models[policy][0]
            fused = fused_probabilities(audio, text, labels, fold)
            scores.add(("fused", name, f"{policy} + text"), y_test, fused.argmax(axis=1))
            if policy == "ensemble":
                outputs[name] = PipelineOutputs(fused, audio["test"].argmax(axis=1), text["test"].argmax(axis=1))
    return outputs


@dataclass
class JudgeTally:
    judged: int = 0
    errors: int = 0
    changed: int = 0
    right_to_wrong: int = 0
    wrong_to_right: int = 0
    seconds: list[float] = field(default_factory=list)
    labels: Counter = field(default_factory=Counter)


def judged_positions(n_test: int, per_fold: int, fold_index: int) -> np.ndarray:
    """``per_fold`` evenly spaced test positions, shifted by the fold index so folds cover different emotions."""
    return np.unique((fold_index + np.arange(min(per_fold, n_test)) * n_test // max(per_fold, 1)) % n_test)


def refine(
    judge: ChatJudge,
    config: JudgeConfig,
    corpus: Corpus,
    fold: Fold,
    prosody: list[Any],
    pipeline: PipelineOutputs,
    per_fold: int,
    tally: JudgeTally,
) -> np.ndarray:
    """Final labels of the fold's test clips: the judge's where it was asked and accepted, else the fused ones.

    Prosody descriptions use terciles of the fold's train clips, as the pipeline learns them from its train set."""
    thresholds = Thresholds.from_values([prosody[i] for i in fold.train])
    fused_pred = pipeline.fused.argmax(axis=1)
    positions = judged_positions(len(fold.test), per_fold, fold.index)
    inputs = []
    for position in positions:
        row = corpus.rows[fold.test[position]]
        inputs.append(
            JudgeInput(
                eval_set=f"ravdess-fold{fold.index}",
                utterance_id=row["utterance_id"],
                transcript=row["transcript"],
                speaker_id=row["speaker_id"],
                gender=row["gender"],
                prosody_description=describe(prosody[fold.test[position]], thresholds),
                fused_label=EMOTIONS[fused_pred[position]],
                fused_probability=float(pipeline.fused[position].max()),
                audio_label=EMOTIONS[pipeline.audio_pred[position]],
                text_label=EMOTIONS[pipeline.text_pred[position]],
            )
        )
    final = fused_pred.copy()
    for position, result in zip(positions, judge.judge(build_requests(inputs, config)), strict=True):
        decision = result.decide(config.threshold)
        truth = corpus.labels[fold.test[position]]
        final[position] = emotion_index(decision.final_label)
        tally.judged += 1
        tally.errors += result.error is not None
        tally.changed += decision.accepted
        tally.right_to_wrong += fused_pred[position] == truth != final[position]
        tally.wrong_to_right += fused_pred[position] != truth == final[position]
        if result.completed_at is not None:
            tally.seconds.append((result.completed_at - result.requested_at).total_seconds())
        if result.judgment is not None:
            tally.labels[result.judgment.label] += 1
    return final


def summary_row(stage: str, encoder: str, model: str, scores: Scores) -> str:
    f1 = scores.f1[stage, encoder, model]
    accuracy = scores.accuracy[stage, encoder, model]
    return (
        f"| {stage} | {encoder} | {model} | **{statistics.mean(f1):.3f}** | {min(f1):.3f} / {max(f1):.3f} | "
        f"{statistics.mean(accuracy):.3f} | {' '.join(f'{v:.2f}' for v in f1)} |"
    )


def table_order(row: tuple[str, str, str]) -> tuple[int, int]:
    stage, encoder, _ = row
    encoders = [name + suffix for name in AUDIO_ENCODERS for suffix in ("", SPEAKER_NORM)] + ["minilm"]
    return ["audio", "text", "fused", "refined"].index(stage), encoders.index(encoder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--folds", type=int, default=N_FOLDS, help="run only the first K folds (smoke runs)")
    parser.add_argument("--judge-per-fold", type=int, default=28, help="test clips judged per fold (0: no judge)")
    parser.add_argument("--judge-encoder", default=LOCAL_PROFILE_ENCODER)
    parser.add_argument("--judge-cache", type=Path, default=Path("/tmp/emojudge-judge-cache"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()

    started, load_before = time.perf_counter(), os.getloadavg()[0]
    corpus = load_corpus(args.data)
    folds = make_folds(corpus.actors)[: args.folds]
    frames, speed = {}, {}
    for name in AUDIO_ENCODERS:
        frames[name], *speed[name] = encode_audio(name, corpus.waves, corpus.audio_seconds)
        frames[name + SPEAKER_NORM] = speaker_normalised(frames[name], corpus)
    speech_waves = [shipped_recipe.speech_copy(wave) for wave in corpus.waves]
    speech_seconds = sum(len(wave) for wave in speech_waves) / SAMPLE_RATE_HZ
    copies = encode_audio(LOCAL_PROFILE_ENCODER.removesuffix(SPEAKER_NORM), speech_waves, speech_seconds)[0]
    speech = speaker_normalised(copies, corpus)
    text_vectors = build_text_encoder({"kind": "minilm"}).encode_batch([row["transcript"] for row in corpus.rows])
    prosody = [compute_prosody(w, row["transcript"]) for w, row in zip(corpus.waves, corpus.rows, strict=True)]
    print(f"features ready after {time.perf_counter() - started:.0f} s", flush=True)

    scores = Scores()
    picked: Counter = Counter()
    tally = JudgeTally()
    judge_config = JudgeConfig.for_backend("local")
    with contextlib.ExitStack() as stack:
        judge = None
        if args.judge_per_fold:
            server = stack.enter_context(LocalJudgeServer(ensure_local_model(args.judge_cache), n_threads=args.threads))
            judge = ChatJudge(server.base_url, max_workers=1, max_retries=0, timeout_s=600, require_api_key=False)
        for fold in folds:
            fold_started = time.perf_counter()
            outputs = run_fold(fold, corpus, frames, speech, text_vectors, scores, picked)
            if judge is not None:
                final = refine(
                    judge, judge_config, corpus, fold, prosody, outputs[args.judge_encoder], args.judge_per_fold, tally
                )
                scores.add(("refined", args.judge_encoder, "ensemble + text + judge"), corpus.labels[fold.test], final)
            summary = ", ".join(f"{'/'.join(k[1:])} {v[-1]:.2f}" for k, v in scores.f1.items())
            print(
                f"fold {fold.index} test {fold.test_actors} dev {fold.dev_actors}: {summary} "
                f"({time.perf_counter() - fold_started:.0f} s)",
                flush=True,
            )

    elapsed = time.perf_counter() - started
    table = [
        "| stage | encoder | model | F1-macro mean | min / max | accuracy mean | per fold |",
        "|---|---|---|---|---|---|---|",
        *(summary_row(*row, scores) for row in sorted(scores.f1, key=table_order)),
    ]
    speed_lines = [f"| {name} | {wall:.1f} | {cpu:.1f} |" for name, (wall, cpu) in speed.items()]
    auto_lines = "; ".join(
        f"{name}: " + ", ".join(f"{head} {picked[name, head]}" for head in HEAD_NAMES) for name in frames
    )
    judge_line = (
        f"Refined = `ensemble + text` fusion of {args.judge_encoder} judged by Gemma 3 270M (local backend, threshold "
        f"{judge_config.threshold}) on {tally.judged} of {sum(len(f.test) for f in folds)} test clips (evenly spaced, "
        f"{args.judge_per_fold} per fold; the others keep their fused label): "
        f"{tally.errors} errors, {tally.changed} labels changed, {tally.right_to_wrong} right->wrong, "
        f"{tally.wrong_to_right} wrong->right; median {statistics.median(tally.seconds):.1f} s per judgment; "
        f"judge labels {', '.join(f'{label} {n}' for label, n in tally.labels.most_common())}."
        if tally.judged
        else "Judge not run."
    )
    section = "\n".join(
        [
            SECTION,
            "",
            f"`bench/bench_ravdess_accuracy.py`, {date.today()}, {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs shared with other work, no GPU; torch {torch.__version__}. {len(corpus.rows)} "
            f"clips ({corpus.audio_seconds:.0f} s), {len(folds)} folds by actor (test 2 actors, development 2, "
            f"train 8), seed {SEED}. Heads: the pipeline's candidates (`attentive`, `meanstd`: "
            "HeadConfig defaults; `linear`: mean+std pooling with no hidden layer; inputs standardised inside the "
            f"head with train statistics) and settings (TrainConfig lr {HEAD_TRAINING.lr:g}, batch "
            f"{HEAD_TRAINING.batch_size}, max_epochs {HEAD_TRAINING.max_epochs}, patience {HEAD_TRAINING.patience}); "
            f"`{SPEAKER_NORM.strip()}`: frames z-normalised per speaker over all of the speaker's clips. "
            f"Whole run {elapsed / 60:.1f} min, peak RSS "
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB, load average "
            f"{load_before:.1f} at start, {os.getloadavg()[0]:.1f} at end. F1-macro over the 7 RAVDESS "
            "classes (chance about 0.14).",
            "",
            *table,
            "",
            "`probe` = the baseline: mean+std of the frames, standardised, scikit-learn LogisticRegression (C on "
            "development); `auto` = the attentive, meanstd or linear head, whichever scores the best development "
            "F1-macro; `ensemble` = the mean of the ENSEMBLE_HEADS' probabilities (the pipeline's default); "
            "fusion = the pipeline's logistic regression on the audio model's and the text head's outputs; "
            f"`{SHIPPED}` = the shipped default model's recipe (emojudge_models/models/shipped_recipe.py) on the "
            "fold's 10 train and development actors, C by their own speaker-grouped CV: the figure of the model "
            "that scores sets nobody trained for (no text model ships, so its fused row is its audio row). "
            "`auto` choices per fold: "
            f"{auto_lines}.",
            "",
            judge_line,
            "",
            "Encoder speed over the 168 clips, 16 clips per call (x real time):",
            "",
            "| encoder | wall clock | CPU time |",
            "|---|---|---|",
            *speed_lines,
            "",
        ]
    )
    print(section)
    if args.write:
        text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
        pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
        text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
