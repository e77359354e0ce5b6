"""Feature-extraction benchmark (run by hand): naive per-clip loop vs the pipeline, cold vs cached rerun.

CPU (default): one tiny random WavLM (real 50 Hz strides) and the RAVDESS dev clips, each phase in its own
process so its peak RSS is its own:

    .venv/bin/python bench/bench_features.py [--clips 168] [--batch-seconds 60]

GPU: full-size WavLM-Large (random weights, built from its config) in bf16 on synthetic clips of MSP-Podcast-
like lengths: seconds of audio per second for the model alone and for the whole pipeline (decoding, shards),
and the fraction of the GPU's bf16 dense peak (FLOPs counted with torch's FlopCounterMode):

    .venv/bin/python bench/bench_features.py --large --device cuda --batch-seconds 1000 --workers 8 \
        --write-workers 4 [--audio-hours 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the tiny test-model builders

from tiny_models import save_wavlm, tiny_wavlm_config, wavlm_large_config  # noqa: E402

from emojudge_models.encoders.hf import HFAudioEncoder  # noqa: E402
from emojudge_models.features.extract import Clip, extract_audio_features  # noqa: E402
from emojudge_models.features.store import FeatureStore  # noqa: E402
from emojudge_models.ingest.audio import file_sha256, load_wave  # noqa: E402
from emojudge_models.store import warehouse  # noqa: E402

RAVDESS = ROOT.parent / "shared" / "data" / "ravdess-dev"
BF16_DENSE_PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.0}
"""Dense (no sparsity) bf16 tensor-core peaks by device-name substring, most specific first."""


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ravdess_clips(limit: int) -> list[Clip]:
    with open(RAVDESS / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))[:limit]
    return [Clip("bench", r["utterance_id"], RAVDESS / r["path"], r["sha256"], float(r["duration_s"])) for r in rows]


# Child phases --------------------------------------------------------------------------------------------


def _per_clip_loop(clips: list[Clip], out: Path, encode) -> dict:
    """Time ``encode(path) -> (frames, n_samples)`` plus an fp16 ``np.save``, clip after clip (after a warm-up)."""
    out.mkdir()
    encode(clips[0].audio_path)
    started, cpu = time.perf_counter(), time.process_time()
    audio_seconds = 0.0
    for clip in clips:
        frames, n_samples = encode(clip.audio_path)
        np.save(out / f"{clip.utterance_id}.npy", frames.astype(np.float16))
        audio_seconds += n_samples / 16_000
    return {
        "wall_s": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu,
        "audio_seconds": audio_seconds,
        "peak_rss_mb": peak_rss_mb(),
    }


def phase_naive(model_dir: Path, clips: list[Clip], work: Path) -> dict:
    """Load, forward at batch 1, save, clip after clip, with the library's own decoder and encoder."""
    encoder = HFAudioEncoder(model_dir)

    def encode(path: Path) -> tuple[np.ndarray, int]:
        wave = load_wave(path)
        return encoder.encode_batch([wave])[0], len(wave)

    return _per_clip_loop(clips, work / "naive", encode)


def phase_naive_transformers(model_dir: Path, clips: list[Clip], work: Path) -> dict:
    """The loop a transformers user writes: librosa.load, AutoFeatureExtractor, AutoModel at batch 1 under
    torch.no_grad, np.save; no library code of ours."""
    import librosa
    import torch
    from transformers import AutoFeatureExtractor, AutoModel

    extractor = AutoFeatureExtractor.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()

    def encode(path: Path) -> tuple[np.ndarray, int]:
        wave, _ = librosa.load(path, sr=16_000)
        inputs = extractor(wave, sampling_rate=16_000, return_tensors="pt")
        with torch.no_grad():
            return model(**inputs).last_hidden_state[0].numpy(), len(wave)

    return _per_clip_loop(clips, work / "naive-transformers", encode)


def phase_pipeline(model_dir: Path, clips: list[Clip], work: Path, args: argparse.Namespace) -> dict:
    """The store's extraction into ``work`` (cold the first time, cached when the store already has it)."""
    encoder = HFAudioEncoder(model_dir, device=args.device)
    encoder.encode_batch([load_wave(clips[0].audio_path)])
    cpu = time.process_time()
    report = extract_audio_features(
        FeatureStore(partial(warehouse.connect, work), work / "features"),
        encoder,
        clips,
        run_id="bench",
        batch_seconds=args.batch_seconds,
        decode_workers=args.workers,
    )
    cpu = time.process_time() - cpu
    return {**report.as_metadata(), "cpu_s": cpu, "failed": report.failed[:3], "peak_rss_mb": peak_rss_mb()}


def run_child(phase: str, model_dir: Path, work: Path, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        __file__,
        "--phase",
        phase,
        "--model-dir",
        str(model_dir),
        "--work",
        str(work),
        "--clips",
        str(args.clips),
        "--batch-seconds",
        str(args.batch_seconds),
        "--workers",
        str(args.workers),
        "--device",
        args.device,
        "--threads",
        str(args.threads),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"phase {phase} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def cpu_benchmark(args: argparse.Namespace) -> None:
    """Naive, cold and cached phases, repeated on fresh directories; medians, since the CPU is shared."""
    if not (RAVDESS / "manifest.csv").is_file():
        raise SystemExit(f"RAVDESS clips not found at {RAVDESS}")
    runs: dict[str, list[dict]] = {"naive-transformers": [], "naive": [], "cold": [], "cached": []}
    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
        model_dir = save_wavlm(Path(tmp) / "model", tiny_wavlm_config(args.hidden, args.layers))
        for repeat in range(args.repeats):
            work = Path(tmp) / f"run{repeat}"
            work.mkdir()
            runs["naive-transformers"].append(run_child("naive-transformers", model_dir, work, args))
            runs["naive"].append(run_child("naive", model_dir, work, args))
            runs["cold"].append(run_child("pipeline", model_dir, work, args))
            runs["cached"].append(run_child("pipeline", model_dir, work, args))

    def best(phase: str, field: str) -> float:
        return float(np.min([run[field] for run in runs[phase]]))

    def median(phase: str, field: str) -> float:
        return float(np.median([run[field] for run in runs[phase]]))

    audio_s = median("naive", "audio_seconds")
    threads = args.threads or "default"
    print(f"machine: {os.cpu_count()} CPU cores (shared), torch threads {threads}; {args.clips} RAVDESS clips")
    print(
        f"model: tiny WavLM hidden={args.hidden} layers={args.layers}; batch_seconds={args.batch_seconds}; "
        f"best / median of {args.repeats} runs"
    )
    for label, phase in (
        ("naive (transformers)", "naive-transformers"),
        ("naive (library)     ", "naive"),
        ("pipeline            ", "cold"),
        ("cached              ", "cached"),
    ):
        print(
            f"{label}: {best(phase, 'wall_s'):.3f} / {median(phase, 'wall_s'):.3f} s "
            f"({audio_s / best(phase, 'wall_s'):.0f}x real time), CPU {median(phase, 'cpu_s'):.3f} s, "
            f"peak RSS {median(phase, 'peak_rss_mb'):.0f} MB"
        )
    print(
        f"cold computed {runs['cold'][0]['computed']}; cached computed {runs['cached'][0]['computed']}, "
        f"reused {runs['cached'][0]['reused']}"
    )
    for label, numerator, denominator in (
        ("pipeline speed-up over naive transformers loop (target >= 5x)", "naive-transformers", "cold"),
        ("pipeline speed-up over naive library loop (target >= 5x)", "naive", "cold"),
        ("cached rerun / cold (target <= 5%)", "cached", "cold"),
    ):
        ratio_best = best(numerator, "wall_s") / best(denominator, "wall_s")
        ratio_median = median(numerator, "wall_s") / median(denominator, "wall_s")
        print(f"{label}: {ratio_best:.3f} best, {ratio_median:.3f} median")
    bound = median("naive", "wall_s") / (median("cold", "cpu_s") / (os.cpu_count() or 1))
    print(f"ceiling: naive library loop / (pipeline CPU time / {os.cpu_count()} cores) = {bound:.2f}x")


# GPU: WavLM-Large --------------------------------------------------------------------------------------


def bf16_peak_tflops(device_name: str, override: float | None) -> float | None:
    if override:
        return override
    for name, peak in BF16_DENSE_PEAK_TFLOPS.items():
        if name in device_name:
            return peak
    return None


def synthetic_durations(total_seconds: float, seed: int = 0) -> list[float]:
    """Clip lengths like MSP-Podcast's (2.75-11 s, mean ~6 s) summing to about ``total_seconds``."""
    rng = np.random.default_rng(seed)
    durations: list[float] = []
    while sum(durations) < total_seconds:
        durations.append(float(np.clip(rng.gamma(4.0, 1.5), 2.75, 11.0)))
    return durations


def large_benchmark(args: argparse.Namespace) -> None:
    import soundfile as sf
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from emojudge_models.features.batching import plan_batches

    with tempfile.TemporaryDirectory(prefix="bench-wavlm-large-") as tmp:
        work = Path(tmp)
        model_dir = save_wavlm(work / "model", wavlm_large_config())
        encoder = HFAudioEncoder(model_dir, device=args.device)
        device_name = torch.cuda.get_device_name() if encoder.device.type == "cuda" else "cpu"
        durations = synthetic_durations(args.audio_hours * 3600)
        rng = np.random.default_rng(1)
        waves = [(rng.standard_normal(int(d * 16_000)) * 0.1).astype(np.float32) for d in durations]
        batches = plan_batches(list(range(len(waves))), lambda i: durations[i], args.batch_seconds)

        def sync() -> None:
            if encoder.device.type == "cuda":
                torch.cuda.synchronize()

        encoder.encode_batch([waves[i] for i in batches[0]])
        with FlopCounterMode(display=False) as counter:
            encoder.encode_batch([waves[i] for i in batches[len(batches) // 2]])
        flops_per_audio_second = counter.get_total_flops() / sum(durations[i] for i in batches[len(batches) // 2])
        sync()
        started = time.perf_counter()
        for batch in batches:
            encoder.encode_batch([waves[i] for i in batch])
        sync()
        model_wall = time.perf_counter() - started
        total_audio = sum(durations)
        model_speed = total_audio / model_wall
        achieved_tflops = model_speed * flops_per_audio_second / 1e12
        peak = bf16_peak_tflops(device_name, args.peak_tflops)

        audio_dir = work / "audio"
        audio_dir.mkdir()
        clips = []
        for index, wave in enumerate(waves):
            path = audio_dir / f"clip{index:06d}.wav"
            sf.write(path, wave, 16_000, subtype="PCM_16")
            clips.append(Clip("bench", f"clip{index:06d}", path, file_sha256(path), len(wave) / 16_000))
        del waves
        report = extract_audio_features(
            FeatureStore(partial(warehouse.connect, work), work / "features"),
            encoder,
            clips,
            run_id="bench-large",
            batch_seconds=args.batch_seconds,
            decode_workers=args.workers,
            write_workers=args.write_workers,
            prefetch_batches=4,
        )
    print(
        f"device: {device_name}; model: WavLM-Large architecture (random weights), dtype policy auto "
        f"({encoder.compute_dtype}), batch_seconds={args.batch_seconds}"
    )
    print(f"audio: {len(durations)} synthetic clips, {total_audio:.0f} s ({total_audio / 3600:.2f} h)")
    print(
        f"model only : {model_speed:,.0f} s of audio per s ({flops_per_audio_second / 1e9:.1f} GFLOP per audio s, "
        f"{achieved_tflops:.0f} TFLOP/s" + (f" = {achieved_tflops / peak:.1%} of {peak:g} bf16 peak)" if peak else ")")
    )
    print(
        f"pipeline   : {report.throughput_x_realtime:,.0f}x real time (decode + forward + fp16 shards), "
        f"failed {len(report.failed)}, peak RSS {peak_rss_mb():.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=168)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch-seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=2, help="audio decoding threads")
    parser.add_argument("--write-workers", type=int, default=1, help="frame checking/writing threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads in every phase (0: torch default)")
    parser.add_argument("--large", action="store_true", help="WavLM-Large throughput on --device")
    parser.add_argument("--audio-hours", type=float, default=2.0, help="synthetic audio for --large")
    parser.add_argument("--peak-tflops", type=float, default=None, help="bf16 dense peak, if not in the table")
    parser.add_argument("--phase", choices=["naive", "naive-transformers", "pipeline"], help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.phase == "naive":
        print(json.dumps(phase_naive(args.model_dir, ravdess_clips(args.clips), args.work)))
    elif args.phase == "naive-transformers":
        print(json.dumps(phase_naive_transformers(args.model_dir, ravdess_clips(args.clips), args.work)))
    elif args.phase == "pipeline":
        print(json.dumps(phase_pipeline(args.model_dir, ravdess_clips(args.clips), args.work, args)))
    elif args.large:
        large_benchmark(args)
    else:
        cpu_benchmark(args)


if __name__ == "__main__":
    main()
