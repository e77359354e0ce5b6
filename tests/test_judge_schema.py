"""Answer validation, the acceptance rule and the cost estimate."""

from __future__ import annotations

import json

import pytest

from emojudge_models.judge import Judgment, decide, estimate_cost, parse_judgment
from emojudge_models.judge.cost import LOCAL_JUDGE_MODEL


def answer(**fields: object) -> str:
    return json.dumps({"label": "sad", "confidence": 0.9, "rationale": "flat and slow", **fields})


def test_valid_answer_parses() -> None:
    assert parse_judgment(answer()) == Judgment("sad", 0.9, "flat and slow")
    assert parse_judgment(answer(label=" Sad ", confidence=1)) == Judgment("sad", 1.0, "flat and slow")
    assert parse_judgment("```json\n" + answer() + "\n```") == Judgment("sad", 0.9, "flat and slow")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "empty answer"),
        ("   ", "empty answer"),
        ('{"label": "sad", "confidence": 0.9', "not valid JSON"),
        ("label=sad confidence=0.9", "not valid JSON"),
        ('["sad", 0.9]', "not an object"),
        (json.dumps({"label": "sad", "confidence": 0.9}), "lacks rationale"),
        (answer(extra="x"), "unexpected keys extra"),
        (answer(label="joy"), "label 'joy' is not one of"),
        (answer(label=3), "label 3 is not one of"),
        (answer(confidence="0.9"), "is not a number"),
        (answer(confidence=True), "is not a number"),
        (answer(confidence=None), "is not a number"),
        (answer(confidence=1.7), "outside [0, 1]"),
        (answer(confidence=-0.1), "outside [0, 1]"),
        ('{"label": "sad", "confidence": NaN, "rationale": "x"}', "outside [0, 1]"),
        (answer(rationale=["a"]), "rationale"),
    ],
)
def test_invalid_answers_are_errors(raw: str | None, reason: str) -> None:
    result = parse_judgment(raw)
    assert isinstance(result, str)
    assert reason in result


def test_label_changes_only_when_different_and_confident() -> None:
    assert decide("neutral", Judgment("angry", 0.85, "r"), 0.8) == ("angry", True, None)
    assert decide("neutral", Judgment("angry", 0.8, "r"), 0.8) == ("angry", True, None)
    assert decide("neutral", Judgment("angry", 0.79, "r"), 0.8) == ("neutral", False, None)
    assert decide("neutral", Judgment("neutral", 0.99, "r"), 0.8) == ("neutral", False, None)
    assert decide("neutral", Judgment("angry", 0.5, "r"), 0.5) == ("angry", True, None)


def test_errors_keep_the_fused_label() -> None:
    assert decide("sad", "answer is not valid JSON", 0.8) == ("sad", False, "answer is not valid JSON")
    assert decide("sad", None, 0.8) == ("sad", False, "no judgment")
    forged = Judgment("joy", 1.0, "constructed without parse_judgment")
    final, accepted, error = decide("sad", forged, 0.8)
    assert (final, accepted) == ("sad", False) and "invalid judgment" in error


def test_decide_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="fused label 'joy'"):
        decide("joy", Judgment("sad", 0.9, "r"), 0.8)
    with pytest.raises(ValueError, match="threshold"):
        decide("sad", Judgment("sad", 0.9, "r"), 1.5)


def test_cost_estimate() -> None:
    standard = estimate_cost("gpt-4o-2024-08-06", 1_000_000, 100_000, batch=False)
    assert standard == pytest.approx(2.50 + 1.00)
    assert estimate_cost("gpt-4o-2024-08-06", 1_000_000, 100_000, batch=True) == pytest.approx(standard / 2)
    assert estimate_cost(LOCAL_JUDGE_MODEL, 10_000, 1_000, batch=False) == 0.0
    assert estimate_cost("some-self-hosted-model", 10, 1, batch=False) is None
    with pytest.raises(ValueError, match="non-negative"):
        estimate_cost("gpt-4o", -1, 0, batch=False)
