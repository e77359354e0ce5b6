"""End to end through the real Dagster job (the `emojudge materialize` path) on the generated demo corpus.

Weight-free acoustic frames, a tiny RoBERTa text encoder built from a config, short head training, and the
openai-chat judge against the scripted local OpenAI-compatible server. Asserts rows, lineage, reuse on rerun,
asset checks, and that every sql/examples/*.sql returns rows.
"""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path

import duckdb
import numpy as np
import pytest
from batch_api_server import FakeOpenAIServer, judgment_reply, keep_prediction, user_message
from tiny_models import demo_training_env

from emojudge_models.features.datasets import frames_for, speaker_normaliser
from emojudge_models.features.store import FeatureStore
from emojudge_models.models.checkpoints import load_checkpoint, read_checkpoint_config
from emojudge_models.models.predict import predict_audio
from emojudge_models.store import warehouse
from emojudge_pipeline import cli

EPISODE_EXAMPLES = {"recurring_speakers.sql"}
"""Example queries over inbox episodes, which the demo has none of (tests/test_inbox.py runs them)."""
EXAMPLES = sorted(
    f"examples/{r.name}" for r in warehouse.sql_file("examples").iterdir() if r.name not in EPISODE_EXAMPLES
)


def judge_changes_sad_clips(body: dict, call: int):
    """The scripted judge: confidently relabels clips whose fused label is sad as fear; agrees otherwise."""
    if "Predicted emotion: sad" in user_message(body):
        return judgment_reply("fear", 0.95)
    return keep_prediction(body, call)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("e2e")
    home = root / "home"
    manifest, training = demo_training_env(root, max_epochs=4, patience=2)
    env = {"EMOJUDGE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"), **training}
    with pytest.MonkeyPatch.context() as patch, FakeOpenAIServer(judge_changes_sad_clips, max_lifetime_s=600) as api:
        for name, value in env.items():
            patch.setenv(name, value)
        patch.setenv("EMOJUDGE_JUDGE_BASE_URL", api.base_url)
        cli.add_eval_set("demo", manifest, "manifest")
        cli.materialize("demo", train=True)
        first_calls = len(api.chat_bodies)
        with warehouse.connect(home, read_only=True) as con:
            first_counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in COUNTED}
        cli.materialize("demo", train=True)
        second_calls = len(api.chat_bodies) - first_calls
        yield home, first_calls, second_calls, first_counts, api


COUNTED = (
    "utterances",
    "rejected_inputs",
    "feature_index",
    "logits",
    "fused_predictions",
    "prosody",
    "llm_judgments",
    "predictions",
    "metrics",
    "model_registry",
)


def test_every_table_is_filled(demo_run) -> None:
    home, first_calls, _, counts, _ = demo_run
    assert counts["utterances"] == 144
    assert counts["rejected_inputs"] == 6
    assert counts["feature_index"] == 2 * 144
    assert counts["logits"] == 4 * 144
    assert counts["fused_predictions"] == 2 * 144
    assert counts["prosody"] == 144
    assert counts["predictions"] == 144
    assert counts["model_registry"] == 6
    with warehouse.connect(home, read_only=True) as con:
        development = con.execute("SELECT count(*) FROM utterances WHERE split = 'development'").fetchone()[0]
        test_gates = con.execute(
            "SELECT judge_gate, judgment_custom_id IS NULL, count(*) FROM predictions "
            "JOIN utterances USING (eval_set, utterance_id) WHERE split = 'test' GROUP BY ALL"
        ).fetchall()
    # the development judgments closed the gate, so the test split was never sent to the judge
    assert counts["llm_judgments"] == development == first_calls
    assert [row[:2] for row in test_gates] == [("closed", True)]


def test_rerun_is_idempotent_and_reuses_judgments(demo_run) -> None:
    home, _, second_calls, counts, _ = demo_run
    assert second_calls == 0
    with warehouse.connect(home, read_only=True) as con:
        for table, first in counts.items():
            assert con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == first, table


def test_audio_models_are_speaker_normalised_logreg_probes_scored_as_trained(demo_run) -> None:
    home = demo_run[0]
    with warehouse.connect(home, read_only=True) as con:
        path, hyper, key, model_key = con.execute(
            "SELECT path, hyperparameters, encoder_key, model_key FROM model_registry "
            "WHERE kind = 'audio_head' AND task = 'categorical'"
        ).fetchone()
        rows = con.execute(warehouse.sql_text("features/partition_features.sql"), [key, "demo"]).df().iloc[::29]
        stored = con.execute(
            "SELECT utterance_id, logits FROM logits WHERE eval_set = 'demo' AND modality = 'audio' "
            "AND task = 'categorical' AND model_key = ?",
            [model_key],
        ).fetchall()
    store = FeatureStore(partial(warehouse.connect, home, read_only=True), home / "features")
    normaliser = speaker_normaliser(store, ["demo"], key)
    keys = list(zip(rows["eval_set"], rows["utterance_id"], strict=True))
    frames = normaliser.apply(keys, frames_for(store, rows, key))
    assert json.loads(hyper)["speaker_norm"] == "speaker"
    assert read_checkpoint_config(path)["kind"] == "audio_logreg"
    assert normaliser.summary() == {"speakers": 6, "speaker_utterances": 144, "set_fallback": 0}
    recomputed = predict_audio(load_checkpoint(path, "cpu"), frames, "cpu")
    table = {utterance_id: np.asarray(values) for utterance_id, values in stored}
    np.testing.assert_allclose(np.stack([table[u] for u in rows["utterance_id"]]), recomputed, atol=1e-4)


def test_acceptance_rule_gate_and_lineage(demo_run) -> None:
    """The rule (label change at confidence >= 0.8) is applied to every judgment; the gate then withholds the
    accepted changes from the final labels because, on development, turning sad into fear broke more than it fixed."""
    home = demo_run[0]
    with warehouse.connect(home, read_only=True) as con:
        rows = con.execute("""
            SELECT j.fused_label, j.label, j.accepted, p.final_label, p.changed, p.judge_gate,
                   j.prompt_template_sha256, j.fusion_model_key, m.kind, u.audio_sha256
            FROM predictions p
            JOIN llm_judgments j ON j.custom_id = p.judgment_custom_id
            JOIN model_registry m ON m.model_key = j.fusion_model_key
            JOIN utterances u ON u.eval_set = p.eval_set AND u.utterance_id = p.utterance_id
        """).fetchall()
        right_to_wrong, wrong_to_right = con.execute("""
            SELECT count(*) FILTER (j.fused_label = u.emotion), count(*) FILTER (j.label = u.emotion)
            FROM llm_judgments j JOIN utterances u USING (eval_set, utterance_id)
            WHERE u.split = 'development' AND j.accepted
        """).fetchone()
        summary = warehouse.query_df(con, "judge/demo_judge_gate.sql", ["demo"])
        verdicts = con.execute("""
            SELECT fused_label, fused_probability, judge_label, judge_confidence, judge_rationale,
                   judge_accepted_by_rule, changed_by_judge, final_label
            FROM v_predictions WHERE judge_label IS NOT NULL
        """).fetchall()
    assert rows and right_to_wrong > wrong_to_right
    assert len(verdicts) == len(rows)
    for fused, probability, label, confidence, rationale, accepted, changed, final in verdicts:
        assert 0.125 <= probability <= 1.0 and rationale
        assert accepted == (fused == "sad")
        assert (label, confidence) == ("fear", 0.95) if fused == "sad" else label == fused
        assert not changed and final == fused
    assert summary.to_dict("records") == [
        {
            "judge_gate": "closed",
            "judged": len(rows),
            "accepted_by_rule": sum(r[0] == "sad" for r in rows),
            "applied": 0,
        }
    ]
    for fused, label, accepted, final, changed, gate, template_sha, _, kind, sha in rows:
        assert kind == "fusion" and len(template_sha) == 64 and len(sha) == 64
        assert accepted == (fused == "sad") and (label == "fear" if fused == "sad" else label == fused)
        assert gate == "closed" and final == fused and not changed


def test_refined_stage_and_judge_counts_in_metrics(demo_run) -> None:
    home = demo_run[0]
    with warehouse.connect(home, read_only=True) as con:
        stages = {r[0] for r in con.execute("SELECT DISTINCT stage FROM v_metrics").fetchall()}
        changed = con.execute("SELECT value FROM v_metrics WHERE split = 'all' AND metric = 'judge_changed'").fetchone()
        n_changed = con.execute("SELECT count(*) FROM predictions WHERE changed").fetchone()[0]
    assert stages == {"audio", "text", "fused", "refined"}
    assert changed[0] == n_changed


def test_asset_checks_ran_and_passed(demo_run) -> None:
    instance = cli.instance()
    records = instance.get_run_records()
    assert records and all(r.dagster_run.is_success for r in records)
    from dagster import AssetCheckKey, AssetKey

    key = AssetCheckKey(AssetKey("fused_predictions"), "fused_predictions_well_formed")
    evaluation = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
    assert evaluation.status.value == "SUCCEEDED"


DOCS_SQL = (Path(__file__).resolve().parents[1] / "sql" / "README.md").read_text()


def test_sql_docs_cover_every_table_and_view_and_their_queries_run(demo_run) -> None:
    home = demo_run[0]
    documented = set(re.findall(r"^### `(\w+)`", DOCS_SQL, flags=re.M))
    with warehouse.connect(home, read_only=True) as con:
        relations = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        assert relations and relations <= documented, relations - documented
        queries = re.findall(r"```sql\n(.*?)```", DOCS_SQL, flags=re.S)
        assert len(queries) > len(relations)
        for query in queries:
            con.execute(query.replace("'.emojudge/", f"'{home}/")).fetchall()


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda name: name.rsplit("/", 1)[-1])
def test_every_example_query_returns_rows(demo_run, example: str) -> None:
    home = demo_run[0]
    con = duckdb.connect(str(warehouse.warehouse_path(home)), read_only=True)
    try:
        assert con.execute(warehouse.sql_text(example)).fetchall(), example
    finally:
        con.close()


def test_bare_folder_set_gets_asr_transcripts_and_predictions(demo_run, ravdess_dir: Path, tmp_path: Path) -> None:
    """An unlabelled inbox scored by the models already trained: ASR fills transcripts, no training runs."""
    import csv
    import shutil

    from emojudge_models.asr.whisper import word_error_rate

    home, api = demo_run[0], demo_run[4]
    calls_before = len(api.chat_bodies)
    with open(ravdess_dir / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))[:3]
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for row in rows:
        shutil.copy(ravdess_dir / row["path"], inbox / Path(row["path"]).name)
    with warehouse.connect(home, read_only=True) as con:
        models_before = con.execute("SELECT count(*) FROM model_registry").fetchone()[0]
    cli.add_eval_set("inbox-test", inbox, None)
    cli.materialize("inbox-test")
    with warehouse.connect(home, read_only=True) as con:
        got = con.execute(
            "SELECT utterance_id, transcript, transcript_source, final_label, split FROM v_predictions "
            "WHERE eval_set = 'inbox-test' ORDER BY utterance_id"
        ).fetchall()
        models_after = con.execute("SELECT count(*) FROM model_registry").fetchone()[0]
        metrics = con.execute("SELECT count(*) FROM metrics WHERE eval_set = 'inbox-test'").fetchone()[0]
        gates = con.execute("SELECT DISTINCT judge_gate FROM predictions WHERE eval_set = 'inbox-test'").fetchall()
    assert gates == [("closed",)], "an unlabelled set inherits the gate from the demo's development judgments"
    assert len(api.chat_bodies) == calls_before, "a closed gate sends no judge request"
    assert models_after == models_before
    assert len(got) == 3 and metrics == 0
    expected = {Path(r["path"]).stem: r["transcript"] for r in rows}
    for utterance_id, transcript, source, final_label, split in got:
        assert source.startswith("asr:whisper-ct2-tiny.en")
        assert word_error_rate(expected[utterance_id], transcript) <= 0.2
        assert final_label is not None and split is None


def test_an_open_gate_applies_accepted_judgments(demo_run, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs last: rescoring with the gate off rewrites predictions; stored judgments are reused, and the test split,
    which the closed gate never sent, is asked now."""
    home, calls_before = demo_run[0], len(demo_run[4].chat_bodies)
    with warehouse.connect(home, read_only=True) as con:
        test_split = con.execute(
            "SELECT count(*) FROM utterances WHERE eval_set = 'demo' AND split = 'test'"
        ).fetchone()
    monkeypatch.setenv("EMOJUDGE_JUDGE_GATE", "off")
    cli.materialize("demo", train=False)
    with warehouse.connect(home, read_only=True) as con:
        rows = con.execute("""
            SELECT j.fused_label, j.accepted, p.final_label, p.changed, p.judge_gate
            FROM predictions p JOIN llm_judgments j ON j.custom_id = p.judgment_custom_id
            WHERE p.eval_set = 'demo'
        """).fetchall()
        changed = con.execute(
            "SELECT value FROM v_metrics WHERE eval_set = 'demo' AND split = 'all' AND metric = 'judge_changed'"
        ).fetchone()
    assert rows and {r[4] for r in rows} == {"off"}
    for fused, accepted, final, was_changed, _ in rows:
        assert (final, was_changed) == (("fear", True) if accepted else (fused, False))
    assert changed[0] == sum(r[3] for r in rows) > 0
    assert len(demo_run[4].chat_bodies) == calls_before + test_split[0]
