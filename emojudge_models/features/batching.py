"""Length-bucketed batches: similar durations together, so padding wastes little compute."""

from __future__ import annotations

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
