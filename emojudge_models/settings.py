"""Every setting in one typed object: one default, one description and one validation per setting.

:meth:`Settings.from_env` reads each field from ``EMOJUDGE_<FIELD>`` (``DAGSTER_HOME`` for ``dagster_home``); an unset
or empty variable keeps the default. A bad value raises :class:`SettingsError` with one line naming the variable and
the cause. The pipeline validates once, when its definitions load and at CLI start, and builds its resources from
the result, so a run's judge, threshold or device can still be overridden in the Dagster launchpad (the resources
use the same field types, so an override is validated the same way).

``OPENAI_API_KEY`` is deliberately not a setting: only the judge client reads it, from the environment, and it is
never stored.

Library defaults that mirror a setting (``TrainConfig``, the judge's ``DEFAULT_THRESHOLD``, ``batch_seconds``, the
pitch tracker) take it from here through :func:`default`.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from emojudge_models.cron import CronError, check_cron
from emojudge_models.folders import not_a_folder, unwritable
from emojudge_models.home import HOME_FOLDER, HomeLayout, default_home

ENV_PREFIX = "EMOJUDGE_"
FOLDERS = ("home", "dagster_home", "inbox", "lake_data")
"""Path settings that name folders: refused when they are a file or a device (:func:`folders.not_a_folder`)."""


class SettingsError(ValueError):
    """A bad setting, in one line: ``EMOJUDGE_X: cause, got 'value'``."""


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


def _at_most(limit: float) -> AfterValidator:
    """An upper bound, so a typo (100000 slots, a duration in milliseconds) is refused rather than obeyed."""

    def check(value: float) -> float:
        if value > limit:
            raise ValueError(f"must be at most {limit:g}")
        return value

    return AfterValidator(check)


def _unit_interval(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be between 0 and 1")
    return value


def _temperature(value: float) -> float:
    if not 0.0 <= value <= 2.0:
        raise ValueError("must be between 0 and 2")
    return value


def _at_least_one(value: int) -> int:
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _non_negative(value: int) -> int:
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _cron(value: str) -> str:
    try:
        check_cron(value)
    except CronError as error:
        raise ValueError(f"must be a cron expression such as '0 3 * * *' ({error})") from None
    return value


def _url(*schemes: str) -> Callable[[str], str]:
    """An empty value (unset) or a URL with one of ``schemes`` and a host."""

    def check(value: str) -> str:
        if not value:
            return value
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 (parsing the port is the check: 'host:port' with a bad port raises)
        except ValueError as error:
            raise ValueError(f"not a URL ({error})") from None
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"must be a URL {' or '.join(s + '://HOST...' for s in schemes)}")
        return value

    return check


MAX_SECONDS = 86_400.0
"""Upper bound of every duration, deadline and window setting: one day."""
MAX_WORKERS = 256
"""Upper bound of every thread, process and slot count."""
MAX_COUNT = 1_000_000
"""Upper bound of the other counts (epochs, buffers, calls, evidence)."""
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def _device(value: str) -> str:
    if not DEVICE_PATTERN.fullmatch(value):
        raise ValueError("must be auto, cpu, mps, cuda or cuda:<index>")
    return value


def _names(value: list[str]) -> list[str]:
    names = [name.strip() for name in value if name.strip()]
    if not names:
        raise ValueError("must name at least one evaluation set")
    return names


JUDGE_SPLIT_NAMES = ("train", "development", "test", "unsplit")


def _judge_splits(value: list[str]) -> list[str]:
    names = _names(value)
    unknown = [name for name in names if name not in JUDGE_SPLIT_NAMES]
    if unknown:
        raise ValueError(f"unknown split {unknown[0]!r}; expected some of {', '.join(JUDGE_SPLIT_NAMES)}")
    return names


Seconds = Annotated[float, AfterValidator(_finite), AfterValidator(_positive), _at_most(MAX_SECONDS)]
LearningRate = Annotated[float, AfterValidator(_finite), AfterValidator(_positive), _at_most(1.0)]
UnitInterval = Annotated[float, AfterValidator(_unit_interval)]
Temperature = Annotated[float, AfterValidator(_temperature)]
AtLeastOne = Annotated[int, AfterValidator(_at_least_one), _at_most(MAX_COUNT)]
Workers = Annotated[int, AfterValidator(_at_least_one), _at_most(MAX_WORKERS)]
NonNegativeWorkers = Annotated[int, AfterValidator(_non_negative), _at_most(MAX_WORKERS)]
CronExpression = Annotated[str, AfterValidator(_cron)]
HttpUrl = Annotated[str, AfterValidator(_url("http", "https"))]
BrokerUrl = Annotated[str, AfterValidator(_url("redis", "rediss"))]
PostgresUrl = Annotated[str, AfterValidator(_url("postgresql", "postgresql+psycopg2", "postgres"))]
Device = Annotated[str, AfterValidator(_device)]
SetNames = Annotated[list[str], AfterValidator(_names)]
JudgeSplits = Annotated[list[str], AfterValidator(_judge_splits)]
ProfileName = Literal["local", "paper", "acoustic"]
TextTraining = Literal["head", "finetune"]
PitchTracker = Literal["yin", "pyin"]
AudioPooling = Literal["ensemble", "auto", "logreg", "attentive", "meanstd", "probe"]
SpeakerNorm = Literal["speaker", "none"]
FusionFit = Literal["train", "development"]
JudgeBackend = Literal["local", "openai-chat", "openai-batch"]
JudgeScope = Literal["all", "disagreements"]
JudgeGate = Literal["development", "per_change", "off"]
EpisodeChannels = Literal["mix", "split"]
WarehouseKind = Literal["duckdb", "ducklake"]
Executor = Literal["local", "celery"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
"""Field types shared with the pipeline's resources, so a launchpad override is validated like the environment."""


def _setting(default: Any, meaning: str, shown: str | None = None, env: str | None = None) -> Any:
    """A settings field: its one default and its meaning; ``shown`` replaces the default in the table."""
    extra = {key: value for key, value in (("shown", shown), ("env", env)) if value is not None}
    return Field(default, description=meaning, json_schema_extra=extra or None)


class Settings(BaseModel):
    """Every EMOJUDGE_* setting, validated; build it with :meth:`from_env` (or keywords, in tests)."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    home: Path = _setting(
        Path(HOME_FOLDER),
        "warehouse (emojudge.duckdb), features/, models/, dagster/; the same from any folder (emojudge_models/home.py)",
        "the checkout's .emojudge, else ~/.local/share/emojudge",
    )
    dagster_home: Path | None = _setting(
        None, "Dagster's instance folder, shared by the CLI and `dagster dev`", "$EMOJUDGE_HOME/dagster", "DAGSTER_HOME"
    )
    profile: ProfileName = _setting("local", "local, paper or acoustic (see emojudge_models/profiles.py)")
    audio_encoder: str = _setting(
        "", 'whisper-ct2, acoustic, hf:<model id or path>[@revision], or JSON {"kind": ...}', "profile's"
    )
    text_encoder: str = _setting("", 'minilm, hf:<model id or path>[@revision], or JSON {"kind": ...}', "profile's")
    text_training: TextTraining | None = _setting(
        None, "head (a head on cached text vectors, CPU) or finetune (the whole text encoder)", "profile's"
    )
    device: Device = _setting("auto", "auto (cuda when available), cpu, cuda, cuda:1 ...")
    batch_seconds: Seconds | None = _setting(
        None,
        "padded audio per encoder forward pass; unset: 100 on CPU, from free memory on CUDA (up to 1000); "
        "halved after an out-of-memory",
        "by device",
    )
    decode_workers: Workers | None = _setting(
        None, "audio decoding threads of feature extraction; unset: 2 on CPU, 4 on CUDA", "by device"
    )
    write_workers: Workers | None = _setting(
        None, "feature shard writing threads of feature extraction; unset: 1 on CPU, 12 on CUDA", "by device"
    )
    max_failed_share: UnitInterval = _setting(
        0.5, "audio_features fails when more than this share of a partition's clips fail (always when all do)"
    )
    pitch_tracker: PitchTracker = _setting("yin", "prosody pitch tracker: yin (fast) or pyin (the paper's, slow)")
    audio_pooling: AudioPooling = _setting(
        "logreg",
        "logreg (logistic regression on mean+std, C on dev), ensemble (mean of the meanstd and probe heads), "
        "auto (best on dev of the three heads), attentive, meanstd or probe",
    )
    speaker_norm: SpeakerNorm = _setting(
        "speaker", "speaker (z-normalise frames per speaker, see speaker_norm.py) or none"
    )
    head_lr: LearningRate = _setting(1e-3, "learning rate of the heads trained on cached features", "1e-3")
    max_epochs: AtLeastOne = _setting(40, "head training length in epochs")
    patience: AtLeastOne = _setting(8, "early-stopping patience of head training, in epochs")
    shuffle_buffer: AtLeastOne = _setting(
        1024, "utterances in head training's shuffle buffer (frames stream from the store; bounds training memory)"
    )
    loader_workers: NonNegativeWorkers = _setting(
        2, "processes reading feature shards for head training (0: read in the training process)"
    )
    fusion_fit: FusionFit = _setting(
        "train", "fusion fitted on train logits with C chosen on development, or development (halves)"
    )
    asr: dict[str, Any] = _setting(
        {},
        'ASR options as JSON ({"model": path or HF id, "beam_size": 5, "workers": 0, "pad_s": 5, ...}); default '
        "Whisper tiny.en, on CPU one single-thread worker per core (workers 0), a short segment's window its length "
        "+ 5 s (pad_s; null: 15-s windows), batches of up to 8 windows and 45 s (batch_size, batch_window_s); on "
        'EMOJUDGE_DEVICE unless it sets "device"',
    )
    set_languages: dict[str, str] = _setting(
        {}, 'language of sets whose manifest has no language column, JSON ({"emodb": "de"}); not the ASR\'s: no text'
    )
    train_sets: SetNames = _setting(
        ["demo"], "comma-separated evaluation sets whose train/development splits train the models"
    )
    max_duration_s: Seconds = _setting(60.0, "clips longer than this are rejected at ingest")
    demo_data: Path | None = _setting(
        None, "a manifest.csv the demo ingests instead of the synthetic corpus", "(generated)"
    )
    use_demo_models: bool = _setting(
        False,
        "1 lets models trained on the synthetic demo corpus score other sets; 0: those get user-trained models, "
        "else the shipped real-speech ones (emojudge_models/models/selection.py)",
        "0",
    )
    shipped_models: Path | None = _setting(
        None,
        "a folder of pretrained audio models that score sets nobody trained models for, in place of the package's "
        "(one checkpoint folder each, as bench/train_shipped_model.py --out writes)",
        "emojudge_models/models/shipped",
    )
    judge: JudgeBackend | None = _setting(None, "local, openai-chat or openai-batch", "profile's")
    judge_model: str = _setting("", "judge model id", "backend's")
    judge_base_url: HttpUrl = _setting("", "endpoint for openai-chat / openai-batch", "(OpenAI)")
    judge_threshold: UnitInterval = _setting(0.8, "the judge may change a label only at or above this confidence")
    judge_temperature: Temperature = _setting(0.3, "sampling temperature of the judge")
    judge_scope: JudgeScope = _setting(
        "all", "all predictions in the judged splits, or only disagreements between audio and text"
    )
    judge_splits: JudgeSplits = _setting(
        ["development", "test", "unsplit"], "splits the judge sees (unsplit: sets without splits)"
    )
    log_level: LogLevel = _setting("INFO", "console log level of `emojudge materialize` runs")
    judge_gate: JudgeGate = _setting(
        "development",
        "development: apply the judge only if it did no net harm on development; per_change: only the kinds of "
        "change that did (judge/gate.py); off",
    )
    judge_evidence_max: AtLeastOne = _setting(
        200, "labelled development judgments the gate gathers per judge model, template and threshold"
    )
    judge_max_calls: AtLeastOne | None = _setting(
        None, "judge requests one run may send; the rest keep their fused labels (judge_gate = capped)", "no cap"
    )
    judge_slots: Workers = _setting(
        2,
        "local judge: requests answered concurrently: llama.cpp servers, CPU threads split among them, or the "
        "parallel slots of one EMOJUDGE_LLAMA_SERVER (bench/RESULTS.md)",
    )
    judge_timeout_s: Seconds = _setting(
        120.0, "total deadline of one judge request attempt (connect, send and the whole answer); retried after"
    )
    judge_journal: str = _setting(
        "",
        "where the judge's per-prompt claims and paid answers are kept: a PostgreSQL connection string (one journal "
        "for every host of a cluster); unset: the lake's catalog database when EMOJUDGE_WAREHOUSE=ducklake, else "
        "$EMOJUDGE_HOME/judge/journal.sqlite",
        "(unset)",
    )
    llama_server: Path | None = _setting(
        None,
        "local judge: a llama.cpp llama-server binary (make llama-server) run as one process with EMOJUDGE_JUDGE_SLOTS "
        "parallel slots; unset: llama-cpp-python's server, one process per slot",
        "(unset)",
    )
    judge_show_probability: bool = _setting(
        False, "1 shows the judge the fused probability (small judges echo it as confidence)", "0"
    )
    inbox: Path | None = _setting(
        None, "podcast inbox: audio dropped here is scored by the inbox sensor", "$EMOJUDGE_HOME/inbox"
    )
    inbox_settle_s: Seconds = _setting(
        10.0,
        "a file enters the inbox (sensor or inbox add) once its size and mtime held still this long "
        "(episodes/admission.py)",
    )
    max_episode_s: Seconds = _setting(14400.0, "inbox episodes longer than this are rejected")
    segment_min_s: Seconds = _setting(2.75, "episode segments shorter than this are merged with a neighbour")
    segment_max_s: Seconds = _setting(11.0, "episode segments longer than this are split at a pause")
    timeline_window_s: Seconds = _setting(30.0, "time window of the per-episode emotion timeline")
    rescore_cron: CronExpression = _setting(
        "0 3 * * *", "cron schedule that rescores episodes scored by an older model"
    )
    inbox_judge_scope: JudgeScope = _setting(
        "disagreements", "judge scope for inbox episodes (a cost guard): all or disagreements"
    )
    episode_channels: EpisodeChannels = _setting(
        "mix", "mix (channels averaged, speakers by voice) or split (each channel of a stereo episode its own speaker)"
    )
    # The cluster deployment (docs/scale-out.md): these select it; the defaults are one machine.
    warehouse: WarehouseKind = _setting(
        "duckdb",
        "duckdb (one file with a readers' snapshot) or ducklake (the cluster's: PostgreSQL catalog, Parquet data; "
        "store/lake.py)",
    )
    lake_catalog: str = _setting(
        "",
        "ducklake: libpq connection string of its PostgreSQL catalog (dbname=... host=... user=...; password from "
        "PGPASSWORD or ~/.pgpass)",
        "(unset)",
    )
    lake_data: Path | None = _setting(
        None, "ducklake: the shared root (local or NFS path) of its Parquet data", "$EMOJUDGE_HOME/lake"
    )
    dagster_postgres: PostgresUrl = _setting(
        "",
        "PostgreSQL URL of Dagster's run, event and schedule storage (postgresql+psycopg2://user@host:port/db); "
        "unset: SQLite files in DAGSTER_HOME",
        "(unset)",
    )
    executor: Executor = _setting(
        "local", "where Dagster runs steps: local (in or beside the run's process) or celery (the cluster's workers)"
    )
    celery_broker: BrokerUrl = _setting(
        "redis://127.0.0.1:6379/0", "celery executor: broker and result backend URL (Redis)"
    )
    celery_redelivery_s: AtLeastOne = _setting(
        900,
        "celery executor: seconds after which the step of a worker that died is given to another worker; must "
        "exceed the longest step",
    )

    @field_validator("home", "dagster_home", "demo_data", "inbox", "llama_server", "lake_data", "shipped_models")
    @classmethod
    def _absolute(cls, value: Path | None, info) -> Path | None:
        if value is None:
            return None
        value = value.expanduser().resolve()
        if info.field_name in FOLDERS and (cause := not_a_folder(value)):
            raise ValueError(cause)
        if info.field_name == "shipped_models" and not value.is_dir():
            raise ValueError("no such folder")
        return value

    @field_validator("audio_encoder", "text_encoder")
    @classmethod
    def _encoder_spec(cls, value: str, info) -> str:
        if value:
            _check_encoder_spec(value, "audio" if info.field_name == "audio_encoder" else "text")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _lake_needs_a_catalog(self) -> Settings:
        if self.warehouse == "ducklake" and not self.lake_catalog:
            raise ValueError("EMOJUDGE_LAKE_CATALOG: must be set when EMOJUDGE_WAREHOUSE=ducklake, got ''")
        return self

    @model_validator(mode="after")
    def _segment_range(self) -> Settings:
        if self.segment_min_s > self.segment_max_s:
            raise ValueError(
                f"EMOJUDGE_SEGMENT_MIN_S ({self.segment_min_s:g}) must not exceed "
                f"EMOJUDGE_SEGMENT_MAX_S ({self.segment_max_s:g})"
            )
        return self

    def check_writable(self) -> None:
        """Create the home and Dagster's instance folder when missing and check that each takes a file, for the
        commands that write (a read creates nothing); :class:`SettingsError` names the variable, path and cause."""
        for field, path in (("home", self.home), ("dagster_home", self.dagster_dir)):
            if cause := unwritable(path):
                raise SettingsError(f"{env_name(field)}: {cause}, got {str(path)!r}")

    @property
    def inbox_dir(self) -> Path:
        """EMOJUDGE_INBOX, defaulting to $EMOJUDGE_HOME/inbox."""
        return self.inbox or HomeLayout(self.home).inbox

    @property
    def dagster_dir(self) -> Path:
        """DAGSTER_HOME, defaulting to $EMOJUDGE_HOME/dagster so the CLI and the UI share runs and partitions."""
        return self.dagster_home or HomeLayout(self.home).dagster

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings in ``environ`` (default ``os.environ``); raises :class:`SettingsError` on a bad value."""
        environ = os.environ if environ is None else environ
        raw: dict[str, str] = {}
        values: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            value = environ.get(env_name(name), "").strip()
            if not value:
                continue
            raw[name] = value
            try:
                values[name] = _parse(value, field.annotation)
            except ValueError as error:
                raise SettingsError(f"{env_name(name)}: {error}, got {value!r}") from None
        values.setdefault("home", default_home(environ=environ))
        return cls.validated(values, raw)

    @classmethod
    def validated(cls, values: Mapping[str, Any], raw: Mapping[str, str] | None = None) -> Settings:
        """``Settings(**values)`` with a one-line :class:`SettingsError` (``raw``: the strings they came from)."""
        try:
            return cls(**values)
        except ValidationError as error:
            raise SettingsError(_one_line(error, raw or {})) from None


def env_name(field: str) -> str:
    """The environment variable of a settings field: ``EMOJUDGE_<FIELD>`` (or the field's own, DAGSTER_HOME)."""
    extra = Settings.model_fields[field].json_schema_extra
    if isinstance(extra, dict) and "env" in extra:
        return str(extra["env"])
    return ENV_PREFIX + field.upper()


def default(field: str) -> Any:
    """The one default of a setting, for library code that mirrors it (``TrainConfig``, ``DEFAULT_THRESHOLD``)."""
    return Settings.model_fields[field].default


def describe(field: str) -> str:
    """The meaning of a setting, for resource fields that carry it into the launchpad."""
    return Settings.model_fields[field].description or ""


def _check_encoder_spec(value: str, modality: str) -> None:
    from emojudge_models.encoders.factory import AUDIO_KINDS, TEXT_KINDS
    from emojudge_models.profiles import parse_spec

    try:
        spec = parse_spec(value)
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON ({error.msg})") from None
    if not isinstance(spec, dict):
        raise ValueError('must be kind[:model[@revision]] or a JSON object {"kind": ...}')
    kinds = AUDIO_KINDS if modality == "audio" else TEXT_KINDS
    if spec.get("kind") not in kinds:
        raise ValueError(f"unknown {modality} encoder kind {spec.get('kind')!r}; expected one of {', '.join(kinds)}")


def _parse(value: str, annotation: Any) -> Any:
    """An environment string as the field's type: comma lists, JSON objects; pydantic converts the rest."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) is list:
        return [item.strip() for item in value.split(",")]
    if get_origin(annotation) is dict:
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"not valid JSON ({error.msg})") from None
        if not isinstance(parsed, dict):
            raise ValueError("must be a JSON object")
        return parsed
    return value


def _one_line(error: ValidationError, raw: Mapping[str, str]) -> str:
    """``VARIABLE: cause, got 'value'`` for each failing setting, joined on one line."""
    parts: dict[str, str] = {}
    for problem in error.errors():
        field = str(problem["loc"][0]) if problem["loc"] else ""
        if field in parts:
            continue
        cause = problem["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
        if not field:
            parts[field] = cause
            continue
        got = raw.get(field, problem.get("input"))
        label = env_name(field) if field in Settings.model_fields else field or "settings"
        parts[field] = f"{label}: {cause}, got {got!r}"
    return "; ".join(parts.values())


def _shown_default(field: str) -> str:
    info = Settings.model_fields[field]
    extra = info.json_schema_extra
    if isinstance(extra, dict) and "shown" in extra:
        return str(extra["shown"])
    value = info.default
    if isinstance(value, list):
        return ",".join(value)
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def settings_table() -> str:
    """The markdown table of every setting (variable, default, meaning), as the README shows it."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for field in Settings.model_fields:
        lines.append(f"| {env_name(field)} | {_shown_default(field)} | {describe(field)} |")
    lines.append("| OPENAI_API_KEY | - | not a setting: read by the judge client from the environment, never stored |")
    return "\n".join(lines) + "\n"
