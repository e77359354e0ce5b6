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
SHIPPED_MODEL_FILES = sorted(
    p.relative_to(REPO).as_posix() for p in (REPO / "emojudge_models/models/shipped").glob("*/*") if p.is_file()
)
PACKAGE_DATA = (
    SQL_FILES
    + sorted(p.relative_to(REPO).as_posix() for p in (REPO / "emojudge_models").rglob("judge/templates/*.txt"))
    + SHIPPED_MODEL_FILES
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


SCORE_FROM_WHEEL = """
import csv
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from emojudge_models.encoders.factory import build_audio_encoder
from emojudge_models.features.speaker_norm import SpeakerNormaliser
from emojudge_models.ingest.audio import load_wave
from emojudge_models.labels import EMOTIONS
from emojudge_models.models.checkpoints import load_checkpoint
from emojudge_models.models.predict import predict_audio
from emojudge_models.models.shipped import shipped_models
from emojudge_models.profiles import PROFILES

(shipped,) = [m for m in shipped_models() if m.name == "ravdess-whisper-base-logreg"]
assert "site-packages" in str(shipped.path), shipped.path
model = load_checkpoint(shipped.path, "cpu")
data = Path(sys.argv[1])
rows = [r for r in csv.DictReader((data / "manifest.csv").open()) if r["speaker_id"] == "ravdess_actor03"]
encoder = build_audio_encoder(PROFILES["local"].audio_encoder, device="cpu")
assert shipped.fits_encoder(encoder.spec)
frames = [f.astype(np.float16) for f in encoder.encode_batch([load_wave(data / r["path"]) for r in rows])]
keys = [("clips", r["utterance_id"]) for r in rows]
table = pd.DataFrame({"eval_set": "clips", "utterance_id": [k[1] for k in keys], "speaker_id": "actor03"})
normalised = SpeakerNormaliser.for_rows(table).add_all(zip(keys, frames)).apply(keys, frames)
for row, index in zip(rows, predict_audio(model, normalised, "cpu").argmax(axis=1)):
    print(row["path"], row["emotion"], EMOTIONS[index])
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


def _installed(wheel: Path, tmp_path: Path) -> Path:
    """A fresh venv with the wheel installed (--no-deps); dependencies come from this environment's site-packages,
    appended after the fresh venv's own (so the installed wheel, not the editable checkout, provides emojudge)."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    site = next(Path(p) for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    fresh_site = next((env_dir / "lib").glob("python*/site-packages"))
    (fresh_site / "deps.pth").write_text(f"{site}\n")
    return python


def _wheel_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_non_editable_install_creates_the_warehouse_and_runs_a_query(wheel: Path, tmp_path: Path) -> None:
    python = _installed(wheel, tmp_path)
    env = _wheel_env()
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


@pytest.mark.slow
def test_the_shipped_model_loads_from_the_installed_wheel_and_scores_real_clips(
    wheel: Path, tmp_path: Path, ravdess_dir: Path
) -> None:
    """The shipped weights load from site-packages (not the checkout) and label actor 03's clips: nearly all right
    (actor 03 is in its training data), the angry ones angry."""
    assert len(SHIPPED_MODEL_FILES) == 4, "one shipped model, four files"
    result = subprocess.run(
        [str(_installed(wheel, tmp_path)), "-c", SCORE_FROM_WHEEL, str(ravdess_dir)],
        cwd=tmp_path,
        env=_wheel_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    scored = [line.split() for line in result.stdout.splitlines()]
    assert len(scored) == 14
    assert sum(truth == label for _, truth, label in scored) >= 12, scored
    assert all(label == "angry" for _, truth, label in scored if truth == "angry"), scored
