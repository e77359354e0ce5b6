"""Speed of the Whisper (CTranslate2, tiny.en) encoder and ASR on RAVDESS clips; run by hand.

    .venv/bin/python bench/bench_whisper.py [--data ../shared/data/ravdess-dev] [--part encoder|asr|asr-models|all]

Each configuration runs in a fresh subprocess so that its peak RSS is its own. The encoder is timed on all clips
(seconds of audio per second of wall time, log-mel included). The ASR is timed on a ~10-minute episode built by
concatenating clips with 0.3-1.0 s silences: real-time factor, and the share of segments whose transcript has a word
error rate <= 0.2 against the manifest sentence. Prints a Markdown table per part; the load average is sampled
before and after each run because the machine is shared. ``asr-models``: tiny.en against base (the model the
shipped audio model's features come from) as the ASR, beam 5 and greedy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from emojudge_models.asr.whisper import WhisperASR, word_error_rate  # noqa: E402
from emojudge_models.encoders.whisper_ct2 import WhisperCT2Encoder  # noqa: E402
from emojudge_models.ingest.audio import load_wave  # noqa: E402
from emojudge_models.sample_rate import SAMPLE_RATE_HZ  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "ravdess-dev"
RECOVERED_MAX_WER = 0.2

ENCODER_RUNS = [
    {"window": window, "batch_size": batch_size} for window in ("clip", "full") for batch_size in (1, 4, 8, 16)
] + [{"window": "clip", "batch_size": 8, "cpu_threads": 2}]
ASR_RUNS = [
    {"window_s": 15.0, "batch_size": 4},
    {"window_s": 15.0, "batch_size": 2},
    {"window_s": 15.0, "batch_size": 8},
    {"window_s": 15.0, "batch_size": 4, "beam_size": 1},
    {"window_s": 10.0, "batch_size": 4},
    {"window_s": 20.0, "batch_size": 4},
    {"window_s": 30.0, "batch_size": 1},
    {"window_s": 30.0, "batch_size": 2},
    {"window_s": 30.0, "batch_size": 8},
]
ASR_MODEL_RUNS = [  # issue 31: Whisper base (the feature encoder's model) as the ASR too, greedy and beam
    {"model_path": model, "window_s": 15.0, "batch_size": 2, "beam_size": beam}
    for model in ("tiny.en", "base")
    for beam in (5, 1)
]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads: less sensitive than wall time to other load."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def build_episode(
    manifest: pd.DataFrame, data: Path, minutes: float, seed: int = 0
) -> tuple[np.ndarray, list[tuple[float, float]], list[str]]:
    """Clips in manifest order, each after a 0.3-1.0 s silence, until the episode lasts ``minutes``."""
    rng = np.random.default_rng(seed)
    parts, segments, sentences, position = [], [], [], 0
    for path, sentence in zip(manifest["path"], manifest["transcript"], strict=True):
        if position >= minutes * 60 * SAMPLE_RATE_HZ:
            break
        gap = np.zeros(int(SAMPLE_RATE_HZ * rng.uniform(0.3, 1.0)), np.float32)
        wave = load_wave(data / path)
        start = position + len(gap)
        segments.append((start / SAMPLE_RATE_HZ, (start + len(wave)) / SAMPLE_RATE_HZ))
        sentences.append(sentence)
        parts += [gap, wave]
        position = start + len(wave)
    return np.concatenate(parts), segments, sentences


def run_encoder(config: dict, data: Path) -> dict:
    manifest = pd.read_csv(data / "manifest.csv")
    waves = [load_wave(data / path) for path in manifest["path"]]
    encoder = WhisperCT2Encoder(**config)
    encoder.encode_batch(waves[:2])
    rss_before = peak_rss_mib()
    started, cpu_started = time.perf_counter(), cpu_seconds()
    encoder.encode_batch(waves)
    seconds, cpu_s = time.perf_counter() - started, cpu_seconds() - cpu_started
    audio_s = sum(len(wave) for wave in waves) / SAMPLE_RATE_HZ
    return {
        "clips": len(waves),
        "audio_s": audio_s,
        "wall_s": seconds,
        "speed_x": audio_s / seconds,
        "cpu_per_audio_s": cpu_s / audio_s,
        "rss_before_mib": rss_before,
    }


def run_asr(config: dict, data: Path, minutes: float) -> dict:
    manifest = pd.read_csv(data / "manifest.csv")
    episode, segments, sentences = build_episode(manifest, data, minutes)
    asr = WhisperASR(**config)
    asr.transcribe_clips([episode[: SAMPLE_RATE_HZ * 2]])
    rss_before = peak_rss_mib()
    started, cpu_started = time.perf_counter(), cpu_seconds()
    texts = asr.transcribe_segments(episode, segments)
    seconds, cpu_s = time.perf_counter() - started, cpu_seconds() - cpu_started
    errors = [word_error_rate(sentence, text) for sentence, text in zip(sentences, texts, strict=True)]
    recovered = sum(error <= RECOVERED_MAX_WER for error in errors)
    misses = [(s, t) for s, t, e in zip(sentences, texts, errors, strict=True) if e > RECOVERED_MAX_WER]
    return {
        "episode_s": len(episode) / SAMPLE_RATE_HZ,
        "segments": len(segments),
        "wall_s": seconds,
        "rtf_x": len(episode) / SAMPLE_RATE_HZ / seconds,
        "cpu_per_audio_s": cpu_s / (len(episode) / SAMPLE_RATE_HZ),
        "rss_before_mib": rss_before,
        "recovered": recovered,
        "mean_wer": float(np.mean(errors)),
        "misses": misses[:3],
        "key": asr.asr_model_key,
    }


def run_in_subprocess(part: str, config: dict, args: argparse.Namespace) -> dict:
    load_before = os.getloadavg()[0]
    command = [
        sys.executable,
        __file__,
        "--one",
        json.dumps({"part": part, "config": config}),
        "--data",
        str(args.data),
    ]
    command += ["--minutes", str(args.minutes)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result = json.loads(output.strip().splitlines()[-1])
    result["load"] = f"{load_before:.1f}/{os.getloadavg()[0]:.1f}"
    return result


def describe(config: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in config.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--part", choices=("encoder", "asr", "asr-models", "all"), default="all")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the synthetic episode")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not (args.data / "manifest.csv").is_file():
        sys.exit(f"no RAVDESS manifest at {args.data / 'manifest.csv'}")

    if args.one:
        job = json.loads(args.one)
        runner = run_encoder if job["part"] == "encoder" else run_asr
        extra = () if job["part"] == "encoder" else (args.minutes,)
        result = runner(job["config"], args.data, *extra)
        print(json.dumps(result | {"peak_rss_mib": peak_rss_mib()}))
        return

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.machine(),
    )
    print(f"machine: {os.cpu_count()} CPUs ({cpu}), {platform.platform()}; load average (1 min) before/after each run")
    if args.part in ("encoder", "all"):
        print(
            "\n| encoder config | clips | audio s | wall s | audio s per s | CPU s per audio s "
            "| RSS before / peak MiB | load |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for config in ENCODER_RUNS:
            r = run_in_subprocess("encoder", config, args)
            print(
                f"| {describe(config)} | {r['clips']} | {r['audio_s']:.0f} | {r['wall_s']:.1f} | {r['speed_x']:.1f}x "
                f"| {r['cpu_per_audio_s']:.4f} | {r['rss_before_mib']:.0f} / {r['peak_rss_mib']:.0f} | {r['load']} |",
                flush=True,
            )
    if args.part in ("asr", "asr-models", "all"):
        print(
            "\n| ASR config | episode s | segments | wall s | real time | CPU s per audio s | recovered | mean WER "
            "| RSS before / peak MiB | load |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        misses = []
        for config in ASR_MODEL_RUNS if args.part == "asr-models" else ASR_RUNS:
            r = run_in_subprocess("asr", config, args)
            share = r["recovered"] / r["segments"]
            print(
                f"| {describe(config)} | {r['episode_s']:.0f} | {r['segments']} | {r['wall_s']:.1f} "
                f"| {r['rtf_x']:.1f}x | {r['cpu_per_audio_s']:.4f} | {r['recovered']}/{r['segments']} ({share:.1%}) "
                f"| {r['mean_wer']:.3f} | {r['rss_before_mib']:.0f} / {r['peak_rss_mib']:.0f} | {r['load']} |",
                flush=True,
            )
            misses.append(f"{describe(config)}: {r['misses']}")
        print("\nfirst misses (manifest sentence, transcript):\n" + "\n".join(misses))


if __name__ == "__main__":
    main()
