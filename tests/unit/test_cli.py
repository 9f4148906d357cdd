"""The ``labkit`` command, in-process on the sim backend (and one real ``python -m labkit``).

Every test gets its own state directory, and the Docker engine is hidden from the CLI
(``down`` would otherwise look for labelled containers on this machine's engine).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import labkit
from labkit import store
from labkit.cli import main
from labkit.runtime import registry

WORLD = """\
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Namespace
metadata: {name: y}
"""
for _ref, _app in (("x/a", "a"), ("x/b", "b"), ("x/c", "c"), ("y/d", "a")):
    _ns, _name = _ref.split("/")
    WORLD += f"""---
apiVersion: v1
kind: Pod
metadata: {{name: {_name}, namespace: {_ns}, labels: {{app: {_app}}}}}
spec: {{containers: [{{name: app, ports: [{{containerPort: 80}}]}}]}}
"""
# only pods labelled app=a in namespace x may reach x/b
POLICY = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-a, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}]
"""
BAD_POLICY = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bad, namespace: x}
spec:
  podSelector: {}
  ingress:
  - ports: [{port: 80, endPort: 79}]
"""
LAB = ["--lab", "unit-cli"]


@pytest.fixture(autouse=True)
def hermetic(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("LABKIT_BACKEND", "sim")
    monkeypatch.setattr(registry, "engine_answers", lambda timeout=2.0: (False, "hidden from unit tests"))


@pytest.fixture
def files(tmp_path):
    out = {}
    for name, text in (("world", WORLD), ("policy", POLICY), ("bad", BAD_POLICY)):
        out[name] = tmp_path / f"{name}.yaml"
        out[name].write_text(text)
    return {k: str(v) for k, v in out.items()}


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def error(err):
    """The ``error: ...`` line of stderr (a ``notice:`` line may precede it)."""
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    return line


def table(out):
    """Parse a matrix repr into {(src, dst): allowed}."""
    lines = [line for line in out.splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.startswith("from\\to"))
    header = lines[start].split()[1:]
    cells = {}
    for line in lines[start + 1:]:
        src, *marks = line.split()
        cells.update({(src, dst): mark.startswith(".") for dst, mark in zip(header, marks)})
    return cells


# ------------------------------------------------------------------ throw-away labs from -f
def test_matrix_from_files(capsys, files):
    code, out, err = run(capsys, "matrix", "-f", files["world"], "-f", files["policy"], "--port", "80")
    assert code == 0, err
    cells = table(out)
    pods = ["x/a", "x/b", "x/c", "y/d"]
    assert set(cells) == {(s, d) for s in pods for d in pods}
    denied = {(s, d) for (s, d), ok in cells.items() if not ok}
    assert denied == {("x/c", "x/b"), ("y/d", "x/b")}  # y/d has app=a, but in another namespace
    assert "simulated" in out.splitlines()[0]


def test_matrix_json(capsys, files):
    code, out, _ = run(capsys, "matrix", "-f", files["world"], "-f", files["policy"], "--json")
    assert code == 0
    data = json.loads(out)
    assert data["allowed"]["x/a"]["x/b"] is True and data["allowed"]["y/d"]["x/b"] is False
    assert data["port"] == 80 and data["protocol"] == "TCP"


def test_matrix_namespace_filter_and_other_port(capsys, files):
    code, out, _ = run(capsys, "matrix", "-f", files["world"], "--namespace", "y", "--port", "81", "--json")
    data = json.loads(out)
    assert data["pods"] == ["y/d"] and data["allowed"]["y/d"]["y/d"] is False


def test_matrix_from_a_folder(capsys, files):
    folder = str(Path(files["world"]).parent)
    Path(files["bad"]).unlink()
    code, out, err = run(capsys, "matrix", "-f", folder)
    assert code == 0, err
    assert not table(out)[("x/c", "x/b")]


def test_explain_names_the_policy(capsys, files):
    code, out, _ = run(capsys, "explain", "-f", files["world"], "-f", files["policy"], "x/c", "x/b")
    assert code == 0
    assert out.startswith("x/c -> x/b on 80/TCP: denied.")
    assert "x/allow-a" in out


def test_explain_json(capsys, files):
    code, out, _ = run(capsys, "explain", "-f", files["world"], "-f", files["policy"], "x/a", "x/b", "--json")
    data = json.loads(out)
    assert data["allowed"] is True and data["may_answer"] == ["x/b"]
    assert any("ingress rule 0 of x/allow-a" in r for r in data["reasons"])


def test_bad_manifest_exit_code_and_error(capsys, files):
    code, out, err = run(capsys, "matrix", "-f", files["world"], "-f", files["bad"])
    assert code == 1 and out == ""
    assert error(err) == "error: NetworkPolicy x/bad: spec.ingress[0].ports[0].endPort: must be >= port (80)"


def test_yaml_syntax_error_names_the_line(capsys, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: Pod\nmetadata:\n  name: a\n   oops: 1\n")
    code, _, err = run(capsys, "matrix", "-f", str(broken))
    assert code == 1
    assert "broken.yaml" in error(err) and "line 4" in error(err)


def test_missing_file(capsys, tmp_path):
    code, _, err = run(capsys, "matrix", "-f", str(tmp_path / "nope.yaml"))
    assert code == 1 and "not found" in err


def test_rules_on_sim_show_what_docker_would_apply(capsys, files):
    code, out, _ = run(capsys, "rules", "-f", files["world"])
    assert code == 0 and out.startswith("# simulated")
    assert "table ip labkit-svc" in out and "table inet labkit-pol" in out


# ------------------------------------------------------------------ a stored lab
def test_up_apply_label_probe_delete_down(capsys, files):
    code, out, err = run(capsys, "up", *LAB, "-f", files["world"])
    assert code == 0, err
    assert "pod/x/a created" in out and "is up on sim" in out
    assert store.names() == ["unit-cli"]

    assert run(capsys, "probe", *LAB, "x/c", "x/b")[0] == 0
    code, out, _ = run(capsys, "apply", *LAB, "-f", files["policy"])
    assert code == 0 and "networkpolicy/x/allow-a created" in out
    code, out, _ = run(capsys, "probe", *LAB, "x/c", "x/b")
    assert code == 1 and "failed: timed out" in out

    code, out, _ = run(capsys, "label", *LAB, "pod", "x/c", "app=a")
    assert code == 0 and "pod/x/c labeled" in out
    assert run(capsys, "probe", *LAB, "x/c", "x/b")[0] == 0
    assert run(capsys, "label", *LAB, "pod", "x/c", "app-")[0] == 0
    assert run(capsys, "probe", *LAB, "x/c", "x/b")[0] == 1

    code, out, _ = run(capsys, "delete", *LAB, "netpol", "allow-a", "-n", "x")
    assert code == 0 and "networkpolicy/x/allow-a deleted" in out
    code, out, _ = run(capsys, "probe", *LAB, "x/c", "x/b", "--json")
    assert code == 0 and json.loads(out)["answered_by"] == "x/b" and json.loads(out)["simulated"] is True

    code, out, _ = run(capsys, "down", *LAB)
    assert code == 0 and "removed" in out
    code, _, err = run(capsys, "probe", *LAB, "x/c", "x/b")
    assert code == 1 and error(err).startswith("error: no lab named 'unit-cli' is up")


def test_stored_lab_keeps_addresses_between_commands(capsys, files):
    run(capsys, "up", *LAB, "-f", files["world"])
    _, first, _ = run(capsys, "explain", *LAB, "x/a", "x/b")
    run(capsys, "label", *LAB, "namespace", "y", "team=blue")
    _, second, _ = run(capsys, "explain", *LAB, "x/a", "x/b")
    assert "x/b has IP 10.244.1.4" in first and "x/b has IP 10.244.1.4" in second


def test_failed_apply_leaves_the_stored_lab_unchanged(capsys, files):
    run(capsys, "up", *LAB, "-f", files["world"])
    before = store.load("unit-cli")
    code, _, err = run(capsys, "apply", *LAB, "-f", files["policy"], "-f", files["bad"])
    assert code == 1 and "NetworkPolicy x/bad" in err
    after = store.load("unit-cli")
    # the first file was applied (its own kubectl apply), the bad one changed nothing
    assert len(after["history"]) == len(before["history"]) + 1


def test_failed_up_stores_nothing(capsys, files):
    code, _, err = run(capsys, "up", *LAB, "-f", files["bad"])
    assert code == 1 and "endPort" in err
    assert store.names() == []


def test_up_twice_is_refused(capsys, files):
    run(capsys, "up", *LAB, "-f", files["world"])
    code, _, err = run(capsys, "up", *LAB, "-f", files["world"])
    assert code == 1 and "already up" in err


@pytest.mark.parametrize("argv, message", [
    (["label", *LAB, "pod", "x/a", "novalue"], "key=value"),
    (["label", *LAB, "pod", "x/a", "bad_=v"], "label key"),
    (["delete", *LAB, "netpol", "nope", "-n", "x"], "not found"),
    (["delete", *LAB, "ns", "kube-system"], "cannot be deleted"),
    (["probe", *LAB, "x/zz", "x/b"], "not found"),
    (["probe", *LAB, "x/a", "x/b", "--port", "0"], "port"),
])
def test_errors_on_a_stored_lab(capsys, files, argv, message):
    run(capsys, "up", *LAB, "-f", files["world"])
    before = store.load("unit-cli")
    code, out, err = run(capsys, *argv)
    assert code == 1 and message in error(err)
    assert store.load("unit-cli") == before


def test_down_all(capsys, files):
    run(capsys, "up", "--lab", "unit-one", "-f", files["world"])
    run(capsys, "up", "--lab", "unit-two")
    assert store.names() == ["unit-one", "unit-two"]
    code, out, _ = run(capsys, "down", "--all")
    assert code == 0 and "'unit-one' removed" in out and "'unit-two' removed" in out
    assert store.names() == []
    assert "was not up" in run(capsys, "down", "--lab", "unit-one")[1]


@pytest.mark.parametrize("name", ["../victim", "/etc/passwd", "a/b", "UPPER", "x" * 64, ""])
@pytest.mark.parametrize("command", [["down", "--lab"], ["up", "--lab"], ["rules", "--lab"], ["apply", "-f", "w", "--lab"]])
def test_a_lab_name_is_checked_before_it_touches_a_file(capsys, tmp_path, command, name):
    victim = tmp_path / "victim.json"
    victim.write_text("{}")
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    code, _, err = run(capsys, *command, name)
    assert code != 0 and ("not a valid name" in err or "lab name" in err or "error" in err), err
    assert victim.read_text() == "{}"  # nothing outside the state folder was read or removed
    assert sorted(p.name for p in state.iterdir()) == []


# ------------------------------------------------------------------ doctor and version
def test_doctor_runs(capsys):
    code, out, _ = run(capsys, "doctor")
    assert code == 0
    assert out.splitlines()[0].startswith("[ok] python")
    assert any("sim backend" in line for line in out.splitlines())
    code, out, _ = run(capsys, "doctor", "--json")
    checks = json.loads(out)
    assert {"name", "ok", "detail"} <= set(checks[0])


def test_python_dash_m_labkit_version():
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "labkit", "--version"], capture_output=True, text=True,
                          cwd=root, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"labkit {labkit.__version__}"


def test_images_build_refuses_a_base_for_the_offline_recipe(capsys):
    assert main(["images", "build", "--offline", "--base", "debian:bookworm-slim"]) != 0
    assert "--base names the Dockerfile's FROM image: it cannot go with --offline" in capsys.readouterr().err


def test_trace_walks_one_connection(capsys, files):
    code, out, _ = run(capsys, "trace", "-f", files["world"], "-f", files["policy"], "x/c", "x/b")
    assert code == 0
    assert out.startswith("x/c -> x/b (10.244.")
    assert "-> request (SYN)" in out and "Simulated: these are the oracle's hops" in out
    code, out, _ = run(capsys, "trace", "-f", files["world"], "x/a", "x/b", "--json")
    data = json.loads(out)
    assert code == 0 and data["simulated"] and data["verdict"] == "delivered to x/b"
    assert [h["kind"] for h in data["request"]][-1] == "deliver"
