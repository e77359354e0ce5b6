"""The one Definitions object of the EmoJudge code location."""

import dagster as dg

from emojudge_models.settings import Settings
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
from emojudge_pipeline.resources import default_resources
from emojudge_pipeline.sensors import dead_run_sensor, eval_set_registry_sensor


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """Assets, checks, sensors and resources, with resources configured from ``settings``.

    Without ``settings`` the environment is read and validated here, once: a bad value stops the code location
    from loading with a one-line :class:`~emojudge_models.settings.SettingsError`.
    """
    settings = settings or Settings.from_env()
    return dg.Definitions(
        assets=dg.load_assets_from_modules(
            [ingest, transcripts, features, training, logits, prosody, fusion, refinement, evaluation]
        ),
        asset_checks=asset_checks,
        sensors=[eval_set_registry_sensor, dead_run_sensor],
        resources=default_resources(settings),
    )


defs = build_definitions()
