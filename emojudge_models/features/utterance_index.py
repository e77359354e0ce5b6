"""Positions of (eval_set, utterance_id) keys held as sorted numpy byte strings, not as a dict of Python tuples.

A dict over every utterance of a training set costs about 300 bytes per key (the tuple, its two strings, the hash
slot) and, once freed, leaves the allocator fragmented; this index holds each id once as UTF-8 in a fixed-width
numpy bytes array (the longest id's length per key) and its position as int64, per evaluation set, and looks keys up
many at a time by binary search. Bytes, not ``StringDType``: numpy 2.4's ``searchsorted`` on ``StringDType`` arrays
misplaces ids longer than 15 bytes (they live outside the array), so every lookup of such an id failed.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

TEXT = np.dtypes.StringDType()
MISSING = -1


def as_text(values: ArrayLike) -> np.ndarray:
    """``values`` (strings: a list, a numpy, pandas or Arrow array) as a numpy array of UTF-8 bytes (dtype ``S``)."""
    return np.strings.encode(np.asarray(values, dtype=TEXT), "utf-8")


class UtteranceIndex:
    """Row positions 0..N-1 of N (eval_set, utterance_id) keys; a repeated key keeps its last position."""

    def __init__(self, eval_sets: ArrayLike, utterance_ids: ArrayLike) -> None:
        sets, ids = as_text(eval_sets), as_text(utterance_ids)
        self._size = len(ids)
        self._sets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name in np.unique(sets):
            rows = np.flatnonzero(sets == name)
            # The last of equal ids first, so that binary search finds it (as a dict keeps the last value).
            order = np.lexsort((-rows, ids[rows]))
            self._sets[name.decode()] = (ids[rows[order]], rows[order])

    def __len__(self) -> int:
        return self._size

    def find(self, eval_set: str, utterance_ids: ArrayLike) -> np.ndarray:
        """Positions (int64) of ``utterance_ids`` of ``eval_set``; :data:`MISSING` where a key is not indexed."""
        wanted = as_text(utterance_ids)
        if eval_set not in self._sets or not len(wanted):
            return np.full(len(wanted), MISSING, dtype=np.int64)
        ids, rows = self._sets[eval_set]
        at = np.minimum(np.searchsorted(ids, wanted), len(ids) - 1)
        return np.where(ids[at] == wanted, rows[at], MISSING)

    def positions(self, eval_sets: ArrayLike, utterance_ids: ArrayLike) -> np.ndarray:
        """Positions of the keys (``eval_sets[i]``, ``utterance_ids[i]``); raises ``KeyError`` naming the first key
        that is not indexed."""
        sets, ids = as_text(eval_sets), as_text(utterance_ids)
        out = np.empty(len(ids), dtype=np.int64)
        for name in np.unique(sets):
            where = np.flatnonzero(sets == name)
            out[where] = self.find(name.decode(), ids[where])
        if (out == MISSING).any():
            first = int(np.flatnonzero(out == MISSING)[0])
            raise KeyError((sets[first].decode(), ids[first].decode()))
        return out
