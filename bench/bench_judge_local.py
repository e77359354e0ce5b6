"""Latency and effect of the local judge (Gemma 3 270M on llama.cpp) on RAVDESS dev clips.

Two conditions bracket what the judge can do, with no trained model involved:
``oracle``: the fused label is the true one (probability 0.60), so every change is right-to-wrong;
``neutral``: the fused label is always ``neutral`` (probability 0.40), so a change to the true class is
wrong-to-right. The prompt gets the real transcript, speaker, gender and prosody description.

Run by hand: ``.venv/bin/python bench/bench_judge_local.py [--per-class N] [--threads T] [--write]``;
``--write`` replaces the "## Local LLM judge" section of bench/RESULTS.md.

``--slots 1,2,4`` measures throughput instead: for each count, that many slots (``LocalJudgePool``) answer the
``neutral`` requests sent concurrently (one in flight per slot), after one warm-up request per slot (model load and
the first evaluation of the shared system-prompt prefix, which each slot then reuses from its KV cache); it prints
judgments per second and the table rows for bench/RESULTS.md. ``--backend llama-cpp-python`` (default) runs a
llama-cpp-python server per slot, the CPU threads divided among them; ``--backend llama-server`` runs one llama.cpp
``llama-server`` (``--llama-server PATH``, default EMOJUDGE_LLAMA_SERVER) with that many parallel slots and all the
threads; ``--backend both`` measures each count with both.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import statistics
import sys
import time
from collections import Counter
from dataclasses import replace
from datetime import date
from pathlib import Path

from emojudge_models.ingest.audio import load_wave
from emojudge_models.judge import (
    LOCAL_JUDGE_MODEL,
    ChatJudge,
    JudgeConfig,
    JudgeInput,
    LocalJudgePool,
    LocalJudgeServer,
    ResponseFormat,
    build_requests,
    ensure_local_model,
)
from emojudge_models.prosody import compute_prosody, describe
from emojudge_models.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared/data/ravdess-dev"
RESULTS = REPO / "bench/RESULTS.md"
SECTION = "## Local LLM judge"


def pick_rows(data: Path, per_class: int) -> list[dict[str, str]]:
    rows = list(csv.DictReader((data / "manifest.csv").open()))
    picked: list[dict[str, str]] = []
    for emotion in sorted({row["emotion"] for row in rows}):
        picked += [row for row in rows if row["emotion"] == emotion][:per_class]
    return picked


def judge_inputs(data: Path, rows: list[dict[str, str]], condition: str) -> list[JudgeInput]:
    inputs = []
    for row in rows:
        values = compute_prosody(load_wave(data / row["path"]), row["transcript"])
        oracle = condition == "oracle"
        inputs.append(
            JudgeInput(
                eval_set=f"bench-{condition}",
                utterance_id=row["utterance_id"],
                transcript=row["transcript"],
                speaker_id=row["speaker_id"],
                gender=row["gender"],
                prosody_description=describe(values),
                fused_label=row["emotion"] if oracle else "neutral",
                fused_probability=0.60 if oracle else 0.40,
            )
        )
    return inputs


def slots_throughput(
    model: Path, inputs: list[JudgeInput], slots: int, threads: int, config: JudgeConfig, llama_server: Path | None
) -> str:
    """One table row: ``slots`` slots answering ``inputs`` concurrently, timed after a warm-up request per slot."""
    started = time.monotonic()
    with LocalJudgePool(model, slots=slots, n_threads=threads, llama_server=llama_server) as pool:
        startup_s = time.monotonic() - started
        requests = build_requests(inputs, config)
        per_url = slots // len(pool.base_urls)
        for url in pool.base_urls:
            warm = ChatJudge(url, max_workers=per_url, max_retries=0, timeout_s=600, require_api_key=False)
            warm.judge(requests[:per_url])
        judge = ChatJudge(pool.base_urls, max_workers=slots, max_retries=0, timeout_s=600, require_api_key=False)
        load_before = os.getloadavg()[0]
        begun = time.monotonic()
        results = judge.judge(requests)
        wall_s = time.monotonic() - begun
        process_threads = pool.servers[0].n_threads
    seconds = [(r.completed_at - r.requested_at).total_seconds() for r in results]
    errors = sum(r.error is not None for r in results)
    for result in results:
        if result.error is not None:
            print(f"  error ({result.completion_tokens} tokens): {result.error[:120]}", file=sys.stderr)
    backend = "llama-server" if llama_server else "llama-cpp-python"
    return (
        f"| {backend} | {slots} | {len(pool.servers)} | {process_threads} | {len(results)} | {errors} | "
        f"{startup_s:.1f} | {wall_s:.1f} | {len(results) / wall_s:.3f} | {(len(results) - errors) / wall_s:.3f} | "
        f"{statistics.median(seconds):.1f} | "
        f"{load_before:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--per-class", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    settings = Settings.from_env()
    parser.add_argument("--cache", type=Path, default=settings.home / "models/judge")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--slots", type=str, default="", help="comma-separated slot counts: measure throughput")
    parser.add_argument("--backend", choices=("llama-cpp-python", "llama-server", "both"), default="llama-cpp-python")
    parser.add_argument("--llama-server", type=Path, default=settings.llama_server, help="llama-server binary")
    args = parser.parse_args()
    if args.slots and args.backend != "llama-cpp-python" and args.llama_server is None:
        parser.error(f"--backend {args.backend} needs --llama-server PATH or EMOJUDGE_LLAMA_SERVER")
    if args.slots:
        config = JudgeConfig(
            backend="local", model=LOCAL_JUDGE_MODEL, response_format=ResponseFormat.JSON_OBJECT_SCHEMA
        )
        inputs = judge_inputs(args.data, pick_rows(args.data, args.per_class), "neutral")
        model = ensure_local_model(args.cache)
        binaries = {"llama-cpp-python": [None], "llama-server": [args.llama_server]}
        binaries["both"] = [None, args.llama_server]
        print(
            "| backend | slots | processes | threads per process | judgments | errors | start s | wall s "
            "| judgments/s | valid judgments/s | s per judgment median | load avg before |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for slots in (int(count) for count in args.slots.split(",")):
            for binary in binaries[args.backend]:
                # as the judge resource asks: llama-server gets the answer's grammar (JUDGMENT_GRAMMAR)
                answer = ResponseFormat.GRAMMAR if binary else ResponseFormat.JSON_OBJECT_SCHEMA
                asked = replace(config, response_format=answer)
                print(slots_throughput(model, inputs, slots, args.threads, asked, binary), flush=True)
        return

    rows = pick_rows(args.data, args.per_class)
    truth = {row["utterance_id"]: row["emotion"] for row in rows}
    config = JudgeConfig(backend="local", model=LOCAL_JUDGE_MODEL, response_format=ResponseFormat.JSON_OBJECT_SCHEMA)
    lines = []
    started = time.monotonic()
    with LocalJudgeServer(ensure_local_model(args.cache), n_threads=args.threads) as server:
        startup_s = time.monotonic() - started
        judge = ChatJudge(server.base_url, max_workers=1, max_retries=0, timeout_s=600, require_api_key=False)
        for condition in ("oracle", "neutral"):
            results = judge.judge(build_requests(judge_inputs(args.data, rows, condition), config))
            seconds = [(r.completed_at - r.requested_at).total_seconds() for r in results]
            decisions = [r.decide(config.threshold) for r in results]
            changed = [d.accepted for d in decisions]
            right = [d.final_label == truth[r.request.utterance_id] for r, d in zip(results, decisions, strict=True)]
            fused_right = [r.request.fused_label == truth[r.request.utterance_id] for r in results]
            labels = [r.judgment.label for r in results if r.judgment]
            confidences = [r.judgment.confidence for r in results if r.judgment]
            median_confidence = statistics.median(confidences) if confidences else float("nan")
            lines.append(
                f"| {condition} | {len(results)} | {sum(r.error is not None for r in results)} | "
                f"{statistics.median(seconds):.1f} / {max(seconds):.1f} | "
                f"{statistics.mean(r.prompt_tokens or 0 for r in results):.0f} / "
                f"{statistics.mean(r.completion_tokens or 0 for r in results):.0f} | "
                f"{sum(changed)} | {sum(f and not g for f, g in zip(fused_right, right, strict=True))} | "
                f"{sum(g and not f for f, g in zip(fused_right, right, strict=True))} | "
                f"{sum(fused_right)} -> {sum(right)} | "
                f"{', '.join(f'{label} {n}' for label, n in Counter(labels).most_common())}; "
                f"confidence median {median_confidence:.2f} |"
            )
            print(lines[-1], flush=True)

    section = "\n".join(
        [
            SECTION,
            "",
            f"`bench/bench_judge_local.py --per-class {args.per_class} --threads {args.threads}`, {date.today()}, "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (shared with other jobs). "
            f"Gemma 3 270M Q4_K_M on llama-cpp-python's server, JSON mode with the answer schema as grammar, "
            f"temperature {config.temperature}, threshold {config.threshold}, one request at a time. "
            f"Server start {startup_s:.1f} s. `oracle`: fused label = truth (p 0.60); "
            "`neutral`: fused = neutral (p 0.40).",
            "",
            "| condition | n | errors | s per judgment median / max | tokens in / out | changed "
            "| right->wrong | wrong->right | correct before -> after | judge labels |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *lines,
            "",
        ]
    )
    print(section)
    if args.write:
        text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
        pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
        text = pattern.sub(section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
