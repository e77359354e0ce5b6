"""The final label of each fused prediction: the judge's where its judgment was accepted and the gate lets it.

A pure function over the fused rows, the judgments in hand and the gate decision, so the rule is testable on small
frames and the refinement asset only reads, calls this and writes.
"""

from __future__ import annotations

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
]


def final_labels(fused: pd.DataFrame, judged: pd.DataFrame, gate: GateDecision) -> pd.DataFrame:
    """One row per fused prediction (columns :data:`PREDICTION_COLUMNS`).

    ``fused`` has utterance_id and fused_label; ``judged`` is indexed by utterance_id with custom_id, label and
    accepted. A judged utterance records its judgment and the gate state; its refined label is the judge's when
    the judgment was accepted and the gate is not closed, else the fused one. Unjudged utterances keep the fused
    label with no refined label, judgment or gate state.
    """
    out = []
    for r in fused.itertuples():
        refined, custom, gate_state = None, None, None
        if r.utterance_id in judged.index:
            judgment = judged.loc[r.utterance_id]
            custom, gate_state = judgment["custom_id"], gate.state
            accepted = bool(judgment["accepted"]) and gate.applies_judgments
            refined = judgment["label"] if accepted else r.fused_label
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
            }
        )
    return pd.DataFrame(out, columns=PREDICTION_COLUMNS)
