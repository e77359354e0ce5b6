"""Which utterances the text modality may read: those whose language is the ASR's.

The transcripts the text model reads are the ASR's (English by default: Whisper ``language="en"``) or the corpus's
own. An utterance stated to be in another language (a manifest's ``language`` column, else the set's entry in the
``set_languages`` setting) would only feed the text model an English misreading of foreign speech (German speech
through English ASR), so it gets no ASR and no text features: its text logits are missing and fusion scores it from
audio alone (``fused_predictions.modalities = 'audio'``). An utterance with no stated language gets the language
Whisper detects (asr/language_id.py, stored with its probability); a detected language other than the ASR's blocks
the ASR and the text modality when the detector is at least :data:`MIN_DETECTED_PROBABILITY` sure and the transcript
would be the ASR's (a corpus's own transcript is kept: the detector misreads synthetic or very short clips more
often than a corpus mislabels its text). Languages compare by their primary subtag, case-insensitively (``en-GB`` is
``en``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_ASR_LANGUAGE = "en"
MIN_DETECTED_PROBABILITY = 0.5
"""A detected language blocks the text modality only at or above this probability. Whisper base gave RAVDESS English
0.95-0.99 and espeak-ng German 0.89-0.96; the synthetic demo corpus's tones got at most 0.43 for any language."""
CORPUS_TRANSCRIPTS = ("manifest", "sidecar")
"""``utterances.transcript_source`` values of transcripts the corpus brought (not the ASR's)."""


def language_tag(value: Any) -> str | None:
    """A stated language as a lower-case tag (``"DE"`` -> ``"de"``), or None when none is stated."""
    import pandas as pd  # here, not at module level: the CLI imports this module and must start without pandas

    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    tag = str(value).strip().lower().replace("_", "-")
    return tag or None


def asr_language(asr_options: Mapping[str, Any]) -> str:
    """The language the configured ASR transcribes (its ``language`` option; Whisper's default here is English)."""
    return language_tag(asr_options.get("language")) or DEFAULT_ASR_LANGUAGE


def with_set_language(languages: pd.Series, set_language: str | None) -> pd.Series:
    """Each utterance's language: its own where stated, else its set's (``set_languages``), else None."""
    import pandas as pd

    fallback = language_tag(set_language)
    return pd.Series(
        [language_tag(value) or fallback for value in languages], index=languages.index, dtype=object, name="language"
    )


def foreign(languages: Sequence[Any], text_language: str) -> np.ndarray:
    """True where an utterance's stated language is not ``text_language`` (those get no text modality)."""
    primary = text_language.split("-")[0]
    return np.array(
        [(tag := language_tag(v)) is not None and tag.split("-")[0] != primary for v in languages], dtype=bool
    )


def text_blocked(
    languages: Sequence[Any], probabilities: Sequence[Any], sources: Sequence[Any], text_language: str
) -> np.ndarray:
    """True where an utterance gets no ASR and no text modality: its stated language (probability missing) is not
    ``text_language``, or its detected one is not, with at least :data:`MIN_DETECTED_PROBABILITY`, while its
    transcript (``sources``: ``utterances.transcript_source``) is not the corpus's own."""
    import pandas as pd

    other = foreign(languages, text_language)
    values = np.array([np.nan if p is None or pd.isna(p) else float(p) for p in probabilities], dtype=float)
    detected = ~np.isnan(values)
    sure = detected & (np.nan_to_num(values) >= MIN_DETECTED_PROBABILITY)
    corpus_text = np.array([source in CORPUS_TRANSCRIPTS for source in sources], dtype=bool)
    return other & (~detected | (sure & ~corpus_text))


def no_text_reason(language: str, text_language: str) -> str:
    """The ``rejected_inputs.reason`` of an utterance left without text modality because of its language."""
    return (
        f"language {language!r} is not the ASR's ({text_language!r}): no text modality, fused from audio alone "
        "(set the ASR's language, or the utterance's, to use text)"
    )
