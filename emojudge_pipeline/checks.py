"""Asset checks (visible in the UI): fused predictions are well-formed, and fusion does not lose to one modality."""

import warnings

import dagster as dg

from emojudge_models.store import warehouse
from emojudge_pipeline.assets.common import rounded
from emojudge_pipeline.assets.evaluation import evaluation
from emojudge_pipeline.assets.fusion import fused_predictions
from emojudge_pipeline.partitions import eval_sets_partitions
from emojudge_pipeline.resources import WarehouseResource

# Partitioned asset checks are a Dagster preview feature; we rely on it knowingly, so keep logs free of its warning.
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

PROBABILITY_TOLERANCE = 1e-4
FUSION_F1_TOLERANCE = 0.05
"""Fused development F1 may trail the better single modality by this much before the check warns."""


def fused_predictions_problems(con, eval_set: str) -> dict[str, int]:
    """Counts of malformed rows in one partition of ``fused_predictions`` (0 everywhere when healthy)."""
    row = (
        con.execute(
            warehouse.sql_text("fusion/fused_predictions_problems.sql"), [PROBABILITY_TOLERANCE, eval_set, eval_set]
        )
        .df()
        .iloc[0]
    )
    return {name: int(value) for name, value in row.items()}


def fusion_vs_modalities(con, eval_set: str) -> dict[str, float] | None:
    """Development F1-macro of audio, text and fused; None when the partition has no development metrics."""
    frame = con.execute(warehouse.sql_text("evaluation/development_f1.sql"), [eval_set]).df()
    scores = dict(zip(frame["stage"], frame["value"], strict=True))
    return scores if {"audio", "text", "fused"} <= scores.keys() else None


@dg.asset_check(
    asset=fused_predictions,
    partitions_def=eval_sets_partitions,
    blocking=True,
    description="Probabilities sum to 1, labels are in the 8-class set, no NaN, every utterance predicted.",
)
def fused_predictions_well_formed(
    context: dg.AssetCheckExecutionContext, warehouse_db: WarehouseResource
) -> dg.AssetCheckResult:
    with warehouse_db.connect(read_only=True) as con:
        problems = fused_predictions_problems(con, context.partition_key)
    return dg.AssetCheckResult(passed=sum(problems.values()) == 0, metadata=problems)


@dg.asset_check(
    asset=evaluation,
    partitions_def=eval_sets_partitions,
    description=f"Fused development F1-macro is not worse than the better single modality by more "
    f"than {FUSION_F1_TOLERANCE} (a warning, not a failure).",
)
def fusion_not_worse_than_modalities(
    context: dg.AssetCheckExecutionContext, warehouse_db: WarehouseResource
) -> dg.AssetCheckResult:
    with warehouse_db.connect(read_only=True) as con:
        scores = fusion_vs_modalities(con, context.partition_key)
    if scores is None:
        return dg.AssetCheckResult(passed=True, metadata={"note": "no development split with all three stages"})
    best_single = max(scores["audio"], scores["text"])
    return dg.AssetCheckResult(
        passed=scores["fused"] >= best_single - FUSION_F1_TOLERANCE,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={**{f"dev_f1_{k}": rounded(v) for k, v in scores.items()}, "tolerance": FUSION_F1_TOLERANCE},
    )


def judge_effect_on_development(con, eval_set: str) -> dict[str, float] | None:
    """Development F1-macro of the fused and refined stages; None when either is missing."""
    frame = con.execute(warehouse.sql_text("judge/development_refined_vs_fused.sql"), [eval_set]).df()
    scores = dict(zip(frame["stage"], frame["value"], strict=True))
    return scores if {"fused", "refined"} <= scores.keys() else None


@dg.asset_check(
    asset=evaluation,
    partitions_def=eval_sets_partitions,
    description=f"The LLM judge does not lower development F1-macro by more than {FUSION_F1_TOLERANCE} "
    "(a warning: a small local judge may hurt; keep EMOJUDGE_JUDGE_GATE=development or use a stronger model).",
)
def judge_not_harmful(context: dg.AssetCheckExecutionContext, warehouse_db: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse_db.connect(read_only=True) as con:
        scores = judge_effect_on_development(con, context.partition_key)
    if scores is None:
        return dg.AssetCheckResult(passed=True, metadata={"note": "no development split with fused and refined"})
    return dg.AssetCheckResult(
        passed=scores["refined"] >= scores["fused"] - FUSION_F1_TOLERANCE,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={f"dev_f1_{k}": rounded(v) for k, v in scores.items()},
    )


asset_checks = [fused_predictions_well_formed, fusion_not_worse_than_modalities, judge_not_harmful]
