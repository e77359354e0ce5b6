"""Sets in another language than the ASR's get no ASR and no text modality (emojudge_models/ingest/language.py)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import soundfile as sf

from emojudge_models.ingest.corpus import CorpusEntry, read_manifest
from emojudge_models.ingest.language import asr_language, foreign, language_tag, with_set_language
from emojudge_models.settings import Settings
from emojudge_models.store import warehouse
from emojudge_pipeline import cli
from emojudge_pipeline.assets import transcripts as transcripts_module
from emojudge_pipeline.assets.features import text_features
from emojudge_pipeline.assets.ingest import utterances
from emojudge_pipeline.assets.transcripts import transcripts
from emojudge_pipeline.resources import default_resources
from tests.conftest import tone


def test_language_rules() -> None:
    assert language_tag(" DE ") == "de" and language_tag("en_GB") == "en-gb"
    assert language_tag(None) is None and language_tag(float("nan")) is None and language_tag("  ") is None
    assert asr_language({}) == "en" and asr_language({"language": "De"}) == "de"
    assert foreign(["de", "en-GB", None, "EN", "fr"], "en").tolist() == [True, False, False, False, True]
    assert foreign([], "en").dtype == bool
    filled = with_set_language(pd.Series(["en", None, float("nan")]), "DE")
    assert filled.tolist() == ["en", "de", "de"]
    assert with_set_language(pd.Series([None, "fr"]), None).tolist() == [None, "fr"]


def _manifest(root: Path, languages: list[str | None], transcripts: bool) -> Path:
    root.mkdir(parents=True)
    rows = []
    for index, language in enumerate(languages):
        sf.write(root / f"c{index}.wav", tone(1.0 + 0.1 * index), 16_000)
        text = f"Der Hund sitzt an der Tür {index}" if transcripts else ""
        rows.append({"path": f"c{index}.wav", "emotion": "neutral", "speaker_id": f"s{index}", "transcript": text})
        if any(languages):
            rows[-1]["language"] = language or ""
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


def test_manifest_language_column_is_read(tmp_path: Path) -> None:
    entries = list(read_manifest(_manifest(tmp_path / "m", ["DE", None], transcripts=True)))
    assert all(isinstance(e, CorpusEntry) for e in entries)
    assert [e.language for e in entries] == ["de", None]


def _materialize(assets, name: str, settings: Settings) -> dg.ExecuteInProcessResult:
    result = dg.materialize(assets, partition_key=name, instance=cli.instance(), resources=default_resources(settings))
    assert result.success
    return result


def test_a_german_set_gets_no_asr_and_no_text_features(emojudge_home: Path, tmp_path: Path, monkeypatch) -> None:
    """Manifest language column: German clips lose the text modality (recorded), unstated ones keep it; a set
    configured as German (set_languages) with no transcripts never builds the ASR."""
    monkeypatch.setenv("EMOJUDGE_PROFILE", "acoustic")
    monkeypatch.setenv("EMOJUDGE_SET_LANGUAGES", '{"emodb-mini": "de"}')
    settings = Settings.from_env()
    cli.main(["eval-set", "add", "mixed", str(_manifest(tmp_path / "mixed", ["de", "de", None], transcripts=True))])
    cli.main(["eval-set", "add", "emodb-mini", str(_manifest(tmp_path / "emodb", [None, None], transcripts=False))])
    built = []
    monkeypatch.setattr(transcripts_module, "build_recognizer", lambda options: built.append(options))

    _materialize([utterances, transcripts, text_features], "mixed", settings)
    result = _materialize([utterances, transcripts, text_features], "emodb-mini", settings)

    assert built == []
    asr = result.asset_materializations_for_node("transcripts")[0].metadata
    assert asr["other_language"].value == 2 and asr["transcribed"].value == 0
    with warehouse.connect(emojudge_home, read_only=True) as con:
        languages = con.execute("SELECT eval_set, utterance_id, language FROM utterances ORDER BY 1, 2").fetchall()
        text_rows = con.execute(
            "SELECT eval_set, utterance_id FROM feature_index WHERE modality = 'text' ORDER BY 1, 2"
        ).fetchall()
        reasons = con.execute(
            "SELECT eval_set, utterance_id, reason FROM rejected_inputs WHERE stage = 'text_features' ORDER BY 1, 2"
        ).fetchall()
    assert languages[:4] == [
        ("emodb-mini", "c0", "de"),
        ("emodb-mini", "c1", "de"),
        ("mixed", "c0", "de"),
        ("mixed", "c1", "de"),
    ]
    assert languages[4][:2] == ("mixed", "c2") and languages[4][2] is not None, "no language stated: detected"
    assert [(s, u) for s, u, _ in reasons] == [
        ("emodb-mini", "c0"),
        ("emodb-mini", "c1"),
        ("mixed", "c0"),
        ("mixed", "c1"),
    ]
    assert all("language 'de' is not the ASR's ('en'): no text modality" in r for *_, r in reasons), reasons
    assert text_rows == [("mixed", "c2")]


@pytest.mark.parametrize("language", ["en", "EN-us"])
def test_the_asr_language_itself_is_not_foreign(language: str) -> None:
    assert not foreign([language], asr_language({})).any()
