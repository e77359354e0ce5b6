"""docs/ui.md's screenshots, taken by a real headless Chromium against `dg dev` on 127.0.0.1 over a small warehouse
that a real run materialised; and the UI's floats, rounded.

Chromium (Debian's ``chromium`` package) is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
it reads commands on fd 3 and answers on fd 4), so no driver package is needed. The test writes the PNGs to
``$EMOJUDGE_UI_SCREENSHOTS`` when set (``EMOJUDGE_UI_SCREENSHOTS=docs/img`` refreshes the committed ones), else to a
temporary folder. Where Chromium is missing the test installs Debian's ``chromium`` (as root, where ``apt-get`` is
there: about 15 s here), so CI takes the screenshots too; it is skipped, with the reason, only where it cannot.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from batch_api_server import FakeOpenAIServer
from dev_server import free_port, interruptible, stop_group
from PIL import Image, ImageStat
from tiny_models import demo_training_env

from emojudge_pipeline import cli
from emojudge_pipeline.assets.common import rounded

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "ui.md"
IMG = REPO / "docs" / "img"
SIZE = (1440, 900)
MAX_BYTES = 300_000
SHOTS = ("asset-graph.png", "asset-metadata.png", "run.png")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


@pytest.fixture(scope="module")
def materialised(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], str]]:
    """The demo corpus materialised by one real `emojudge materialize` (acoustic frames, a tiny text model, the
    scripted chat judge); yields the environment that names its homes and the run's id."""
    root = tmp_path_factory.mktemp("ui")
    home = root / "home"
    manifest, training = demo_training_env(root)
    env = {"EMOJUDGE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"), **training}
    with pytest.MonkeyPatch.context() as patch, FakeOpenAIServer(max_lifetime_s=600) as api:
        for name, value in env.items():
            patch.setenv(name, value)
        patch.setenv("EMOJUDGE_JUDGE_BASE_URL", api.base_url)
        cli.add_eval_set("demo", manifest, "manifest")
        cli.materialize("demo", train=True)
        with dg.DagsterInstance.get() as inst:
            [run] = inst.get_runs(limit=1)
        assert run.status == dg.DagsterRunStatus.SUCCESS
        yield env, run.run_id


def _metadata_of_run(env: dict[str, str], run_id: str) -> list[tuple[str, str, Any]]:
    """(event, key, value) for every metadata entry of the run's materialisations and check evaluations."""
    kinds = {dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_CHECK_EVALUATION}
    entries = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
        with dg.DagsterInstance.get() as inst:
            for record in inst.get_records_for_run(run_id, of_type=kinds, limit=10_000).records:
                event = record.event_log_entry.dagster_event
                data = event.event_specific_data
                metadata = data.materialization.metadata if hasattr(data, "materialization") else data.metadata
                label = event.asset_key.to_user_string() if event.asset_key else event.event_type_value
                entries += [(label, key, value.value) for key, value in metadata.items()]
    return entries


def _unrounded(value: Any) -> list[str]:
    """Numbers in a metadata value that :func:`rounded` would change (floats, also inside JSON), and numbers with
    more than 4 decimals in markdown text (images left out)."""
    if isinstance(value, float):
        return [] if math.isnan(value) or rounded(value) == value else [repr(value)]
    if isinstance(value, str) and not value.startswith("!["):
        return re.findall(r"(?<![\w.])-?\d+\.\d{5,}(?![\w.])", value)
    if isinstance(value, dict):
        return [found for item in value.values() for found in _unrounded(item)]
    if isinstance(value, list | tuple):
        return [found for item in value for found in _unrounded(item)]
    return []


@pytest.mark.slow
def test_the_uis_floats_are_rounded(materialised: tuple[dict[str, str], str]) -> None:
    """An F1 of 0.7256, not 0.7255952380952381: every metadata number the run wrote (materialisations and checks) is
    rounded to 4 significant digits below 1 and 4 decimals above (the estimated cost keeps 6)."""
    entries = _metadata_of_run(*materialised)
    floats = [(label, key) for label, key, value in entries if isinstance(value, float)]
    assert ("evaluation", "fused/categorical/f1_macro") in floats and len(floats) >= 10
    unrounded = [
        (label, key, found)
        for label, key, value in entries
        if key != "estimated_cost_usd"
        for found in _unrounded(value)
    ]
    assert unrounded == []


# ---- Chromium over the DevTools protocol ------------------------------------------------------------------------


def chromium_executable() -> str | None:
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


class Chromium:
    """One headless Chromium tab driven over the DevTools protocol on a pipe (fds 3 and 4 of the browser)."""

    def __init__(self, executable: str, profile: Path, size: tuple[int, int]) -> None:
        commands_read, self._commands = os.pipe()
        self._answers, answers_write = os.pipe()

        def pipes_as_fd_3_and_4() -> None:
            os.dup2(commands_read, 100)
            os.dup2(answers_write, 101)
            os.dup2(100, 3)
            os.dup2(101, 4)

        width, height = size
        self.process = subprocess.Popen(
            [executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
             "--no-first-run", "--remote-debugging-pipe", f"--user-data-dir={profile}",
             f"--window-size={width},{height}", "about:blank"],
            preexec_fn=pipes_as_fd_3_and_4, close_fds=False, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(commands_read)
        os.close(answers_write)
        self._last_id = 0
        self._buffer = b""
        self._session: str | None = None
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        self.call("Page.enable")

    def call(self, method: str, timeout_s: float = 60.0, **params: Any) -> dict[str, Any]:
        """Send one command (to the tab once attached) and return its result; events in between are dropped."""
        self._last_id += 1
        message: dict[str, Any] = {"id": self._last_id, "method": method, "params": params}
        if self._session and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self._session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._last_id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply["result"]
            ready, _, _ = select.select([self._answers], [], [], 1.0)
            if ready:
                chunk = os.read(self._answers, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium (pid {self.process.pid}) closed its pipe during {method}")
                self._buffer += chunk
        raise TimeoutError(f"chromium did not answer {method} within {timeout_s} s")

    def evaluate(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not shown within {timeout_s} s")
            time.sleep(0.5)

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout_s=10)
            self.process.wait(timeout=20)
        except (RuntimeError, TimeoutError, OSError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)
        finally:
            os.close(self._commands)
            os.close(self._answers)


def install_chromium() -> str:
    """Install Debian's chromium where this process may (root, apt-get on PATH); the reason when it did not."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "not root or no apt-get"
    done = subprocess.run(
        ["apt-get", "install", "-y", "-q", "chromium"],
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    return f"apt-get install chromium exited {done.returncode}: {done.stderr.strip()[-300:]}"


@pytest.fixture(scope="module")
def chromium() -> str:
    found = chromium_executable()
    if found is None:
        why = install_chromium()
        found = chromium_executable()
        if found is None:
            pytest.skip(f"no headless Chromium ({', '.join(CHROMIUM_NAMES)}) on PATH and {why}")
    return found


@pytest.fixture(scope="module")
def ui_url(chromium: str, materialised: tuple[dict[str, str], str]) -> Iterator[str]:
    """`emojudge ui --dev dg` (dg dev: webserver and daemon) on 127.0.0.1 over the materialised homes."""
    env, _ = materialised
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "emojudge_pipeline.cli", "ui", "--port", str(port), "--dev", "dg"],
        env={**os.environ, **env, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=interruptible,
    )
    url = f"http://127.0.0.1:{port}"
    query = json.dumps({"query": "{ assetNodes { assetKey { path } } }"}).encode()
    headers = {"Content-Type": "application/json"}
    try:
        nodes = None
        deadline = time.monotonic() + 180
        while nodes is None and time.monotonic() < deadline and server.poll() is None:
            try:
                request = urllib.request.Request(f"{url}/graphql", data=query, headers=headers)
                with urllib.request.urlopen(request, timeout=5) as response:
                    nodes = json.load(response)["data"]["assetNodes"] or None
            except (OSError, KeyError, TypeError):
                time.sleep(1)
        assert nodes is not None, f"dg dev on port {port} did not serve the asset graph in 180 s (exit {server.poll()})"
        yield url
    finally:
        stop_group(server)


DISMISS_COMMUNITY_DIALOG = """(() => {
  const skip = [...document.querySelectorAll('button')].find(b => b.innerText.trim() === 'Skip');
  if (skip) skip.click();
  return true;
})()"""
SHOWS = "['{}'].every(t => document.body.innerText.includes(t))"
GRAPH_ASSETS = ("utterances", "prosody", "audio_features", "logits", "fused_predictions", "llm_judgments", "evaluation")
GRAPH_STATUS_SHOWN = (
    json.dumps(GRAPH_ASSETS)
    + """.every(name => {
  const label = [...document.querySelectorAll('div')].filter(d => (d.innerText || '').trim() === name).pop();
  // a node's box is grey (rgb(247, 248, 249)) until the asset's status has loaded
  return label && label.parentElement && getComputedStyle(label.parentElement).backgroundColor !== 'rgb(247, 248, 249)';
})"""
)
OPEN_CONFUSION_MATRIX = """(() => {
  const row = [...document.querySelectorAll('tr')].find(r => r.innerText.trim().startsWith('confusion_fused'));
  if (!row) return false;
  row.scrollIntoView({block: 'center'});
  const link = [...row.querySelectorAll('*')].reverse().find(e => (e.innerText || '').includes('Show Markdown'));
  if (link) link.click();
  return Boolean(link);
})()"""
IMAGE_SHOWN = """[...document.querySelectorAll('img')].some(
  i => i.src.startsWith('data:image/png') && i.complete && i.naturalWidth > 200)"""


def _shows(*texts: str) -> str:
    return SHOWS.format("', '".join(texts))


def _assert_a_real_picture(path: Path) -> None:
    assert path.is_file(), path
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size} bytes"
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == SIZE, (path.name, image.format, image.size)
        stats = ImageStat.Stat(image.convert("L"))
        assert stats.stddev[0] > 10, f"{path.name} is blank (grey-level std {stats.stddev[0]:.1f})"
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 500, f"{path.name} has too few colours"


@pytest.mark.slow
def test_screenshots_of_the_asset_graph_an_assets_metadata_and_a_run(
    chromium: str, ui_url: str, materialised: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    _, run_id = materialised
    out = Path(os.environ.get("EMOJUDGE_UI_SCREENSHOTS") or tmp_path / "img")
    out.mkdir(parents=True, exist_ok=True)
    browser = Chromium(chromium, tmp_path / "profile", SIZE)
    try:
        pages = [
            ("asset-graph.png", "/assets/utterances?view=lineage&lineageScope=downstream&lineageDepth=12",
             GRAPH_STATUS_SHOWN, None),
            ("asset-metadata.png", "/assets/evaluation?partition=demo", _shows("confusion_fused", "f1_macro"),
             OPEN_CONFUSION_MATRIX),
            ("run.png", f"/runs/{run_id}", _shows("RUN_SUCCESS", "materialize_eval_set", "Success"), None),
        ]  # fmt: skip
        for name, path, ready, action in pages:
            browser.call("Page.navigate", url=ui_url + path)
            browser.wait_for(ready, f"{path} (for {name})")
            browser.evaluate(DISMISS_COMMUNITY_DIALOG)
            if action:
                browser.wait_for(action, f"the confusion matrix link on {path}")
                browser.wait_for(IMAGE_SHOWN, f"the confusion matrix of {path}")
            time.sleep(2.0)  # the graph's layout and the dialog's opening transitions
            browser.screenshot(out / name)
    finally:
        browser.close()
    for name in SHOTS:
        _assert_a_real_picture(out / name)


def test_docs_ui_shows_the_committed_screenshots() -> None:
    text = DOC.read_text()
    for name in SHOTS:
        assert f"](img/{name})" in text, f"docs/ui.md does not show img/{name}"
        _assert_a_real_picture(IMG / name)
