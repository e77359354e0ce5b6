"""The one Definitions object of the EmoJudge code location."""

import dagster as dg

from emojudge_models.settings import Settings
from emojudge_pipeline.assets import (
    episodes,
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
from emojudge_pipeline.sensors import (
    SCORE_JOB,
    eval_set_registry_sensor,
    inbox_sensor,
    rescore_schedule,
    rescore_sensor,
)


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """Assets, checks, sensors and resources, with resources configured from ``settings``.

    Without ``settings`` the environment is read and validated here, once: a bad value stops the code location
    from loading with a one-line :class:`~emojudge_models.settings.SettingsError`.
    """
    settings = settings or Settings.from_env()
    assets = dg.load_assets_from_modules(
        [ingest, transcripts, features, training, logits, prosody, fusion, refinement, evaluation, episodes]
    )
    partitioned = [key for asset in assets if asset.partitions_def is not None for key in asset.keys]
    score = dg.define_asset_job(
        SCORE_JOB,
        selection=dg.AssetSelection.assets(*partitioned),
        description="Score one evaluation set with the registered models (every partitioned asset, no training): "
        "what the inbox sensor and the rescoring schedule run.",
    )
    return dg.Definitions(
        assets=assets,
        asset_checks=asset_checks,
        jobs=[score],
        sensors=[eval_set_registry_sensor, inbox_sensor, rescore_sensor],
        schedules=[rescore_schedule(settings.rescore_cron)],
        resources=default_resources(settings),
    )


defs = build_definitions()
