"""Each clip's language is detected by the multilingual Whisper (asr/language_id.py) when none is stated: a German
clip (synthesised with espeak-ng, no download) is marked German and gets no ASR and no text modality; an English
RAVDESS clip is marked English and transcribed; a stated language still wins. An episode's speaker is asked once, on
a sample of their segments spread over the episode."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from emojudge_models.asr.language_id import SPEAKER_SAMPLE_SEGMENTS, LanguageDetector, speaker_sample
from emojudge_models.episodes.sources import SegmentSource
from emojudge_models.ingest.audio import load_wave
from emojudge_models.ingest.language import MIN_DETECTED_PROBABILITY, text_blocked
from emojudge_models.settings import Settings
from emojudge_models.store import warehouse
from emojudge_pipeline import cli
from emojudge_pipeline.assets import transcripts as transcripts_module
from emojudge_pipeline.assets.features import text_features
from emojudge_pipeline.assets.ingest import utterances
from emojudge_pipeline.assets.transcripts import transcripts
from emojudge_pipeline.resources import default_resources

GERMAN = "Ich habe heute keine Zeit, weil ich zur Arbeit fahren muss und der Zug schon wartet."


def test_text_is_blocked_by_a_stated_language_or_a_sure_detection_of_asr_text() -> None:
    sure, unsure = MIN_DETECTED_PROBABILITY, MIN_DETECTED_PROBABILITY - 0.1
    blocked = text_blocked(
        ["de", "de", "de", "de", "en", None],
        [None, sure, unsure, 0.97, 0.99, None],
        [None, "asr:x", None, "manifest", None, None],
        "en",
    )
    assert blocked.tolist() == [True, True, False, False, False, False]


def _espeak(path: Path, text: str, voice: str) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed (Debian: apt-get install espeak-ng)")
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True, capture_output=True, timeout=60)
    return path


@pytest.mark.slow
def test_a_german_clip_is_detected_and_gets_no_asr_and_no_text(
    emojudge_home: Path, tmp_path: Path, ravdess_dir: Path, monkeypatch
) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    _espeak(folder / "german.wav", GERMAN, "de")
    shutil.copy(ravdess_dir / "audio" / "03-01-05-02-01-01-02.wav", folder / "english.wav")
    monkeypatch.setenv("EMOJUDGE_PROFILE", "acoustic")
    settings = Settings.from_env()
    cli.main(["eval-set", "add", "clips", str(folder), "--format", "folder"])
    heard: list[int] = []

    class Recognizer:
        asr_model_key = "fake-asr"

        def transcribe_clips(self, clips):
            heard.append(len(clips))
            return ["kids are talking by the door"] * len(clips)

    monkeypatch.setattr(transcripts_module, "build_recognizer", lambda options: Recognizer())
    result = dg.materialize(
        [utterances, transcripts, text_features],
        partition_key="clips",
        instance=cli.instance(),
        resources=default_resources(settings),
    )
    assert result.success
    with warehouse.connect(emojudge_home, read_only=True) as con:
        rows = con.execute(
            "SELECT utterance_id, language, language_probability, transcript FROM utterances ORDER BY 1"
        ).fetchall()
        text = con.execute("SELECT utterance_id FROM feature_index WHERE modality = 'text'").fetchall()
        reasons = con.execute(
            "SELECT utterance_id, reason FROM rejected_inputs WHERE stage = 'text_features'"
        ).fetchall()
    (english, en_p, en_text), (german, de_p, de_text) = (r[1:] for r in rows)
    assert (english, german) == ("en", "de") and en_p > 0.9 and de_p > 0.8, rows
    assert en_text == "kids are talking by the door" and de_text is None and heard == [1]
    assert text == [("english",)]
    assert reasons == [("german", reasons[0][1])] and "language 'de' is not the ASR's ('en')" in reasons[0][1]
    metadata = result.asset_materializations_for_node("transcripts")[0].metadata
    assert metadata["languages_detected"].value == 2 and metadata["other_language"].value == 1

    # A stated language wins over the detector: the set says English, so the German clip is transcribed too.
    monkeypatch.setenv("EMOJUDGE_SET_LANGUAGES", '{"clips": "en"}')
    again = dg.materialize(
        [utterances, transcripts],
        partition_key="clips",
        instance=cli.instance(),
        resources=default_resources(Settings.from_env()),
    )
    assert again.success
    with warehouse.connect(emojudge_home, read_only=True) as con:
        stated = con.execute("SELECT language, language_probability FROM utterances").fetchall()
    assert stated == [("en", None), ("en", None)] and heard == [1, 1], "the English clip's ASR is cached"


def test_a_speaker_sample_spreads_over_the_turns_stops_at_30_s_and_skips_unreadable_segments(tmp_path: Path) -> None:
    turns = [np.full(5 * 16_000, index, dtype=np.float32) for index in range(40)]
    sample = speaker_sample(turns)
    assert [int(wave[0]) for wave in sample] == [0, 3, 5, 8, 10, 13]
    missing = SegmentSource(str(tmp_path / "gone.wav"), 0.0, 1.0, "0" * 64, None, str(tmp_path / "decoded"))
    assert [int(wave[0]) for wave in speaker_sample([missing, turns[1]])] == [1]
    assert speaker_sample([]) == [] and SPEAKER_SAMPLE_SEGMENTS == 16


@pytest.mark.slow
def test_each_speaker_of_an_episode_gets_their_own_language(tmp_path: Path, ravdess_dir: Path) -> None:
    german = [
        load_wave(_espeak(tmp_path / f"de{index}.wav", text, "de"))
        for index, text in enumerate([GERMAN, "Guten Morgen, wie geht es dir heute?", "Das Wetter ist schoen."])
    ]
    english = [load_wave(path) for path in sorted((ravdess_dir / "audio").glob("03-01-0[1-3]-01-01-01-0*.wav"))[:3]]
    detector = LanguageDetector({})
    (de, de_p), (en, en_p) = detector.detect_speaker(german), detector.detect_speaker(english)
    assert (de, en) == ("de", "en") and de_p > 0.8 and en_p > 0.8
    assert detector.detect_speaker([]) is None
