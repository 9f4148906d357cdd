"""Faults on a real engine: what breaks outside labkit is named in words, never shown as a
denial; a lab's name is claimed atomically; labs never share a container name; a lab whose
process died is listed as orphaned and removed by ``labkit down``; a node killed in the
middle of an apply leaves the rest of the lab as it was.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

import labkit
from labkit.errors import BackendError
from labkit.runtime import registry
from tests.integration.helpers import LAB_LABEL, pod_doc, python_env, wait_until

pytestmark = pytest.mark.docker


def containers(lab: str) -> list[tuple[str, str, str]]:
    out = subprocess.run(["docker", "ps", "-a", "--filter", f"label={LAB_LABEL}={lab}", "--format",
                          "{{.Names}} {{.ID}} {{.State}}"], capture_output=True, text=True, check=True).stdout
    return sorted(tuple(line.split()) for line in out.splitlines() if line.strip())


def container_of(lab: str, *labels: str) -> str:
    argv = ["docker", "ps", "-aq", "--filter", f"label={LAB_LABEL}={lab}"]
    for label in labels:
        argv += ["--filter", f"label={label}"]
    ids = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()
    assert len(ids) == 1, (labels, ids)
    return ids[0]


def test_a_killed_pod_is_an_error_that_names_it_not_a_denial():
    with labkit.Lab("it-fault-pod", backend="docker") as lab:
        lab.apply([pod_doc("a"), pod_doc("b"), pod_doc("c")])
        assert lab.matrix().differences() == []
        subprocess.run(["docker", "kill", container_of("it-fault-pod", "io.labkit.role=pause",
                                                       "io.labkit.pod=default/b")], check=True, capture_output=True)
        # (its app container still holds the namespace, so b may even answer; probing from it cannot work)
        for call in (lambda: lab.matrix(), lambda: lab.probe("b", "default/a")):
            with pytest.raises(BackendError, match=r"pod default/b of lab 'it-fault-pod' is not running: its pause "
                                                   r"container is exited .*delete the pod and apply it again"):
                call()
        assert lab.probe("a", "default/c").ok  # what does not involve b still works
        lab.delete("pod", "b")  # the way out the error names
        lab.apply(pod_doc("b"))
        assert lab.matrix().differences() == []


RACER = """
import sys, labkit
try:
    lab = labkit.Lab("it-race", backend="docker", nodes=2)
except labkit.LabkitError as exc:
    print("lost:", exc, flush=True)
    raise SystemExit(0)
print("won", flush=True)
sys.stdin.readline()  # hold the lab until the test has looked at it
print("probe", lab.exec("kube-system/coredns", ["nslookup", "kube-dns.kube-system.svc.cluster.local"]).ok, flush=True)
lab.close()
"""


def test_two_processes_starting_the_same_lab_one_wins_and_keeps_it():
    procs = [subprocess.Popen([sys.executable, "-c", RACER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=python_env()) for _ in range(2)]
    try:
        first = [p.stdout.readline().strip() for p in procs]
        assert sorted(line.split(":")[0].split()[0] for line in first) == ["lost", "won"], first
        loser = first[0] if first[0].startswith("lost") else first[1]
        assert "it-race" in loser and ("another process" in loser or "already runs" in loser), loser
        winner = procs[[line.startswith("won") for line in first].index(True)]
        running = containers("it-race")
        assert running and all(state == "running" for _, _, state in running), running
        assert len([n for n, _, _ in running if n.endswith(("_node-1", "_node-2"))]) == 2
        winner.stdin.write("go\n")
        winner.stdin.flush()
        assert winner.stdout.readline().strip() == "probe True"
        assert winner.wait(timeout=60) == 0, winner.stderr.read()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
        left = containers("it-race")
        if left:  # this test's own lab, left by a racer it had to kill: removed here
            subprocess.run(["docker", "rm", "-f", *(cid for _, cid, _ in left)], capture_output=True)
    assert left == [], "the winner's close left containers"


def test_labs_and_pods_that_would_spell_the_same_name_do_not_collide():
    with labkit.Lab("rel4-x", backend="docker") as one, labkit.Lab("rel4", backend="docker") as two:
        one.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "y"}}, pod_doc("p", "y")])
        two.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x-y"}}, pod_doc("p", "x-y")])
        assert one.probe("y/p", "y/p").answered_by == "y/p"
        assert two.probe("x-y/p", "x-y/p").answered_by == "x-y/p"
        names = [n for n, _, _ in containers("rel4-x") + containers("rel4")]
        assert len(names) == len(set(names))


ORPHAN = """
import labkit, time
lab = labkit.Lab("it-orphan", backend="docker")
print("up", flush=True)
time.sleep(600)
"""


def test_a_lab_whose_process_died_is_listed_as_orphaned_and_down_removes_it(tmp_path):
    env = python_env() | {"LABKIT_STATE_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-c", ORPHAN], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "up"
        os.kill(proc.pid, signal.SIGKILL)  # no finally, no atexit: the containers stay
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert containers("it-orphan")
    labkit_cli = [sys.executable, "-m", "labkit"]
    listing = subprocess.run(labkit_cli + ["list"], capture_output=True, text=True, env=env, timeout=60)
    row = next(line for line in listing.stdout.splitlines() if line.startswith("it-orphan "))
    assert re.search(rf"ORPHANED: process {proc.pid} ended", row), listing.stdout
    down = subprocess.run(labkit_cli + ["down", "--lab", "it-orphan"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert down.returncode == 0, down.stderr
    assert wait_until(lambda: containers("it-orphan") == [], 10)


class KillNode2:
    """A step hook that kills node-2 just before the rules are applied."""

    def __init__(self, lab_name: str):
        self.lab_name, self.armed = lab_name, False

    def __call__(self, step: str) -> None:
        if self.armed and step == "rules":
            self.armed = False
            subprocess.run(["docker", "kill", container_of(self.lab_name, "io.labkit.role=node",
                                                           "io.labkit.node=node-2")], check=True, capture_output=True)


def test_a_node_killed_mid_apply_leaves_everything_else_as_it_was():
    hook = KillNode2("it-fault-node")
    backend = registry.create("docker", step_hook=hook)
    try:
        with labkit.Lab("it-fault-node", backend=backend, nodes=2) as lab:
            lab.apply([pod_doc("a", node="node-1"), pod_doc("b", node="node-2")])
            node1_rules = ["docker", "exec", container_of("it-fault-node", "io.labkit.role=node",
                                                          "io.labkit.node=node-1"), "nft", "list", "ruleset"]

            def node1_now() -> str:
                listing = subprocess.run(node1_rules, capture_output=True, text=True, check=True).stdout
                return re.sub(r"counter packets \d+ bytes \d+", "counter", listing)

            rules_before = node1_now()
            before = containers("it-fault-node")
            hook.armed = True
            with pytest.raises(BackendError, match="node-2 of lab 'it-fault-node'"):
                lab.apply([pod_doc("c", node="node-1"), pod_doc("d", node="node-2"),
                           {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                            "metadata": {"name": "deny"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}])
            after = containers("it-fault-node")
            node2 = [n for n, _, _ in before if n.endswith("_node-2")]
            assert [c for c in after if c[0] not in node2] == [c for c in before if c[0] not in node2]
            assert lab.pods == ["default/a", "default/b"]
            with pytest.raises(BackendError, match="node-2 of lab 'it-fault-node' is not running"):
                lab.rules()
            assert node1_now() == rules_before  # node-1 got the new rules, then its old ones back
            with pytest.raises(BackendError, match="node-2 of lab 'it-fault-node' is not running"):
                lab.apply(pod_doc("e"))
    finally:
        backend.close()
