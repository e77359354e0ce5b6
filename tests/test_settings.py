"""The one settings object: defaults, parsing, one-line errors at load, resources and launchpad overrides."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import get_args

import dagster as dg
import pydantic
import pytest

from emojudge_models.settings import Settings, SettingsError, env_name, settings_table
from emojudge_pipeline.definitions import build_definitions
from emojudge_pipeline.resources import JudgeResource, ModelsResource, TrainingResource

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No EMOJUDGE_* variable set (the ones a developer may have exported), and a temporary home."""
    for name in list(os.environ):
        if name.startswith("EMOJUDGE_") or name == "DAGSTER_HOME":
            monkeypatch.delenv(name)
    monkeypatch.setenv("EMOJUDGE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.home == Path(".emojudge").resolve()
    assert settings.dagster_dir == Path(".emojudge").resolve() / "dagster"
    assert (settings.profile, settings.device, settings.batch_seconds) == ("local", "auto", None)
    assert (settings.decode_workers, settings.write_workers, settings.max_failed_share) == (None, None, 0.5)
    assert (settings.audio_encoder, settings.text_encoder, settings.text_training) == ("", "", None)
    assert (settings.pitch_tracker, settings.audio_pooling, settings.speaker_norm) == ("yin", "logreg", "speaker")
    assert (settings.head_lr, settings.max_epochs, settings.patience, settings.fusion_fit) == (1e-3, 40, 8, "train")
    assert (settings.asr, settings.train_sets, settings.max_duration_s, settings.demo_data) == (
        {},
        ["demo"],
        60.0,
        None,
    )
    assert (settings.judge, settings.judge_model, settings.judge_base_url) == (None, "", "")
    assert (settings.judge_threshold, settings.judge_temperature, settings.judge_scope) == (0.8, 0.3, "all")
    assert settings.judge_splits == ["development", "test", "unsplit"]
    assert (settings.log_level, settings.judge_gate, settings.judge_show_probability) == ("INFO", "development", False)


def test_every_documented_variable_is_a_setting() -> None:
    names = {env_name(field) for field in Settings.model_fields}
    expected = "HOME PROFILE AUDIO_ENCODER TEXT_ENCODER TEXT_TRAINING DEVICE BATCH_SECONDS DECODE_WORKERS "
    expected += "WRITE_WORKERS MAX_FAILED_SHARE PITCH_TRACKER AUDIO_POOLING "
    expected += "SPEAKER_NORM HEAD_LR MAX_EPOCHS PATIENCE FUSION_FIT ASR TRAIN_SETS MAX_DURATION_S DEMO_DATA JUDGE "
    expected += "JUDGE_MODEL JUDGE_BASE_URL JUDGE_THRESHOLD JUDGE_TEMPERATURE JUDGE_SCOPE JUDGE_SPLITS LOG_LEVEL "
    expected += "JUDGE_GATE JUDGE_SHOW_PROBABILITY INBOX INBOX_SETTLE_S MAX_EPISODE_S SEGMENT_MIN_S SEGMENT_MAX_S "
    expected += "TIMELINE_WINDOW_S "
    expected += "RESCORE_CRON INBOX_JUDGE_SCOPE JUDGE_EVIDENCE_MAX JUDGE_MAX_CALLS JUDGE_SLOTS EPISODE_CHANNELS "
    expected += "JUDGE_TIMEOUT_S SET_LANGUAGES SHUFFLE_BUFFER LOADER_WORKERS LLAMA_SERVER USE_DEMO_MODELS "
    expected += "SHIPPED_MODELS"
    expected += (
        " WAREHOUSE LAKE_CATALOG LAKE_DATA DAGSTER_POSTGRES EXECUTOR CELERY_BROKER CELERY_REDELIVERY_S JUDGE_JOURNAL"
    )
    assert names == {f"EMOJUDGE_{name}" for name in expected.split()} | {"DAGSTER_HOME"}
    assert "OPENAI_API_KEY" not in names


def test_inbox_settings_default_validate_and_mirror_the_episode_library(tmp_path: Path) -> None:
    from emojudge_models.episodes.decode import DEFAULT_MAX_EPISODE_S
    from emojudge_models.episodes.segment import DEFAULT_MAX_S, DEFAULT_MIN_S
    from emojudge_models.episodes.timeline import DEFAULT_WINDOW_S

    settings = Settings.from_env({"EMOJUDGE_HOME": str(tmp_path)})
    assert settings.inbox_dir == tmp_path / "inbox"
    assert (settings.max_episode_s, settings.segment_min_s, settings.segment_max_s) == (
        DEFAULT_MAX_EPISODE_S,
        DEFAULT_MIN_S,
        DEFAULT_MAX_S,
    )
    assert settings.timeline_window_s == DEFAULT_WINDOW_S
    assert (settings.rescore_cron, settings.inbox_judge_scope) == ("0 3 * * *", "disagreements")
    assert Settings.from_env({"EMOJUDGE_INBOX": str(tmp_path / "drop")}).inbox_dir == tmp_path / "drop"
    with pytest.raises(SettingsError, match=r"^EMOJUDGE_RESCORE_CRON: must be a cron expression"):
        Settings.from_env({"EMOJUDGE_RESCORE_CRON": "every night"})
    with pytest.raises(SettingsError, match=r"^EMOJUDGE_SEGMENT_MIN_S \(12\) must not exceed EMOJUDGE_SEGMENT_MAX_S"):
        Settings.from_env({"EMOJUDGE_SEGMENT_MIN_S": "12"})


def test_library_defaults_come_from_the_settings() -> None:
    from emojudge_models.features.extract import extract_audio_features
    from emojudge_models.ingest.audio import DEFAULT_MAX_DURATION_S
    from emojudge_models.judge import DEFAULT_THRESHOLD, JudgeConfig
    from emojudge_models.judge.requests import DEFAULT_TEMPERATURE
    from emojudge_models.models.training import TrainConfig
    from emojudge_models.prosody import DEFAULT_TRACKER

    settings = Settings()
    assert (TrainConfig().lr, TrainConfig().max_epochs, TrainConfig().patience) == (
        settings.head_lr,
        settings.max_epochs,
        settings.patience,
    )
    assert DEFAULT_THRESHOLD == JudgeConfig().threshold == settings.judge_threshold
    assert DEFAULT_TEMPERATURE == JudgeConfig().temperature == settings.judge_temperature
    assert inspect.signature(extract_audio_features).parameters["batch_seconds"].default == settings.batch_seconds
    assert settings.pitch_tracker == DEFAULT_TRACKER
    assert settings.max_duration_s == DEFAULT_MAX_DURATION_S


def test_choices_match_the_library() -> None:
    from emojudge_models.features.speaker_norm import MODES
    from emojudge_models.fusion.strategy import FIT_STRATEGIES
    from emojudge_models.judge.gate import GATE_MODES
    from emojudge_models.judge.requests import BACKENDS, Scope
    from emojudge_models.models.policy import AUDIO_HEADS, AUDIO_POLICIES
    from emojudge_models.profiles import PROFILES
    from emojudge_models.prosody import PITCH_TRACKERS

    fields = Settings.model_fields

    def choices(name: str) -> set[str]:
        return {arg for part in get_args(fields[name].annotation) for arg in (get_args(part) or (part,))} - {type(None)}

    assert choices("profile") == set(PROFILES)
    assert choices("pitch_tracker") == set(PITCH_TRACKERS)
    assert choices("speaker_norm") == set(MODES)
    assert choices("fusion_fit") == set(FIT_STRATEGIES)
    assert choices("judge_gate") == set(GATE_MODES)
    assert choices("judge") == set(BACKENDS)
    assert choices("judge_scope") == set(get_args(Scope))
    assert choices("audio_pooling") == set(AUDIO_POLICIES) | set(AUDIO_HEADS)


def test_environment_parsing(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "EMOJUDGE_HOME": str(tmp_path / "h"),
            "EMOJUDGE_TRAIN_SETS": " demo, msp ,",
            "EMOJUDGE_JUDGE_SPLITS": "test",
            "EMOJUDGE_ASR": '{"model": "openai/whisper-small", "beam_size": 5}',
            "EMOJUDGE_JUDGE_SHOW_PROBABILITY": "1",
            "EMOJUDGE_JUDGE_THRESHOLD": "0.65",
            "EMOJUDGE_HEAD_LR": "3e-4",
            "EMOJUDGE_MAX_EPOCHS": "4",
            "EMOJUDGE_LOG_LEVEL": "debug",
            "EMOJUDGE_JUDGE": "openai-chat",
            "EMOJUDGE_DEVICE": "cuda:1",
            "EMOJUDGE_TEXT_ENCODER": '{"kind": "hf", "model": "/models/roberta"}',
            "EMOJUDGE_AUDIO_ENCODER": "hf:microsoft/wavlm-base-plus@main",
            "EMOJUDGE_PROFILE": "  ",
        }
    )
    assert settings.home == tmp_path / "h" and settings.dagster_dir == tmp_path / "h" / "dagster"
    assert settings.train_sets == ["demo", "msp"] and settings.judge_splits == ["test"]
    assert settings.asr == {"model": "openai/whisper-small", "beam_size": 5}
    assert settings.judge_show_probability is True
    assert (settings.judge_threshold, settings.head_lr, settings.max_epochs) == (0.65, 3e-4, 4)
    assert (settings.log_level, settings.judge, settings.device) == ("DEBUG", "openai-chat", "cuda:1")
    assert settings.profile == "local", "a blank variable keeps the default"
    assert Settings.from_env({"EMOJUDGE_JUDGE_SHOW_PROBABILITY": "0"}).judge_show_probability is False
    assert Settings.from_env({"DAGSTER_HOME": str(tmp_path / "dg")}).dagster_dir == tmp_path / "dg"


@pytest.mark.parametrize(
    ("variable", "value", "cause"),
    [
        ("EMOJUDGE_JUDGE_THRESHOLD", "1.7", "must be between 0 and 1"),
        ("EMOJUDGE_JUDGE_THRESHOLD", "high", "must be a valid number"),
        ("EMOJUDGE_JUDGE_TEMPERATURE", "-1", "must be between 0 and 2"),
        ("EMOJUDGE_BATCH_SECONDS", "0", "must be greater than 0"),
        ("EMOJUDGE_MAX_EPOCHS", "0", "must be at least 1"),
        ("EMOJUDGE_PATIENCE", "2.5", "must be a valid integer"),
        ("EMOJUDGE_PITCH_TRACKER", "crepe", "must be 'yin' or 'pyin'"),
        ("EMOJUDGE_AUDIO_POOLING", "max", "'ensemble', 'auto', 'logreg', 'attentive', 'meanstd' or 'probe'"),
        ("EMOJUDGE_SPEAKER_NORM", "utterance", "must be 'speaker' or 'none'"),
        ("EMOJUDGE_JUDGE", "gpt", "must be 'local', 'openai-chat' or 'openai-batch'"),
        ("EMOJUDGE_PROFILE", "gpu", "must be 'local', 'paper' or 'acoustic'"),
        ("EMOJUDGE_ASR", "{beam_size: 5}", "not valid JSON"),
        ("EMOJUDGE_ASR", "[5]", "must be a JSON object"),
        ("EMOJUDGE_TRAIN_SETS", ",", "must name at least one evaluation set"),
        ("EMOJUDGE_JUDGE_SPLITS", "dev", "unknown split 'dev'"),
        ("EMOJUDGE_JUDGE_SHOW_PROBABILITY", "maybe", "must be a valid boolean"),
        ("EMOJUDGE_DEVICE", "gpu", "must be auto, cpu, mps, cuda or cuda:<index>"),
        ("EMOJUDGE_AUDIO_ENCODER", "wav2vec", "unknown audio encoder kind 'wav2vec'"),
        ("EMOJUDGE_TEXT_ENCODER", '{"kind": "hf"', "not valid JSON"),
        ("EMOJUDGE_LOG_LEVEL", "loud", "must be 'DEBUG', 'INFO'"),
        ("EMOJUDGE_RESCORE_CRON", "99 99 * * *", "minute '99' is not in 0-59"),
        ("EMOJUDGE_RESCORE_CRON", "0 0 31 2 *", "30 and 31 February never come"),
        ("EMOJUDGE_MAX_DURATION_S", "nan", "must be a finite number"),
        ("EMOJUDGE_MAX_DURATION_S", "inf", "must be a finite number"),
        ("EMOJUDGE_MAX_DURATION_S", "1e9", "must be at most 86400"),
        ("EMOJUDGE_JUDGE_TIMEOUT_S", "-inf", "must be a finite number"),
        ("EMOJUDGE_JUDGE_THRESHOLD", "nan", "must be between 0 and 1"),
        ("EMOJUDGE_JUDGE_SLOTS", "100000", "must be at most 256"),
        ("EMOJUDGE_LOADER_WORKERS", "1000", "must be at most 256"),
        ("EMOJUDGE_MAX_EPOCHS", "10000000", "must be at most 1e+06"),
        ("EMOJUDGE_HEAD_LR", "5", "must be at most 1"),
        ("EMOJUDGE_JUDGE_BASE_URL", "localhost:8000/v1", "must be a URL http://HOST... or https://HOST..."),
        ("EMOJUDGE_JUDGE_BASE_URL", "http://h:99999/v1", "not a URL (Port out of range"),
        ("EMOJUDGE_CELERY_BROKER", "http://h:6379/0", "must be a URL redis://HOST..."),
        ("EMOJUDGE_DAGSTER_POSTGRES", "sqlite:///x.db", "must be a URL postgresql://HOST..."),
        ("EMOJUDGE_HOME", "/etc/passwd", "is a file, not a folder"),
        ("EMOJUDGE_HOME", "/etc/passwd/home", "cannot be a folder: /etc/passwd is a file"),
        ("DAGSTER_HOME", "/dev/null", "is a device, not a folder"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(variable: str, value: str, cause: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({variable: value})
    message = str(raised.value)
    assert message.startswith(f"{variable}: ") and cause in message and message.endswith(f"got {value!r}")
    assert "\n" not in message


CRON_CASES = ["0 3 * * *", "*/5 * * * *", "0 9-17/2 * * mon-fri", "5/15 * * * *", "0 0 ? * *", "0 0 * jan,jul sun"]
CRON_CASES += ["22-2 * * * *", "99 99 * * *", "0 0 30 2 *", "0 0 * * 8", "0 24 * * *", "* * * *", "0 0 1 1 * 2024"]
CRON_CASES += ["0 0 * * */0", "a b c d e"]


@pytest.mark.parametrize("expression", CRON_CASES)
def test_the_cron_check_agrees_with_dagster(expression: str) -> None:
    """The settings refuse exactly the five-field expressions Dagster's schedules refuse (no Dagster import)."""
    from dagster._utils.schedules import is_valid_cron_string

    from emojudge_models.cron import CronError, check_cron

    try:
        check_cron(expression)
        accepted = True
    except CronError:
        accepted = False
    assert accepted == is_valid_cron_string(expression)


BAD_AT_START = [
    ({"EMOJUDGE_HOME": "/etc/passwd"}, "add", "error: EMOJUDGE_HOME: is a file, not a folder, got '/etc/passwd'"),
    ({"EMOJUDGE_HOME": "/proc/nope"}, "add", "error: EMOJUDGE_HOME: cannot create or write this folder ("),
    ({"EMOJUDGE_HOME": "/proc/nope"}, "materialize", "error: EMOJUDGE_HOME: cannot create or write this folder ("),
    ({"DAGSTER_HOME": "/dev/null"}, "add", "error: DAGSTER_HOME: is a device, not a folder, got '/dev/null'"),
    ({"EMOJUDGE_RESCORE_CRON": "99 99 * * *"}, "materialize", "error: EMOJUDGE_RESCORE_CRON: must be a cron"),
    ({"EMOJUDGE_MAX_DURATION_S": "nan"}, "add", "error: EMOJUDGE_MAX_DURATION_S: must be a finite number"),
    ({"EMOJUDGE_MAX_DURATION_S": "inf"}, "list", "error: EMOJUDGE_MAX_DURATION_S: must be a finite number"),
    ({"EMOJUDGE_JUDGE_SLOTS": "100000"}, "materialize", "error: EMOJUDGE_JUDGE_SLOTS: must be at most 256"),
    ({"EMOJUDGE_JUDGE_BASE_URL": "localhost:8000"}, "materialize", "error: EMOJUDGE_JUDGE_BASE_URL: must be a URL"),
]
COMMANDS = {
    "add": ["eval-set", "add", "x", "MANIFEST"],
    "materialize": ["materialize", "x"],
    "list": ["eval-set", "list"],
}


@pytest.mark.reliability
@pytest.mark.parametrize(("variables", "command", "expected"), BAD_AT_START)
def test_a_bad_setting_or_unusable_folder_is_one_line_and_exit_2(
    tmp_path: Path, variables: dict[str, str], command: str, expected: str
) -> None:
    """Each of these used to pass validation and fail later with a traceback (NotADirectoryError, three chained
    FileNotFoundErrors, FileExistsError, DagsterInvalidDefinitionError) or be obeyed (NaN disabled the length check)."""
    (tmp_path / "manifest.csv").write_text("path\na.wav\n")
    env = {name: value for name, value in os.environ.items() if not name.startswith("EMOJUDGE_")}
    env.pop("DAGSTER_HOME", None)
    env.update({"PYTHONPATH": str(README.parent), "EMOJUDGE_HOME": str(tmp_path / "home"), **variables})
    argv = [str(tmp_path / "manifest.csv") if arg == "MANIFEST" else arg for arg in COMMANDS[command]]
    done = subprocess.run(
        [sys.executable, "-m", "emojudge_pipeline.cli", *argv], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith(expected), done.stderr[-2000:]
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "home").exists() or "EMOJUDGE_HOME" not in variables, "nothing was created"


def test_a_bad_value_fails_when_the_definitions_load(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMOJUDGE_JUDGE_THRESHOLD", "1.7")
    with pytest.raises(SettingsError, match=re.escape("EMOJUDGE_JUDGE_THRESHOLD: must be between 0 and 1, got '1.7'")):
        build_definitions()


def test_the_cli_reports_a_bad_value_and_exits_2(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a fresh process: importing the command must not load the definitions before it can report the value."""
    monkeypatch.setenv("EMOJUDGE_MAX_EPOCHS", "many")
    done = subprocess.run(
        [sys.executable, "-m", "emojudge_pipeline.cli", "eval-set", "list"],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert (
        done.stderr
        == "error: EMOJUDGE_MAX_EPOCHS: must be a valid integer, unable to parse string as an integer, got 'many'\n"
    )
    assert not (clean_env / "emojudge.duckdb").exists(), "nothing ran"


def test_resources_carry_the_settings(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "EMOJUDGE_PROFILE": "paper",
        "EMOJUDGE_DEVICE": "cpu",
        "EMOJUDGE_BATCH_SECONDS": "250",
        "EMOJUDGE_JUDGE_THRESHOLD": "0.9",
        "EMOJUDGE_JUDGE_SPLITS": "test,unsplit",
        "EMOJUDGE_JUDGE_SHOW_PROBABILITY": "true",
        "EMOJUDGE_TRAIN_SETS": "demo,msp",
        "EMOJUDGE_AUDIO_POOLING": "auto",
        "EMOJUDGE_PATIENCE": "3",
        "EMOJUDGE_FUSION_FIT": "development",
        "EMOJUDGE_MAX_DURATION_S": "12.5",
        "EMOJUDGE_ASR": '{"beam_size": 2}',
        "EMOJUDGE_PITCH_TRACKER": "pyin",
    }.items():
        monkeypatch.setenv(name, value)
    resources = build_definitions().resources
    assert resources["warehouse_db"].home == str(clean_env)
    models = resources["models"]
    assert (models.profile, models.device, models.batch_seconds) == ("paper", "cpu", 250.0)
    judge = resources["judge"]
    assert judge.backend == "openai-batch", "no EMOJUDGE_JUDGE: the profile's judge"
    assert (judge.threshold, judge.judged_splits(), judge.show_probability) == (0.9, {"test", "unsplit"}, True)
    assert judge.model_cache == str(clean_env / "models" / "judge")
    training = resources["training"]
    assert (training.train_sets, training.audio_pooling, training.patience) == (["demo", "msp"], "auto", 3)
    assert (training.fusion_fit, training.head_lr, training.max_epochs) == ("development", 1e-3, 40)
    ingest = resources["ingest"]
    assert (ingest.max_duration_s, ingest.asr, ingest.pitch_tracker) == (12.5, {"beam_size": 2}, "pyin")


@dg.asset
def resource_probe(judge: JudgeResource, models: ModelsResource, training: TrainingResource) -> dg.MaterializeResult:
    """Reports what the assets of a run see of the resources."""
    return dg.MaterializeResult(
        metadata={
            "backend": judge.backend,
            "threshold": judge.threshold,
            "gate": judge.gate,
            "device": models.device,
            "max_epochs": training.max_epochs,
            "patience": training.patience,
        }
    )


def _seen(run_config: dict | None, settings: Settings) -> dict:
    defs = build_definitions(settings)
    result = dg.materialize([resource_probe], resources=defs.resources, run_config=run_config)
    return {
        key: value.value for key, value in result.asset_materializations_for_node("resource_probe")[0].metadata.items()
    }


def test_a_launchpad_override_reaches_the_asset(clean_env: Path) -> None:
    settings = Settings(home=clean_env, judge="local", judge_gate="off", device="cpu", patience=3)
    override = {
        "resources": {
            "judge": {"config": {"backend": "openai-chat", "threshold": 0.95}},
            "models": {"config": {"device": "cuda:0"}},
            "training": {"config": {"max_epochs": 5}},
        }
    }
    job = build_definitions(settings).resolve_implicit_global_asset_job_def()
    assert dg.validate_run_config(job, override)["resources"]["judge"]["config"]["threshold"] == 0.95
    assert _seen(None, settings) == {
        "backend": "local",
        "threshold": 0.8,
        "gate": "off",
        "device": "cpu",
        "max_epochs": 40,
        "patience": 3,
    }
    assert _seen(override, settings) == {
        "backend": "openai-chat",
        "threshold": 0.95,
        "gate": "off",
        "device": "cuda:0",
        "max_epochs": 5,
        "patience": 3,
    }, "fields the override leaves out keep the settings' values, not the class defaults"


def test_a_bad_override_is_validated_like_the_environment(clean_env: Path) -> None:
    defs = build_definitions(Settings(home=clean_env))
    bad = {"resources": {"judge": {"config": {"threshold": 1.7}}}}
    result = dg.materialize([resource_probe], resources=defs.resources, run_config=bad, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "RESOURCE_INIT_FAILURE")
    assert "must be between 0 and 1" in failure.event_specific_data.error.to_string()
    with pytest.raises(pydantic.ValidationError, match="must be at least 1"):
        TrainingResource(max_epochs=0)
    with pytest.raises(pydantic.ValidationError, match="must be between 0 and 1"):
        JudgeResource(backend="local", threshold=1.7)


def test_readme_table_matches_the_settings() -> None:
    text = README.read_text()
    found = re.search(r"<!-- settings-table:start -->\n(.*?)<!-- settings-table:end -->", text, re.S)
    assert found, "README.md lacks the settings-table markers"
    assert found.group(1) == settings_table(), "README settings table is stale: paste settings_table() between markers"


def test_resources_take_each_setting_from_one_declaration() -> None:
    """A resource field declared with ``setting(name)`` gets its value from the settings without a second spelling:
    non-default settings reach the resources, and resources.py never reads ``settings.<name>`` for such a field."""
    from emojudge_pipeline import resources

    settings = Settings.from_env(
        {
            "EMOJUDGE_JUDGE_SLOTS": "3",
            "EMOJUDGE_TRAIN_SETS": "a,b",
            "EMOJUDGE_SEGMENT_MIN_S": "2.0",
            "EMOJUDGE_JUDGE_TIMEOUT_S": "7",
            "EMOJUDGE_TIMELINE_WINDOW_S": "12",
            "EMOJUDGE_DEVICE": "cpu",
        }
    )
    built = resources.default_resources(settings)
    assert (built["judge"].slots, built["judge"].timeout_s, built["training"].train_sets) == (3, 7.0, ["a", "b"])
    assert (built["ingest"].segment_min_s, built["inbox"].timeline_window_s, built["models"].device) == (
        2.0,
        12.0,
        "cpu",
    )
    declared = {
        field.json_schema_extra[resources.SETTING_KEY]
        for resource in built.values()
        for field in type(resource).model_fields.values()
        if isinstance(field.json_schema_extra, dict) and resources.SETTING_KEY in field.json_schema_extra
    }
    assert len(declared) >= 30
    source = Path(resources.__file__).read_text()
    assigned = {name for name in declared if re.search(rf"\b\w+=(\w+\()?settings\.{name}\)?,", source)}
    assert sorted(assigned) == []
