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

Without evidence (``no-evidence``) nothing is applied: an unchecked judge never rewrites labels. A gate that applies
nothing is known before the judge is asked, so the pipeline then asks nothing beyond the evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

GATE_MODES: tuple[str, ...] = ("development", "per_change", "off")

MIN_SUPPORT = 5
"""Development changes a kind needs before ``per_change`` decides on it (a pair below it falls back to its label)."""

EVIDENCE_COLUMNS = ["fused_label", "label", "accepted", "emotion"]

GateState = Literal["open", "closed", "no-evidence", "off", "per_change"]

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
        if not accepted or label is None:
            return "judge kept the fused label or was not confident enough"
        if self.state != "per_change":
            return self.reason
        kind = self.kind_of(fused_label, label)
        if kind is None:
            return f"{fused_label}->{label} never seen on development: not applied"
        verdict = "applied" if kind.applied else "not applied"
        return f"{kind.kind} {verdict}: {kind.fixed} fixed, {kind.broken} broken in {kind.changes} development changes"


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
