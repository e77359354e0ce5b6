"""How ``emojudge materialize`` shows a run: one line per event, and the one-line reason a run failed.

Dagster's console logger prints a stack trace with every failed step; the CLI runs jobs with
:data:`one_line_console` instead, and prints the description of a :class:`dagster.Failure` an asset raised (such as
"no model registered: train first ...") as its own one-line error.
"""

from __future__ import annotations

import logging
import sys

import dagster as dg


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


def user_failure(result: dg.ExecuteInProcessResult) -> str | None:
    """The description of the first :class:`dagster.Failure` an asset raised in ``result``, or None."""
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            return data.user_failure_data.description
    return None
