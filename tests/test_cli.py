"""The emojudge command's own surface: help for every argument, --version, no heavy imports before a command runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from emojudge_pipeline import cli

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import sys
from emojudge_pipeline import cli
try:
    cli.main(sys.argv[1:])
except SystemExit:
    pass
heavy = sorted(m for m in ("dagster", "torch", "pandas", "duckdb", "transformers") if m in sys.modules)
print("heavy:", ",".join(heavy) or "none")
"""


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("args", [("--help",), ("--version",), ("eval-set", "add", "--help")])
def test_help_and_version_load_no_heavy_module(args: tuple[str, ...]) -> None:
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("heavy: none")


def test_version_and_every_argument_has_help() -> None:
    assert run_cli("--version").stdout.startswith("emojudge ")
    parser = cli.build_parser()
    actions = [parser._actions]
    for sub in parser._subparsers._group_actions:
        for command in sub.choices.values():
            actions.append(command._actions)
            for nested in command._subparsers._group_actions if command._subparsers else []:
                actions.extend(c._actions for c in nested.choices.values())
    undocumented = [a.dest for group in actions for a in group if not a.help and a.dest != "help"]
    assert undocumented == []
    assert "``" not in parser.format_help()


def test_list_reads_without_a_warehouse_and_a_bad_setting_is_one_line(tmp_path: Path) -> None:
    env = {"EMOJUDGE_HOME": str(tmp_path / "home"), "DAGSTER_HOME": str(tmp_path / "dagster")}
    listed = run_cli("eval-set", "list", env=env)
    assert listed.returncode == 0 and "no evaluation sets registered" in listed.stdout
    assert not (tmp_path / "home" / "emojudge.duckdb").exists()
    bad = subprocess.run(
        [sys.executable, "-m", "emojudge_pipeline.cli", "eval-set", "list"],
        env={**os.environ, "PYTHONPATH": str(REPO), **env, "EMOJUDGE_JUDGE_THRESHOLD": "1.7"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()]
    assert bad.stderr.startswith("error: EMOJUDGE_JUDGE_THRESHOLD")


def test_runs_show_no_third_party_progress_bars(tmp_path: Path) -> None:
    code = (
        "import emojudge_pipeline, sys\n"
        "from tiny_models import save_tiny_roberta\n"
        "from emojudge_models.encoders.hf import HFTextEncoder\n"
        "HFTextEncoder(save_tiny_roberta(sys.argv[1], ['a b c', 'd e f']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        env={
            **{k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"},
            "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "it/s]" not in done.stderr and "Loading weights" not in done.stderr


def test_top_level_help_names_every_argument_of_every_command() -> None:
    parser = cli.build_parser()
    text = parser.format_help()
    missing = []
    for sub in parser._subparsers._group_actions:
        for command in sub.choices.values():
            nested = command._subparsers._group_actions if command._subparsers else []
            for leaf in [p for group in nested for p in group.choices.values()] or [command]:
                for action in leaf._actions:
                    if action.dest in ("help",) or isinstance(action, type(sub)):
                        continue
                    names = action.option_strings or [action.metavar or action.dest]
                    if not any(name in text for name in names):
                        missing.append(f"{leaf.prog}: {names[0]}")
    assert missing == []


def test_the_demo_query_hints_run_as_printed_without_the_venv(tmp_path: Path) -> None:
    """The demo's closing hints run from a shell whose PATH has no venv (nothing activated)."""
    from emojudge_models.store import warehouse

    with warehouse.connect(tmp_path):
        pass
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for hint in cli.query_hints(tmp_path):
        done = subprocess.run(["bash", "-c", hint], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{hint}\n{done.stderr[-1000:]}"


def test_the_home_is_the_same_from_two_folders_and_is_printed(tmp_path: Path) -> None:
    """Without EMOJUDGE_HOME, `eval-set list` from the checkout and from a folder inside it use the checkout's
    .emojudge, and from a folder outside any checkout the user's own; each prints the home it used."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMOJUDGE_") and k != "DAGSTER_HOME"}
    env |= {"PYTHONPATH": str(REPO), "XDG_DATA_HOME": str(tmp_path / "data")}
    homes = []
    for folder in (REPO, REPO / "docs", outside):
        done = subprocess.run(
            [sys.executable, "-c", PROBE, "eval-set", "list"], cwd=folder, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        homes.append(done.stdout.splitlines()[0])
    assert homes == [f"home: {REPO / '.emojudge'}"] * 2 + [f"home: {tmp_path / 'data' / 'emojudge'}"]
    assert not (tmp_path / "data").exists(), "a read created the home"


def test_sql_opens_the_readers_snapshot_read_only_and_says_when_there_is_none(tmp_path: Path) -> None:
    """`emojudge sql` (make sql): piped SQL runs on the snapshot and a write is refused; no warehouse, one line."""
    from emojudge_models.store import warehouse

    home = tmp_path / "home"
    command = [sys.executable, "-m", "emojudge_pipeline.cli", "sql"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "EMOJUDGE_HOME": str(home)}
    missing = subprocess.run(command, input="", env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and missing.stderr.startswith(f"error: no warehouse at {home}")
    assert not home.exists(), "a read created nothing"
    with warehouse.connect(home) as con:
        con.execute("INSERT INTO eval_sets (name, format, path) VALUES ('a', 'folder', '/x'), ('b', 'folder', '/y')")
    query = "SELECT count(*) AS sets FROM eval_sets; INSERT INTO eval_sets (name, format, path) VALUES ('c', 'x', 'z');"
    done = subprocess.run(command, input=query, env=env, capture_output=True, text=True, timeout=120)
    assert "│     2 │" in done.stdout, done.stdout + done.stderr
    assert "read-only" in done.stderr.lower(), done.stderr
