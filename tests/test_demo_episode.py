"""The cluster demo's inbox episode, built from the demo corpus: its captions are its clips, where they lie."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import numpy as np
import soundfile as sf

from emojudge_models.episodes.sidecar import find_sidecar, parse_sidecar
from emojudge_models.ingest.demo_corpus import write_demo_corpus, write_demo_episode


def test_the_demo_episode_holds_two_speakers_turns_with_their_captions(tmp_path: Path) -> None:
    manifest = write_demo_corpus(tmp_path / "corpus")
    episode = write_demo_episode(manifest, tmp_path / "inbox" / "episode.wav", turns=2, clips_per_turn=3)
    wave, rate = sf.read(episode, dtype="float32")
    cues = parse_sidecar(find_sidecar(episode))
    with open(manifest, newline="") as handle:
        transcripts = {row["transcript"] for row in csv.DictReader(handle) if row["speaker_id"] in ("spk5", "spk6")}
    assert rate == 16_000 and wave.ndim == 1
    assert len(cues) == 12 and all(cue.text in transcripts for cue in cues)
    assert cues[-1].end_s < len(wave) / rate
    for cue, after in itertools.pairwise(cues):
        inside = wave[int(cue.start_s * rate) : int(cue.end_s * rate)]
        gap = wave[int(cue.end_s * rate) + 80 : int(after.start_s * rate) - 80]
        assert np.sqrt(np.mean(inside**2)) > 0.01 and not np.any(gap), cue
    assert sorted(path.name for path in episode.parent.iterdir()) == ["episode.vtt", "episode.wav"]
