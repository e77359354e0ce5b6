"""Dagster resources: the warehouse and its registry of evaluation sets, configured from the environment."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from emojudge_models.encoders.base import AudioEncoder, TextEncoder
from emojudge_models.profiles import Profile, resolve
from emojudge_models.store import warehouse
from emojudge_pipeline import settings


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse at ``$EMOJUDGE_HOME/emojudge.duckdb`` and the Parquet features beside it."""

    home: str

    @property
    def home_path(self) -> Path:
        return Path(self.home)

    @property
    def path(self) -> Path:
        return warehouse.warehouse_path(self.home_path)

    @property
    def features_root(self) -> Path:
        return self.home_path / "features"

    @property
    def models_root(self) -> Path:
        return self.home_path / "models"

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        with warehouse.connect(self.home_path, read_only=read_only) as con:
            yield con

    def eval_set(self, name: str) -> dict:
        """The registered evaluation set ``name``; a clear error when it was never added."""
        with self.connect() as con:
            found = con.execute(warehouse.sql_text("ingest/eval_set.sql"), [name]).df()
        if found.empty:
            raise dg.Failure(f"evaluation set {name!r} is not registered: run `emojudge eval-set add {name} PATH`")
        return found.iloc[0].to_dict()


def default_warehouse() -> WarehouseResource:
    return WarehouseResource(home=str(settings.emojudge_home()))


class ModelsResource(dg.ConfigurableResource):
    """Which encoders and training modes to use (a profile plus overrides), and on which device.

    Encoders are built once per process and reused by every asset of a run.
    """

    profile: str = "local"
    audio_encoder: str = ""
    text_encoder: str = ""
    text_training: str = ""
    device: str = "auto"
    batch_seconds: float = 100.0
    seed: int = 13

    def resolved(self) -> Profile:
        return resolve(self.profile, self.audio_encoder, self.text_encoder, self.text_training)

    def torch_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def build_audio_encoder(self) -> AudioEncoder:
        return _cached_audio_encoder(_freeze(self.resolved().audio_encoder), self.torch_device())

    def build_text_encoder(self) -> TextEncoder:
        return _cached_text_encoder(_freeze(self.resolved().text_encoder), self.torch_device())


def _freeze(config: dict) -> str:
    return json.dumps(config, sort_keys=True)


@functools.lru_cache(maxsize=2)
def _cached_audio_encoder(config_json: str, device: str) -> AudioEncoder:
    from emojudge_models.encoders.factory import build_audio_encoder

    return build_audio_encoder(json.loads(config_json), device=device)


@functools.lru_cache(maxsize=2)
def _cached_text_encoder(config_json: str, device: str) -> TextEncoder:
    from emojudge_models.encoders.factory import build_text_encoder

    return build_text_encoder(json.loads(config_json), device=device)


def default_models() -> ModelsResource:
    return ModelsResource(
        profile=settings.env("EMOJUDGE_PROFILE", "local"),
        audio_encoder=settings.env("EMOJUDGE_AUDIO_ENCODER", ""),
        text_encoder=settings.env("EMOJUDGE_TEXT_ENCODER", ""),
        text_training=settings.env("EMOJUDGE_TEXT_TRAINING", ""),
        device=settings.env("EMOJUDGE_DEVICE", "auto"),
        batch_seconds=float(settings.env("EMOJUDGE_BATCH_SECONDS", "100")),
    )


class JudgeResource(dg.ConfigurableResource):
    """The LLM judge: backend (local | openai-chat | openai-batch), model, sampling, threshold, scope and gate.

    For ``local`` the resource starts the Gemma 3 270M llama.cpp server on 127.0.0.1 at a free port for the
    duration of :meth:`session` and always stops it afterwards.
    """

    backend: str = "local"
    model: str = ""
    base_url: str = ""
    threshold: float = 0.8
    temperature: float = 0.3
    scope: str = "all"
    splits: str = "development,test,unsplit"
    show_probability: bool = False
    gate: str = "development"
    max_workers: int = 4
    poll_interval_s: float = 30.0
    max_wait_s: float = 26 * 3600.0
    model_cache: str = ""

    def config(self):
        from emojudge_models.judge import JudgeConfig

        return JudgeConfig.for_backend(
            self.backend, model=self.model or None, temperature=self.temperature, threshold=self.threshold
        )

    def judged_splits(self) -> set[str]:
        return {s.strip() for s in self.splits.split(",") if s.strip()}

    @contextmanager
    def session(self, ledger=None) -> Iterator:
        """A callable ``requests -> results`` for this backend (with the local server running, where local)."""
        from emojudge_models.judge import BatchJudge, ChatJudge, LocalJudgeServer, ensure_local_model

        base_url = self.base_url or None
        if self.backend == "openai-batch":
            judge = BatchJudge(ledger, base_url, poll_interval_s=self.poll_interval_s, max_wait_s=self.max_wait_s)
            yield judge.run
        elif self.backend == "openai-chat":
            yield ChatJudge(base_url, max_workers=self.max_workers).judge
        else:
            model_path = ensure_local_model(Path(self.model_cache))
            with LocalJudgeServer(model_path) as server:
                yield ChatJudge(server.base_url, max_workers=1, require_api_key=False).judge


def default_judge() -> JudgeResource:
    profile_judge = resolve(settings.env("EMOJUDGE_PROFILE", "local")).judge
    return JudgeResource(
        backend=settings.env("EMOJUDGE_JUDGE", profile_judge),
        model=settings.env("EMOJUDGE_JUDGE_MODEL", ""),
        base_url=settings.env("EMOJUDGE_JUDGE_BASE_URL", ""),
        threshold=float(settings.env("EMOJUDGE_JUDGE_THRESHOLD", "0.8")),
        temperature=float(settings.env("EMOJUDGE_JUDGE_TEMPERATURE", "0.3")),
        scope=settings.env("EMOJUDGE_JUDGE_SCOPE", "all"),
        splits=settings.env("EMOJUDGE_JUDGE_SPLITS", "development,test,unsplit"),
        show_probability=settings.env("EMOJUDGE_JUDGE_SHOW_PROBABILITY", "0") == "1",
        gate=settings.env("EMOJUDGE_JUDGE_GATE", "development"),
        model_cache=str(settings.emojudge_home() / "models" / "judge"),
    )
