"""Dagster resources: the warehouse and its registry of evaluation sets, configured from the environment."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from emojudge_models import warehouse
from emojudge_models.encoders.base import AudioEncoder, TextEncoder
from emojudge_models.profiles import Profile, resolve
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
            found = con.execute(warehouse.sql_text("queries/eval_set.sql"), [name]).df()
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
