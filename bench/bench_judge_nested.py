"""The judge gates on speakers no choice has seen: RAVDESS actors 01-12, nested by speaker (issue #22's bench).

1. Out-of-fold labels: the nested speaker-grouped CV of ``bench_nested_cv.py`` (same cache, same candidates; every
   choice inside each outer fold's training actors) gives every clip the fused, audio and text label of the model
   chosen for the outer fold in which the clip's actor was a test speaker.
2. Judgments: the local judge (Gemma 3 270M on llama.cpp, ``EMOJUDGE_JUDGE_SLOTS`` servers, the pipeline's prompt:
   transcript, speaker and gender, prosody description, fused label and the audio and text labels, probability
   hidden as by default; temperature 0.3) judges each clip once with those labels. Answers are cached in
   ``--cache`` by prompt hash, so a rerun asks nothing it has asked before.
3. Gates, nested: for each outer fold, the gate is decided on the judgments of the other ten actors' clips (their
   truth labels only; at most ``EMOJUDGE_JUDGE_EVIDENCE_MAX`` of them, in the pipeline's evidence order) and applied
   to the two test actors' clips; the pooled test labels are scored. Rows: the fused labels, the paper's confidence
   rule alone (``off``), the ``development`` gate (all or nothing) and the ``per_change`` gate. "In-sample" decides
   and scores on the same clips (what a development set shows).

The evidence actors' out-of-fold labels came from models that trained on the test actors' clips; only the evidence
actors' truth labels reach the gate, so no test label enters any decision.

Run by hand: ``.venv/bin/python bench/bench_judge_nested.py [--threads 2] [--write]``; ``--write`` replaces the
"### Gates on held-out speakers" part of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path

import pandas as pd
from sklearn.metrics import f1_score

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_nested_cv import DEFAULT_DATA, FUSION_STRATEGIES, N_GROUPS, Trainer, candidates, load_corpus

from emojudge_models.evaluation.nested import nested_cv
from emojudge_models.ingest.audio import load_wave
from emojudge_models.judge import (
    LOCAL_JUDGE_MODEL,
    ChatJudge,
    JudgeConfig,
    JudgeInput,
    LocalJudgePool,
    build_requests,
    ensure_local_model,
)
from emojudge_models.judge.gate import evidence_order, gate_decision
from emojudge_models.labels import EMOTIONS
from emojudge_models.prosody import compute_prosody, describe
from emojudge_models.settings import Settings

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench/RESULTS.md"
SUBSECTION = "### Gates on held-out speakers (`bench_judge_nested.py`)"
MODES = ("development", "per_change", "off")


def out_of_fold_labels(data: Path, cache: Path) -> pd.DataFrame:
    """One row per clip: manifest fields, outer fold, and the nested CV's fused/audio/text labels for it."""
    corpus = load_corpus(data, cache)
    trainer = Trainer(corpus, cache)
    nested = nested_cv(
        corpus.speakers, corpus.labels, candidates(trainer, FUSION_STRATEGIES), n_groups=N_GROUPS, select_on="fused"
    )
    table = pd.DataFrame(corpus.rows)
    for fold in nested.folds:
        for output in ("fused", "audio", "text"):
            table.loc[fold.test, output] = [EMOTIONS[int(i)] for i in fold.predictions[output]]
        table.loc[fold.test, "fold"] = fold.index
        table.loc[fold.test, "chosen"] = fold.chosen
    return table


def judge_all(table: pd.DataFrame, data: Path, cache: Path, slots: int, threads: int) -> pd.DataFrame:
    """``label``, ``confidence`` and ``accepted`` per clip from the local judge (cached answers reused)."""
    config = JudgeConfig.for_backend("local")
    inputs = [
        JudgeInput(
            eval_set="ravdess",
            utterance_id=row.utterance_id,
            transcript=row.transcript,
            speaker_id=row.speaker_id,
            gender=row.gender,
            prosody_description=describe(compute_prosody(load_wave(data / row.path), row.transcript)),
            fused_label=row.fused,
            fused_probability=None,
            audio_label=row.audio,
            text_label=row.text,
        )
        for row in table.itertuples()
    ]
    requests = build_requests(inputs, config)
    store = cache / "judgments-local.json"
    answers: dict[str, dict] = json.loads(store.read_text()) if store.exists() else {}
    missing = [request for request in requests if request.prompt_sha256 not in answers]
    print(f"{len(requests)} prompts, {len(missing)} to ask", flush=True)
    started = time.perf_counter()
    if missing:
        model = ensure_local_model(Settings.from_env().home / "models/judge")
        with LocalJudgePool(model, slots=slots, n_threads=threads) as pool:
            judge = ChatJudge(pool.base_urls, max_workers=slots, max_retries=1, timeout_s=600, require_api_key=False)
            for start in range(0, len(missing), 8):
                for result in judge.judge(missing[start : start + 8]):
                    judgment = result.judgment
                    answers[result.request.prompt_sha256] = {
                        "label": judgment.label if judgment else None,
                        "confidence": judgment.confidence if judgment else None,
                        "accepted": result.decide(config.threshold).accepted,
                        "error": result.error,
                    }
                store.write_text(json.dumps(answers))
                print(f"  {min(start + 8, len(missing))}/{len(missing)} answered", flush=True)
    judged = table.copy()
    judged.attrs["asked"] = (len(missing), time.perf_counter() - started)
    for column in ("label", "confidence", "accepted", "error"):
        judged[column] = [answers[request.prompt_sha256][column] for request in requests]
    judged["fused_label"] = judged["fused"]
    return judged


def gated(evidence: pd.DataFrame, target: pd.DataFrame, mode: str) -> list[str]:
    """Final labels of ``target`` with the gate decided on ``evidence`` (the paper's rule alone for ``off``)."""
    decision = gate_decision(evidence[["fused_label", "label", "accepted", "emotion"]], mode)
    return [
        label if accepted and decision.applies(fused, label) else fused
        for fused, label, accepted in zip(target["fused_label"], target["label"], target["accepted"], strict=True)
    ]


def scores(judged: pd.DataFrame, evidence_max: int) -> tuple[list[str], Counter]:
    """Table rows (held-out nested, in-sample) and, per outer fold, which change kinds the per-change gate applied."""
    answered = judged[judged["error"].isna() & judged["label"].notna()].copy()
    answered["label"] = answered["label"].astype(str)
    applied: Counter = Counter()
    truth, pooled = [], {mode: [] for mode in ("fused", *MODES)}
    for _, test in answered.groupby("fold"):
        others = answered[answered["fold"] != test["fold"].iloc[0]]
        others = others.sort_values("utterance_id", key=lambda ids: ids.map(evidence_order)).head(evidence_max)
        truth += test["emotion"].tolist()
        pooled["fused"] += test["fused_label"].tolist()
        for mode in MODES:
            pooled[mode] += gated(others, test, mode)
        decision = gate_decision(others[["fused_label", "label", "accepted", "emotion"]], "per_change")
        applied.update(kind.kind for kind in decision.kinds if kind.applied)
    held_out = [f1_score(truth, pooled[mode], average="macro", zero_division=0) for mode in ("fused", *MODES)]
    in_sample = [f1_score(answered["emotion"], answered["fused_label"], average="macro", zero_division=0)]
    in_sample += [
        f1_score(answered["emotion"], gated(answered, answered, mode), average="macro", zero_division=0)
        for mode in MODES
    ]
    rows = [
        f"| held-out speakers (nested, {answered['fold'].nunique()} outer folds) | {len(truth)} | "
        + " | ".join(f"{x:.3f}" for x in held_out)
        + " |",
        f"| in-sample (decided and scored on all) | {len(answered)} | "
        + " | ".join(f"{x:.3f}" for x in in_sample)
        + " |",
    ]
    return rows, applied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/emojudge-nested-cache"))
    parser.add_argument("--threads", type=int, default=2, help="CPU threads shared by the judge servers")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    settings = Settings.from_env()
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    table = out_of_fold_labels(args.data, args.cache)
    judged = judge_all(table, args.data, args.cache, settings.judge_slots, args.threads)
    rows, applied = scores(judged, settings.judge_evidence_max)
    answered = judged[judged["error"].isna()]
    changes = answered[answered["accepted"].astype(bool)]
    kinds = Counter(f"{f}->{j}" for f, j in zip(changes["fused_label"], changes["label"], strict=True))
    fixed = int(((changes["fused_label"] != changes["emotion"]) & (changes["label"] == changes["emotion"])).sum())
    broken = int(((changes["fused_label"] == changes["emotion"]) & (changes["label"] != changes["emotion"])).sum())
    lines = [
        SUBSECTION,
        "",
        f"`bench/bench_judge_nested.py`, {date.today()}, {platform.machine()}, {os.cpu_count()} CPUs, judge "
        f"{LOCAL_JUDGE_MODEL} (local, {settings.judge_slots} slots, {args.threads} threads), threshold 0.8, "
        f"temperature 0.3; {len(judged)} clips, {len(answered)} answered; out-of-fold labels from the nested CV "
        f"(chosen per outer fold: {', '.join(sorted(set(table['chosen'])))}); "
        f"{judged.attrs['asked'][0]} prompts asked in this run ({judged.attrs['asked'][1] / 60:.1f} min; the rest "
        f"answered from the cache), {(time.perf_counter() - started) / 60:.1f} min wall, load average "
        f"{load_before:.1f} at start, "
        f"{os.getloadavg()[0]:.1f} at end.",
        "",
        "| labels | n | fused | development gate | per_change gate | off (paper rule) |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"- Judge answers: {dict(Counter(answered['label']).most_common())}; accepted by the 0.8 rule: "
        f"{len(changes)} ({dict(kinds.most_common(6))}), of which {fixed} wrong->right and {broken} right->wrong.",
        f"- Change kinds the per_change gate applied, counted over the outer folds: {dict(applied) or 'none'}.",
    ]
    section = "\n".join(lines)
    print(section)
    if args.write:
        text = RESULTS.read_text()
        pattern = re.compile(rf"^{re.escape(SUBSECTION)}\n.*?(?=^##+ |\Z)", re.S | re.M)
        if pattern.search(text):
            text = pattern.sub(lambda _: section + "\n\n", text)
        else:
            anchor = "## Podcast inbox (`bench_inbox.py`)"
            text = text.replace(anchor, section + "\n\n" + anchor, 1)
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
