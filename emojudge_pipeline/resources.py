"""Dagster resources, built from the validated settings (emojudge_models/settings.py).

Each field a setting backs takes its default and description from there and shares its type, so a run's judge,
threshold or device overridden in the launchpad is validated like the environment. Assets read settings only
through these resources.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import duckdb
from pydantic import Field, create_model

from emojudge_models.encoders.base import AudioEncoder, TextEncoder
from emojudge_models.home import HomeLayout
from emojudge_models.loaded_models import kept_loaded
from emojudge_models.profiles import Profile, resolve
from emojudge_models.settings import (
    AtLeastOne,
    AudioPooling,
    Device,
    EpisodeChannels,
    FusionFit,
    JudgeBackend,
    JudgeGate,
    JudgeScope,
    JudgeSplits,
    LearningRate,
    NonNegativeWorkers,
    PitchTracker,
    ProfileName,
    Seconds,
    SetNames,
    Settings,
    SpeakerNorm,
    Temperature,
    UnitInterval,
    Workers,
    default,
    describe,
)
from emojudge_models.store import warehouse

SETTING_KEY = "emojudge_setting"


def setting(name: str) -> Any:
    """A resource field backed by setting ``name``: its default and description, shown in the launchpad, and its
    value taken from the settings by :func:`from_settings` (the one place a setting is named)."""
    return Field(default(name), description=describe(name), json_schema_extra={SETTING_KEY: name})


Resource = TypeVar("Resource", bound=dg.ConfigurableResource)


def _config_value(value: Any) -> Any:
    """A setting's value as resource config: paths as strings, lists and mappings as plain ones."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


def from_settings(cls: type[Resource], settings: Settings, **values: Any) -> Resource:
    """``cls`` :func:`configured` with every field declared by :func:`setting` taken from ``settings``, plus
    ``values`` for the fields that are not one setting (derived paths, a profile's choice)."""
    for name, field in cls.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if SETTING_KEY in extra and name not in values:
            values[name] = _config_value(getattr(settings, extra[SETTING_KEY]))
    return configured(cls, **values)


def configured(cls: type[Resource], **values: Any) -> Resource:
    """``cls(**values)``, from a subclass whose field defaults are ``values`` too.

    For the fields a run config leaves out, Dagster falls back to the class defaults, not to the values given in
    code (dagster-io/dagster#12898): with these defaults, a launchpad override of the threshold alone keeps every
    other field as the environment set it.
    """
    fields = cls.model_fields
    overrides: dict[str, Any] = {
        name: (
            fields[name].rebuild_annotation(),
            Field(value, description=fields[name].description, json_schema_extra=fields[name].json_schema_extra),
        )
        for name, value in values.items()
    }
    subclass = create_model(cls.__name__, __base__=cls, __module__=cls.__module__, __doc__=cls.__doc__, **overrides)
    return subclass(**values)


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse at ``$EMOJUDGE_HOME/emojudge.duckdb`` and the Parquet features beside it."""

    home: str = Field(description=describe("home"), json_schema_extra={SETTING_KEY: "home"})

    @property
    def home_path(self) -> Path:
        return Path(self.home)

    @property
    def layout(self) -> HomeLayout:
        return HomeLayout(self.home_path)

    @property
    def path(self) -> Path:
        return warehouse.warehouse_path(self.home_path)

    @property
    def features_root(self) -> Path:
        return self.layout.features

    @property
    def models_root(self) -> Path:
        return self.layout.models

    @contextmanager
    def connect(self, read_only: bool = False, publish: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        with warehouse.connect(self.home_path, read_only=read_only, publish=publish) as con:
            yield con

    def eval_set(self, name: str) -> dict:
        """The registered evaluation set ``name``; a clear error when it was never added."""
        with self.connect() as con:
            found = con.execute(warehouse.sql_text("ingest/eval_set.sql"), [name]).df()
        if found.empty:
            raise dg.Failure(f"evaluation set {name!r} is not registered: run `emojudge eval-set add {name} PATH`")
        return found.iloc[0].to_dict()


def default_warehouse(settings: Settings) -> WarehouseResource:
    return from_settings(WarehouseResource, settings)


class ModelsResource(dg.ConfigurableResource):
    """Which encoders and training modes to use (a profile plus overrides), and on which device.

    Encoders are built once per process and reused by every asset of a run.
    """

    profile: ProfileName = setting("profile")
    audio_encoder: str = setting("audio_encoder")
    text_encoder: str = setting("text_encoder")
    text_training: str = Field("", description=describe("text_training") + "; empty: the profile's")
    device: Device = setting("device")
    batch_seconds: Seconds | None = setting("batch_seconds")
    decode_workers: Workers | None = setting("decode_workers")
    write_workers: Workers | None = setting("write_workers")
    max_failed_share: UnitInterval = setting("max_failed_share")
    use_demo_models: bool = setting("use_demo_models")
    shipped_models: str = Field("", description=describe("shipped_models"))
    seed: int = 13

    @property
    def shipped_root(self) -> Path:
        """Where the shipped models that may score a set are: EMOJUDGE_SHIPPED_MODELS, else the package's."""
        from emojudge_models.models.shipped import SHIPPED_ROOT

        return Path(self.shipped_models) if self.shipped_models else SHIPPED_ROOT

    def resolved(self) -> Profile:
        return resolve(self.profile, self.audio_encoder, self.text_encoder, self.text_training)

    def torch_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def build_audio_encoder(self) -> AudioEncoder:
        return _cached_audio_encoder(_freeze(self.resolved().audio_encoder_config), self.torch_device())

    def build_text_encoder(self) -> TextEncoder:
        return _cached_text_encoder(_freeze(self.resolved().text_encoder), self.torch_device())


def _freeze(config: dict) -> str:
    return json.dumps(config, sort_keys=True)


@kept_loaded(maxsize=2)
def _cached_audio_encoder(config_json: str, device: str) -> AudioEncoder:
    from emojudge_models.encoders.factory import build_audio_encoder

    return build_audio_encoder(json.loads(config_json), device=device)


@kept_loaded(maxsize=2)
def _cached_text_encoder(config_json: str, device: str) -> TextEncoder:
    from emojudge_models.encoders.factory import build_text_encoder

    return build_text_encoder(json.loads(config_json), device=device)


def default_models(settings: Settings) -> ModelsResource:
    return from_settings(
        ModelsResource,
        settings,
        text_training=settings.text_training or "",
        shipped_models=str(settings.shipped_models or ""),
    )


class JudgeResource(dg.ConfigurableResource):
    """The LLM judge: backend (local | openai-chat | openai-batch), model, sampling, threshold, scope and gate.

    For ``local`` the resource starts ``slots`` Gemma 3 270M llama.cpp servers on 127.0.0.1 at free ports (or, with
    ``llama_server``, one llama-server with ``slots`` parallel slots) for the duration of :meth:`session` (requests
    go to them concurrently) and always stops them afterwards.
    """

    backend: JudgeBackend = Field(description=describe("judge"))
    model: str = setting("judge_model")
    base_url: str = setting("judge_base_url")
    threshold: UnitInterval = setting("judge_threshold")
    temperature: Temperature = setting("judge_temperature")
    scope: JudgeScope = setting("judge_scope")
    episode_scope: JudgeScope = setting("inbox_judge_scope")
    splits: JudgeSplits = setting("judge_splits")
    show_probability: bool = setting("judge_show_probability")
    gate: JudgeGate = setting("judge_gate")
    evidence_max: AtLeastOne = setting("judge_evidence_max")
    max_calls: AtLeastOne | None = setting("judge_max_calls")
    slots: Workers = setting("judge_slots")
    timeout_s: Seconds = setting("judge_timeout_s")
    llama_server: str = Field("", description=describe("llama_server"))
    journal: str = Field("", description=describe("judge_journal") + " (here: empty for the home's SQLite file)")
    max_workers: int = 4
    poll_interval_s: float = 30.0
    max_wait_s: float = 26 * 3600.0
    model_cache: str = ""
    log_dir: str = ""

    def config(self):
        from emojudge_models.judge import JudgeConfig, ResponseFormat

        # llama-server gets the answer's grammar itself: its conversion of the JSON schema bounds no number
        grammar = ResponseFormat.GRAMMAR if self.backend == "local" and self.llama_server else None
        return JudgeConfig.for_backend(
            self.backend,
            model=self.model or None,
            temperature=self.temperature,
            threshold=self.threshold,
            response_format=grammar,
        )

    def scope_for(self, set_format: str) -> JudgeScope:
        """The judge's scope for a set of this format: inbox episodes use EMOJUDGE_INBOX_JUDGE_SCOPE (a cost guard)."""
        return self.episode_scope if set_format == "episode" else self.scope

    def judged_splits(self) -> set[str]:
        return set(self.splits)

    @contextmanager
    def session(self, ledger=None) -> Iterator:
        """A judge for this backend, called ``judge(requests, on_result=, on_answer=)``, with ``unavailable`` set
        when it could not be reached (with the local server running, where local: a server that cannot start
        raises :class:`~emojudge_models.judge.JudgeUnavailable`)."""
        from emojudge_models.judge import BatchJudge, ChatJudge, LocalJudgePool, ensure_local_model

        base_url = self.base_url or None
        if self.backend == "openai-batch":
            yield BatchJudge(ledger, base_url, poll_interval_s=self.poll_interval_s, max_wait_s=self.max_wait_s)
        elif self.backend == "openai-chat":
            yield ChatJudge(base_url, max_workers=self.max_workers, timeout_s=self.timeout_s)
        else:
            model_path = ensure_local_model(Path(self.model_cache))
            llama_server = Path(self.llama_server) if self.llama_server else None
            log_dir = Path(self.log_dir) if self.log_dir else None
            with LocalJudgePool(model_path, slots=self.slots, llama_server=llama_server, log_dir=log_dir) as pool:
                yield ChatJudge(
                    pool.base_urls,
                    max_workers=self.slots,
                    require_api_key=False,
                    timeout_s=self.timeout_s,
                    alive=pool.dead_reason,
                )


def _postgres_journal(settings: Settings) -> str:
    """The judge journal's PostgreSQL connection string, or '' for the home's SQLite file."""
    from emojudge_models.judge.journal import journal_location

    location = journal_location(settings)
    return location if isinstance(location, str) else ""


def default_judge(settings: Settings) -> JudgeResource:
    return from_settings(
        JudgeResource,
        settings,
        backend=settings.judge or resolve(settings.profile).judge,
        llama_server=str(settings.llama_server or ""),
        journal=_postgres_journal(settings),
        model_cache=str(HomeLayout(settings.home).judge_models),
        log_dir=str(HomeLayout(settings.home).logs),
    )


class InboxResource(dg.ConfigurableResource):
    """The podcast inbox: where episodes are dropped, how long a file must hold still before it is taken, and the
    width of the episodes' emotion-timeline windows."""

    folder: str = Field(description=describe("inbox"))
    settle_s: Seconds = setting("inbox_settle_s")
    timeline_window_s: Seconds = setting("timeline_window_s")

    @property
    def path(self) -> Path:
        return Path(self.folder)


def default_inbox(settings: Settings) -> InboxResource:
    return from_settings(InboxResource, settings, folder=str(settings.inbox_dir))


class TrainingResource(dg.ConfigurableResource):
    """What trains the models: the training sets, the audio head policy, head optimisation, how head training streams
    its frames (shuffle buffer, loader workers) and the fusion fit."""

    train_sets: SetNames = setting("train_sets")
    audio_pooling: AudioPooling = setting("audio_pooling")
    speaker_norm: SpeakerNorm = setting("speaker_norm")
    head_lr: LearningRate = setting("head_lr")
    max_epochs: AtLeastOne = setting("max_epochs")
    patience: AtLeastOne = setting("patience")
    shuffle_buffer: AtLeastOne = setting("shuffle_buffer")
    loader_workers: NonNegativeWorkers = setting("loader_workers")
    fusion_fit: FusionFit = setting("fusion_fit")


def default_training(settings: Settings) -> TrainingResource:
    return from_settings(TrainingResource, settings)


class IngestResource(dg.ConfigurableResource):
    """How clips and episodes are read before any model: duration limits, the episode segment range, the ASR and the
    prosody pitch tracker."""

    max_duration_s: Seconds = setting("max_duration_s")
    max_episode_s: Seconds = setting("max_episode_s")
    segment_min_s: Seconds = setting("segment_min_s")
    segment_max_s: Seconds = setting("segment_max_s")
    episode_channels: EpisodeChannels = setting("episode_channels")
    asr: dict[str, Any] = setting("asr")
    set_languages: dict[str, str] = setting("set_languages")
    pitch_tracker: PitchTracker = setting("pitch_tracker")
    device: Device = setting("device")

    def asr_options(self) -> dict[str, Any]:
        """EMOJUDGE_ASR's options, on EMOJUDGE_DEVICE unless they name a device (``auto``: CUDA when CTranslate2
        sees a GPU, else the CPU)."""
        if "device" in self.asr:
            return dict(self.asr)
        device = self.device
        if device == "auto":
            import ctranslate2

            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        return {**self.asr, "device": device}


def default_ingest(settings: Settings) -> IngestResource:
    return from_settings(IngestResource, settings)


def default_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """Every resource of the code location, configured from ``settings``."""
    return {
        "warehouse_db": default_warehouse(settings),
        "models": default_models(settings),
        "judge": default_judge(settings),
        "training": default_training(settings),
        "ingest": default_ingest(settings),
        "inbox": default_inbox(settings),
    }
