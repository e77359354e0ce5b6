"""The one Definitions object of the EmoJudge code location."""

import dagster as dg

from emojudge_pipeline.assets import evaluation, fusion, ingest, prosody
from emojudge_pipeline.checks import asset_checks
from emojudge_pipeline.resources import default_warehouse

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([ingest, prosody, fusion, evaluation]),
    asset_checks=asset_checks,
    resources={"warehouse_db": default_warehouse()},
)
