"""Launching runs from the command line: the CLI's Dagster instance, and one set materialised in one Dagster run.

``emojudge materialize`` and ``emojudge inbox run`` both come here (the latter with the inbox sensor's job), so a run
started by hand carries the same job name as one the daemon starts.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from emojudge_models.settings import Settings
from emojudge_pipeline.cli_support import UsageError

if TYPE_CHECKING:
    import dagster as dg


def instance(settings: Settings | None = None) -> dg.DagsterInstance:
    """The persistent Dagster instance shared with ``dagster dev`` (see :mod:`emojudge_pipeline.instance`)."""
    from emojudge_pipeline.instance import instance as dagster_instance

    return dagster_instance(settings)


def materialize(
    name: str, train: bool | None = None, settings: Settings | None = None, job_name: str | None = None
) -> None:
    """Materialise every asset for partition ``name`` in dependency order, in one Dagster run of ``job_name``
    (default ``materialize_eval_set``; the inbox passes the sensor's ``score_eval_set``).

    Training assets run too when ``name`` is one of EMOJUDGE_TRAIN_SETS (or ``train`` is True); otherwise the set is
    scored by the models already registered.
    """
    from emojudge_models.store import warehouse
    from emojudge_pipeline.definitions import MATERIALIZE_JOB, build_definitions
    from emojudge_pipeline.instance import (
        RunWatchdog,
        interrupted_by,
        interruptible,
        process_tags,
        recover_dead_runs,
    )
    from emojudge_pipeline.partitions import EVAL_SETS_PARTITION
    from emojudge_pipeline.run_console import one_line_console, user_failure

    settings = settings or Settings.from_env()
    warehouse.check_storage_version(settings.home)
    defs = build_definitions(settings)
    inst = instance(settings)
    if not inst.has_dynamic_partition(EVAL_SETS_PARTITION, name):
        raise UsageError(f"evaluation set {name!r} is not registered: emojudge eval-set add {name} PATH")
    job = defs.resolve_job_def(job_name or MATERIALIZE_JOB).with_logger_defs({"console": one_line_console})
    graph = defs.resolve_asset_graph()
    if train is None:
        train = name in settings.train_sets
    selection = [key for key in graph.get_all_asset_keys() if train or graph.get(key).is_partitioned]
    run_id = str(uuid.uuid4())
    with interruptible():
        recover_dead_runs(inst)
        with RunWatchdog(inst, run_id) as watchdog:
            result = job.execute_in_process(
                instance=inst,
                partition_key=name,
                asset_selection=selection,
                run_config={"loggers": {"console": {"config": {"log_level": settings.log_level}}}},
                raise_on_error=False,
                run_id=run_id,
                tags=process_tags(),
            )
    if (signum := watchdog.signal_received or interrupted_by()) is not None:
        print(f"interrupted: run {result.run_id} marked failed", file=sys.stderr)
        raise SystemExit(128 + signum)
    if not result.success and (reason := user_failure(result, settings.home)):
        raise UsageError(reason)
    if not result.success:
        raise SystemExit(f"error: materialising {name} failed; see the run {result.run_id} in the Dagster UI")
    print(f"materialised {len(selection)} assets for {name} (run {result.run_id}; home {settings.home})")
    for line in scored_by(settings.home, name):
        print(line)
    if unavailable := judge_unavailable(settings.home, name):
        print(f"warning: judge: unavailable for {name}: {unavailable}", file=sys.stderr)


def scored_by(home: Path, name: str) -> list[str]:
    """One line per modality and task: the model that scored set ``name`` and what it was trained on (with the
    model card of a shipped one), from ``models/models_scoring_set.sql``."""
    from emojudge_models.models.shipped import CARD_FILE
    from emojudge_models.store import warehouse

    with warehouse.connect(home, read_only=True) as con:
        rows = warehouse.query_df(con, "models/models_scoring_set.sql", [name, name])
    lines = [f"scored {name} with:" if len(rows) else f"no model scored {name}"]
    for row in rows.itertuples():
        if not isinstance(row.trained_on, str):
            lines.append(f"  {row.modality} {row.task}: no fusion model for these models, the audio prediction")
            continue
        card = Path(row.path) / CARD_FILE
        shown = f"; model card {card}" if card.is_file() else ""
        lines.append(f"  {row.modality} {row.task}: {row.model_key} trained on {row.trained_on}{shown}")
    return lines


def judge_unavailable(home: Path, name: str) -> str | None:
    """Why the judge could not be reached in the set's latest refinement (``judge/unavailable_reason.sql``)."""
    from emojudge_models.store import warehouse

    if not warehouse.warehouse_path(home).exists():
        return None
    with warehouse.connect(home, read_only=True) as con:
        return warehouse.scalar(con, "judge/unavailable_reason.sql", [name])
