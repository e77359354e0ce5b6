"""The one Definitions object of the EmoJudge code location."""

import dagster as dg

from emojudge_pipeline.assets import (
    evaluation,
    features,
    fusion,
    ingest,
    logits,
    prosody,
    refinement,
    training,
    transcripts,
)
from emojudge_pipeline.checks import asset_checks
from emojudge_pipeline.resources import default_judge, default_models, default_warehouse
from emojudge_pipeline.sensors import dead_run_sensor, eval_set_registry_sensor


def build_definitions() -> dg.Definitions:
    """Assets, checks, sensors and resources, with resources configured from the current environment."""
    return dg.Definitions(
        assets=dg.load_assets_from_modules(
            [ingest, transcripts, features, training, logits, prosody, fusion, refinement, evaluation]
        ),
        asset_checks=asset_checks,
        sensors=[eval_set_registry_sensor, dead_run_sensor],
        resources={"warehouse_db": default_warehouse(), "models": default_models(), "judge": default_judge()},
    )


defs = build_definitions()
