"""How ``emojudge materialize`` shows a run: one line per event, and the one-line reason a run failed.

Dagster's console logger prints a stack trace with every failed step; the CLI runs jobs with
:data:`one_line_console` instead, and prints the description of a :class:`dagster.Failure` an asset raised (such as
"no model registered: train first ...") as its own one-line error, and likewise the errors a user acts on
(:data:`USER_ERRORS`: a full disk, a warehouse held too long or from a newer DuckDB). Warnings the library logs
through Python logging (a writer waiting for a held warehouse) reach the console through the CLI's root handler.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import dagster as dg
from dagster._utils.error import SerializableErrorInfo

from emojudge_models.disk import DiskFull, is_disk_full

USER_ERRORS = ("DiskFull", "WarehouseBusyError", "WarehouseTooNew")
"""Exception classes whose message, raised in a step, is the run's one-line error."""


class _FirstLineFormatter(logging.Formatter):
    """The standard Dagster console format, keeping only each message's first line (no stack traces)."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        return line.split("\n", 1)[0]


@dg.logger(
    config_schema={"log_level": dg.Field(str, is_required=False, default_value="INFO")},
    description="Console logger of the emojudge CLI: one line per event, no stack traces.",
)
def one_line_console(init_context: dg.InitLoggerContext) -> logging.Logger:
    run_logger = logging.Logger("dagster", level=init_context.logger_config["log_level"].upper())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_FirstLineFormatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s"))
    run_logger.addHandler(handler)
    return run_logger


def _errors(error: SerializableErrorInfo | None) -> list[SerializableErrorInfo]:
    """``error`` and what it was raised from (Dagster wraps a step's exception in its own)."""
    chain = []
    while error is not None and len(chain) < 20:
        chain.append(error)
        error = error.cause or error.context
    return chain


def _user_error(error: SerializableErrorInfo | None, home: Path | None) -> str | None:
    for link in _errors(error):
        if link.cls_name in USER_ERRORS:
            return link.message.split(": ", 1)[-1].strip()
    messages = [link.message for link in _errors(error)]
    if home is not None and any(is_disk_full(Exception(message)) for message in messages):
        return str(DiskFull(home))
    return None


def user_failure(result: dg.ExecuteInProcessResult, home: Path | None = None) -> str | None:
    """The description of the first :class:`dagster.Failure` an asset raised in ``result``, or the message of a
    :data:`USER_ERRORS` one (a full disk anywhere under ``home`` said as such), or None."""
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            return data.user_failure_data.description
        if (message := _user_error(data.error, home)) is not None:
            return message
    return None
