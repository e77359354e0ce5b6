"""What makes the ``emojudge`` command answer a misuse in one line: ``error: ...`` on stderr and exit status 2.

Dagster's console logger prints a stack trace with every failed step; the CLI runs jobs with
:data:`one_line_console` instead, and prints the description of a :class:`dagster.Failure` an asset raised (such as
"no model registered: train first ...") as its own one-line error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import NoReturn

import dagster as dg

from emojudge_models.ingest.tables import CorpusInvalid

USAGE_EXIT = 2


class UsageError(Exception):
    """A misuse the user can fix (unregistered set, no usable clips, no model); the message is one line."""


USER_ERRORS = (UsageError, CorpusInvalid)
"""Errors ``main`` reports as ``error: <message>`` with exit status 2 instead of a traceback."""


def fail(error: Exception) -> NoReturn:
    """Print ``error`` as one ``error:`` line on stderr and exit with the usage status."""
    message = " ".join(str(error).split())
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(USAGE_EXIT)


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad command line gives one ``error:`` line (argparse prints the usage block too)."""

    def error(self, message: str) -> NoReturn:
        fail(UsageError(f"{self.prog}: {message} (see {self.prog} --help)"))


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
