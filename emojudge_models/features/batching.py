"""Length-bucketed batches (similar durations together, so padding wastes little compute), and the batch size and
thread counts each device gets by default."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TypeVar

Item = TypeVar("Item")


def plan_batches(
    items: Sequence[Item],
    seconds_of: Callable[[Item], float],
    batch_seconds: float,
    max_items: int | None = None,
) -> list[list[Item]]:
    """Batches whose padded size (items x longest duration) stays within ``batch_seconds``.

    Items are sorted longest first, so neighbours have similar lengths and the largest batch (the one most
    likely to run out of memory) runs first. A single item longer than ``batch_seconds`` gets a batch of its own.
    """
    if batch_seconds <= 0:
        raise ValueError(f"batch_seconds must be positive, got {batch_seconds}")
    batches: list[list[Item]] = []
    current: list[Item] = []
    longest = 0.0
    for item in sorted(items, key=seconds_of, reverse=True):
        seconds = seconds_of(item)
        too_long = (len(current) + 1) * max(longest, seconds) > batch_seconds
        too_many = max_items is not None and len(current) >= max_items
        if current and (too_long or too_many):
            batches.append(current)
            current, longest = [], 0.0
        current.append(item)
        longest = max(longest, seconds)
    if current:
        batches.append(current)
    return batches


def split_to_budget(seconds: Sequence[float], batch_seconds: float) -> list[range]:
    """Consecutive index ranges of ``seconds`` (longest first, as :func:`plan_batches` orders a batch) whose padded
    size stays within ``batch_seconds``; used to cut an already planned batch after the budget was lowered."""
    groups: list[range] = []
    start, longest = 0, 0.0
    for index, value in enumerate(seconds):
        if index > start and (index - start + 1) * max(longest, value) > batch_seconds:
            groups.append(range(start, index))
            start, longest = index, 0.0
        longest = max(longest, value)
    if start < len(seconds):
        groups.append(range(start, len(seconds)))
    return groups


CPU_BATCH_SECONDS = 100.0
GPU_BATCH_SECONDS = 1000.0
"""Where larger batches stop paying: WavLM-Large on an H100/H200 is compute-bound well below it."""
GPU_SECONDS_PER_FREE_GIB = 12.0
"""Padded audio per GiB of free GPU memory. WavLM-Large in bf16 holds roughly 50-60 MB per second of padded audio
at its peak (the 512-channel conv front end at 3.2 kHz in fp32 around its layer norms, and the (heads, T, T)
relative-position bias of 20-s chunks, a few copies of each); 12 s per GiB (~85 MB/s) leaves room for
fragmentation. An out-of-memory still halves the batch (``features/extract.py``)."""
MIN_BATCH_SECONDS = 20.0

LANES = {"cpu": (2, 1), "cuda": (4, 12)}
"""(decode, write) threads by device kind. On CPU the model needs the cores. On CUDA, per CPU second (one core per
lane) this project's VM decoded ~4,100 s of 16 kHz PCM audio and wrote ~830 s of WavLM-Large fp16 frames into
Parquet shards (bench/RESULTS.md, "CPU stage ceilings"): 10,000x real time needs 3 decode and 13 write lanes at
those rates (the ``list<halffloat>`` Parquet encoding is ~90% of a writer's CPU). 4 and 12 (with the model's and the
caller's threads, 16 cores, an H100/H200 host's share) reach it within the measurement's spread. Never more lanes
than the host has cores."""


def device_kind(device: str) -> str:
    """``cuda`` for ``cuda``/``cuda:1``, else the name (``cpu``, ``mps``)."""
    return device.split(":")[0]


def auto_batch_seconds(device: str) -> float:
    """The padded-audio budget per forward pass for ``device``: 100 s on CPU/MPS; on CUDA from the memory free
    now (call it after the encoder is loaded), between 20 s and 1,000 s."""
    if device_kind(device) != "cuda":
        return CPU_BATCH_SECONDS
    import torch

    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return max(MIN_BATCH_SECONDS, min(GPU_BATCH_SECONDS, GPU_SECONDS_PER_FREE_GIB * free / 2**30))


def auto_lanes(device: str, cpu_count: int | None = None) -> tuple[int, int]:
    """(decode, write) thread counts for ``device``, at most the host's cores each."""
    decode, write = LANES["cuda" if device_kind(device) == "cuda" else "cpu"]
    cores = cpu_count or os.cpu_count() or 1
    return max(1, min(decode, cores)), max(1, min(write, cores))
