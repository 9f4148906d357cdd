"""A lab's life on a real engine: labels, close, Ctrl-C, `labkit down`, several labs, the CLI.

Ctrl-C is sent for real (SIGINT to a child python, by its PID). Whatever a child leaves
behind is removed by this module (only containers labelled with the child's own lab).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import labkit
from labkit import cli
from labkit.errors import LabkitError
from tests.integration.helpers import (CONTAINER_LABEL, LAB_LABEL, NODE_LABEL, OWNER_LABEL, POD_LABEL, ROLE_LABEL,
                                       SESSION_LABEL, VERSION_LABEL, backend, client, lab_containers, lab_image,
                                       pod_doc, python_env, remove_lab_containers, run_python)

pytestmark = pytest.mark.docker

PODS_YAML = """\
apiVersion: v1
kind: Pod
metadata: {name: a, labels: {app: a}}
spec:
  containers: [{name: app, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: b, labels: {app: b}}
spec:
  containers: [{name: app, ports: [{containerPort: 80}]}]
"""
DENY_B_YAML = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-b}
spec:
  podSelector: {matchLabels: {app: b}}
  policyTypes: [Ingress]
"""


def _ids() -> set[str]:
    return {c.id for c in client().containers.list(all=True)}


# ------------------------------------------------------------------ labels and close
def test_every_container_is_labelled_and_close_removes_all():
    name = "it-life-label"
    before = _ids()
    lab = labkit.Lab(name, backend="docker", nodes=2)
    try:
        lab.apply([pod_doc("a"), pod_doc("b", containers=[
            {"name": "one", "ports": [{"containerPort": 80}]}, {"name": "two", "ports": [{"containerPort": 81}]}])])
        new = [client().containers.get(i) for i in _ids() - before]
        # Nothing the lab made is unlabelled (other labs' containers carry their own lab label).
        unlabelled = [c.name for c in new if LAB_LABEL not in c.labels]
        assert unlabelled == []
        mine = [c for c in new if c.labels[LAB_LABEL] == name and c.labels.get(OWNER_LABEL) == lab.owner]
        assert {c.id for c in mine} == {c.id for c in lab_containers(name)}
        roles = sorted(c.labels[ROLE_LABEL] for c in mine)
        # 2 nodes, the internet host, coredns (pause + app), a (pause + app), b (pause + 2 apps)
        assert roles == sorted(["node", "node", "internet"] + ["pause", "app"] * 3 + ["app"])
        assert all(c.labels.get(VERSION_LABEL) == labkit.__version__ for c in mine)
        assert {c.labels[SESSION_LABEL] for c in mine} == {lab.backend.session}
        assert sorted(c.labels[NODE_LABEL] for c in mine if c.labels[ROLE_LABEL] == "node") == ["node-1", "node-2"]
        pods = {c.labels[POD_LABEL] for c in mine if c.labels[ROLE_LABEL] in ("pause", "app")}
        assert pods == {"kube-system/coredns", "default/a", "default/b"}
        assert sorted(c.labels[CONTAINER_LABEL] for c in mine if c.labels.get(POD_LABEL) == "default/b"
                      and c.labels[ROLE_LABEL] == "app") == ["one", "two"]
        # Container names are unique on the engine (the engine enforces it) and name the lab's owner and lab.
        assert len({c.name for c in mine}) == len(mine)
        # The backend lists the lab with its owner, nodes, learner pods and this process's session.
        [info] = [i for i in lab.backend.list_labs(lab.owner) if i.name == name]
        assert (info.owner, info.backend, info.nodes, info.pods) == (lab.owner, "docker", 2, 2)
        assert lab.backend.session in info.sessions
    finally:
        lab.close()
    assert lab_containers(name) == []
    assert name not in {i.name for i in backend().list_labs(lab.owner)}
    lab.close()  # twice is fine
    assert lab_containers(name) == []


def test_a_closed_lab_refuses_to_work():
    with labkit.Lab("it-life-closed", backend="docker") as lab:
        lab.apply(pod_doc("a"))
    assert lab_containers("it-life-closed") == []
    for action in (lambda: lab.apply(pod_doc("b")), lambda: lab.probe("a", "default/a"),
                   lambda: lab.matrix(), lambda: lab.exec("a", ["true"]), lambda: lab.rules(),
                   lambda: lab.delete("pod", "a"), lambda: lab.label("pod", "a", {"x": "y"})):
        with pytest.raises(LabkitError, match="closed"):
            action()
    assert "closed" in repr(lab)
    assert lab_containers("it-life-closed") == []


# ------------------------------------------------------------------ Ctrl-C
START_THEN_WAIT = """
import sys, time, labkit
lab = labkit.Lab(sys.argv[1], backend="docker", nodes=2)
print("started", flush=True)
time.sleep(60)
"""


def _interrupt(code: str, lab: str, delay: float, wait_for: str | None = None) -> tuple[int, str, str, int]:
    """Start a child, SIGINT it (by PID) after ``delay`` s (or once it printed ``wait_for``).
    Returns (exit code, stdout, stderr, containers of the lab when the signal was sent)."""
    child = subprocess.Popen([sys.executable, "-c", code, lab], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=python_env())
    try:
        if wait_for:
            line = child.stdout.readline()
            assert wait_for in line, (line, child.stderr.read() if child.poll() is not None else "")
            time.sleep(delay)
        else:
            time.sleep(delay)
        at_signal = len(lab_containers(lab))
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=90)
    except BaseException:
        child.kill()
        child.communicate()
        raise
    return child.returncode, out, err, at_signal


def test_ctrl_c_during_start_leaves_nothing_behind():
    caught = 0
    leaks = []
    for i, delay in enumerate((0.3, 0.45, 0.6, 0.8, 1.0)):
        if caught >= 2:
            break
        name = f"it-kbi-start-{i}"
        try:
            code, out, err, at_signal = _interrupt(START_THEN_WAIT, name, delay)
            left = [c.name for c in lab_containers(name)]
            if left:
                leaks.append((delay, at_signal, left, err[-1500:]))
            if "started" not in out and at_signal > 0:
                caught += 1  # the signal really landed while containers were being created
                assert code != 0 and "KeyboardInterrupt" in err, (code, err[-1500:])
        finally:
            remove_lab_containers(name)
    assert not leaks, leaks
    assert caught >= 1, "no attempt interrupted the lab while it was starting: the machine is too fast/slow"


def test_ctrl_c_after_start_leaves_nothing_behind():
    name = "it-kbi-after"
    try:
        code, out, err, at_signal = _interrupt(START_THEN_WAIT, name, 0.2, wait_for="started")
        assert at_signal > 0 and code != 0
        left = [c.name for c in lab_containers(name)]
        assert left == [], f"{len(left)} containers left; child stderr:\n{err[-1500:]}"
    finally:
        remove_lab_containers(name)


def test_lab_left_open_is_removed_at_interpreter_exit():
    name = "it-life-exit"
    try:
        done = run_python("import sys, labkit\nlab = labkit.Lab(sys.argv[1], backend='docker')\nprint('started')\n",
                          name)
        assert done.returncode == 0 and "started" in done.stdout, done.stderr
        left = [c.name for c in lab_containers(name)]
        assert left == [], f"{len(left)} containers left; child stderr:\n{done.stderr[-1500:]}"
    finally:
        remove_lab_containers(name)


# ------------------------------------------------------------------ labkit down --all, admin remove-every-lab
def test_down_all_removes_only_the_callers_labs(tmp_path, monkeypatch, capsys):
    # The caller is an owner of its own (LABKIT_OWNER), so `down --all` here can only ever
    # reach this test's labs: another owner's lab, even of the same name, and an unlabelled
    # container stay.
    me, other = f"it-down-{os.getpid()}", f"it-other-{os.getpid()}"
    labs = ["it-life-down-a", "it-life-down-b"]
    monkeypatch.setenv("LABKIT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("LABKIT_OWNER", me)
    bystander = client().containers.run(lab_image(), ["sleep", "infinity"], network_mode="none", detach=True,
                                        name=f"it-life-bystander-{os.getpid()}")
    theirs = None
    try:
        assert LAB_LABEL not in bystander.labels
        theirs = labkit.Lab(labs[0], backend="docker", owner=other)
        theirs.apply(pod_doc("t"))
        for name in labs:
            lab = labkit.Lab(name, backend="docker")
            assert lab.owner == me
            lab.apply(pod_doc("a"))
            lab.detach()  # left running, as `labkit up` leaves it
        assert all(lab_containers(n, me) for n in labs)
        assert {c.labels[OWNER_LABEL] for n in labs for c in lab_containers(n, me)} == {me}
        assert sorted(i.name for i in backend().list_labs(me)) == labs
        count = sum(len(lab_containers(n, me)) for n in labs)
        theirs_count = len(lab_containers(labs[0], other))

        assert cli.main(["down", "--all"]) == 0
        out = capsys.readouterr().out
        assert f"removed {count} labelled container(s) of {me}" in out, out
        assert [n for n in labs if lab_containers(n, me)] == []
        assert backend().list_labs(me) == []
        assert len(lab_containers(labs[0], other)) == theirs_count
        assert theirs.probe("t", "default/t").answered_by == "default/t"
        bystander.reload()
        assert bystander.status == "running"
    finally:
        if theirs is not None:
            theirs.close()
        for name in labs:
            remove_lab_containers(name, me)
        bystander.remove(force=True)


def test_admin_remove_every_lab_needs_yes(capsys):
    assert cli.main(["admin", "remove-every-lab"]) == 1
    assert "--yes" in capsys.readouterr().err


@pytest.mark.skipif(os.environ.get("LABKIT_TEST_DOWN_ALL") != "1",
                    reason="`labkit admin remove-every-lab --yes` removes every lab on the engine, other "
                           "sessions' too: set LABKIT_TEST_DOWN_ALL=1 where the engine is this run's own (CI)")
def test_admin_remove_every_lab_removes_every_owners_labs_and_nothing_else(tmp_path, monkeypatch, capsys):
    owners = [f"it-admin-a-{os.getpid()}", f"it-admin-b-{os.getpid()}"]
    name = "it-life-admin"
    if backend().list_labs():
        pytest.skip(f"other labs run on this engine ({backend().list_labs()}): remove-every-lab would remove them")
    monkeypatch.setenv("LABKIT_STATE_DIR", str(tmp_path / "state"))
    bystander = client().containers.run(lab_image(), ["sleep", "infinity"], network_mode="none", detach=True,
                                        name=f"it-life-bystander-{os.getpid()}")
    try:
        for owner in owners:
            lab = labkit.Lab(name, backend="docker", owner=owner)
            lab.apply(pod_doc("a"))
            lab.detach()
        count = sum(len(lab_containers(name, o)) for o in owners)
        foreign = [i for i in backend().list_labs() if i.owner not in owners]
        if foreign:  # checked again just before: never remove someone else's lab
            pytest.skip(f"other labs started meanwhile ({foreign}): not running remove-every-lab")
        assert cli.main(["admin", "remove-every-lab", "--yes"]) == 0
        out = capsys.readouterr().out
        assert f"removed {count} labelled container(s) of every owner" in out, out
        assert [o for o in owners if lab_containers(name, o)] == []
        bystander.reload()
        assert bystander.status == "running"
    finally:
        for owner in owners:
            remove_lab_containers(name, owner)
        bystander.remove(force=True)


def test_down_one_lab_removes_only_that_lab(tmp_path, monkeypatch, capsys):
    # The always-safe half of `down`: one named lab goes; another lab and an unlabelled container stay.
    monkeypatch.setenv("LABKIT_STATE_DIR", str(tmp_path / "state"))
    bystander = client().containers.run(lab_image(), ["sleep", "infinity"], network_mode="none", detach=True,
                                        name=f"it-life-bystander1-{os.getpid()}")
    keep = labkit.Lab("it-life-keep", backend="docker")
    try:
        keep.apply(pod_doc("k"))
        gone = labkit.Lab("it-life-gone", backend="docker")
        gone.apply(pod_doc("g"))
        gone.detach()
        count = len(lab_containers("it-life-gone"))
        assert cli.main(["down", "--lab", "it-life-gone"]) == 0
        assert f"removed {count} labelled container(s) of {gone.owner}" in capsys.readouterr().out
        assert lab_containers("it-life-gone") == []
        assert keep.probe("k", "default/k").answered_by == "default/k"
        bystander.reload()
        assert bystander.status == "running"
    finally:
        keep.close()
        remove_lab_containers("it-life-gone")
        bystander.remove(force=True)


# ------------------------------------------------------------------ two labs on one engine
def test_two_labs_are_isolated_and_close_independently():
    a = labkit.Lab("it-life-iso-a", backend="docker")
    try:
        b = labkit.Lab("it-life-iso-b", backend="docker")
        try:
            a.apply([pod_doc("alpha")])
            b.apply([pod_doc("b1"), pod_doc("b2"), pod_doc("b3")])
            only_in_b = b.pod_ip("b3")
            assert only_in_b not in a.cluster.pod_ips.values()
            assert b.probe("b1", only_in_b).answered_by == "default/b3"
            for protocol in ("TCP", "UDP"):
                miss = a.probe("alpha", only_in_b, port=80, protocol=protocol, timeout=0.5)
                assert not miss.ok and miss.answered_by is None, miss
            # The same address in both labs reaches each lab's own pod.
            shared = a.pod_ip("alpha")
            assert b.pod_ip("b1") == shared
            assert a.probe("alpha", shared).answered_by == "default/alpha"
            assert b.probe("b2", shared).answered_by == "default/b1"

            a.close()
            assert lab_containers("it-life-iso-a") == []
            assert lab_containers("it-life-iso-b")
            assert b.probe("b1", "default/b2").answered_by == "default/b2"
            assert b.probe("b2", "203.0.113.10").answered_by == "internet"
        finally:
            b.close()
        assert lab_containers("it-life-iso-b") == []
    finally:
        a.close()


# ------------------------------------------------------------------ the same name twice
def test_a_second_lab_of_the_same_name_is_refused():
    first = labkit.Lab("it-life-dup", backend="docker")
    try:
        with pytest.raises(LabkitError, match="labkit down"):
            labkit.Lab("it-life-dup", backend="docker")
    finally:
        first.close()
        remove_lab_containers("it-life-dup")


def test_refusing_a_duplicate_leaves_the_running_lab_alone():
    first = labkit.Lab("it-life-dup2", backend="docker")
    try:
        first.apply(pod_doc("a"))
        count = len(lab_containers("it-life-dup2"))
        with pytest.raises(LabkitError):
            labkit.Lab("it-life-dup2", backend="docker")
        assert len(lab_containers("it-life-dup2")) == count
        assert first.probe("a", "default/a").answered_by == "default/a"
    finally:
        first.close()
        remove_lab_containers("it-life-dup2")


# ------------------------------------------------------------------ the CLI keeps a lab between commands
def test_cli_up_apply_matrix_down(tmp_path, monkeypatch, capsys):
    name = "it-life-cli"
    monkeypatch.setenv("LABKIT_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "pods.yaml").write_text(PODS_YAML)
    (tmp_path / "deny.yaml").write_text(DENY_B_YAML)
    try:
        assert cli.main(["up", "--lab", name, "--backend", "docker", "-f", str(tmp_path / "pods.yaml")]) == 0
        assert "is up on docker" in capsys.readouterr().out
        ids = {c.id for c in lab_containers(name)}
        assert ids

        assert cli.main(["matrix", "--lab", name, "--json"]) == 0
        m = json.loads(capsys.readouterr().out)
        assert m["source"] == "observed" and m["allowed"]["default/a"]["default/b"] is True

        assert cli.main(["apply", "--lab", name, "-f", str(tmp_path / "deny.yaml")]) == 0
        assert "networkpolicy/default/deny-b created" in capsys.readouterr().out
        # The same containers: the lab was kept between commands, not rebuilt.
        assert {c.id for c in lab_containers(name)} == ids

        assert cli.main(["matrix", "--lab", name, "--json"]) == 0
        m = json.loads(capsys.readouterr().out)
        assert m["allowed"]["default/a"]["default/b"] is False
        assert m["allowed"]["default/b"]["default/a"] is True
        assert m["differences"] == []

        assert cli.main(["probe", "--lab", name, "a", "default/b", "--timeout", "0.5"]) == 1
        capsys.readouterr()
        assert cli.main(["up", "--lab", name, "--backend", "docker", "-f", str(tmp_path / "pods.yaml")]) == 1
        assert "labkit down" in capsys.readouterr().err
        assert {c.id for c in lab_containers(name)} == ids

        assert cli.main(["down", "--lab", name]) == 0
        assert lab_containers(name) == []
        assert cli.main(["matrix", "--lab", name]) == 1
        assert "no lab named" in capsys.readouterr().err
    finally:
        remove_lab_containers(name)


def test_cli_as_a_subprocess(tmp_path):
    name = "it-life-cli2"
    env = python_env()
    env["LABKIT_STATE_DIR"] = str(tmp_path / "state")
    (tmp_path / "pods.yaml").write_text(PODS_YAML)

    def labkit_cmd(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "labkit", *args], capture_output=True, text=True, env=env,
                              timeout=120)
    try:
        up = labkit_cmd("up", "--lab", name, "--backend", "docker", "-f", str(tmp_path / "pods.yaml"))
        assert up.returncode == 0, up.stderr
        assert lab_containers(name)  # still running after the process ended
        probe = labkit_cmd("probe", "--lab", name, "--json", "a", "default/b")
        assert probe.returncode == 0, probe.stderr
        assert json.loads(probe.stdout)["answered_by"] == "default/b"
        down = labkit_cmd("down", "--lab", name)
        assert down.returncode == 0, down.stderr
        assert lab_containers(name) == []
    finally:
        remove_lab_containers(name)
