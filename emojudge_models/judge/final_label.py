"""The final label of each fused prediction: the judge's where its judgment was accepted and the gate lets it.

A pure function over the fused rows, the judgments in hand, the gate decision and the utterances the run chose not to
ask about, so the rule is testable on small frames and the refinement asset only reads, calls this and writes.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from emojudge_models.judge.gate import GateDecision

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
