"""The one Definitions object of the EmoJudge code location."""

import dagster as dg

from emojudge_models.settings import Settings
from emojudge_models.store import lake
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
from emojudge_pipeline.catalog import describe
from emojudge_pipeline.checks import asset_checks
from emojudge_pipeline.cluster.executor import executor, scoring_executor
from emojudge_pipeline.hooks import STEP_HOOKS
from emojudge_pipeline.resources import default_resources
from emojudge_pipeline.sensors import (
    RESCORE_JOB,
    RESCORE_KEEPS,
    SCORE_JOB,
    dead_run_sensor,
    eval_set_registry_sensor,
    inbox_sensor,
    rescore_schedule,
    rescore_sensor,
)

MATERIALIZE_JOB = "materialize_eval_set"

materialize_eval_set = dg.define_asset_job(
    MATERIALIZE_JOB,
    selection=dg.AssetSelection.all(),
    description="Every asset for one evaluation set (a partition), training included when selected: what "
    "`emojudge materialize NAME` runs.",
    hooks=STEP_HOOKS,
)
train_models = dg.define_asset_job(
    "train_models",
    selection=dg.AssetSelection.groups("training")
    | dg.AssetSelection.assets("fusion_model_categorical")
    | dg.AssetSelection.assets("fusion_model_attributes")
    | dg.AssetSelection.assets("waveform_stats"),
    description="The unpartitioned models: heads on the training sets' cached features, and the fusion models.",
    hooks=STEP_HOOKS,
)


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """Assets, checks, sensors and resources, with resources configured from ``settings``.

    Without ``settings`` the environment is read and validated here, once: a bad value stops the code location
    from loading with a one-line :class:`~emojudge_models.settings.SettingsError`.
    """
    settings = settings or Settings.from_env()
    lake.configure(settings)  # the cluster's warehouse when EMOJUDGE_WAREHOUSE=ducklake (docs/scale-out.md)
    assets = dg.map_asset_specs(
        describe,
        dg.load_assets_from_modules(
            [ingest, transcripts, features, training, logits, prosody, fusion, refinement, evaluation, episodes]
        ),
    )
    partitioned = [key for asset in assets if asset.partitions_def is not None for key in asset.keys]
    score = dg.define_asset_job(
        SCORE_JOB,
        selection=dg.AssetSelection.assets(*partitioned),
        description="Score one evaluation set with the registered models (every partitioned asset, no training): "
        "what the inbox sensor runs.",
        executor_def=scoring_executor(settings),
        hooks=STEP_HOOKS,
    )
    rescore = dg.define_asset_job(
        RESCORE_JOB,
        selection=dg.AssetSelection.assets(*partitioned) - dg.AssetSelection.assets(*RESCORE_KEEPS),
        description="Rescore one ingested inbox episode with the latest registered models: the score job without "
        f"{', '.join(RESCORE_KEEPS)}, which depend on the audio alone (nothing is decoded); features are cache "
        "lookups unless a new encoder needs them. What the rescore sensor and schedule run.",
        executor_def=scoring_executor(settings),
        hooks=STEP_HOOKS,
    )
    return dg.Definitions(
        assets=assets,
        asset_checks=asset_checks,
        jobs=[materialize_eval_set, train_models, score, rescore],
        sensors=[eval_set_registry_sensor, dead_run_sensor, inbox_sensor, rescore_sensor],
        schedules=[rescore_schedule(settings.rescore_cron)],
        resources=default_resources(settings),
        executor=executor(settings),
    )


defs = build_definitions()
