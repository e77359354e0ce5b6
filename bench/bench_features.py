"""Feature-extraction benchmark (run by hand): naive per-clip loop vs the pipeline, cold vs cached rerun.

CPU (default): one tiny random WavLM (real 50 Hz strides) and the RAVDESS dev clips, each phase in its own
process so its peak RSS is its own:

    .venv/bin/python bench/bench_features.py [--clips 168] [--batch-seconds 60]

GPU: full-size WavLM-Large (random weights, built from its config) on synthetic clips of MSP-Podcast-like lengths:
the challenge baseline's loop (batch 1, fp32, transformers' own attention, frames copied back per clip), the model
alone in the pipeline's form (bf16, batched, on-device fp16 and pooling), and the whole pipeline (decoding,
train-set normalisation, fp16 shards written and indexed); for each, seconds of audio per second, peak GPU memory
and the share of the GPU's bf16 dense peak (FLOPs counted with torch's FlopCounterMode). Batch size and lanes
default to the device's (``features/batching.py``):

    .venv/bin/python bench/bench_features.py --large --device cuda [--audio-hours 2] [--baseline-seconds 600]

CPU stage ceilings (what the host can feed a GPU; no GPU needed): decode (SHA-256 check, PCM decode, train-set
normalisation), copy (filling the padded input buffer), write (Parquet shard of WavLM-Large-sized fp16 frames,
fsync, hashing) and index (the DuckDB vector insert per shard), each as seconds of audio per second per lane:

    .venv/bin/python bench/bench_features.py --stages [--audio-hours 0.5]
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


def write_synthetic_clips(directory: Path, durations: list[float], seed: int = 1) -> list[Clip]:
    """16 kHz PCM_16 WAV files (MSP-Podcast's format) of the given lengths."""
    import soundfile as sf

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    clips = []
    for index, duration in enumerate(durations):
        path = directory / f"clip{index:06d}.wav"
        sf.write(path, (rng.standard_normal(int(duration * 16_000)) * 0.1).astype(np.float32), 16_000, "PCM_16")
        clips.append(Clip("bench", path.stem, path, file_sha256(path), duration))
    return clips


def baseline_loop(model_dir: Path, device: str, waves: list[np.ndarray], stats) -> tuple[float, float, float]:
    """The challenge baseline's extraction: transformers' WavLM as shipped, fp32, one clip per forward pass,
    train-set normalised input, frames copied to the host. Returns (audio seconds, wall seconds, peak GPU GB)."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dir).eval().to(device)
    cuda = torch.device(device).type == "cuda"

    def one(wave: np.ndarray) -> None:
        x = torch.from_numpy((wave - stats[0]) / stats[1]).to(device)[None]
        mask = torch.ones_like(x, dtype=torch.long)
        with torch.no_grad():
            model(x, attention_mask=mask).last_hidden_state.cpu()

    one(waves[0])
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for wave in waves:
        one(wave)
    wall = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 1e9 if cuda else 0.0
    return sum(len(w) for w in waves) / 16_000, wall, peak


def large_benchmark(args: argparse.Namespace) -> None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from emojudge_models.features.batching import auto_batch_seconds, auto_lanes, plan_batches
    from emojudge_models.features.waveform_stats import WaveformStats

    with tempfile.TemporaryDirectory(prefix="bench-wavlm-large-") as tmp:
        work = Path(tmp)
        model_dir = save_wavlm(work / "model", wavlm_large_config())
        encoder = HFAudioEncoder(model_dir, device=args.device, clip_norm=False)
        cuda = encoder.device.type == "cuda"
        device_name = torch.cuda.get_device_name() if cuda else "cpu"
        batch_seconds = args.batch_seconds or auto_batch_seconds(args.device)
        decode_lanes, write_lanes = auto_lanes(args.device)
        decode_lanes, write_lanes = args.workers or decode_lanes, args.write_workers or write_lanes
        durations = synthetic_durations(args.audio_hours * 3600)
        clips = write_synthetic_clips(work / "audio", durations)
        waves = [load_wave(c.audio_path) for c in clips]
        stats = WaveformStats(mean=0.0, std=0.1, n_clips=len(waves), n_samples=0, stats_key="bench")
        batches = plan_batches(list(range(len(waves))), lambda i: durations[i], batch_seconds)
        peak = bf16_peak_tflops(device_name, args.peak_tflops)
        rows: list[tuple[str, float, float, float]] = []

        def sync() -> None:
            if cuda:
                torch.cuda.synchronize()

        def reset_peak() -> None:
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()

        def gpu_gb() -> float:
            return torch.cuda.max_memory_allocated() / 1e9 if cuda else 0.0

        middle = [waves[i] for i in batches[len(batches) // 2]]
        with FlopCounterMode(display=False) as counter:
            encoder.encode_batch(middle)
        flops_per_audio_second = counter.get_total_flops() / (sum(len(w) for w in middle) / 16_000)

        subset, total = [], 0.0
        for wave in waves:
            if total >= args.baseline_seconds:
                break
            subset.append(wave)
            total += len(wave) / 16_000
        audio, wall, memory = baseline_loop(model_dir, args.device, subset, (stats.mean, stats.std))
        rows.append(("challenge baseline (batch 1, fp32)", audio / wall, memory, audio))

        encoder.encode_for_store(middle).result()
        reset_peak()
        started = time.perf_counter()
        pending = [encoder.encode_for_store([waves[i] for i in batch]) for batch in batches]
        for launched in pending:
            launched.result()
        sync()
        rows.append(("model only (pipeline form)", sum(durations) / (time.perf_counter() - started), gpu_gb(), 0.0))

        reset_peak()
        report = extract_audio_features(
            FeatureStore(partial(warehouse.connect, work), work / "features"),
            encoder,
            clips,
            run_id="bench-large",
            batch_seconds=batch_seconds,
            normalize=stats,
            decode_workers=decode_lanes,
            write_workers=write_lanes,
            prefetch_batches=4,
        )
        rows.append(("pipeline (decode to fp16 shards)", report.throughput_x_realtime, gpu_gb(), 0.0))
    print(
        f"device: {device_name}; model: WavLM-Large architecture (random weights), compute dtype "
        f"{encoder.spec['compute_dtype']}; batch_seconds={batch_seconds:.0f}, decode lanes {decode_lanes}, "
        f"write lanes {write_lanes}; {os.cpu_count()} CPU cores"
    )
    print(
        f"audio: {len(durations)} synthetic clips, {sum(durations):.0f} s ({sum(durations) / 3600:.2f} h); "
        f"{flops_per_audio_second / 1e9:.1f} GFLOP per second of audio"
    )
    print("| loop | x real time | TFLOP/s | share of bf16 dense peak | peak GPU memory |")
    print("|---|---|---|---|---|")
    for label, speed, memory, subset_seconds in rows:
        tflops = speed * flops_per_audio_second / 1e12
        share = f"{tflops / peak:.1%} of {peak:g}" if peak else "n/a"
        note = f" ({subset_seconds:.0f} s of audio)" if subset_seconds else ""
        print(f"| {label}{note} | {speed:,.1f} | {tflops:,.2f} | {share} | {memory:.1f} GB |")
    print(f"pipeline failed clips: {len(report.failed)}; pipeline / baseline: {rows[2][1] / rows[0][1]:.1f}x")


# CPU stage ceilings --------------------------------------------------------------------------------------


def _lanes_rate(work: list, run, lanes: int) -> tuple[float, float]:
    """Seconds of audio per second when ``lanes`` threads share ``work`` (items of (audio seconds, payload)):
    per wall-clock second, and per CPU second of the lanes' threads (what one dedicated core per lane gives, the
    figure that does not depend on how busy the shared machine is)."""
    from concurrent.futures import ThreadPoolExecutor

    def timed(share: list) -> float:
        cpu = time.thread_time()
        run(share)
        return time.thread_time() - cpu

    shares = [work[k::lanes] for k in range(lanes)]
    audio = sum(seconds for seconds, _ in work)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=lanes) as pool:
        cpu = sum(pool.map(timed, shares))
    return audio / (time.perf_counter() - started), audio / cpu


def _best(measure, repeats: int) -> tuple[float, float, float]:
    """(1-lane wall rate, 2-lane wall rate, 1-lane CPU rate), each the best of ``repeats``."""
    one = [measure(1) for _ in range(repeats)]
    two = [measure(2) for _ in range(repeats)]
    return max(w for w, _ in one), max(w for w, _ in two), max(c for _, c in one)


def stage_benchmark(args: argparse.Namespace) -> None:
    """Each host stage of extraction at WavLM-Large sizes, per lane (1 and 2 threads), and the lanes 10,000x
    real time needs; best of ``--repeats`` (the machine is shared)."""
    import math

    from emojudge_models.encoders.base import StoreFrames
    from emojudge_models.features import store as store_module
    from emojudge_models.features.extract import _Launched, _load_clip, _WriterLane
    from emojudge_models.features.waveform_stats import WaveformStats, normalize_in_place

    target = 10_000.0
    dim, frame_rate = 1024, 50
    stats = WaveformStats(mean=0.0, std=0.1, n_clips=1, n_samples=1, stats_key="bench")
    results: dict[str, tuple[float, float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp:
        work = Path(tmp)
        durations = synthetic_durations(args.audio_hours * 3600)
        clips = write_synthetic_clips(work / "audio", durations)
        total = sum(durations)

        def decode(share: list) -> None:
            for _, clip in share:
                normalize_in_place(_load_clip(clip, 60.0), stats)

        decode_work = list(zip(durations, clips, strict=True))
        results["decode"] = _best(lambda lanes: _lanes_rate(decode_work, decode, lanes), args.repeats)

        model_dir = save_wavlm(work / "model", tiny_wavlm_config())
        encoder = HFAudioEncoder(model_dir, clip_norm=False)
        encoder._passes_attention_mask = False  # the mask is built on the GPU there; time the host buffer only
        waves = [load_wave(c.audio_path) for c in clips]
        from emojudge_models.features.batching import plan_batches

        batches = plan_batches(list(range(len(waves))), lambda i: durations[i], 1000.0)
        copy_work = [(sum(durations[i] for i in b), [waves[i] for i in b]) for b in batches]

        def copy(share: list) -> None:
            for _, batch in share:
                encoder._waveform_inputs(batch)

        results["copy"] = _best(lambda lanes: _lanes_rate(copy_work, copy, lanes), args.repeats)
        del waves

        rng = np.random.default_rng(2)
        frames = [
            StoreFrames(
                rng.standard_normal((round(d * frame_rate), dim)).astype(np.float16),
                rng.standard_normal(2 * dim).astype(np.float32),
            )
            for d in durations
        ]
        batches = plan_batches(list(range(len(frames))), lambda i: durations[i], 1000.0)
        store = FeatureStore(partial(warehouse.connect, work), work / "features")
        shard_vectors: list[tuple[list[str], np.ndarray]] = []

        def write(share: list) -> None:
            lane = _WriterLane(store, "bench", 256, 256 << 20)
            for index, (_, batch) in enumerate(share):
                launched = [_Launched(len(batch), lambda b=batch: [frames[i] for i in b])]
                identities = [(clips[i].audio_sha256, round(durations[i] * 16_000)) for i in batch]
                processed = lane.process(identities, launched, flush=index == len(share) - 1)
                shard_vectors.extend((hashes, vectors) for hashes, _, vectors in processed.shards)
            lane.pool.shutdown()

        write_work = [(sum(durations[i] for i in b), b) for b in batches]
        results["write"] = _best(lambda lanes: _lanes_rate(write_work, write, lanes), args.repeats)
        real_fsync = store_module._fsync
        store_module._fsync = lambda path: None  # the CPU part alone: Parquet encoding, hashing, the page cache
        try:
            results["write, no fsync"] = _best(lambda lanes: _lanes_rate(write_work, write, lanes), args.repeats)
        finally:
            store_module._fsync = real_fsync

        unique = {sha: row for shard_hashes, rows in shard_vectors for sha, row in zip(shard_hashes, rows, strict=True)}
        hashes, vectors = list(unique), np.stack(list(unique.values()))
        clip_seconds = total / len(durations)
        timings = []
        for number, count in enumerate((1, len(hashes))):
            started = time.perf_counter()
            store.add_vectors(f"bench-index-{number}", "audio", hashes[:count], vectors[:count])
            timings.append(time.perf_counter() - started)
        session_s = timings[0]
        per_vector_s = max(1e-9, (timings[1] - timings[0]) / max(1, len(hashes) - 1))
    print(
        f"machine: {os.cpu_count()} CPU cores (shared with other jobs), load average "
        f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}; {len(durations)} synthetic 16 kHz PCM_16 clips, "
        f"{total:.0f} s of audio; WavLM-Large frames ({dim}-d fp16, {frame_rate}/s); best of {args.repeats}"
    )
    print(
        "| stage | 1 lane, wall (s of audio / s) | 2 lanes, wall | 1 lane per CPU second (dedicated-core ceiling) "
        f"| lanes for {target:,.0f}x at that ceiling |"
    )
    print("|---|---|---|---|---|")
    for stage, (one, two, cpu) in results.items():
        print(f"| {stage} | {one:,.0f} | {two:,.0f} | {cpu:,.0f} | {math.ceil(target / cpu)} |")
    index_rate = clip_seconds / per_vector_s
    print(
        f"| index (DuckDB vector insert, caller's thread, amortised over shards) | {index_rate:,.0f} | - | - | "
        f"{math.ceil(target / index_rate)} |"
    )
    print(
        f"index: one session {session_s * 1e3:.0f} ms, then {per_vector_s * 1e6:.0f} us per vector "
        f"({len(hashes)} vectors in {timings[1] * 1e3:.0f} ms); sessions are spaced so they take <= 10% of the "
        f"caller's time (INDEX_IDLE_FACTOR)"
    )
    print(f"fp16 frames to store at {target:,.0f}x real time: {target * frame_rate * dim * 2 / 1e9:.2f} GB/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=168)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch-seconds", type=float, default=None, help="default: 60 (CPU), by device (--large)")
    parser.add_argument("--workers", type=int, default=None, help="audio decoding threads (default: 2, by device)")
    parser.add_argument("--write-workers", type=int, default=None, help="shard writing threads (default: by device)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads in every phase (0: torch default)")
    parser.add_argument("--large", action="store_true", help="WavLM-Large throughput on --device")
    parser.add_argument("--audio-hours", type=float, default=2.0, help="synthetic audio for --large")
    parser.add_argument("--peak-tflops", type=float, default=None, help="bf16 dense peak, if not in the table")
    parser.add_argument("--baseline-seconds", type=float, default=600.0, help="audio through the baseline loop")
    parser.add_argument("--stages", action="store_true", help="CPU stage ceilings per lane (no GPU needed)")
    parser.add_argument("--phase", choices=["naive", "naive-transformers", "pipeline"], help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.large:
        args.batch_seconds = args.batch_seconds or 60.0
        args.workers = args.workers or 2
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
    elif args.stages:
        stage_benchmark(args)
    else:
        cpu_benchmark(args)


if __name__ == "__main__":
    main()
