"""The layout of ``$EMOJUDGE_HOME``: every file and folder the pipeline keeps there, named in one place.

```
$EMOJUDGE_HOME/
  emojudge.duckdb          the warehouse (writers)          emojudge.read.duckdb   the readers' snapshot
  features/                Parquet frame shards by encoder  models/                trained heads and fusion
  models/judge/            the local judge's GGUF           judge/journal.sqlite   judge claims and paid answers
  episodes/decoded/        decoded episodes, mapped by every step process
  inbox/                   podcast inbox (EMOJUDGE_INBOX)   dagster/               the Dagster instance (DAGSTER_HOME)
  logs/                    kept logs of servers that died   demo_corpus/           the generated demo corpus
```
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

HOME_FOLDER = ".emojudge"


def _is_checkout(folder: Path) -> bool:
    """A folder whose pyproject.toml is the emojudge project's (a checkout, where `make demo` keeps its home)."""
    pyproject = folder / "pyproject.toml"
    if not pyproject.is_file():
        return False
    try:
        return tomllib.loads(pyproject.read_text()).get("project", {}).get("name") == "emojudge"
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError):
        return False


def default_home(start: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The home when ``EMOJUDGE_HOME`` is unset, the same from any folder: the nearest folder from ``start`` (the
    current one) up that holds a ``.emojudge`` home or is an emojudge checkout gives ``<it>/.emojudge``; elsewhere
    the user's own, ``$XDG_DATA_HOME/emojudge`` (default ``~/.local/share/emojudge``)."""
    environ = os.environ if environ is None else environ
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / HOME_FOLDER).is_dir() or _is_checkout(folder):
            return folder / HOME_FOLDER
    data = environ.get("XDG_DATA_HOME") or str(Path("~/.local/share").expanduser())
    return Path(data).expanduser().resolve() / "emojudge"


@dataclass(frozen=True)
class HomeLayout:
    """Paths under one home folder (nothing is created here)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def warehouse(self) -> Path:
        return self.root / "emojudge.duckdb"

    @property
    def snapshot(self) -> Path:
        return self.root / "emojudge.read.duckdb"

    @property
    def features(self) -> Path:
        return self.root / "features"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def judge_models(self) -> Path:
        return self.models / "judge"

    @property
    def judge_journal(self) -> Path:
        return self.root / "judge" / "journal.sqlite"

    @property
    def decoded_episodes(self) -> Path:
        return self.root / "episodes" / "decoded"

    @property
    def timelines(self) -> Path:
        """One PNG per inbox episode (``<episode>.png``), rewritten with its ``episode_emotions`` rows."""
        return self.root / "episodes" / "timelines"

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def dagster(self) -> Path:
        return self.root / "dagster"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def lake(self) -> Path:
        """The cluster warehouse's Parquet data when EMOJUDGE_LAKE_DATA is unset (see docs/scale-out.md)."""
        return self.root / "lake"

    @property
    def demo_corpus(self) -> Path:
        return self.root / "demo_corpus"
