"""The ways labkit reaches learners, checked as far as this machine allows.

The wheel is built and installed in a fresh virtual environment (as `pip install` on a new
machine would): notebooks, image recipes and the classroom JupyterLab defaults travel with
it, and `labkit` works with nothing but PyYAML, on the simulated backend, saying so.
Binder's `.binder/postBuild` and `.binder/start` run in that environment. The classroom
files (compose, Zero to JupyterHub) need a registry and a cluster to run; here they are
checked for what would break a class: commands that exist, the engine's safety flags, no
host Docker socket, ports on this machine only, and paths that agree with each other.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from labkit import __version__
from labkit.cli import build_parser
from labkit.launch import settings_dir

REPO = Path(__file__).resolve().parents[2]
ENV = REPO / "environments"
CLASSROOM = ENV / "classroom"
OVERRIDES = "share/jupyter/lab/settings/overrides.d/labkit.json"
SAFE_FLAGS = {"--bridge=none", "--iptables=false", "--ip-forward=false", "--ip6tables=false", "--ip-masq=false"}
WORLD = """\
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec: {containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: b}}
spec: {containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-b, namespace: x}
spec: {podSelector: {matchLabels: {app: b}}, policyTypes: [Ingress]}
"""


def run(argv, **kwargs):
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kwargs)
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(REPO)])
    (built,) = out.glob("k8s_labkit-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh(tmp_path_factory, wheel):
    """A new virtual environment with only the wheel (and PyYAML) installed, and a clean env."""
    root = tmp_path_factory.mktemp("fresh")
    venv = root / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)])
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(root / "home"), "LANG": "C.UTF-8"}
    (root / "home").mkdir()
    return venv, env


def test_wheel_carries_notebooks_recipes_agent_cases_and_jupyterlab_defaults(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {n.rsplit("/", 1)[1] for n in names if n.startswith("labkit/notebooks/")}
    assert shipped == {p.name for p in (REPO / "notebooks").glob("*.ipynb")}
    for path in ("labkit/environments/image/Dockerfile", "labkit/environments/image/build-offline.sh",
                 "labkit/environments/image/packages.txt", "labkit/environments/start-dockerd.sh",
                 "labkit/node/__main__.py", "labkit/testing/netpol-cases.yaml"):
        assert path in names, path
    data = f"k8s_labkit-{__version__}.data/data/{OVERRIDES}"
    assert data in names
    # the same defaults `labkit lab` gives its own JupyterLab
    assert json.loads(zipfile.ZipFile(wheel).read(data)) == \
        json.loads((ENV / "jupyterlab" / "labkit-overrides.json").read_text())


def test_labkit_lab_and_the_installed_overrides_agree(tmp_path):
    overrides = json.loads((ENV / "jupyterlab" / "labkit-overrides.json").read_text())
    user = settings_dir(tmp_path)
    for plugin, values in overrides.items():
        package, name = plugin.split(":")
        assert json.loads((user / package / f"{name}.jupyterlab-settings").read_text()) == values


def test_a_fresh_install_works_simulated_with_only_pyyaml(fresh, tmp_path):
    venv, env = fresh
    assert (venv / OVERRIDES).is_file()
    listed = run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json"], env=env).stdout
    installed = {p["name"].lower() for p in json.loads(listed)}
    assert "docker" not in installed and "pyyaml" in installed
    dest = tmp_path / "course"
    run(["labkit", "notebooks", str(dest)], env=env)
    assert sorted(p.name for p in dest.glob("*.ipynb")) == sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb"))
    (dest / "00-welcome.ipynb").write_text("{}")  # a learner's edit ...
    run(["labkit", "notebooks", str(dest)], env=env)
    assert (dest / "00-welcome.ipynb").read_text() == "{}"  # ... is never overwritten
    world = tmp_path / "world.yaml"
    world.write_text(WORLD)
    proc = run(["labkit", "matrix", "-f", str(world), "--port", "80"], env=env)
    assert "simulated" in proc.stdout and "SIMULATED" in proc.stderr
    assert re.search(r"^x/a\s+\.\s+X\s*$", proc.stdout, re.M), proc.stdout
    explained = run(["labkit", "explain", "x/a", "x/b", "--port", "80", "-f", str(world)], env=env).stdout
    assert "denied" in explained and "x/deny-b" in explained


def test_binder_build_and_start_give_a_simulated_lab_with_widgets(fresh):
    venv, env = fresh
    run(["bash", str(REPO / ".binder" / "postBuild")], env=env, cwd=REPO)
    code = ("import labkit, labkit.widgets, labkit.viz, ipywidgets, matplotlib\n"
            "lab = labkit.Lab('binder')\n"
            "print(lab.backend_name, lab.probe('kube-system/coredns', 'kube-system/coredns', port=53,"
            " protocol='UDP').simulated)\n"
            "lab.close()\n")
    proc = run([str(REPO / ".binder" / "start"), "python", "-c", code], env=env)
    assert proc.stdout.split() == ["sim", "True"], proc.stdout
    # start hands over to its arguments, exit code included (it ends in exec "$@")
    assert subprocess.run([str(REPO / ".binder" / "start"), "sh", "-c", "exit 7"], env=env).returncode == 7


# ------------------------------------------------------------------ classroom files
def labkit_commands(script: str) -> list[list[str]]:
    """The labkit command lines of a `sh -c` script."""
    commands = []
    for part in re.split(r"&&|;|\|\|", script):
        words = [w for w in shlex.split(part.replace("(", " ").replace(")", " ")) if w != "exec"]
        words = words[:words.index(">")] if ">" in words else words
        if words and words[0] == "labkit":
            commands.append(words[1:])
    return commands


def assert_valid_labkit(argv: list[str]) -> None:
    args, unknown = build_parser().parse_known_args(argv)
    assert not unknown or argv[0] == "lab", (argv, unknown)


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((CLASSROOM / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def hub():
    return yaml.safe_load((CLASSROOM / "z2jh-values.yaml").read_text())


def test_start_dockerd_uses_the_same_safety_flags():
    text = (ENV / "start-dockerd.sh").read_text()
    assert {"--bridge=none", "--iptables=false", "--ip-forward=false"} <= set(re.findall(r"--[a-z0-9-]+=[a-z]+", text))
    assert "ip6tables ip-masq" in text  # added as =false where dockerd knows them


def test_compose_engine_is_safe_and_the_lab_uses_it(compose):
    engine, lab = compose["services"]["engine"], compose["services"]["lab"]
    # dockerd first: given only flags, docker:dind's entrypoint adds an open tcp://0.0.0.0:2375
    assert engine["command"][0] == "dockerd" and not any("tcp://" in a for a in engine["command"])
    assert SAFE_FLAGS <= set(engine["command"])
    host = next(a.split("=", 1)[1] for a in engine["command"] if a.startswith("--host="))
    assert lab["environment"]["DOCKER_HOST"] == host and lab["environment"]["LABKIT_BACKEND"] == "docker"
    socket_dir = os.path.dirname(host.removeprefix("unix://"))
    for service in (engine, lab):
        assert f"engine-socket:{socket_dir}" in service["volumes"]
        for volume in service["volumes"]:
            assert not volume.startswith(("/", ".")) and "docker.sock" not in volume, volume  # named volumes only
    assert "privileged" not in lab and lab.get("network_mode") != "host"
    assert all(p.startswith("127.0.0.1:") for p in lab["ports"])
    assert engine["healthcheck"]["test"][-1] == "info" and lab["depends_on"]["engine"]["condition"] == "service_healthy"
    assert (CLASSROOM / lab["build"]["context"] / lab["build"]["dockerfile"]).resolve() == CLASSROOM / "Dockerfile"
    commands = labkit_commands(lab["command"][-1])
    assert [c[:2] for c in commands] == [["images", "build"], ["lab", "--dir"]]
    for argv in commands:
        assert_valid_labkit(argv)


def test_hub_values_give_each_learner_a_safe_engine_and_the_course(hub):
    user = hub["singleuser"]
    (engine,) = user["extraContainers"]
    # dockerd first: given only flags, docker:dind's entrypoint adds an open tcp://0.0.0.0:2375
    assert engine["args"][0] == "dockerd" and not any("tcp://" in a for a in engine["args"])
    assert SAFE_FLAGS <= set(engine["args"])
    host = next(a.split("=", 1)[1] for a in engine["args"] if a.startswith("--host="))
    assert user["extraEnv"] == {"DOCKER_HOST": host, "LABKIT_BACKEND": "docker"}
    socket_dir = os.path.dirname(host.removeprefix("unix://"))
    volumes = {v["name"]: v for v in user["storage"]["extraVolumes"]}
    assert all(set(v) <= {"name", "emptyDir"} for v in volumes.values()), "no hostPath volumes"
    mounts = user["storage"]["extraVolumeMounts"] + engine["volumeMounts"]
    assert {m["name"] for m in mounts} <= set(volumes)
    assert {m["mountPath"] for m in user["storage"]["extraVolumeMounts"]} == {socket_dir}
    assert user["networkPolicy"]["egressAllowRules"] == {"privateIPs": False, "cloudMetadataServer": False}
    assert engine["securityContext"] == {"privileged": True}
    assert user["nodeSelector"] and user["extraTolerations"], "privileged sidecars belong on their own node pool"
    notebook = user["defaultUrl"].split("/lab/tree/labkit/", 1)[1]
    assert (REPO / "notebooks" / notebook).is_file()
    hook = user["lifecycleHooks"]["postStart"]["exec"]["command"][-1]
    # the sidecar starts only once the hook returns: the build runs in the background, after the socket exists
    assert hook.index(f"-S {host.removeprefix('unix://')}") < hook.index("labkit images build") and hook.endswith("&)")
    commands = labkit_commands(hook)
    assert [c[0] for c in commands] == ["notebooks", "images"]
    assert commands[0][1] == "$HOME/labkit"  # the folder defaultUrl opens
    for argv in commands:
        assert_valid_labkit(argv)


def test_classroom_dockerfile_copies_what_exists_and_installs_the_lab_extra():
    text = (CLASSROOM / "Dockerfile").read_text()
    sources = []
    for line in text.splitlines():
        if line.startswith("COPY "):
            words = [w for w in line.split()[1:] if not w.startswith("--")]
            sources += words[:-1]
    assert sorted(sources) == sorted(["pyproject.toml", "README.md", "labkit", "notebooks", "environments"])
    for src in sources:
        assert (REPO / src).exists(), src
    assert '"/tmp/labkit[lab]"' in text
