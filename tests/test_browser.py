"""A real browser drives the explorer: JupyterLab + headless Chromium over the DevTools protocol.

JupyterLab serves a copy of ``notebooks/explore.ipynb`` (tiny settings) on a free localhost
port; Debian's ``chromium`` (installed by ``.ci/run``; nothing is downloaded) opens it, runs
every cell, drags the leverage slider with real mouse events, and the test checks that the
probability figure drawn by plotly.js changed. The browser is driven with the Chrome DevTools
Protocol over a websocket (``websocket-client``), so no driver binary is needed.

Skipped when Chromium is missing locally; in CI (``CI`` set) a missing Chromium is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from margin_sim.notebooks import NOTEBOOK_DIR

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-allow-origins=*",
    "--window-size=1400,2000",
)


def _chromium() -> str:
    """Path of the Chromium binary, or skip (fail in CI) with the reason."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    reason = (
        "headless Chromium is not installed (Debian: apt-get install chromium chromium-driver; "
        ".ci/run does it)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # localhost only
            return response.read()
    except OSError:
        return None


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a process we started in its own session, with everything it started."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=10)


class DevTools:
    """Minimal Chrome DevTools Protocol client: commands by id, events ignored."""

    def __init__(self, websocket_url: str) -> None:
        import websocket

        self._socket = websocket.create_connection(websocket_url, timeout=60)
        self._next_id = 0

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message_id = self._next_id
        self._socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self._socket.recv())
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.send(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    def close(self) -> None:
        self._socket.close()


@pytest.fixture
def chromium() -> str:
    """The Chromium binary (checked before anything is started)."""
    return _chromium()


@pytest.fixture
def lab(chromium: str, tmp_path: Path) -> Iterator[str]:
    """JupyterLab on a free localhost port serving a tiny copy of explore.ipynb."""
    notebook = nbformat.read(NOTEBOOK_DIR / "explore.ipynb", as_version=4)
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    cell.source += '\npaths = 200\nhorizon = "1d"'
    root = tmp_path / "lab"
    root.mkdir()
    nbformat.write(notebook, root / "explore.ipynb")
    port = _free_port()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
    }
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        "--ServerApp.port_retries=0", "--IdentityProvider.token=", "--ServerApp.password=",
        "--allow-root",
        "--ServerApp.disable_check_xsrf=True", f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=",
    ]  # fmt: skip
    log = (tmp_path / "lab.log").open("wb")
    process = subprocess.Popen(
        command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait(
            lambda: process.poll() is not None or _get(f"{base}/api/status"),
            180,
            "JupyterLab to start",
        )
        if process.poll() is not None:
            pytest.fail(f"JupyterLab exited: {(tmp_path / 'lab.log').read_text()[-2000:]}")
        yield base
    finally:
        _stop(process)
        log.close()


@pytest.fixture
def browser(chromium: str, tmp_path: Path) -> Iterator[DevTools]:
    """A headless Chromium page driven over the DevTools protocol."""
    profile = tmp_path / "chromium-profile"
    process = subprocess.Popen(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        active = profile / "DevToolsActivePort"
        _wait(lambda: active.is_file() and active.read_text().strip(), 60, "Chromium to start")
        port = int(active.read_text().splitlines()[0])
        listing = _wait(lambda: _get(f"http://127.0.0.1:{port}/json/list"), 30, "a page")
        page = next(t for t in json.loads(listing) if t["type"] == "page")
        tools = DevTools(page["webSocketDebuggerUrl"])
        try:
            yield tools
        finally:
            tools.close()
    finally:
        _stop(process)


# The notebook panel: the current widget, or (when the headless window has no focus and so no
# current widget, as happens on a first start) the main-area widget that has a session.
_PANEL = (
    "(window.jupyterapp && (window.jupyterapp.shell.currentWidget"
    " || Array.from(window.jupyterapp.shell.widgets('main')).find(w => w.sessionContext)))"
)
_STATE = """JSON.stringify((() => {
  const app = window.jupyterapp;
  const panel = app && (app.shell.currentWidget
                        || Array.from(app.shell.widgets('main')).find(w => w.sessionContext));
  const session = panel && panel.sessionContext && panel.sessionContext.session;
  return {title: document.title, panel: !!panel,
          kernel: session && session.kernel ? session.kernel.status : null,
          dialogs: [...document.querySelectorAll('.jp-Dialog')].map(d => d.innerText),
          errors: [...document.querySelectorAll('[data-mime-type*=stderr],[data-mime-type*=error]')]
                  .map(e => e.innerText.slice(0, 500)),
          plots: document.querySelectorAll('.js-plotly-plot').length};
})())"""
_FIGURE = """(() => {
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  const gd = plots.find(d => d.layout && d.layout.meta
                        && d.layout.meta.figure === 'probability_vs_leverage');
  if (!gd) return null;
  return JSON.stringify(gd.data.map(t => [t.name, Array.from(t.x || []), Array.from(t.y || [])]));
})()"""
_HANDLE = """(() => {
  const handle = document.querySelector('.margin-sim-leverage .noUi-handle');
  if (!handle) return null;
  handle.scrollIntoView({block: 'center'});
  const box = handle.getBoundingClientRect();
  return [box.x + box.width / 2, box.y + box.height / 2];
})()"""


def test_dragging_the_leverage_slider_redraws_the_probability_figure(
    lab: str, browser: DevTools
) -> None:
    browser.send("Page.enable")
    # a headless window never has the focus, so JupyterLab's focus tracker may never make the
    # notebook its current widget (seen on the first start in a fresh clone); emulate focus
    browser.send("Emulation.setFocusEmulationEnabled", enabled=True)
    browser.send("Page.navigate", url=f"{lab}/lab/tree/explore.ipynb")
    ready = (
        f"!!({_PANEL} && {_PANEL}.sessionContext && {_PANEL}.sessionContext.session"
        f" && {_PANEL}.sessionContext.session.kernel"
        f" && {_PANEL}.sessionContext.session.kernel.status === 'idle'"
        f" && {_PANEL}.content && {_PANEL}.content.widgets.length > 0)"
    )
    try:
        _wait(lambda: browser.evaluate(ready), 300, "the notebook and an idle kernel")
        # make it the current notebook, which the command acts on
        browser.evaluate(
            f"(() => {{ const p = {_PANEL}; window.jupyterapp.shell.activateById(p.id);"
            " p.activate(); p.content.node.focus(); return true; })()"
        )
        _wait(
            lambda: browser.evaluate("!!window.jupyterapp.shell.currentWidget"),
            30,
            "the notebook to be current",
        )
        browser.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        before = _wait(lambda: browser.evaluate(_FIGURE), 180, "the probability FigureWidget")
    except TimeoutError as error:
        raise TimeoutError(f"{error}; page state: {browser.evaluate(_STATE)}") from None
    assert "now: liquidation probability" in before
    x, y = _wait(lambda: browser.evaluate(_HANDLE), 30, "the leverage slider")

    browser.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
    browser.send(
        "Input.dispatchMouseEvent", type="mousePressed", x=x, y=y, button="left", clickCount=1
    )
    for step in range(1, 9):
        browser.send(
            "Input.dispatchMouseEvent", type="mouseMoved", x=x + 10 * step, y=y, button="left"
        )
    browser.send(
        "Input.dispatchMouseEvent", type="mouseReleased", x=x + 80, y=y, button="left",
        clickCount=1,
    )  # fmt: skip

    after = _wait(
        lambda: (figure := browser.evaluate(_FIGURE)) != before and figure, 60,
        "the probability figure to change",
    )  # fmt: skip
    stars_before = next(t for t in json.loads(before) if t[0] == "now: liquidation probability")
    stars_after = next(t for t in json.loads(after) if t[0] == "now: liquidation probability")
    assert stars_after[1][0] > stars_before[1][0]  # dragged right: higher leverage
