"""The judge gate: accepted judgments reach final labels only when they did no net harm on development."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from emojudge_models.judge import TEMPLATE_SHA256
from emojudge_models.judge.gate import PREDICTION_COLUMNS, development_evidence, final_labels, gate_decision
from emojudge_models.judge.run import _evidence_elsewhere
from emojudge_models.store import warehouse


def _evidence(rows: list[tuple[str, str, bool, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["fused_label", "label", "accepted", "emotion"])


def test_harmful_judge_closes_the_gate_and_a_helpful_one_opens_it() -> None:
    harmful = _evidence([("sad", "angry", True, "sad"), ("sad", "angry", True, "sad"), ("fear", "sad", True, "sad")])
    decision = gate_decision(harmful)
    assert (decision.state, decision.changed, decision.right_to_wrong, decision.wrong_to_right) == ("closed", 3, 2, 1)
    assert not decision.applies_judgments and "2 right->wrong, 1 wrong->right" in decision.reason
    helpful = _evidence([("fear", "sad", True, "sad"), ("sad", "angry", False, "sad")])
    assert gate_decision(helpful).state == "open"
    none = gate_decision(_evidence([]))
    assert (none.state, none.judged) == ("no-evidence", 0) and not none.applies_judgments
    assert "lack of evidence" in none.reason and "EMOJUDGE_JUDGE_GATE=off" in none.reason
    assert gate_decision(_evidence([]), "off").state == "off"
    assert gate_decision(harmful, "off").state == "off" and gate_decision(harmful, "off").applies_judgments
    with pytest.raises(ValueError, match="development, per_change, off"):
        gate_decision(harmful, "test")


FUSED = pd.DataFrame({"utterance_id": ["u1", "u2", "u3"], "fused_label": ["sad", "happy", "neutral"]})
JUDGED = pd.DataFrame(
    {"custom_id": ["c1", "c3"], "label": ["angry", "fear"], "accepted": [True, False]},
    index=pd.Index(["u1", "u3"], name="utterance_id"),
)
CLOSED = gate_decision(_evidence([("sad", "angry", True, "sad")]))
OPEN = gate_decision(_evidence([("fear", "sad", True, "sad")]))
NO_EVIDENCE = gate_decision(_evidence([]))
OFF = gate_decision(_evidence([("sad", "angry", True, "sad")]), "off")


@pytest.mark.parametrize(
    ("gate", "u1_final", "u1_changed"),
    [(CLOSED, "sad", False), (NO_EVIDENCE, "sad", False), (OPEN, "angry", True), (OFF, "angry", True)],
)
def test_final_label_follows_the_accepted_judgment_unless_the_gate_is_closed(gate, u1_final, u1_changed) -> None:
    out = final_labels(FUSED, JUDGED, gate)
    assert list(out.columns) == PREDICTION_COLUMNS and out["utterance_id"].tolist() == ["u1", "u2", "u3"]
    out = out.set_index("utterance_id")
    assert out.loc["u1"].tolist() == ["sad", u1_final, u1_final, u1_changed, "c1", gate.state, gate.reason]
    # rejected judgment: recorded with the gate state, fused label kept
    assert out.loc["u3"].tolist()[:6] == ["neutral", "neutral", "neutral", False, "c3", gate.state]
    assert out.loc["u3", "judge_gate_reason"] == "judge kept the fused label or was not confident enough"
    # not judged: fused label, no refined label, judgment or gate state
    assert out.loc["u2", ["fused_label", "final_label", "changed"]].tolist() == ["happy", "happy", False]
    assert out.loc["u2", ["refined_label", "judgment_custom_id", "judge_gate", "judge_gate_reason"]].isna().all()


def test_utterances_not_asked_keep_the_fused_label_and_record_why() -> None:
    not_asked = {"u2": ("closed", "not asked: gate closed"), "u3": ("capped", "not asked: cap")}
    out = final_labels(FUSED, JUDGED.loc[["u1"]], CLOSED, not_asked).set_index("utterance_id")
    assert out.loc["u2", ["refined_label", "judgment_custom_id"]].isna().all()
    assert out.loc["u2", ["final_label", "changed", "judge_gate", "judge_gate_reason"]].tolist() == [
        "happy",
        False,
        "closed",
        "not asked: gate closed",
    ]
    assert out.loc["u3", ["final_label", "judge_gate", "judge_gate_reason"]].tolist() == [
        "neutral",
        "capped",
        "not asked: cap",
    ]


def test_final_labels_of_nothing_is_an_empty_frame_with_the_columns() -> None:
    out = final_labels(FUSED.iloc[:0], JUDGED.iloc[:0], OPEN)
    assert out.empty and list(out.columns) == PREDICTION_COLUMNS


def test_development_evidence_keeps_answered_judgments_of_labelled_development_rows() -> None:
    rows = pd.DataFrame(
        {
            "utterance_id": ["d1", "d2", "d3", "t1"],
            "split": ["development", "development", "development", "test"],
            "emotion": ["sad", None, "sad", "sad"],
        }
    )
    judged = pd.DataFrame(
        {
            "fused_label": ["sad"] * 4,
            "label": ["angry"] * 4,
            "accepted": [True] * 4,
            "answered": [True, True, False, True],
        },
        index=pd.Index(["d1", "d2", "d3", "t1"], name="utterance_id"),
    )
    evidence = development_evidence(rows, judged)
    assert evidence.to_dict("records") == [{"fused_label": "sad", "label": "angry", "accepted": True, "emotion": "sad"}]


def test_zero_evidence_keeps_fused_labels_unless_the_gate_is_off(tmp_path: Path) -> None:
    """A confident judge on a set with no labelled development judgments anywhere changes nothing."""
    config = SimpleNamespace(model="new-model", threshold=0.8)
    rows = pd.DataFrame(
        {"utterance_id": ["n1", "n2"], "fused_label": ["sad", "happy"], "split": "unsplit", "emotion": None}
    )
    judged = pd.DataFrame(
        {
            "custom_id": ["c1", "c2"],
            "fused_label": ["sad", "happy"],
            "label": ["angry", "sad"],
            "accepted": [True, True],
            "answered": [True, True],
        },
        index=pd.Index(["n1", "n2"], name="utterance_id"),
    )
    with warehouse.connect(tmp_path) as con:
        _store_judged_development(con, "train-set", fused="angry", judge_label="sad", truth="sad", n=3)
        gate = _gate(con, "development", "new-set", config, rows, judged)
        off = _gate(con, "off", "new-set", config, rows, judged)
    assert (gate.state, gate.judged) == ("no-evidence", 0)
    kept = final_labels(rows, judged, gate).set_index("utterance_id")
    assert kept["final_label"].tolist() == ["sad", "happy"] and not kept["changed"].any()
    assert kept["judge_gate"].tolist() == ["no-evidence", "no-evidence"]
    applied = final_labels(rows, judged, off).set_index("utterance_id")
    assert applied["final_label"].tolist() == ["angry", "sad"] and applied["judge_gate"].tolist() == ["off", "off"]


def _gate(con, mode: str, eval_set: str, config, rows: pd.DataFrame, judged: pd.DataFrame, limit: int = 200):
    """The gate as the refinement asset decides it: this set's development judgments and other sets' ones."""
    here = development_evidence(rows, judged)
    return gate_decision(pd.concat([here, _evidence_elsewhere(con, eval_set, config, limit)], ignore_index=True), mode)


def _store_judged_development(con, eval_set: str, fused: str, judge_label: str, truth: str, n: int) -> None:
    ids = [f"{eval_set}-{i}" for i in range(n)]
    warehouse.insert_frame(
        con,
        "utterances",
        pd.DataFrame(
            {
                "eval_set": eval_set,
                "utterance_id": ids,
                "split": "development",
                "emotion": truth,
                "audio_path": "a.wav",
                "audio_sha256": "x",
                "duration_s": 1.0,
                "sample_rate_hz": 16000,
                "channels": 1,
                "run_id": "r",
            }
        ),
    )
    common = {"eval_set": eval_set, "utterance_id": ids, "run_id": "r"}
    custom_ids = [f"c-{u}" for u in ids]
    warehouse.insert_frame(
        con,
        "llm_judgments",
        pd.DataFrame(
            {
                **common,
                "custom_id": custom_ids,
                "backend": "local",
                "judge_model": "gemma",
                "temperature": 0.3,
                "threshold": 0.8,
                "prompt_template_sha256": TEMPLATE_SHA256,
                "prompt_sha256": "p",
                "fusion_model_key": "f",
                "request_json": "{}",
                "fused_label": fused,
                "label": judge_label,
                "accepted": True,
                "answered": True,
            }
        ),
    )
    warehouse.insert_frame(
        con,
        "predictions",
        pd.DataFrame(
            {
                **common,
                "judgment_custom_id": custom_ids,
                "fused_label": fused,
                "refined_label": judge_label,
                "final_label": judge_label,
                "changed": True,
            }
        ),
    )


def test_gate_weighs_development_evidence_from_other_sets(tmp_path: Path) -> None:
    """A new, unlabelled set inherits the verdict of the judge's development judgments on a training set."""
    config = SimpleNamespace(model="gemma", threshold=0.8)
    new_rows = pd.DataFrame({"utterance_id": ["n1"], "split": ["unsplit"], "emotion": [None]})
    judged = pd.DataFrame(
        {"fused_label": ["sad"], "label": ["angry"], "accepted": [True], "answered": [True]},
        index=pd.Index(["n1"], name="utterance_id"),
    )
    with warehouse.connect(tmp_path) as con:
        _store_judged_development(con, "train-set", fused="sad", judge_label="angry", truth="sad", n=4)
        assert _gate(con, "development", "new-set", config, new_rows, judged).state == "closed"
        _store_judged_development(con, "other-set", fused="angry", judge_label="sad", truth="sad", n=5)
        decision = _gate(con, "development", "new-set", config, new_rows, judged)
        assert (decision.state, decision.judged, decision.wrong_to_right) == ("open", 9, 5)
        other_judge = SimpleNamespace(model="gpt-4o", threshold=0.8)
        unproven = _gate(con, "development", "new-set", other_judge, new_rows, judged)
        assert (unproven.judged, unproven.state) == (0, "no-evidence")
