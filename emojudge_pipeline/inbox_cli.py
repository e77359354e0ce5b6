"""``emojudge inbox``: register podcast episodes by hand, score the pending ones now, list their states.

``inbox run`` scores with the registered models and no training, in the job the inbox sensor's runs use
(``score_eval_set``). Like :mod:`emojudge_pipeline.cli`, heavy modules load inside the commands.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from emojudge_models.episodes import EPISODE_SUFFIXES
from emojudge_models.settings import Settings
from emojudge_pipeline import launch
from emojudge_pipeline.cli_support import UsageError, is_user_error

if TYPE_CHECKING:
    import pandas as pd


def add_inbox_parser(commands: argparse._SubParsersAction) -> None:
    """The ``inbox`` command and its ``add``, ``run`` and ``list`` subcommands."""
    inbox = commands.add_parser("inbox", help="podcast inbox: add episodes, score the pending ones, list them")
    inbox_commands = inbox.add_subparsers(
        dest="inbox_command", required=True, metavar="SUBCOMMAND", help="add, run or list"
    )
    add = inbox_commands.add_parser("add", help="copy episodes into the inbox and register each (prints its set)")
    add.add_argument("files", nargs="+", type=Path, metavar="FILE", help="episode audio (a .vtt/.srt beside it too)")
    add.add_argument("--speakers", type=int, default=None, help="how many speakers the episodes have, if known")
    inbox_commands.add_parser("run", help="score every pending episode now with the registered models")
    inbox_commands.add_parser("list", help="show each episode's state (pending, scored, rejected)")
    inbox.set_defaults(handler=dispatch)


def dispatch(args: argparse.Namespace, settings: Settings) -> None:
    if args.inbox_command == "add":
        for name, target in add_episodes(args.files, args.speakers, settings):
            print(f"{name}  {target}")
    elif args.inbox_command == "run":
        run_pending(settings)
    else:
        list_episodes(settings)


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise UsageError(f"{path}: file not found")
    if path.suffix.lower() not in EPISODE_SUFFIXES:
        raise UsageError(f"{path}: not an episode file (expected one of {', '.join(EPISODE_SUFFIXES)})")


def _copy_in(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` under a hidden name first, so the inbox sensor never sees half a file."""
    if target.exists() and target.resolve() == source.resolve():
        return
    partial = target.with_name(f".{target.name}.partial")
    shutil.copy2(source, partial)
    os.replace(partial, target)


def add_episodes(files: list[Path], speakers: int | None, settings: Settings) -> list[tuple[str, Path]]:
    """Copy each file (and its .vtt/.srt sidecar) into the inbox and register its set; returns (set, inbox path).

    A different file already in the inbox under the same name is kept: the copy gets the hash in its name.
    """
    from emojudge_models.episodes.inbox import register_episode
    from emojudge_models.episodes.sidecar import find_sidecar
    from emojudge_models.ingest.audio import file_sha256
    from emojudge_models.store import warehouse
    from emojudge_pipeline.partitions import EVAL_SETS_PARTITION

    if speakers is not None and speakers < 1:
        raise UsageError(f"--speakers must be at least 1, got {speakers}")
    for path in files:
        _check_file(path)
    folder = settings.inbox_dir
    folder.mkdir(parents=True, exist_ok=True)
    added: list[tuple[str, Path]] = []
    for path in files:
        sha = file_sha256(path)
        target = folder / path.name
        if target.exists() and target.resolve() != path.resolve() and file_sha256(target) != sha:
            target = folder / f"{path.stem}-{sha[:12]}{path.suffix}"
        sidecar = find_sidecar(path)
        if sidecar is not None:
            _copy_in(sidecar, target.with_suffix(sidecar.suffix))
        _copy_in(path, target)
        with warehouse.connect(settings.home) as con:
            name = register_episode(con, target, sha, speakers)
        launch.instance(settings).add_dynamic_partitions(EVAL_SETS_PARTITION, [name])
        added.append((name, target))
    return added


def _episodes(settings: Settings, read_only: bool = False) -> pd.DataFrame | None:
    """The registered episodes; ``read_only``: from the readers' snapshot, None when there is no warehouse yet."""
    from emojudge_models.episodes.inbox import inbox_episodes
    from emojudge_models.store import warehouse

    if read_only and not warehouse.warehouse_path(settings.home).exists():
        return None
    with warehouse.connect(settings.home, read_only=read_only) as con:
        return inbox_episodes(con)


def run_pending(settings: Settings) -> dict[str, str]:
    """Score every pending episode, one run each; a failing one is reported and the next one still runs.

    Returns each episode's state afterwards (``failed: <reason>`` for a run that failed).
    """
    from emojudge_pipeline.sensors import SCORE_JOB

    pending = _episodes(settings).query("state == 'pending'")["name"].tolist()
    if not pending:
        print("no pending episodes")
        return {}
    failures: dict[str, str] = {}
    for name in pending:
        try:
            launch.materialize(name, train=False, settings=settings, job_name=SCORE_JOB)
        except SystemExit as error:
            failures[name] = " ".join(str(error).split())
        except Exception as error:
            if not is_user_error(error):
                raise
            failures[name] = " ".join(str(error).split())
    after = _episodes(settings).set_index("name")
    outcome: dict[str, str] = {}
    for name in pending:
        row = after.loc[name]
        if name in failures:
            outcome[name] = f"failed: {failures[name]}"
        elif row["state"] == "rejected":
            outcome[name] = f"rejected: {row['reason']}"
        else:
            outcome[name] = f"{row['state']} ({row['segments']} segments, {row['speakers']} speakers)"
        print(f"{name}  {outcome[name]}")
    if failures:
        raise UsageError(f"{len(failures)} of {len(pending)} episodes failed to score; see the lines above")
    return outcome


def list_episodes(settings: Settings) -> None:
    import pandas as pd

    print(f"home: {settings.home}")
    frame = _episodes(settings, read_only=True)
    if frame is None or frame.empty:
        print(f"no episodes registered; drop audio into {settings.inbox_dir} or run emojudge inbox add FILE")
        return
    columns = ["name", "state", "segments", "speakers", "path", "reason"]
    with pd.option_context("display.max_colwidth", 60, "display.width", 200):
        print(frame[columns].fillna("").to_string(index=False))
