"""The judge gate: a judge's accepted changes reach the final labels only if they do no net harm on development.

The paper's rule (change the label only at confidence >= threshold) trusts the judge's confidence. A weak judge
can be confidently wrong (Gemma 3 270M answers "angry" at the threshold for almost every clip, bench/RESULTS.md),
so in ``development`` mode the pipeline checks the judge where the truth is known: on labelled development
utterances, its accepted changes must fix at least as many labels as they break. Without such evidence (a new judge
model, template or threshold, a set scored with no labelled development split) the gate stays closed
(``no-evidence``): an unchecked judge never rewrites labels. ``off`` applies the paper's rule alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

GATE_MODES: tuple[str, ...] = ("development", "off")

EVIDENCE_COLUMNS = ["fused_label", "label", "accepted", "emotion"]

GateState = Literal["open", "closed", "no-evidence", "off"]


@dataclass(frozen=True)
class GateDecision:
    """Whether accepted judgments may change final labels, with the development evidence behind it."""

    state: GateState
    judged: int
    changed: int
    right_to_wrong: int
    wrong_to_right: int

    @property
    def applies_judgments(self) -> bool:
        return self.state in ("open", "off")

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
        return f"gate open: {evidence}"


def check_gate_mode(mode: str) -> str:
    if mode not in GATE_MODES:
        raise ValueError(f"unknown judge gate {mode!r}; expected one of {', '.join(GATE_MODES)}")
    return mode


def gate_decision(evidence: pd.DataFrame, mode: str = "development") -> GateDecision:
    """Decide from judgments on labelled development utterances (columns fused_label, label, accepted, emotion).

    ``no-evidence`` when there are no such judgments, closed when the accepted changes broke more labels than they
    fixed, open otherwise.
    """
    check_gate_mode(mode)
    accepted = evidence["accepted"].fillna(False).astype(bool)
    fused_right = evidence["fused_label"] == evidence["emotion"]
    judge_right = evidence["label"] == evidence["emotion"]
    right_to_wrong = int((accepted & fused_right & ~judge_right).sum())
    wrong_to_right = int((accepted & ~fused_right & judge_right).sum())
    if mode == "off":
        state: GateState = "off"
    elif evidence.empty:
        state = "no-evidence"
    else:
        state = "closed" if right_to_wrong > wrong_to_right else "open"
    return GateDecision(state, len(evidence), int(accepted.sum()), right_to_wrong, wrong_to_right)


def development_evidence(rows: pd.DataFrame, judged: pd.DataFrame) -> pd.DataFrame:
    """The gate's evidence among the judgments in hand: answered judgments of labelled development utterances.

    ``rows`` has utterance_id, split and emotion; ``judged`` is indexed by utterance_id with fused_label, label,
    accepted and answered. Returns :data:`EVIDENCE_COLUMNS`.
    """
    here = judged.join(rows.set_index("utterance_id")[["split", "emotion"]], how="inner")
    here = here[(here["split"] == "development") & here["emotion"].notna() & here["answered"].fillna(False)]
    return here[EVIDENCE_COLUMNS].reset_index(drop=True)
