"""Prosody speed (ms of CPU per second of audio) and yin-vs-pyin agreement on the RAVDESS dev clips.

Run by hand on one core: ``.venv/bin/python bench/bench_prosody.py [--limit N] [--write]``; ``--write`` replaces
the "## Prosody" section of bench/RESULTS.md with the figures.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import re
import time
from datetime import date
from pathlib import Path

import numpy as np

from emojudge_models.ingest.audio import load_wave
from emojudge_models.prosody import PITCH_TRACKERS, ProsodyValues, Thresholds, compute_prosody, prosody_version

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared/data/ravdess-dev"
RESULTS = REPO / "bench/RESULTS.md"
RAVDESS_SYLLABLES = 7
"""Both RAVDESS statements ("Kids are talking by the door", "Dogs are sitting by the door") have 7 syllables."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=None, help="first N clips of the manifest")
    parser.add_argument("--write", action="store_true", help="write the figures into bench/RESULTS.md")
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, whatever threads the libraries start

    with open(args.data / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))[: args.limit]
    start = time.process_time()
    waves = [load_wave(args.data / row["path"]) for row in rows]
    load_cpu_s = time.process_time() - start
    audio_s = sum(len(w) for w in waves) / 16_000

    results: dict[str, list[ProsodyValues]] = {}
    cpu_ms_per_audio_s: dict[str, float] = {}
    for tracker in PITCH_TRACKERS:
        compute_prosody(waves[0], rows[0]["transcript"], tracker)  # warm-up: numba compilation
        start = time.process_time()
        results[tracker] = [compute_prosody(w, r["transcript"], tracker) for w, r in zip(waves, rows, strict=True)]
        cpu_ms_per_audio_s[tracker] = 1000 * (time.process_time() - start) / audio_s
        print(f"{tracker}: {cpu_ms_per_audio_s[tracker]:.1f} ms CPU per s of audio", flush=True)

    lines = report(rows, results, cpu_ms_per_audio_s, 1000 * load_cpu_s / audio_s, audio_s)
    print("\n".join(lines))
    if args.write:
        write_section(lines)


def report(
    rows: list[dict[str, str]],
    results: dict[str, list[ProsodyValues]],
    cpu_ms: dict[str, float],
    load_ms: float,
    audio_s: float,
) -> list[str]:
    yin, pyin = results["yin"], results["pyin"]
    both = [(a, b) for a, b in zip(yin, pyin, strict=True) if a.f0_median_hz and b.f0_median_hz]
    median_st = np.array([abs(12 * math.log2(a.f0_median_hz / b.f0_median_hz)) for a, b in both])
    range_st = np.array([abs(a.f0_range_semitones - b.f0_range_semitones) for a, b in both])
    syllables = np.array(
        [v.syllables_per_s * len(r["transcript"].split()) / v.words_per_s for v, r in zip(yin, rows, strict=True)]
    )
    level = {
        emotion: np.mean([v.rms_mean_dbfs for v, r in zip(yin, rows, strict=True) if r["emotion"] == emotion])
        for emotion in ("angry", "happy", "neutral", "sad")
    }
    learned = Thresholds.from_values(yin)
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), platform.machine())
    return [
        f"Run {date.today()}, `bench/bench_prosody.py` on {len(rows)} RAVDESS dev clips ({audio_s:.0f} s of audio, "
        f"decoded to 16 kHz), one core of a shared 2-core {model} VM, no GPU; CPU time (process_time), "
        "warm (numba compiled).",
        "",
        "| tracker | ms CPU per s of audio | x real time | unvoiced clips | mean voiced fraction |",
        "|---|---|---|---|---|",
        *(
            f"| {t}{' (default)' if t == 'yin' else ''} | {cpu_ms[t]:.1f} | {1000 / cpu_ms[t]:.0f} | "
            f"{sum('unvoiced' in v.flags for v in results[t])} | "
            f"{np.mean([v.voiced_fraction for v in results[t]]):.2f} |"
            for t in PITCH_TRACKERS
        ),
        "",
        f"Decoding + resampling 48 kHz WAV (`load_wave`, not part of the above): {load_ms:.1f} ms per s of audio.",
        "",
        f"yin vs pyin on {len(both)} clips voiced for both: median F0 differs by a median of "
        f"{np.median(median_st):.2f} semitones, {100 * np.mean(median_st <= 1):.0f}% within 1 semitone "
        f"(90th percentile {np.percentile(median_st, 90):.2f}); p10-p90 range (semitones) differs by a median of "
        f"{np.median(range_st):.2f}, mean {np.mean(range_st):.2f}.",
        "",
        f"Syllable estimate (transcript-free) vs the 7 syllables of each RAVDESS sentence: mean "
        f"{np.mean(syllables):.2f}, mean absolute error {np.mean(np.abs(syllables - RAVDESS_SYLLABLES)):.2f}, "
        f"{100 * np.mean(np.abs(syllables - RAVDESS_SYLLABLES) <= 1.01):.0f}% within ±1.",
        "",
        "Mean rms_mean_dbfs (yin run): "
        + ", ".join(f"{emotion} {value:.1f}" for emotion, value in level.items())
        + " dBFS (RAVDESS is not level-normalised, so the default level thresholds suit it poorly).",
        "",
        f"Terciles learned from these clips (`Thresholds.from_values`), prosody_version "
        f"`{prosody_version('yin', learned)}`: level {learned.quiet_below_dbfs} / {learned.loud_above_dbfs} dBFS, "
        f"pitch range {learned.narrow_below_semitones} / {learned.wide_above_semitones} semitones, "
        f"{learned.slow_below_words_per_s} / {learned.fast_above_words_per_s} words/s, "
        f"{learned.slow_below_syllables_per_s} / {learned.fast_above_syllables_per_s} syllables/s, "
        f"duration {learned.short_below_s} / {learned.long_above_s} s.",
    ]


def write_section(lines: list[str]) -> None:
    """Replace (or append) the "## Prosody" section of RESULTS.md, leaving other sections untouched."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    section = "## Prosody\n\n" + "\n".join(lines) + "\n"
    pattern = re.compile(r"^## Prosody\n.*?(?=^## |\Z)", flags=re.DOTALL | re.MULTILINE)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
