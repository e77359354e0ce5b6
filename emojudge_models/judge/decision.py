"""The acceptance rule, applied in code rather than trusted to the model."""

from __future__ import annotations

from typing import NamedTuple

from emojudge_models.judge.schema import Judgment
from emojudge_models.labels import EMOTIONS
from emojudge_models.settings import default

DEFAULT_THRESHOLD: float = default("judge_threshold")


class Decision(NamedTuple):
    """``accepted`` is True only when the judge's different label replaced the fused one."""

    final_label: str
    accepted: bool
    error: str | None


def decide(fused_label: str, judgment: Judgment | str | None, threshold: float = DEFAULT_THRESHOLD) -> Decision:
    """Final label for one utterance.

    The label changes only if the judge's label differs from the fused one and its confidence is at least
    ``threshold``; an error string (or no judgment) keeps the fused label and is carried into ``error``.
    """
    if fused_label not in EMOTIONS:
        raise ValueError(f"fused label {fused_label!r} is not one of {', '.join(EMOTIONS)}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold {threshold!r} is not in [0, 1]")
    if judgment is None:
        return Decision(fused_label, False, "no judgment")
    if isinstance(judgment, str):
        return Decision(fused_label, False, judgment)
    if judgment.label not in EMOTIONS or not 0.0 <= judgment.confidence <= 1.0:
        return Decision(fused_label, False, f"invalid judgment {judgment!r}")
    if judgment.label != fused_label and judgment.confidence >= threshold:
        return Decision(judgment.label, True, None)
    return Decision(fused_label, False, None)
