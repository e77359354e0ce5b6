"""The real Dagster command line and webserver load the code location and see the asset graph."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from dagster import __version__ as dg_version
from dev_server import free_port, interruptible, stop_group

from emojudge_models.store import warehouse
from emojudge_pipeline import cli, cli_support, instance

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))
WEBSERVER = str(Path(sys.executable).with_name("dagster-webserver"))


def test_dagster_asset_materialize_cli(msp_corpus: Path, emojudge_home: Path) -> None:
    cli.add_eval_set("msp-cli", msp_corpus, "msp")
    done = subprocess.run(
        [
            DAGSTER,
            "asset",
            "materialize",
            "-m",
            "emojudge_pipeline.definitions",
            "--select",
            "utterances",
            "--partition",
            "msp-cli",
        ],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with warehouse.connect(emojudge_home, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM utterances WHERE eval_set = 'msp-cli'").fetchone()[0] == 10


def test_webserver_serves_the_asset_graph(emojudge_home: Path) -> None:
    cli.instance()
    port = free_port()
    server = subprocess.Popen(
        [WEBSERVER, "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    query = json.dumps({"query": "{ assetNodes { assetKey { path } groupName } }"}).encode()
    try:
        nodes = None
        deadline = time.monotonic() + 120
        while nodes is None and time.monotonic() < deadline and server.poll() is None:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/graphql", data=query, headers={"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(request, timeout=5) as response:
                    nodes = json.load(response)["data"]["assetNodes"]
            except (OSError, KeyError, TypeError):
                time.sleep(1)
        assert nodes is not None, "webserver did not answer within 120 s"
        keys = {"/".join(n["assetKey"]["path"]): n["groupName"] for n in nodes}
        assert keys["utterances"] == "ingest" and keys["llm_judgments"] == "refinement"
        assert {
            "audio_features",
            "text_features",
            "logits",
            "fused_predictions",
            "prosody",
            "evaluation",
        } <= keys.keys()
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.reliability
@pytest.mark.parametrize("dev", ["dagster", pytest.param("dg", marks=pytest.mark.slow_fault)])
def test_emojudge_ui_serves_from_a_fresh_home_with_no_demo_run(tmp_path: Path, dev: str) -> None:
    """`make ui` on a fresh clone: no DAGSTER_HOME yet, no warehouse; `dagster dev` (the workspace the CLI writes)
    and `dg dev` (the checkout's [tool.dg] project) both answer /server_info and load the location emojudge; Ctrl-C
    stops it quietly (exit 0, no `Aborted!`, no virtual-environment warning)."""
    home = tmp_path / "fresh"
    output = tmp_path / "ui.log"
    port = free_port()
    env = {
        **os.environ,
        "EMOJUDGE_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "PYTHONPATH": str(REPO),
    }
    with output.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "emojudge_pipeline.cli", "ui", "--port", str(port), "--dev", dev],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=interruptible,
        )
    query = json.dumps(
        {
            "query": "{ workspaceOrError { ... on Workspace { locationEntries { name "
            "locationOrLoadError { __typename } } } } }"
        }
    ).encode()
    try:
        info, locations = None, None
        deadline = time.monotonic() + 180
        while locations is None and time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as response:
                    info = json.load(response)
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/graphql", data=query, headers={"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(request, timeout=5) as response:
                    entries = json.load(response)["data"]["workspaceOrError"]["locationEntries"]
                    if all(entry["locationOrLoadError"] for entry in entries):
                        locations = [(e["name"], e["locationOrLoadError"]["__typename"]) for e in entries]
            except (OSError, KeyError, TypeError):
                time.sleep(1)
            else:
                time.sleep(0 if locations else 1)
        assert info is not None and "dagster_webserver_version" in info, f"{dev} dev did not answer in 180 s"
        assert info["dagster_version"] == dg_version
        assert locations == [("emojudge", "RepositoryLocation")]
        assert (home / "dagster" / "dagster.yaml").read_text().startswith(instance.HEADER)
        os.kill(server.pid, signal.SIGINT)
        assert server.wait(timeout=90) == 0
        said = output.read_text()
        assert "Dagster UI stopped" in said
        assert "Aborted!" not in said and "does not match" not in said, said[-2000:]
    finally:
        stop_group(server)


def test_ui_dev_dg_outside_a_checkout_is_a_one_line_error(emojudge_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed wheel has no pyproject.toml: `emojudge ui --dev dg` says so and names the alternative."""
    assert cli.project_root() == REPO
    monkeypatch.setattr(cli, "project_root", lambda: None)
    with pytest.raises(cli_support.UsageError, match=r"needs a checkout with pyproject.toml \(\[tool.dg\]\)"):
        cli.ui("127.0.0.1", free_port(), dev="dg")
