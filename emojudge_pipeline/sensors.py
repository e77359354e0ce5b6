"""Sensors: keep the Dagster partitions in step with the evaluation sets registered in the warehouse, and let the
daemon fail dead runs so they never hold the warehouse pool."""

import dagster as dg

from emojudge_models.store import warehouse
from emojudge_pipeline.instance import recover_dead_runs
from emojudge_pipeline.partitions import EVAL_SETS_PARTITION
from emojudge_pipeline.resources import WarehouseResource


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds a partition for every evaluation set in the warehouse table eval_sets that Dagster "
    "does not know yet (e.g. registered against another Dagster instance or by SQL).",
)
def eval_set_registry_sensor(context: dg.SensorEvaluationContext, warehouse_db: WarehouseResource):
    if not warehouse_db.path.exists():
        return dg.SkipReason(f"no warehouse at {warehouse_db.path} yet")
    with warehouse_db.connect(read_only=True) as con:
        names = [row[0] for row in con.execute(warehouse.sql_text("ingest/eval_set_names.sql")).fetchall()]
    known = set(context.instance.get_dynamic_partitions(EVAL_SETS_PARTITION))
    missing = [name for name in names if name not in known]
    if not missing:
        return dg.SkipReason(f"all {len(names)} evaluation sets have partitions")
    return dg.SensorResult(dynamic_partitions_requests=[eval_sets_partitions_request(missing)])


def eval_sets_partitions_request(names: list[str]) -> dg.AddDynamicPartitionsRequest:
    return dg.AddDynamicPartitionsRequest(partitions_def_name=EVAL_SETS_PARTITION, partition_keys=names)


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks failed the runs whose process is gone (killed, out of memory, aborted) and frees their "
    "slots in the emojudge_warehouse pool, so a dead run never blocks later ones (see emojudge_pipeline/instance.py).",
)
def dead_run_sensor(context: dg.SensorEvaluationContext):
    failed = recover_dead_runs(context.instance)
    return dg.SkipReason(f"marked dead runs failed: {', '.join(failed)}" if failed else "no dead runs")
