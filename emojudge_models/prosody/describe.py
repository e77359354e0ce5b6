"""Plain-English prosody description for the LLM judge, with thresholds fixed by config or learned from a train set."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from emojudge_models.prosody.features import ProsodyValues

MIN_VALUES_FOR_TERCILES = 30
"""``Thresholds.from_values`` keeps a field's default when fewer clips than this have a value for it."""


@dataclass(frozen=True)
class Thresholds:
    """Cut points between the three words of each scale: below ``*_below*`` -> low word, above ``*_above*`` -> high.

    Defaults are rough values for conversational speech recorded near broadcast level (active speech around
    -25 dBFS, p10-p90 pitch spans of 4-8 semitones, 150 words per minute); prefer ``from_values`` on a train set.
    """

    quiet_below_dbfs: float = -35.0
    loud_above_dbfs: float = -20.0
    narrow_below_semitones: float = 4.0
    wide_above_semitones: float = 8.0
    slow_below_words_per_s: float = 2.2
    fast_above_words_per_s: float = 3.2
    slow_below_syllables_per_s: float = 3.5
    fast_above_syllables_per_s: float = 5.0
    short_below_s: float = 2.5
    long_above_s: float = 8.0

    def __post_init__(self) -> None:
        for low, high, _ in _SCALES:
            if not getattr(self, low) <= getattr(self, high):
                raise ValueError(f"threshold {low}={getattr(self, low)} exceeds {high}={getattr(self, high)}")

    @classmethod
    def from_values(cls, values: Sequence[ProsodyValues], min_count: int = MIN_VALUES_FOR_TERCILES) -> Thresholds:
        """Terciles (1/3 and 2/3 quantiles, rounded to 0.01) of each measure over ``values``, so each word covers a
        third of the set; silent clips are left out of the level. A measure keeps its defaults when fewer than
        ``min_count`` clips have it or when both terciles coincide.
        """
        learned: dict[str, float] = {}
        for low, high, measure in _SCALES:
            observed = [x for x in (measure(v) for v in values) if _finite(x)]
            if len(observed) < min_count:
                continue
            lower, upper = (round(float(q), 2) for q in np.quantile(observed, [1 / 3, 2 / 3]))
            if lower < upper:
                learned[low], learned[high] = lower, upper
        return replace(cls(), **learned)


_SCALES: tuple[tuple[str, str, Callable[[ProsodyValues], float | None]], ...] = (
    ("quiet_below_dbfs", "loud_above_dbfs", lambda v: None if "silent" in v.flags else v.rms_mean_dbfs),
    ("narrow_below_semitones", "wide_above_semitones", lambda v: v.f0_range_semitones),
    ("slow_below_words_per_s", "fast_above_words_per_s", lambda v: v.words_per_s),
    ("slow_below_syllables_per_s", "fast_above_syllables_per_s", lambda v: v.syllables_per_s),
    ("short_below_s", "long_above_s", lambda v: v.duration_s),
)
"""Each threshold pair and the measure it cuts."""


def describe(values: ProsodyValues, thresholds: Thresholds | None = None) -> str:
    """Deterministic one-line description: parts joined by "; " in this order, each left out when its value is None.

    1. Duration: ``"{s:.1f} s"``, followed by ``" (very short)"`` with the very_short flag, else ``" (short)"`` /
       ``" (long)"`` beyond ``short_below_s`` / ``long_above_s``.
       A silent clip stops here with ``"; silent"``: ``"4.0 s; silent"``.
    2. Level: ``"quiet|moderate loudness|loud ({rms_mean_dbfs:.0f} dBFS mean)"``.
    3. Pitch: ``"narrow|moderate|wide pitch range ({p10:.0f}-{p90:.0f} Hz, {semitones:.0f} semitones)"``
       (``"1 semitone"`` when it rounds to 1), or ``"no voiced speech detected"`` when there is no F0.
    4. Rate: ``"slow speech|average speech rate|fast speech ({words_per_s:.1f} words/s)"``; without a transcript
       the syllable estimate: ``"... ({syllables_per_s:.1f} syllables/s)"``.
    5. ``"clipped ({clipped_fraction:.1%} of samples)"`` with the clipped flag.

    Example: ``"3.4 s; loud (-14 dBFS mean); wide pitch range (150-380 Hz, 15 semitones); fast speech
    (4.1 words/s)"``. NaN and inf are treated as missing, so the text never says "nan" or "None".
    """
    t = thresholds or Thresholds()
    parts = [_duration_part(values, t)] if _finite(values.duration_s) else []
    if "silent" in values.flags:
        return "; ".join([*parts, "silent"])
    if _finite(values.rms_mean_dbfs):
        level = _band(values.rms_mean_dbfs, t.quiet_below_dbfs, t.loud_above_dbfs, _LEVEL_WORDS)
        parts.append(f"{level} ({_number(values.rms_mean_dbfs, 0)} dBFS mean)")
    parts.append(_pitch_part(values, t))
    rate = _rate_part(values, t)
    if rate:
        parts.append(rate)
    if "clipped" in values.flags:
        parts.append(f"clipped ({_number(100 * values.clipped_fraction, 1)}% of samples)")
    return "; ".join(parts)


_LEVEL_WORDS = ("quiet", "moderate loudness", "loud")
_RANGE_WORDS = ("narrow pitch range", "moderate pitch range", "wide pitch range")
_RATE_WORDS = ("slow speech", "average speech rate", "fast speech")


def _duration_part(values: ProsodyValues, t: Thresholds) -> str:
    if "very_short" in values.flags:
        length = " (very short)"
    else:
        length = _band(values.duration_s, t.short_below_s, t.long_above_s, (" (short)", "", " (long)"))
    return f"{_number(values.duration_s, 1)} s{length}"


def _pitch_part(values: ProsodyValues, t: Thresholds) -> str:
    p10, p90, semitones = values.f0_p10_hz, values.f0_p90_hz, values.f0_range_semitones
    if not (_finite(p10) and _finite(p90) and _finite(semitones)):
        return "no voiced speech detected"
    width = _band(semitones, t.narrow_below_semitones, t.wide_above_semitones, _RANGE_WORDS)
    rounded = _number(semitones, 0)
    unit = "semitone" if rounded == "1" else "semitones"
    return f"{width} ({_number(p10, 0)}-{_number(p90, 0)} Hz, {rounded} {unit})"


def _rate_part(values: ProsodyValues, t: Thresholds) -> str | None:
    if _finite(values.words_per_s):
        pace = _band(values.words_per_s, t.slow_below_words_per_s, t.fast_above_words_per_s, _RATE_WORDS)
        return f"{pace} ({_number(values.words_per_s, 1)} words/s)"
    if _finite(values.syllables_per_s):
        pace = _band(values.syllables_per_s, t.slow_below_syllables_per_s, t.fast_above_syllables_per_s, _RATE_WORDS)
        return f"{pace} ({_number(values.syllables_per_s, 1)} syllables/s)"
    return None


def _band(value: float, below: float, above: float, words: tuple[str, str, str]) -> str:
    if value < below:
        return words[0]
    return words[2] if value > above else words[1]


def _number(value: float, decimals: int) -> str:
    """Fixed-point text without a minus sign on zero ("-0" -> "0")."""
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
