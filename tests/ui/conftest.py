"""Fixtures for the browser tests: a private JupyterLab on 127.0.0.1 and Debian's chromium.

The server runs in a temporary directory with its own config, settings (no news, no
update checks, ``windowingMode: none`` so every output is in the DOM), workspaces and
runtime dirs, a random free port and a random token; the kernel uses ``LABKIT_BACKEND=sim``
unless ``LABKIT_UI_BACKEND`` says otherwise. The browser may only talk to 127.0.0.1:
any other request is aborted. Teardown closes every ``Lab`` in each kernel (over the
kernel's own connection file), shuts the kernels down through the REST API, stops the
server by its PID and checks its process group is empty; on docker it also checks that
no lab the notebook names (``labkit.Lab("np1", ...)``) was left with containers. Missing chromium (``LABKIT_CHROMIUM`` overrides its path) or playwright skips
these tests with the reason, unless ``LABKIT_REQUIRE_BROWSER=1`` (then they fail).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ARTIFACTS = HERE / "artifacts"
NOTEBOOK_04 = REPO / "notebooks" / "04-network-policies-1.ipynb"
CHROMIUM = os.environ.get("LABKIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SETTINGS = {  # JupyterLab user settings: plugin id -> values
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none", "autoStartDefaultKernel": True},
    "@jupyter-widgets/jupyterlab-manager:plugin": {"saveState": False},
}


def missing_requirement() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401, PLC0415
    except ImportError as exc:
        return f"the Python package playwright is not installed ({exc}); pip install playwright (no browser download)"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"no chromium executable at {CHROMIUM} (apt-get install chromium)"
    try:
        import jupyterlab  # noqa: F401, PLC0415
    except ImportError as exc:
        return f"jupyterlab is not installed ({exc})"
    return None


def require_browser() -> None:
    why = missing_requirement()
    if why is None:
        return
    if os.environ.get("LABKIT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"LABKIT_REQUIRE_BROWSER=1 but the browser tests cannot run: {why}")
    pytest.skip(f"browser test skipped: {why}")


def notebook_under_test() -> Path:
    if not NOTEBOOK_04.exists():
        pytest.fail(f"{NOTEBOOK_04.relative_to(REPO)} is missing: the UI test drives the LabPanel it shows")
    return NOTEBOOK_04


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_settings(settings_dir: Path) -> None:
    for plugin, values in SETTINGS.items():
        package, name = plugin.rsplit(":", 1)
        path = settings_dir / package / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


CLOSE_LABS = """
import gc as _gc, sys as _sys
_panel_module = _sys.modules.get("labkit.widgets.panel")
_lab_module = _sys.modules.get("labkit.lab")
for _obj in _gc.get_objects() if _panel_module else ():
    if isinstance(_obj, _panel_module.LabPanel):
        _obj.close()
for _obj in _gc.get_objects() if _lab_module else ():
    if isinstance(_obj, _lab_module.Lab):
        _obj.close()
"""


def _docker_labs() -> set[str] | None:
    """Names of the labs that have labelled containers (None: no Docker engine to ask)."""
    from tests.dockercli import APIError, Client  # noqa: PLC0415
    from tests.integration.helpers import LAB_LABEL  # noqa: PLC0415
    try:
        return {c.labels.get(LAB_LABEL, "") for c in Client().containers.list(all=True, filters={"label": LAB_LABEL})}
    except (APIError, OSError, subprocess.SubprocessError):  # no engine or no CLI: nothing this test could have leaked
        return None


def _api(base: str, token: str, path: str, method: str = "GET") -> object:
    req = urllib.request.Request(f"{base}{path}", method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        body = resp.read()
    return json.loads(body) if body else None


class LabServer:
    """JupyterLab serving ``root`` (where ``notebook`` was copied); ``env`` is added to the
    server's (and so its kernels') environment."""

    def __init__(self, root: Path, notebook: Path, env: dict[str, str] | None = None):
        self.root, self.notebook, self.env = root, notebook, dict(env or {})
        self.port, self.token = _free_port(), secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = root.parent / f"{root.name}-jupyter.log"
        self.backend = os.environ.get("LABKIT_UI_BACKEND", "sim")
        self.proc: subprocess.Popen | None = None

    def url(self, name: str) -> str:
        return f"{self.base}/lab/tree/{urllib.parse.quote(name)}?token={self.token}"

    def wait_for_kernel(self, page, timeout: float = 90) -> None:
        """Until the notebook's kernel has started and stayed idle: the page's indicator says
        "idle" before any kernel exists, and a run-all sent then is lost."""
        deadline, steady = time.monotonic() + timeout, 0
        while time.monotonic() < deadline:
            kernels = _api(self.base, self.token, "/api/kernels") or []
            indicator = page.locator(".jp-Notebook-ExecutionIndicator").first.get_attribute("data-status")
            ok = len(kernels) == 1 and kernels[0]["execution_state"] == "idle" and indicator == "idle"
            steady = steady + 1 if ok else 0
            if steady >= 3:
                return
            select = page.locator(".jp-Dialog").get_by_role("button", name="Select Kernel")
            if select.count():
                select.click()
            time.sleep(0.4)
        pytest.fail(f"the notebook's kernel did not become idle within {timeout} s")

    def start(self) -> None:
        private = self.root.parent / f"{self.root.name}-jupyter"
        self.runtime = private / "runtime"
        self.labs_before = _docker_labs() if self.backend == "docker" else None
        _write_settings(private / "settings")
        env = {**os.environ,
               "JUPYTER_CONFIG_DIR": str(private / "config"),
               "JUPYTERLAB_SETTINGS_DIR": str(private / "settings"),
               "JUPYTERLAB_WORKSPACES_DIR": str(private / "workspaces"),
               "JUPYTER_RUNTIME_DIR": str(self.runtime),
               "LABKIT_BACKEND": self.backend, **self.env}
        # JupyterLab of this environment (`-m jupyterlab`): its kernels import the labkit under test
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={self.root}", "--ServerApp.terminals_enabled=False",
               "--LabApp.extension_manager=readonly", "--LabApp.news_url=None"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=env, cwd=self.root, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)  # its own process group: kernels included
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                _api(self.base, self.token, "/api/status")
                return
            except OSError:
                time.sleep(0.3)
        self.stop()
        pytest.fail(f"jupyter lab did not start; its log:\n{self.log_path.read_text(errors='replace')[-3000:]}")

    def _close_labs(self, kernel_id: str) -> list[str]:
        """Close every Lab (and LabPanel) in the kernel, so no container outlives it."""
        from jupyter_client import BlockingKernelClient  # noqa: PLC0415

        client = BlockingKernelClient(connection_file=str(self.runtime / f"kernel-{kernel_id}.json"))
        try:
            client.load_connection_file()
            client.start_channels()
            reply = client.execute_interactive(CLOSE_LABS, timeout=120, output_hook=lambda msg: None)
            if reply["content"]["status"] != "ok":
                return [f"closing the labs in kernel {kernel_id} failed: {reply['content'].get('evalue')}"]
        except Exception as exc:  # reported by the session fixture, never swallowed
            return [f"could not close the labs in kernel {kernel_id}: {type(exc).__name__}: {exc}"]
        finally:
            client.stop_channels()
        return []

    def stop(self) -> list[str]:
        """Shut kernels down cleanly, stop the server by PID; returns leftovers that had to be killed."""
        leftovers: list[str] = []
        if self.proc is None:
            return leftovers
        if self.proc.poll() is None:
            try:
                for kernel in _api(self.base, self.token, "/api/kernels") or []:
                    leftovers += self._close_labs(kernel["id"])
                    _api(self.base, self.token, f"/api/kernels/{kernel['id']}", method="DELETE")
            except OSError as exc:
                leftovers.append(f"could not list or stop kernels: {exc}")
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                leftovers.append(f"jupyter lab (pid {self.proc.pid}) ignored SIGTERM: killed")
                self.proc.kill()
                self.proc.wait(timeout=10)
        pgid = self.proc.pid  # start_new_session: the group id is the server's pid
        for _ in range(50):
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            leftovers.append(f"processes of group {pgid} outlived the server: killed")
            os.killpg(pgid, signal.SIGKILL)
        self._log.close()
        self.proc = None
        if self.labs_before is not None:
            # only the labs this notebook creates, and only if they were not there before: other
            # runs (integration tests, nbval) may have labs of their own up at the same time
            source = "\n".join("".join(c["source"]) for c in json.loads(self.notebook.read_text())["cells"])
            mine = set(re.findall(r"""Lab\(\s*["']([a-z0-9-]+)["']""", source))
            leaked = ((_docker_labs() or set()) & mine) - self.labs_before
            for lab in sorted(leaked):
                subprocess.run([sys.executable, "-m", "labkit", "down", "--lab", lab], cwd=REPO, check=False,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                leftovers.append(f"lab {lab!r} left labelled containers behind: removed with labkit down")
        return leftovers


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory):
    require_browser()
    root = tmp_path_factory.mktemp("lab")
    notebook = notebook_under_test()
    shutil.copy(notebook, root / notebook.name)
    server = LabServer(root, root / notebook.name)
    server.start()
    yield server
    leftovers = server.stop()
    assert not leftovers, leftovers


@pytest.fixture(scope="session")
def browser():
    require_browser()
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    args = ["--disable-background-networking", "--disable-component-update", "--no-first-run",
            "--disable-sync", "--disable-default-apps", "--disable-dev-shm-usage"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, request):
    """A fresh page that can reach 127.0.0.1 only; a screenshot is saved if the test fails."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    blocked: list[str] = []

    def only_local(route):
        host = urllib.parse.urlsplit(route.request.url).hostname
        if host in ("127.0.0.1", None) or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    page.blocked_requests = blocked
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"failure-{request.node.name}.png"), full_page=True)
    if blocked:  # not an error (nothing left the machine), but worth knowing about
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"blocked-requests-{request.node.name}.txt").write_text("\n".join(blocked) + "\n")
    context.close()
