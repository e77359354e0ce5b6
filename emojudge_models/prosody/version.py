"""Lineage key of prosody rows: which code, pitch tracker and description thresholds produced them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

from emojudge_models.prosody.describe import Thresholds
from emojudge_models.prosody.pitch import PITCH_TRACKERS, PitchTracker

PROSODY_CODE_VERSION = "1"
"""Bump whenever a change to this package changes values or descriptions for the same input."""


def prosody_version(tracker: PitchTracker, thresholds: Thresholds) -> str:
    """``"{tracker}-{12 hex}"``: SHA-256 of the code version, tracker and thresholds (stored per prosody row)."""
    if tracker not in PITCH_TRACKERS:
        raise ValueError(f"unknown pitch tracker {tracker!r}; choose one of {PITCH_TRACKERS}")
    spec = {"code": PROSODY_CODE_VERSION, "tracker": tracker, "thresholds": asdict(thresholds)}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    return f"{tracker}-{digest[:12]}"
