"""The jobs' executors and Dagster instance storage, from the settings (nothing of the cluster runs unless selected)."""

from __future__ import annotations

from typing import Any

import dagster as dg

from emojudge_models.settings import Settings


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery app arguments shared by the executor (which submits steps) and the workers (which run them).

    Steps are acknowledged after they finish (``task_acks_late``) and one at a time per worker (prefetch 1): a
    worker killed mid-step leaves its step unacknowledged, and the other workers hand it to one of them after
    ``EMOJUDGE_CELERY_REDELIVERY_S`` (Redis' visibility timeout, applied by the consuming workers). A step still
    running then is delivered again too, so it must exceed the longest step (partition writes are replacements, so
    the rows stay right, but the work is done twice).
    """
    redelivery_s = settings.celery_redelivery_s
    return {
        "broker": settings.celery_broker,
        "backend": settings.celery_broker,
        "config_source": {
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "worker_prefetch_multiplier": 1,
            "broker_transport_options": {"visibility_timeout": redelivery_s},
            "result_backend_transport_options": {"visibility_timeout": redelivery_s},
            "broker_connection_retry_on_startup": True,
        },
    }


def executor(settings: Settings) -> dg.ExecutorDefinition | None:
    """The Celery executor when ``EMOJUDGE_EXECUTOR=celery``; None keeps Dagster's default (multiprocess)."""
    if settings.executor != "celery":
        return None
    from dagster_celery import celery_executor

    return celery_executor.configured(celery_config(settings), name="celery")


def scoring_executor(settings: Settings) -> dg.ExecutorDefinition:
    """The executor of the scoring jobs (the inbox sensor's runs and the rescoring's): the cluster's when one is
    selected, else Dagster's in-process executor.

    On one machine a scoring run's steps are parallel inside (one ASR worker per core, the feature loader's threads,
    prosody's worker processes) and mostly wait for one another, so a process per step only adds an import of the
    pipeline and the models (about 10 s each on 2 cores) and another copy of them in memory: from the drop into the
    inbox to the run's end, the daemon scored a built 10-minute episode in 182 s with a process per step and 120 s
    with the steps in its run's process (bench/RESULTS.md, "Podcast inbox")."""
    return executor(settings) or dg.in_process_executor


def storage_yaml(settings: Settings) -> str:
    """The ``storage:`` block of dagster.yaml for ``EMOJUDGE_DAGSTER_POSTGRES`` (runs, events, schedules in
    PostgreSQL, shared by the daemon, the webserver, the CLI and every worker); empty for the SQLite default."""
    if not settings.dagster_postgres:
        return ""
    return f'storage:\n  postgres:\n    postgres_url: "{settings.dagster_postgres}"\n'
