"""Prosody of speech clips: measured values, a plain-English description and their lineage key."""

from emojudge_models.prosody.batch import AudioSource, ProsodyFailed, compute_many
from emojudge_models.prosody.describe import Thresholds, describe
from emojudge_models.prosody.features import FLAGS, ProsodyValues, compute_prosody
from emojudge_models.prosody.pitch import DEFAULT_TRACKER, PITCH_TRACKERS, PitchTracker
from emojudge_models.prosody.version import PROSODY_CODE_VERSION, prosody_version

__all__ = [
    "DEFAULT_TRACKER",
    "FLAGS",
    "PITCH_TRACKERS",
    "PROSODY_CODE_VERSION",
    "AudioSource",
    "PitchTracker",
    "ProsodyFailed",
    "ProsodyValues",
    "Thresholds",
    "compute_many",
    "compute_prosody",
    "describe",
    "prosody_version",
]
