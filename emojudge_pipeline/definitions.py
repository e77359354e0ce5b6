"""The one Definitions object of the EmoJudge code location."""

from __future__ import annotations

import dagster as dg

from emojudge_pipeline.assets import ingest
from emojudge_pipeline.resources import default_warehouse

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([ingest]),
    resources={"warehouse_db": default_warehouse()},
)
