"""``emojudge sql``: the pinned DuckDB CLI on the warehouse the settings select, read-only.

The single file: the readers' snapshot (``duckdb -readonly``), never the main file a run may hold. The cluster
profile (``EMOJUDGE_WAREHOUSE=ducklake``): an in-memory DuckDB that loads the packaged ducklake and postgres
extensions and attaches the lake read-only (``duckdb -init``), so an analyst reads while workers write.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from emojudge_models.settings import Settings
from emojudge_models.store import lake, warehouse
from emojudge_pipeline.cli_support import UsageError


def duckdb_cli() -> Path:
    """The DuckDB CLI installed beside this interpreter (the ``duckdb-cli`` package, pinned with the library)."""
    beside = Path(sys.executable).with_name("duckdb")
    return beside if beside.is_file() else Path("duckdb")


def shell_command(settings: Settings, init_file: Path) -> list[str]:
    """The CLI's argument list; for the lake, ``init_file`` is written with what attaches it."""
    selected = lake.from_settings(settings)
    if selected is not None:
        init_file.write_text(lake.cli_init(selected))
        return [str(duckdb_cli()), "-init", str(init_file)]
    snapshot = warehouse.snapshot_path(settings.home)
    if not snapshot.exists():
        raise UsageError(f"no warehouse at {snapshot}: run make demo or emojudge materialize NAME first")
    return [str(duckdb_cli()), "-readonly", str(snapshot)]


def sql_shell(settings: Settings) -> int:
    """Run the CLI on this terminal (or on piped SQL); returns its exit status."""
    with tempfile.TemporaryDirectory(prefix="emojudge-sql-") as folder:
        command = shell_command(settings, Path(folder) / "init.sql")
        return subprocess.run(command, check=False).returncode
