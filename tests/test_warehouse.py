"""The warehouse: schema creation, versioned migration, idempotent partition writes."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from emojudge_models.store import warehouse

FIXTURES = Path(__file__).parent / "fixtures"


def test_schema_is_created_once_and_idempotent(tmp_path: Path) -> None:
    with warehouse.connect(tmp_path) as con:
        assert warehouse.current_version(con) == warehouse.SCHEMA_VERSION
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    contract = {
        "eval_sets",
        "utterances",
        "rejected_inputs",
        "feature_index",
        "model_registry",
        "logits",
        "fused_predictions",
        "prosody",
        "llm_judgments",
        "predictions",
        "metrics",
        "episode_emotions",
        "speakers",
    }
    assert contract <= tables
    with warehouse.connect(tmp_path) as con:
        assert con.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 1


def test_migration_from_version_1_keeps_rows(tmp_path: Path) -> None:
    path = warehouse.warehouse_path(tmp_path)
    old = duckdb.connect(str(path))
    old.execute((FIXTURES / "schema_v1.sql").read_text())
    old.close()
    with warehouse.connect(tmp_path) as con:
        assert warehouse.current_version(con) == warehouse.SCHEMA_VERSION == 13
        row = con.execute("SELECT utterance_id, transcript, transcript_source FROM utterances").fetchall()
        assert row == [("u1", "hello there", "manifest")]
        assert con.execute("SELECT count(*) FROM feature_index").fetchone()[0] == 0


def test_migration_from_version_2_adds_the_judge_gate_and_keeps_predictions(tmp_path: Path) -> None:
    with warehouse.connect(tmp_path) as con:
        con.execute("DROP VIEW v_predictions")
        con.execute("ALTER TABLE predictions DROP COLUMN judge_gate")
        con.execute("ALTER TABLE predictions DROP COLUMN judge_gate_reason")
        con.execute("DELETE FROM schema_version")
        con.execute("INSERT INTO schema_version (version) VALUES (2)")
        con.execute("INSERT INTO predictions VALUES ('demo', 'u1', 'sad', 'fear', 'fear', true, 'c1', 'run1')")
    with warehouse.connect(tmp_path) as con:
        assert warehouse.current_version(con) == warehouse.SCHEMA_VERSION
        rows = con.execute("SELECT utterance_id, final_label, judge_gate FROM predictions").fetchall()
        assert rows == [("u1", "fear", None)]
        assert "judge_gate" in con.execute("SELECT * FROM v_predictions LIMIT 0").df().columns


def test_migration_from_version_3_counts_responses_and_reopens_invalid_answers(tmp_path: Path) -> None:
    """Before v4 an invalid 200 answer was stored as answered; v4 asks it again and counts the response it got."""
    with warehouse.connect(tmp_path) as con:
        con.execute("ALTER TABLE llm_judgments DROP COLUMN attempts")
        con.execute("DELETE FROM schema_version")
        con.execute("INSERT INTO schema_version (version) VALUES (3)")
        for custom_id, label, answered in [("valid", "sad", True), ("invalid", None, True), ("http-500", None, False)]:
            con.execute(
                "INSERT INTO llm_judgments (eval_set, utterance_id, custom_id, backend, judge_model, temperature, "
                "threshold, prompt_template_sha256, prompt_sha256, fusion_model_key, request_json, fused_label, "
                "label, accepted, answered, run_id) "
                "VALUES ('s', ?, ?, 'local', 'm', 0.3, 0.8, 't', 'p', 'f', '{}', 'sad', ?, false, ?, 'r')",
                [custom_id, custom_id, label, answered],
            )
    with warehouse.connect(tmp_path) as con:
        assert warehouse.current_version(con) == warehouse.SCHEMA_VERSION == 13
        rows = con.execute("SELECT custom_id, label, answered, attempts FROM llm_judgments ORDER BY 1").fetchall()
    assert rows == [("http-500", None, False, 0), ("invalid", None, False, 1), ("valid", "sad", True, 1)]


def test_migration_from_version_4_adds_episode_columns_speakers_and_the_timeline(tmp_path: Path) -> None:
    """A v4 file keeps its clips (episode columns NULL), gains speakers and the per-window episode_emotions."""
    with warehouse.connect(tmp_path) as con:
        con.execute("DROP VIEW v_predictions")
        con.execute("DROP VIEW v_episode_timeline")
        for column in ("episode_sha256", "start_s", "end_s"):
            con.execute(f"ALTER TABLE utterances DROP COLUMN {column}")
        con.execute("ALTER TABLE eval_sets DROP COLUMN speakers_hint")
        con.execute("DROP TABLE speakers")
        con.execute("DROP TABLE episode_emotions")
        con.execute(
            "CREATE TABLE episode_emotions (eval_set VARCHAR NOT NULL, episode_id VARCHAR NOT NULL, segment_id VARCHAR "
            "NOT NULL, start_s DOUBLE NOT NULL, end_s DOUBLE NOT NULL, final_label VARCHAR, run_id VARCHAR NOT NULL)"
        )
        con.execute("DELETE FROM schema_version")
        con.execute("INSERT INTO schema_version (version) VALUES (4)")
        con.execute("INSERT INTO eval_sets (name, format, path) VALUES ('demo', 'manifest', '/c/manifest.csv')")
        con.execute(
            "INSERT INTO utterances (eval_set, utterance_id, audio_path, audio_sha256, duration_s, sample_rate_hz, "
            "channels, run_id) VALUES ('demo', 'u1', '/c/u1.wav', 'abc', 1.5, 16000, 1, 'r')"
        )
    with warehouse.connect(tmp_path) as con:
        assert warehouse.current_version(con) == warehouse.SCHEMA_VERSION == 13
        clip = con.execute("SELECT utterance_id, episode_sha256, start_s, end_s FROM utterances").fetchall()
        hint = con.execute("SELECT speakers_hint FROM eval_sets").fetchall()
        con.execute(
            "INSERT INTO eval_sets (name, format, path, speakers_hint) VALUES ('ep-1', 'episode', '/i/a.mp3', 2)"
        )
        con.execute("INSERT INTO speakers VALUES ('ep-1', 'ep-1:S1', 'f00', 3, 12.5, [0.5, 0.25]::FLOAT[], 'r')")
        shares = [0.0, 0.75, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0]
        con.execute(
            "INSERT INTO episode_emotions VALUES ('ep-1', 'ep-1', 'ep-1:S1', 0, 30, 12.5, "
            + ", ".join("?" for _ in shares)
            + ", NULL, NULL, NULL, 'fusion-key', 'r')",
            shares,
        )
        timeline = con.execute(
            "SELECT episode_path, speaker_id, speech_s, dominant_emotion, share_sad FROM v_episode_timeline"
        ).fetchall()
        assert "segment_id" not in con.execute("SELECT * FROM episode_emotions LIMIT 0").df().columns
    assert clip == [("u1", None, None, None)] and hint == [(None,)]
    assert timeline == [("/i/a.mp3", "ep-1:S1", 12.5, "sad", 0.75)]


def test_migration_from_version_6_adds_gate_reasons_judgment_costs_and_the_gate_evidence(tmp_path: Path) -> None:
    """A v6 file keeps its predictions and judgments (reason and cost NULL) and gains judge_gate_evidence."""
    with warehouse.connect(tmp_path) as con:
        for view in ("v_predictions", "v_judge_spend", "v_judge_gate_evidence"):
            con.execute(f"DROP VIEW {view}")
        con.execute("ALTER TABLE predictions DROP COLUMN judge_gate_reason")
        con.execute("ALTER TABLE llm_judgments DROP COLUMN estimated_cost_usd")
        con.execute("DROP TABLE judge_gate_evidence")
        con.execute("DELETE FROM schema_version")
        con.execute("INSERT INTO schema_version (version) VALUES (6)")
        con.execute("INSERT INTO predictions VALUES ('demo', 'u1', 'sad', 'fear', 'fear', true, 'c1', 'open', 'r1')")
        con.execute(
            "INSERT INTO llm_judgments (eval_set, utterance_id, custom_id, backend, judge_model, temperature, "
            "threshold, prompt_template_sha256, prompt_sha256, fusion_model_key, request_json, fused_label, label, "
            "accepted, answered, prompt_tokens, completion_tokens, run_id) "
            "VALUES ('demo', 'u1', 'c1', 'local', 'm', 0.3, 0.8, 't', 'p', 'f', '{}', 'sad', 'fear', true, true, "
            "120, 30, 'r1')"
        )
    with warehouse.connect(tmp_path) as con:
        assert warehouse.current_version(con) == warehouse.SCHEMA_VERSION == 13
        prediction = con.execute("SELECT final_label, judge_gate, judge_gate_reason FROM predictions").fetchall()
        spend = con.execute(
            "SELECT eval_set, run_id, calls, prompt_tokens, completion_tokens, estimated_cost_usd FROM v_judge_spend"
        ).fetchall()
        con.execute(
            "INSERT INTO judge_gate_evidence VALUES ('demo', 'sad->fear', 'sad', 'fear', 6, 5, 1, true, "
            "'per_change', 'm', 't', 0.8, 'r1')"
        )
        evidence = con.execute("SELECT kind, net_fixed, applied FROM v_judge_gate_evidence").fetchall()
        view_columns = con.execute("SELECT * FROM v_predictions LIMIT 0").df().columns
    assert prediction == [("fear", "open", None)] and "judge_gate_reason" in view_columns
    assert spend == [("demo", "r1", 1, 120, 30, None)], "a judgment from before v7 has no known cost"
    assert evidence == [("sad->fear", 4, True)]


def test_migration_from_version_6_adds_segment_channels_and_episode_ingest_keys(tmp_path: Path) -> None:
    """A v6 file keeps its segments (mixed down: channel NULL) and episodes (no ingest key: ingested again once)."""
    with warehouse.connect(tmp_path) as con:
        con.execute("DROP VIEW v_predictions")
        con.execute("DROP VIEW v_episode_timeline")
        con.execute("ALTER TABLE utterances DROP COLUMN channel")
        con.execute("ALTER TABLE eval_sets DROP COLUMN ingest_key")
        con.execute("DELETE FROM schema_version")
        con.execute("INSERT INTO schema_version (version) VALUES (6)")
        con.execute("INSERT INTO eval_sets (name, format, path) VALUES ('ep-1', 'episode', '/i/a.mp3')")
        con.execute(
            "INSERT INTO utterances (eval_set, utterance_id, audio_path, audio_sha256, duration_s, sample_rate_hz, "
            "channels, episode_sha256, start_s, end_s, run_id) "
            "VALUES ('ep-1', 'f00-0-3000', '/i/a.mp3', 'abc', 3.0, 48000, 2, 'f00', 0.0, 3.0, 'r')"
        )
    with warehouse.connect(tmp_path) as con:
        assert warehouse.current_version(con) == warehouse.SCHEMA_VERSION == 13
        segment = con.execute("SELECT utterance_id, start_s, channel FROM utterances").fetchall()
        key = con.execute("SELECT name, ingest_key FROM eval_sets").fetchall()
        con.execute("UPDATE utterances SET channel = 2")
        assert con.execute("SELECT utterance_id FROM v_predictions").fetchall() == [("f00-0-3000",)]
    assert segment == [("f00-0-3000", 0.0, None)] and key == [("ep-1", None)]


def test_migration_from_version_6_adds_the_utterance_language(tmp_path: Path) -> None:
    """A v6 file keeps its clips with language NULL (the ASR's language) and accepts a stated one afterwards."""
    with warehouse.connect(tmp_path) as con:
        con.execute("ALTER TABLE utterances DROP COLUMN language")
        con.execute("DELETE FROM schema_version")
        con.execute("INSERT INTO schema_version (version) VALUES (6)")
        con.execute(
            "INSERT INTO utterances (eval_set, utterance_id, audio_path, audio_sha256, duration_s, sample_rate_hz, "
            "channels, run_id) VALUES ('demo', 'u1', '/c/u1.wav', 'abc', 1.5, 16000, 1, 'r')"
        )
    with warehouse.connect(tmp_path) as con:
        assert warehouse.current_version(con) == warehouse.SCHEMA_VERSION == 13
        assert con.execute("SELECT utterance_id, language FROM utterances").fetchall() == [("u1", None)]
        con.execute("UPDATE utterances SET language = 'de'")
        assert con.execute("SELECT language FROM utterances").fetchone() == ("de",)


def test_newer_file_is_refused(tmp_path: Path) -> None:
    with warehouse.connect(tmp_path) as con:
        con.execute("INSERT INTO schema_version (version) VALUES (99)")
    with pytest.raises(RuntimeError, match="newer than this code"), warehouse.connect(tmp_path):
        pass


def test_replace_partition_never_duplicates(tmp_path: Path) -> None:
    rows = pd.DataFrame(
        {
            "utterance_id": ["a", "b"],
            "audio_path": ["x", "y"],
            "stage": "ingest",
            "reason": "r",
            "run_id": "run",
        }
    )
    with warehouse.connect(tmp_path) as con:
        for _ in range(3):
            warehouse.replace_partition(con, "rejected_inputs", "set1", rows, where={"stage": ("ingest",)})
        warehouse.replace_partition(con, "rejected_inputs", "set2", rows.head(1))
        counts = dict(con.execute("SELECT eval_set, count(*) FROM rejected_inputs GROUP BY 1").fetchall())
    assert counts == {"set1": 2, "set2": 1}
    with warehouse.connect(tmp_path) as con, pytest.raises(ValueError, match="not a partitioned"):
        warehouse.replace_partition(con, "model_registry", "set1", rows)
    with warehouse.connect(tmp_path, read_only=True) as reader:
        assert reader.execute("SELECT count(*) FROM rejected_inputs").fetchone()[0] == 3


@pytest.mark.reliability
def test_write_partitions_replaces_several_tables_in_one_transaction(tmp_path: Path) -> None:
    """A failing write of the second table leaves the first table's partition as it was (all or nothing)."""
    rejected = pd.DataFrame(
        {"utterance_id": ["a"], "audio_path": ["x"], "stage": "ingest", "reason": "r", "run_id": "1"}
    )
    metrics = pd.DataFrame({"no_such_column": [1]})
    with warehouse.connect(tmp_path) as con:
        warehouse.replace_partition(con, "rejected_inputs", "s", rejected)
        with pytest.raises(duckdb.Error):
            warehouse.write_partitions(
                con,
                "s",
                [
                    warehouse.PartitionWrite("rejected_inputs", rejected.head(0)),
                    warehouse.PartitionWrite("metrics", metrics),
                ],
            )
        assert con.execute("SELECT count(*) FROM rejected_inputs").fetchone()[0] == 1
        written = warehouse.write_partitions(
            con,
            "s",
            [warehouse.PartitionWrite("rejected_inputs", rejected.head(0))],
            [("ingest/record_split.sql", ["none", None, "s"])],
        )
        assert written == [0] and con.execute("SELECT count(*) FROM rejected_inputs").fetchone()[0] == 0


def test_migration_from_version_9_adds_language_probability_and_model_trained_on(tmp_path: Path) -> None:
    """A v9 file keeps its rows: language_probability NULL (stated or none), trained_on NULL (v_predictions then says
    the model's training sets)."""
    with warehouse.connect(tmp_path) as con:
        con.execute("DROP VIEW v_predictions")
        con.execute("ALTER TABLE utterances DROP COLUMN language_probability")
        con.execute("ALTER TABLE model_registry DROP COLUMN trained_on")
        con.execute("DELETE FROM schema_version")
        con.execute("INSERT INTO schema_version (version) VALUES (9)")
        con.execute(
            "INSERT INTO utterances (eval_set, utterance_id, audio_path, audio_sha256, duration_s, sample_rate_hz, "
            "channels, language, run_id) VALUES ('demo', 'u1', '/c/u1.wav', 'abc', 1.5, 16000, 1, 'de', 'r')"
        )
        con.execute(
            "INSERT INTO model_registry (model_key, kind, task, train_eval_sets, hyperparameters, dev_metric_name, "
            "path, run_id) VALUES ('m1', 'audio_head', 'categorical', ['demo'], '{}', 'f1_macro', '/m', 'r')"
        )
        con.execute(
            "INSERT INTO logits (eval_set, utterance_id, modality, task, model_key, logits, run_id) "
            "VALUES ('demo', 'u1', 'audio', 'categorical', 'm1', [0.0], 'r')"
        )
    with warehouse.connect(tmp_path) as con:
        assert warehouse.current_version(con) == warehouse.SCHEMA_VERSION
        view = con.execute(
            "SELECT language, language_probability, audio_model_trained_on, text_model_trained_on FROM v_predictions"
        ).fetchall()
        assert con.execute("SELECT trained_on FROM model_registry").fetchall() == [(None,)]
    assert view == [("de", None, "sets:demo", None)]


def _inserted_columns(statement: str) -> set[str]:
    """The column list of a statement's INSERT (the MERGE's WHEN NOT MATCHED INSERT for a lake form)."""
    found = re.search(r"INSERT(?: OR REPLACE)?(?: INTO \w+)? \(([^)]*)\)", statement, flags=re.S)
    assert found, statement
    return {column.strip() for column in found.group(1).split(",")}


def test_every_upsert_has_a_lake_form_with_the_same_parameters_and_columns() -> None:
    """The lake runs a MERGE in place of each ON CONFLICT / INSERT OR REPLACE statement, with the same parameters:
    a column added to the packaged statement but not to its lake form (model_registry.trained_on) failed every
    cluster run's training step with a parameter count mismatch."""
    root = Path(str(warehouse.sql_root()))
    upserts = [
        path.relative_to(root).as_posix()
        for path in root.rglob("*.sql")
        if re.search(r"ON CONFLICT|INSERT OR REPLACE", path.read_text())
        and not path.relative_to(root).as_posix().startswith(("store/", "judge/journal/"))  # the journal is SQLite
    ]
    assert "models/register_model.sql" in upserts and "models/register_shipped_model.sql" in upserts
    for name in upserts:
        packaged, lake = warehouse.sql_text(name), warehouse.sql_text(f"store/lake/{name}")
        assert packaged.count("?") == lake.count("?"), name
        assert _inserted_columns(packaged) == _inserted_columns(lake), name


def test_migration_from_version_12_adds_speaker_bounds_to_episodes(tmp_path: Path) -> None:
    """A v12 file keeps its episodes: no bounds (NULL), the count hint as it was; new ones store their bounds."""
    with warehouse.connect(tmp_path) as con:
        con.execute("ALTER TABLE eval_sets DROP COLUMN min_speakers")
        con.execute("ALTER TABLE eval_sets DROP COLUMN max_speakers")
        con.execute("DELETE FROM schema_version")
        con.execute("INSERT INTO schema_version (version) VALUES (12)")
        con.execute(
            "INSERT INTO eval_sets (name, format, path, speakers_hint) VALUES ('ep-1', 'episode', '/i/a.mp3', 2)"
        )
    with warehouse.connect(tmp_path) as con:
        assert warehouse.current_version(con) == warehouse.SCHEMA_VERSION == 13
        con.execute(warehouse.sql_text("episodes/register_episode.sql"), ["ep-2", "/i/b.mp3", None, 2, 4])
        rows = con.execute(
            "SELECT name, speakers_hint, min_speakers, max_speakers FROM eval_sets ORDER BY name"
        ).fetchall()
    assert rows == [("ep-1", 2, None, None), ("ep-2", None, 2, 4)]
