"""``emojudge inbox``: register podcast episodes by hand, score the pending ones now, list their states.

``inbox run`` scores with the registered models and no training, in the job the inbox sensor's runs use
(``score_eval_set``). Like :mod:`emojudge_pipeline.cli`, heavy modules load inside the commands.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from emojudge_models.episodes import EPISODE_SUFFIXES
from emojudge_models.settings import Settings
from emojudge_pipeline import launch
from emojudge_pipeline.cli_support import UsageError, is_user_error

if TYPE_CHECKING:
    import pandas as pd

    from emojudge_models.episodes.speakers import SpeakerHint


def add_inbox_parser(commands: argparse._SubParsersAction) -> None:
    """The ``inbox`` command and its ``add``, ``run`` and ``list`` subcommands."""
    inbox = commands.add_parser("inbox", help="podcast inbox: add episodes, score the pending ones, list them")
    inbox_commands = inbox.add_subparsers(
        dest="inbox_command", required=True, metavar="SUBCOMMAND", help="add, run or list"
    )
    add = inbox_commands.add_parser("add", help="copy episodes into the inbox and register each (prints its set)")
    add.add_argument("files", nargs="+", type=Path, metavar="FILE", help="episode audio (a .vtt/.srt beside it too)")
    add.add_argument("--speakers", type=int, default=None, help="how many speakers the episodes have, if known")
    add.add_argument("--min-speakers", type=int, default=None, help="at least this many speakers (count estimated)")
    add.add_argument("--max-speakers", type=int, default=None, help="at most this many speakers (count estimated)")
    inbox_commands.add_parser("run", help="score every pending episode now with the registered models")
    inbox_commands.add_parser("list", help="show each episode's state (pending, scored, rejected, missing)")
    inbox.set_defaults(handler=dispatch)


def dispatch(args: argparse.Namespace, settings: Settings) -> None:
    if args.inbox_command == "add":
        from emojudge_models.episodes.speakers import SpeakerHint

        try:
            hint = SpeakerHint(args.speakers, args.min_speakers, args.max_speakers)
        except ValueError as error:
            raise UsageError(str(error)) from None
        for name, target in add_episodes(args.files, hint, settings):
            print(f"{name}  {target}")
    elif args.inbox_command == "run":
        run_pending(settings)
    else:
        list_episodes(settings)


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise UsageError(f"{path}: is a directory, not an episode file")
    if not path.exists():
        raise UsageError(f"{path}: file not found")
    if not path.is_file():
        raise UsageError(f"{path}: not a regular file (a device, pipe or socket)")
    if path.suffix.lower() not in EPISODE_SUFFIXES:
        raise UsageError(f"{path}: not an episode file (expected one of {', '.join(EPISODE_SUFFIXES)})")


def _copy_in(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` under a hidden name first, so the inbox sensor never sees half a file."""
    if target.exists() and target.resolve() == source.resolve():
        return
    partial = target.with_name(f".{target.name}.partial")
    shutil.copy2(source, partial)
    os.replace(partial, target)


def _say_waiting(settle_s: float) -> Callable[[Path], None]:
    def say(path: Path) -> None:
        print(f"waiting for {path} to hold still for {settle_s:g} s (EMOJUDGE_INBOX_SETTLE_S)", file=sys.stderr)

    return say


def _settled_copy(source: Path, folder: Path, settle_s: float) -> tuple[Path, str]:
    """A complete copy of ``source`` staged in the inbox under a hidden name (the sensor skips hidden files), or
    ``source`` itself when it is in the inbox already, with the SHA-256 of those bytes.

    The file must first hold still for ``settle_s`` (:mod:`emojudge_models.episodes.admission`, the sensor's rule;
    a bounded wait, then a one-line refusal) and must not change while it is copied, so a file still being written
    is never registered half way.
    """
    from emojudge_models.episodes.admission import ADD_WAIT_SETTLES, FileState, StillChanging, wait_until_settled
    from emojudge_models.ingest.audio import file_sha256

    deadline = time.monotonic() + ADD_WAIT_SETTLES * settle_s
    in_inbox = source.resolve().parent == folder.resolve()
    staged = source if in_inbox else folder / f".{source.name}.partial"
    while True:
        try:
            state = wait_until_settled(source, settle_s, max(0.0, deadline - time.monotonic()), _say_waiting(settle_s))
        except (StillChanging, FileNotFoundError) as error:
            raise UsageError(str(error)) from None
        try:
            if not in_inbox:
                shutil.copy2(source, staged)
            sha = file_sha256(staged)
        except BaseException:  # interrupted or failed (a full disk): leave no partial copy behind
            if not in_inbox:
                staged.unlink(missing_ok=True)
            raise
        if FileState.of(source) == state:
            return staged, sha
        if not in_inbox:  # written to during the copy: wait for it again
            staged.unlink()


def _place(staged: Path, source: Path, folder: Path, sha: str) -> Path:
    """Where the staged copy goes in the inbox: the source's name, or, when a different file holds that name, the
    name with the hash in it (a file there with the same bytes is kept, and the staged copy dropped)."""
    from emojudge_models.ingest.audio import file_sha256

    if staged == source:
        return source
    target = folder / source.name
    if target.exists() and file_sha256(target) != sha:
        target = folder / f"{source.stem}-{sha[:12]}{source.suffix}"
    return target


def add_episodes(files: list[Path], speakers: SpeakerHint, settings: Settings) -> list[tuple[str, Path]]:
    """Bring each file (and its .vtt/.srt sidecar) into the inbox once complete and register its set with the
    speaker hints; returns (set, inbox path) per file."""
    from emojudge_models.episodes.inbox import register_episode
    from emojudge_models.episodes.sidecar import find_sidecar
    from emojudge_models.store import warehouse
    from emojudge_pipeline.partitions import EVAL_SETS_PARTITION

    for path in files:
        _check_file(path)
    folder = settings.inbox_dir
    folder.mkdir(parents=True, exist_ok=True)
    added: list[tuple[str, Path]] = []
    for path in files:
        staged, sha = _settled_copy(path, folder, settings.inbox_settle_s)
        target = _place(staged, path, folder, sha)
        sidecar = find_sidecar(path)
        if sidecar is not None:  # before the audio, so whoever sees the episode sees its transcript
            _copy_in(sidecar, target.with_suffix(sidecar.suffix))
        if staged != target:
            if target.exists():
                staged.unlink()
            else:
                os.replace(staged, target)
        with warehouse.connect(settings.home) as con:
            name = register_episode(con, target, sha, speakers)
        launch.instance(settings).add_dynamic_partitions(EVAL_SETS_PARTITION, [name])
        added.append((name, target))
    return added


EPISODE_COLUMNS = ["name", "state", "segments", "speakers", "path", "reason"]


def _episodes(settings: Settings) -> pd.DataFrame:
    """Every registered episode with its state, read from the readers' snapshot (a read never opens the warehouse
    for writing, nor creates one)."""
    import pandas as pd

    from emojudge_models.episodes.inbox import inbox_episodes
    from emojudge_models.store import warehouse

    try:
        with warehouse.connect(settings.home, read_only=True) as con:
            return inbox_episodes(con)
    except FileNotFoundError:  # no warehouse yet: nothing is registered
        return pd.DataFrame(columns=EPISODE_COLUMNS)


def _missing_line(row: pd.Series) -> str:
    return f"missing: {row['path']}: {row['reason']}; skipped"


def run_pending(settings: Settings) -> dict[str, str]:
    """Score every pending episode, one run each; a failing one is reported and the next one still runs.

    A missing episode (its file gone when a run came to ingest it) is skipped with one line while its file stays
    gone, and scored again once it is back. Returns each episode's state afterwards (``failed: <reason>`` for a run
    that failed).
    """
    from emojudge_pipeline.sensors import SCORE_JOB

    episodes = _episodes(settings)
    missing = episodes.query("state == 'missing'")
    back = [row["name"] for _, row in missing.iterrows() if Path(row["path"]).is_file()]
    for _, row in missing.iterrows():
        if row["name"] not in back:
            print(f"{row['name']}  {_missing_line(row)}")
    pending = [*episodes.query("state == 'pending'")["name"], *back]
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
        elif row["state"] == "missing":
            outcome[name] = _missing_line(row)
        else:
            outcome[name] = f"{row['state']} ({row['segments']} segments, {row['speakers']} speakers)"
        print(f"{name}  {outcome[name]}")
    if failures:
        raise UsageError(f"{len(failures)} of {len(pending)} episodes failed to score; see the lines above")
    return outcome


def list_episodes(settings: Settings) -> None:
    import pandas as pd

    print(f"home: {settings.home}")
    frame = _episodes(settings)
    if frame.empty:
        print(f"no episodes registered; drop audio into {settings.inbox_dir} or run emojudge inbox add FILE")
        return
    with pd.option_context("display.max_colwidth", 60, "display.width", 200):
        print(frame[EPISODE_COLUMNS].fillna("").to_string(index=False))
