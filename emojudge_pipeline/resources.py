"""Dagster resources: the warehouse and its registry of evaluation sets, configured from the environment."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from emojudge_models import warehouse
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
