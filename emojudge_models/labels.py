"""The label sets EmoJudge predicts: 8 categories and 3 attributes."""

from __future__ import annotations

EMOTIONS: tuple[str, ...] = (
    "angry",
    "sad",
    "happy",
    "surprise",
    "fear",
    "disgust",
    "contempt",
    "neutral",
)
"""The 8 categorical classes, in the fixed order used for logits and probabilities."""

ATTRIBUTES: tuple[str, ...] = ("arousal", "valence", "dominance")

MSP_CODES: dict[str, str] = {
    "A": "angry",
    "S": "sad",
    "H": "happy",
    "U": "surprise",
    "F": "fear",
    "D": "disgust",
    "C": "contempt",
    "N": "neutral",
}
"""MSP-Podcast EmoClass codes to EmoJudge class names."""

TASKS: tuple[str, ...] = ("categorical", "attributes")


def emotion_index(label: str) -> int:
    """Position of ``label`` in :data:`EMOTIONS`; raises ``ValueError`` naming the bad label."""
    try:
        return EMOTIONS.index(label)
    except ValueError:
        raise ValueError(f"unknown emotion {label!r}; expected one of {', '.join(EMOTIONS)}") from None
