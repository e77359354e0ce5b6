"""What a run asks the judge, in order: the gate's evidence first (bounded), then only what the gate may apply.

Evidence is the judgments of labelled development utterances; a judge identity (model, template, threshold) gathers
at most ``EMOJUDGE_JUDGE_EVIDENCE_MAX`` of them over all sets. A set asks for evidence only while the identity has
room: its labelled development utterances are taken in a fixed pseudo-random order (the SHA-256 of the utterance
id, so a corpus sorted by speaker or emotion still gives a mixed sample, and a rerun picks the same ones). The other
requests wait for the gate: where it applies nothing, they are never sent. ``EMOJUDGE_JUDGE_MAX_CALLS`` caps the
requests one run sends, evidence included; requests past it are held back and keep their fused labels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pandas as pd

from emojudge_models.judge.requests import JudgeRequest


def evidence_order(utterance_id: str) -> str:
    """The sort key of evidence candidates: stable across runs, unrelated to how the corpus names its clips."""
    return hashlib.sha256(utterance_id.encode()).hexdigest()


def split_evidence(
    requests: Sequence[JudgeRequest], rows: pd.DataFrame, room: int
) -> tuple[list[JudgeRequest], list[JudgeRequest]]:
    """(evidence, rest): up to ``room`` requests of labelled development utterances, in :func:`evidence_order`.

    ``rows`` has utterance_id, split and emotion. ``rest`` keeps the order of ``requests``.
    """
    labelled = rows[(rows["split"] == "development") & rows["emotion"].notna()]["utterance_id"]
    candidates = sorted(
        (r for r in requests if r.utterance_id in set(labelled)), key=lambda r: evidence_order(r.utterance_id)
    )
    chosen = {r.custom_id for r in candidates[: max(room, 0)]}
    return [r for r in candidates if r.custom_id in chosen], [r for r in requests if r.custom_id not in chosen]


class CallCap:
    """The per-run bound on judge requests (None: no bound); :meth:`take` hands out what is left of it."""

    def __init__(self, max_calls: int | None) -> None:
        if max_calls is not None and max_calls < 1:
            raise ValueError(f"max_calls must be at least 1 or None, got {max_calls}")
        self.max_calls = max_calls
        self.sent = 0

    def take(self, requests: Sequence[JudgeRequest]) -> tuple[list[JudgeRequest], list[JudgeRequest]]:
        """(to send, held back): the first requests that fit in the cap, counted as sent."""
        room = len(requests) if self.max_calls is None else max(self.max_calls - self.sent, 0)
        send, held = list(requests[:room]), list(requests[room:])
        self.sent += len(send)
        return send, held

    def reason(self) -> str:
        return f"not asked: EMOJUDGE_JUDGE_MAX_CALLS={self.max_calls} requests already sent in this run"
