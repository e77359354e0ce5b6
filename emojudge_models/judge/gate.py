"""The judge gate: a judge's accepted changes reach the final labels only where they did no net harm on development.

The paper's rule (change the label only at confidence >= threshold) trusts the judge's confidence. A weak judge
can be confidently wrong (Gemma 3 270M answers "angry" at the threshold for almost every clip, bench/RESULTS.md),
so the pipeline checks the judge where the truth is known: its judgments of labelled development utterances. The
evidence belongs to a judge identity (model, prompt template, threshold): a new identity starts without any.

- ``development`` (the global rule): the accepted changes must fix at least as many labels as they break, or none
  is applied (``closed``).
- ``per_change``: each kind of change is judged on its own record. A change's kind is its fused->judged pair
  (``sad->angry``) when that pair has at least :data:`MIN_SUPPORT` development changes, else its judged label
  (``*->angry``, over that label's changes not in a supported pair). A kind is applied when it has at least
  :data:`MIN_SUPPORT` changes and fixed more labels than it broke (``fixed > broken``: more than half of the changes
  that decided anything were fixes). A judge that catches anger and mislabels the rest is used for anger only.
- ``off``: the paper's rule alone.

Without evidence (``no-evidence``) nothing is applied: an unchecked judge never rewrites labels. A judge that could
not be reached while the evidence was gathered (its server died, every request failed) gives ``judge-unavailable``
with the cause, never ``no-evidence``. A gate that applies
nothing is known before the judge is asked, so the pipeline then asks nothing beyond the evidence.

What a run asks, in order (:func:`split_evidence`, :class:`CallCap`): the gate's evidence first, then only what the
gate may apply. Evidence is the judgments of labelled development utterances; a judge identity gathers at most
``EMOJUDGE_JUDGE_EVIDENCE_MAX`` of them over all sets. A set asks for evidence only while the identity has room: its
labelled development utterances are taken in a fixed pseudo-random order (the SHA-256 of the utterance id, so a
corpus sorted by speaker or emotion still gives a mixed sample, and a rerun picks the same ones). The other requests
wait for the gate: where it applies nothing, they are never sent. ``EMOJUDGE_JUDGE_MAX_CALLS`` caps the requests one
run sends, evidence included; requests past it are held back and keep their fused labels.

The final label (:func:`final_labels`) is a pure function over the fused rows, the judgments in hand, the gate
decision and the utterances the run chose not to ask about, so the rule is testable on small frames and the
refinement asset only reads, calls this and writes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from emojudge_models.judge.requests import JudgeRequest

UNAVAILABLE = "judge-unavailable"
"""The prefix of every error (and gate reason) that says the judge could not be reached at all."""

GATE_MODES: tuple[str, ...] = ("development", "per_change", "off")

MIN_SUPPORT = 5
"""Development changes a kind needs before ``per_change`` decides on it (a pair below it falls back to its label)."""

EVIDENCE_COLUMNS = ["fused_label", "label", "accepted", "emotion"]

GateState = Literal["open", "closed", "no-evidence", "off", "per_change", "judge-unavailable"]

ANY_FUSED = "*"
"""The fused side of a per-label kind (``*->angry``)."""


@dataclass(frozen=True)
class ChangeKind:
    """One kind of accepted change on development: how often it fixed and broke a label, and whether it applies."""

    fused_label: str
    label: str
    changes: int
    fixed: int
    broken: int
    applied: bool

    @property
    def kind(self) -> str:
        return f"{self.fused_label}->{self.label}"


KIND_COLUMNS = ["kind", "fused_label", "label", "changes", "fixed", "broken", "applied"]


@dataclass(frozen=True)
class GateDecision:
    """Which accepted judgments may change final labels, with the development evidence behind it."""

    state: GateState
    judged: int
    changed: int
    right_to_wrong: int
    wrong_to_right: int
    kinds: tuple[ChangeKind, ...] = ()
    unavailable: str | None = None
    """Why the judge could not be asked (state ``judge-unavailable``): never mistaken for a lack of evidence."""

    @property
    def applies_judgments(self) -> bool:
        """Some accepted judgment may change a label (the judge is worth asking)."""
        return self.state in ("open", "off", "per_change")

    def kind_of(self, fused_label: str, label: str) -> ChangeKind | None:
        """The kind a change falls under: its supported pair, else its judged label; None if neither was seen."""
        by_kind = {(k.fused_label, k.label): k for k in self.kinds}
        return by_kind.get((fused_label, label)) or by_kind.get((ANY_FUSED, label))

    def applies(self, fused_label: str, label: str) -> bool:
        """Whether an accepted change from ``fused_label`` to ``label`` reaches the final label."""
        if self.state != "per_change":
            return self.state in ("open", "off")
        kind = self.kind_of(fused_label, label)
        return kind is not None and kind.applied

    def may_change(self, fused_label: str) -> bool:
        """Whether any accepted judgment of an utterance with this fused label could be applied (worth asking)."""
        if self.state != "per_change":
            return self.applies_judgments
        return any(k.applied and k.fused_label in (ANY_FUSED, fused_label) for k in self.kinds)

    def kinds_frame(self) -> pd.DataFrame:
        """The evidence table: one row per kind (:data:`KIND_COLUMNS`)."""
        rows = [[k.kind, k.fused_label, k.label, k.changes, k.fixed, k.broken, k.applied] for k in self.kinds]
        return pd.DataFrame(rows, columns=KIND_COLUMNS)

    @property
    def reason(self) -> str:
        if self.state == "judge-unavailable":
            return f"{self.unavailable}; final labels keep the fused ones"
        if self.state == "off":
            return "gate off: the confidence threshold alone decides"
        if self.state == "no-evidence":
            return (
                "gate closed for lack of evidence, final labels keep the fused ones: no labelled development "
                "judgments by this judge model, template and threshold (EMOJUDGE_JUDGE_GATE=off applies them anyway)"
            )
        evidence = (
            f"on {self.judged} labelled development judgments the judge changed {self.changed} labels: "
            f"{self.right_to_wrong} right->wrong, {self.wrong_to_right} wrong->right"
        )
        if self.state == "closed":
            return f"gate closed, final labels keep the fused ones: {evidence}"
        if self.state == "per_change":
            applied = ", ".join(k.kind for k in self.kinds if k.applied)
            return f"per-change gate applies {applied} only: {evidence}"
        return f"gate open: {evidence}"

    def not_asked_reason(self, fused_label: str) -> str:
        """Why an utterance with this fused label was not sent to the judge (the gate would apply nothing)."""
        if self.state == "per_change":
            return f"not asked: no applied kind of change starts from {fused_label}; {self.reason}"
        return f"not asked: {self.reason}"

    def row_reason(self, fused_label: str, label: str | None, accepted: bool) -> str:
        """Why one judged utterance's final label is what it is."""
        if self.state == "judge-unavailable":
            return self.reason
        if not accepted or label is None:
            return "judge kept the fused label or was not confident enough"
        if self.state != "per_change":
            return self.reason
        kind = self.kind_of(fused_label, label)
        if kind is None:
            return f"{fused_label}->{label} never seen on development: not applied"
        verdict = "applied" if kind.applied else "not applied"
        return f"{kind.kind} {verdict}: {kind.fixed} fixed, {kind.broken} broken in {kind.changes} development changes"


def unavailable_gate(why: str) -> GateDecision:
    """The gate of a run whose judge could not be reached (``why`` starts ``judge-unavailable:``): nothing applied."""
    return GateDecision("judge-unavailable", 0, 0, 0, 0, (), why)


def check_gate_mode(mode: str) -> str:
    if mode not in GATE_MODES:
        raise ValueError(f"unknown judge gate {mode!r}; expected one of {', '.join(GATE_MODES)}")
    return mode


def change_kinds(evidence: pd.DataFrame, mode: str) -> tuple[ChangeKind, ...]:
    """The accepted changes of ``evidence`` grouped into kinds (see the module doc), with the mode's verdict."""
    changes = evidence[evidence["accepted"].fillna(False).astype(bool) & (evidence["label"] != evidence["fused_label"])]
    changes = changes.assign(
        fixed=changes["label"] == changes["emotion"], broken=changes["fused_label"] == changes["emotion"]
    )
    pair_sizes = changes.groupby(["fused_label", "label"]).size()
    supported = {pair for pair, n in pair_sizes.items() if n >= MIN_SUPPORT}
    pairs = zip(changes["fused_label"], changes["label"], strict=True)
    changes = changes.assign(kind_fused=[f if (f, j) in supported else ANY_FUSED for f, j in pairs])
    kinds = []
    for (fused, label), group in changes.groupby(["kind_fused", "label"], sort=True):
        fixed, broken = int(group["fixed"].sum()), int(group["broken"].sum())
        per_change = len(group) >= MIN_SUPPORT and fixed > broken
        applied = per_change if mode == "per_change" else mode == "off"
        kinds.append(ChangeKind(str(fused), str(label), len(group), fixed, broken, applied))
    return tuple(kinds)


def gate_decision(evidence: pd.DataFrame, mode: str = "development") -> GateDecision:
    """Decide from judgments on labelled development utterances (columns fused_label, label, accepted, emotion).

    ``no-evidence`` when there are no such judgments; in ``development`` mode closed when the accepted changes broke
    more labels than they fixed, open otherwise; in ``per_change`` mode ``per_change`` when some kind applies, closed
    when none does.
    """
    check_gate_mode(mode)
    accepted = evidence["accepted"].fillna(False).astype(bool)
    fused_right = evidence["fused_label"] == evidence["emotion"]
    judge_right = evidence["label"] == evidence["emotion"]
    right_to_wrong = int((accepted & fused_right & ~judge_right).sum())
    wrong_to_right = int((accepted & ~fused_right & judge_right).sum())
    kinds = change_kinds(evidence, mode)
    if mode == "off":
        state: GateState = "off"
    elif evidence.empty:
        state = "no-evidence"
    elif mode == "per_change":
        state = "per_change" if any(k.applied for k in kinds) else "closed"
    else:
        state = "closed" if right_to_wrong > wrong_to_right else "open"
    if mode == "development" and state == "open":
        kinds = tuple(ChangeKind(k.fused_label, k.label, k.changes, k.fixed, k.broken, True) for k in kinds)
    return GateDecision(state, len(evidence), int(accepted.sum()), right_to_wrong, wrong_to_right, kinds)


def development_evidence(rows: pd.DataFrame, judged: pd.DataFrame) -> pd.DataFrame:
    """The gate's evidence among the judgments in hand: answered judgments of labelled development utterances.

    ``rows`` has utterance_id, split and emotion; ``judged`` is indexed by utterance_id with fused_label, label,
    accepted and answered. Returns :data:`EVIDENCE_COLUMNS`.
    """
    here = judged.join(rows.set_index("utterance_id")[["split", "emotion"]], how="inner")
    here = here[(here["split"] == "development") & here["emotion"].notna() & here["answered"].fillna(False)]
    return here[EVIDENCE_COLUMNS].reset_index(drop=True)


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


PREDICTION_COLUMNS = [
    "utterance_id",
    "fused_label",
    "refined_label",
    "final_label",
    "changed",
    "judgment_custom_id",
    "judge_gate",
    "judge_gate_reason",
]


def final_labels(
    fused: pd.DataFrame,
    judged: pd.DataFrame,
    gate: GateDecision,
    not_asked: Mapping[str, tuple[str, str]] | None = None,
) -> pd.DataFrame:
    """One row per fused prediction (columns :data:`PREDICTION_COLUMNS`).

    ``fused`` has utterance_id and fused_label; ``judged`` is indexed by utterance_id with custom_id, label and
    accepted. A judged utterance records its judgment, the gate state and why; its refined label is the judge's when
    the judgment was accepted and the gate applies that change, else the fused one. ``not_asked`` maps utterances
    in the judge's scope that were not asked (gate closed, call cap) to their (judge_gate, reason): they keep the
    fused label. Other utterances keep the fused label with no refined label, judgment or gate state.
    """
    not_asked = not_asked or {}
    out = []
    for r in fused.itertuples():
        refined, custom, gate_state, reason = None, None, None, None
        if r.utterance_id in judged.index:
            judgment = judged.loc[r.utterance_id]
            custom, gate_state = judgment["custom_id"], gate.state
            accepted = bool(judgment["accepted"])
            label = judgment["label"] if isinstance(judgment["label"], str) else None
            applied = accepted and label is not None and gate.applies(r.fused_label, label)
            refined = label if applied else r.fused_label
            reason = gate.row_reason(r.fused_label, label, accepted)
            error = judgment.get("error")
            if isinstance(error, str) and error.startswith(UNAVAILABLE):
                gate_state, reason = "judge-unavailable", f"{error}; final labels keep the fused ones"
        elif r.utterance_id in not_asked:
            gate_state, reason = not_asked[r.utterance_id]
        final = refined or r.fused_label
        out.append(
            {
                "utterance_id": r.utterance_id,
                "fused_label": r.fused_label,
                "refined_label": refined,
                "final_label": final,
                "changed": final != r.fused_label,
                "judgment_custom_id": custom,
                "judge_gate": gate_state,
                "judge_gate_reason": reason,
            }
        )
    return pd.DataFrame(out, columns=PREDICTION_COLUMNS)
