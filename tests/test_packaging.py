"""The built wheel carries its SQL (the top-level sql/, as emojudge_models/sql/) and templates: a non-editable install
creates a warehouse and answers a query; no SQL is left inside the Python packages of the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from emojudge_models.store import warehouse

REPO = Path(__file__).resolve().parents[1]
BUILD_IGNORE = (".git", ".venv", ".emojudge", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "shared")
SQL_FILES = sorted(f"emojudge_models/{p.relative_to(REPO).as_posix()}" for p in (REPO / "sql").rglob("*.sql"))
PACKAGE_DATA = SQL_FILES + sorted(
    p.relative_to(REPO).as_posix() for p in (REPO / "emojudge_models").rglob("judge/templates/*.txt")
)
PACKAGES = sorted(
    p.parent.relative_to(REPO).as_posix().replace("/", ".")
    for root in ("emojudge_models", "emojudge_pipeline")
    for p in (REPO / root).rglob("__init__.py")
)

QUERY_FROM_WHEEL = """
import sys
from pathlib import Path
import emojudge_models
from emojudge_models.store import warehouse
assert "site-packages" in emojudge_models.__file__, emojudge_models.__file__
home = Path(sys.argv[1])
with warehouse.connect(home) as con:
    print("version", warehouse.current_version(con))
    print("rows", len(con.execute(warehouse.sql_text("examples/rejected_inputs.sql")).fetchall()))
    print("migrations", len(warehouse.migrations()))
from emojudge_models.judge.prompt import TEMPLATE_SHA256
print("template", TEMPLATE_SHA256[:12])
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Build from a clean copy of the sources: setuptools' in-tree build/ would otherwise keep stale modules.
    source = tmp_path_factory.mktemp("source") / "emojudge"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*BUILD_IGNORE))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (built,) = out.glob("emojudge-*.whl")
    return built


def test_wheel_contains_every_sql_file_and_template(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert any(n.endswith(".txt") for n in PACKAGE_DATA) and len(SQL_FILES) > 80
    missing = [name for name in PACKAGE_DATA if name not in names]
    assert not missing
    assert "emojudge_models/sql/README.md" in names
    assert not [p for p in PACKAGES if f"{p.replace('.', '/')}/__init__.py" not in names]
    assert not any(name.startswith(("tests/", "sql/")) for name in names)


def test_all_sql_lives_in_the_top_level_sql_folder() -> None:
    inside = sorted(p.relative_to(REPO).as_posix() for root in ("emojudge_models", "emojudge_pipeline")
                    for p in (REPO / root).rglob("*.sql"))  # fmt: skip
    assert inside == []
    assert warehouse.sql_file("store/schema.sql").is_file() and warehouse.sql_file("examples").is_dir()


def test_non_editable_install_creates_the_warehouse_and_runs_a_query(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    # Dependencies come from this environment's site-packages, appended after the fresh venv's own (so the
    # installed wheel, not the editable checkout, provides emojudge_models).
    site = next(Path(p) for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    fresh_site = next((env_dir / "lib").glob("python*/site-packages"))
    (fresh_site / "deps.pth").write_text(f"{site}\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [str(python), "-c", QUERY_FROM_WHEEL, str(tmp_path / "home")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines["version"] == str(warehouse.SCHEMA_VERSION)
    assert lines["rows"] == "0"
    assert int(lines["migrations"]) == len(warehouse.migrations()) >= 2
    assert len(lines["template"]) == 12
