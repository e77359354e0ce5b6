"""Models loaded once per process, and released together when a step is done with them.

Loading a model costs seconds, so every loader (Whisper in CTranslate2, the audio and text encoders, the voice
encoder) keeps what it loaded for the rest of the process. A scoring run executes all its steps in one process
(``cluster/executor.py``), and each model serves one or two steps: kept to the end, they add up (an hour of
podcast peaked at 2.3 GB with the voice encoder, Whisper base, tiny.en and MiniLM all resident, bench/RESULTS.md).
:func:`release_loaded_models` drops them all between steps; a later step loads what it needs again.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import Any, TypeVar

import pyarrow as pa

from emojudge_models.heap import trim_heap

Loader = TypeVar("Loader", bound=Callable[..., Any])

_CACHES: list[Any] = []


def kept_loaded(maxsize: int | None = None) -> Callable[[Loader], Loader]:
    """``functools.lru_cache(maxsize)`` for a model loader, emptied by :func:`release_loaded_models`."""

    def decorate(loader: Loader) -> Loader:
        cached = functools.lru_cache(maxsize=maxsize)(loader)
        _CACHES.append(cached)
        return cached  # type: ignore[return-value]

    return decorate


def models_kept() -> int:
    """How many loaded models the loaders keep now."""
    return sum(cache.cache_info().currsize for cache in _CACHES)


def release_loaded_models() -> int:
    """Forget every model the loaders keep, collect, and give freed memory back to the system (glibc's heaps and
    Arrow's pool, which keeps what the feature store's reads and writes freed).

    Returns how many models were forgotten. Models a caller still holds stay alive until it lets them go.
    """
    kept = models_kept()
    if kept:
        for cache in _CACHES:
            cache.cache_clear()
        gc.collect()
        trim_heap()
    pa.default_memory_pool().release_unused()
    return kept
