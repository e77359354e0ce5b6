"""Sensors and the rescoring schedule: partitions in step with the warehouse, dead runs failed so they never hold
dead runs, the podcast inbox, and rescoring of episodes scored by an older model."""

import hashlib
import time

import dagster as dg

from emojudge_models.episodes.inbox import inbox_episodes, register_episode, scan_inbox, stale_episodes
from emojudge_models.store import warehouse
from emojudge_pipeline.instance import recover_dead_runs
from emojudge_pipeline.partitions import EVAL_SETS_PARTITION
from emojudge_pipeline.resources import InboxResource, WarehouseResource

SCORE_JOB = "score_eval_set"
"""The job of every partitioned asset (scoring with the registered models, no training); see definitions.py."""
RESCORE_JOB = "rescore_eval_set"
"""The score job without :data:`RESCORE_KEEPS`: what rescoring an already scored episode runs."""
RESCORE_KEEPS = ("utterances", "transcripts", "prosody")
"""Assets a rescoring leaves standing: an episode's segments, speakers, transcripts and prosody come from its audio,
not from the models, so a new model version needs none of them again (and nothing is decoded)."""
INBOX_TICK_S = 9
"""The inbox sensor's minimum interval: a scan every 10 s (a scan lists one folder and reads the cursor: about 25 ms).
Dagster's sensor daemon looks every 5 s and skips a sensor whose last tick began less than this long ago, so an
interval of 10 s would scan every 15 s."""
SETTLE_WAIT_S = 10.0
"""A file due to settle within this many seconds is waited for inside the tick and taken then, so an episode is
taken the settle time after its last write rather than up to a tick later (the daemon path of the built hour waited
15 s from the drop for a 10-s settle time; bench/RESULTS.md). The sensors tick on their own threads
(emojudge_pipeline/instance.py), so the wait holds up no other sensor."""
INBOX_LOCK_WAIT_S = 20.0
"""How long the inbox sensor waits for a running write session; a busy warehouse retries on the next tick."""


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds a partition for every evaluation set in the warehouse table eval_sets that Dagster "
    "does not know yet (e.g. registered against another Dagster instance or by SQL).",
)
def eval_set_registry_sensor(context: dg.SensorEvaluationContext, warehouse_db: WarehouseResource):
    try:
        with warehouse_db.connect(read_only=True) as con:
            names = [row[0] for row in con.execute(warehouse.sql_text("ingest/eval_set_names.sql")).fetchall()]
    except FileNotFoundError as missing:
        return dg.SkipReason(str(missing))
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
    "concurrency slots, so a dead run never shows as running or blocks later ones (see emojudge_pipeline/instance.py).",
)
def dead_run_sensor(context: dg.SensorEvaluationContext):
    failed = recover_dead_runs(context.instance)
    return dg.SkipReason(f"marked dead runs failed: {', '.join(failed)}" if failed else "no dead runs")


@dg.sensor(
    job_name=SCORE_JOB,
    minimum_interval_seconds=INBOX_TICK_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Podcast inbox (EMOJUDGE_INBOX): a file whose size and mtime held still for EMOJUDGE_INBOX_SETTLE_S "
    "is identified by its SHA-256, registered as evaluation set ep-<sha[:12]> and scored once (run_key = the hash).",
)
def inbox_sensor(context: dg.SensorEvaluationContext, warehouse_db: WarehouseResource, inbox: InboxResource):
    scan = scan_inbox(inbox.path, context.cursor, inbox.settle_s)
    if not scan.ready and scan.settles_in_s is not None and scan.settles_in_s <= SETTLE_WAIT_S:
        time.sleep(scan.settles_in_s)
        scan = scan_inbox(inbox.path, scan.cursor, inbox.settle_s)
    if not scan.ready:
        context.update_cursor(scan.cursor)
        waiting = f"; {len(scan.waiting)} file(s) still changing" if scan.waiting else ""
        return dg.SkipReason(f"no new episode in {inbox.path}{waiting}")
    try:
        with warehouse.connect(warehouse_db.home_path, lock_wait_s=INBOX_LOCK_WAIT_S) as con:
            names = [register_episode(con, path, sha) for path, sha in scan.ready]
            states = dict(inbox_episodes(con)[["name", "state"]].itertuples(index=False))
    except warehouse.WarehouseBusyError:
        return dg.SkipReason("warehouse busy with a run; the inbox is scanned again on the next tick")
    todo = [  # a missing episode whose bytes are back (registered here again, so pointing at them) is run too
        (name, sha)
        for name, (_, sha) in zip(names, scan.ready, strict=True)
        if states.get(name) in ("pending", "missing")
    ]
    known = set(context.instance.get_dynamic_partitions(EVAL_SETS_PARTITION))
    new = [name for name, _ in todo if name not in known]
    for path, sha in scan.ready:
        context.log.info(f"inbox: {path.name} is episode ep-{sha[:12]}")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=sha, partition_key=name) for name, sha in todo],
        dynamic_partitions_requests=[eval_sets_partitions_request(new)] if new else [],
        cursor=scan.cursor,
    )


def _stale_requests(warehouse_db: WarehouseResource, keyed: bool) -> list[dg.RunRequest] | dg.SkipReason:
    """A run request per episode scored by an older model; ``keyed``: once per episode and set of latest models.
    Whatever the warehouse is (the file, or a cluster's lake, where no file exists), a missing one is a skip."""
    try:
        with warehouse_db.connect(read_only=True) as con:
            stale = stale_episodes(con)
            latest = con.execute(warehouse.sql_text("episodes/latest_model_keys.sql")).fetchall()
    except FileNotFoundError as missing:
        return dg.SkipReason(str(missing))
    if not stale:
        return dg.SkipReason("every episode was scored by the latest registered models")
    models = hashlib.sha256(repr(latest).encode()).hexdigest()[:16]
    return [dg.RunRequest(run_key=f"{name}:{models}" if keyed else None, partition_key=name) for name in stale]


@dg.sensor(
    job_name=RESCORE_JOB,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Rescores every inbox episode whose predictions came from an older audio, text or fusion model than "
    "the newest in model_registry, once per set of latest models (cached features and transcripts are reused).",
)
def rescore_sensor(context: dg.SensorEvaluationContext, warehouse_db: WarehouseResource):
    return _stale_requests(warehouse_db, keyed=True)


def rescore_schedule(cron: str) -> dg.ScheduleDefinition:
    """The daily catch-all (EMOJUDGE_RESCORE_CRON): rescore episodes still scored by an older model."""

    @dg.schedule(
        name="rescore_episodes",
        cron_schedule=cron,
        job_name=RESCORE_JOB,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Rescores inbox episodes whose predictions came from an older model than the latest registered.",
    )
    def rescore_episodes(context: dg.ScheduleEvaluationContext, warehouse_db: WarehouseResource):
        return _stale_requests(warehouse_db, keyed=False)

    return rescore_episodes
