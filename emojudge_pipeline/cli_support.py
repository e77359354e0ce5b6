"""What makes the ``emojudge`` command answer a misuse in one line: ``error: ...`` on stderr and exit status 2.

Light on purpose (no Dagster import): the parser and these errors load before ``--help`` answers. The run-side
counterpart (one-line console logger, the failure a run reports) is :mod:`emojudge_pipeline.run_console`.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from emojudge_models.disk import DiskFull
from emojudge_models.ingest.tables import CorpusInvalid

USAGE_EXIT = 2


class UsageError(Exception):
    """A misuse the user can fix (unregistered set, no usable clips, no model); the message is one line."""


def is_user_error(error: BaseException) -> bool:
    """Errors ``main`` reports as ``error: <message>`` with exit status 2 instead of a traceback."""
    from emojudge_models.store.warehouse import WarehouseBusyError, WarehouseTooNew

    return isinstance(error, UsageError | CorpusInvalid | WarehouseTooNew | WarehouseBusyError | DiskFull)


def fail(error: Exception) -> NoReturn:
    """Print ``error`` as one ``error:`` line on stderr and exit with the usage status."""
    message = " ".join(str(error).split())
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(USAGE_EXIT)


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad command line gives one ``error:`` line (argparse prints the usage block too)."""

    def error(self, message: str) -> NoReturn:
        fail(UsageError(f"{self.prog}: {message} (see {self.prog} --help)"))
