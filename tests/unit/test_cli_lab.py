"""`labkit lab`, the start command: a working copy of the notebooks, then JupyterLab with
every other argument passed on unchanged, with the classroom settings."""
from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from labkit import cli, launch

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("argv, expected", [
    (["lab", "--dir", "{d}", "--no-browser", "--port", "8899", "--ServerApp.token=t"],
     ["--no-browser", "--port", "8899", "--ServerApp.token=t"]),
    (["lab", "--port", "8899", "--dir={d}", "--ip", "0.0.0.0"], ["--port", "8899", "--ip", "0.0.0.0"]),
    (["lab", "--dir", "{d}", "--", "--port=1"], ["--port=1"]),
    (["lab", "--dir", "{d}"], []),
])
def test_jupyter_gets_every_other_argument_in_order(monkeypatch, tmp_path, argv, expected):
    seen = {}
    monkeypatch.setattr(launch, "jupyter_lab", lambda dest, extra: seen.update(dest=dest, extra=extra))
    assert cli.main([a.replace("{d}", str(tmp_path / "nb")) for a in argv]) == 0
    root = ["--allow-root"] if os.geteuid() == 0 else []  # JupyterLab refuses root without it
    assert seen == {"dest": tmp_path / "nb", "extra": expected + root}
    assert sorted(p.name for p in (tmp_path / "nb").glob("*.ipynb")) == NOTEBOOKS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def request(url: str, token: str, body: dict | None = None, method: str = "POST"):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as response:
        text = response.read()
    return json.loads(text) if text else None


def kernel_argv(kernel_id: str, timeout: float = 30) -> list[str]:
    """The command line of the kernel process whose connection file names ``kernel_id``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    argv = (entry / "cmdline").read_bytes().decode().split("\0")
                except OSError:  # gone meanwhile
                    continue
                if any(kernel_id in a for a in argv) and "ipykernel_launcher" in argv:
                    return argv
        time.sleep(0.2)
    raise AssertionError(f"no kernel process for {kernel_id}")


@pytest.mark.skipif(importlib.util.find_spec("jupyterlab") is None,
                    reason="JupyterLab is not installed (pip install 'k8s-labkit[lab]'; ./dev test does)")
def test_labkit_lab_serves_the_notebooks_with_classroom_settings(tmp_path):
    port, token = free_port(), "labkit-test-token"
    env = dict(os.environ, HOME=str(tmp_path / "home"), LABKIT_BACKEND="sim")
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "lab", "--dir", str(tmp_path / "course"),
                             "--no-browser", "--ip", "127.0.0.1", "--port", str(port),
                             f"--ServerApp.token={token}"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                get(f"{base}/api/status?token={token}")
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()[-3000:]
                assert time.monotonic() < deadline, "JupyterLab did not answer within 60 s"
                time.sleep(0.3)
        listed = get(f"{base}/api/contents?token={token}")
        assert sorted(c["name"] for c in listed["content"] if c["name"].endswith(".ipynb")) == NOTEBOOKS
        settings = get(f"{base}/lab/api/settings/@jupyterlab/apputils-extension:notification?token={token}")
        assert settings["settings"]["fetchNews"] == "false" and settings["settings"]["checkForUpdates"] is False
        # a notebook's kernel runs in labkit's own environment (not a jupyter found on PATH)
        kernel = request(f"{base}/api/kernels", token, {"name": "python3"})
        try:
            argv = kernel_argv(kernel["id"])
            assert argv[0] == sys.executable, argv
        finally:
            request(f"{base}/api/kernels/{kernel['id']}", token, method="DELETE")
    finally:
        proc.terminate()  # our own child (labkit exec'd into JupyterLab), by PID
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_allow_root_is_added_only_for_root_and_only_once(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert launch.root_args(["--port", "1"]) == ["--allow-root"]
    assert launch.root_args(["--allow-root"]) == [] and launch.root_args(["--ServerApp.allow_root=True"]) == []
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert launch.root_args([]) == []
