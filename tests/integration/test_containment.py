"""Containment: a lab stays inside its own namespaces, and the host is untouched.

Outside addresses are only ever probed from inside pods (the lab has no uplink), and only
documentation addresses (192.0.2.1, 198.51.100.7). The host is only read: its nft ruleset,
routes, links, addresses and ip_forward are compared before, during and after a lab.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

import labkit
from tests.conftest import share_lab
from tests.integration.helpers import (NODE_LABEL, ROLE_LABEL, host_state, client, lab_containers, node_container,
                                       pod_containers, pod_doc)

pytestmark = pytest.mark.docker

LAB = "it-contain"
OUTSIDE = ["192.0.2.1", "198.51.100.7"]  # documentation ranges: never lab addresses
DENY_ALL = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "deny-all", "namespace": "default"},
            "spec": {"podSelector": {"matchLabels": {"app": "locked"}}, "policyTypes": ["Ingress", "Egress"]}}


@pytest.fixture(scope="module")
def before():
    return host_state()


@pytest.fixture(scope="module")
def lab(request, before):
    share_lab(request.config, LAB)
    lab = labkit.Lab(LAB, backend="docker", nodes=2)
    try:
        lab.apply([pod_doc("n1", node="node-1", ports=[(80, "TCP"), (80, "UDP")]),
                   pod_doc("n2", node="node-2", ports=[(80, "TCP"), (80, "UDP")]),
                   pod_doc("locked", node="node-2"), DENY_ALL])
        yield lab
    finally:
        lab.close()


@pytest.mark.parametrize("src", ["n1", "n2"])
def test_internet_host_answers(lab, src):
    for port, protocol in ((80, "TCP"), (80, "UDP"), (443, "TCP"), (443, "UDP")):
        result = lab.probe(src, "203.0.113.10", port=port, protocol=protocol)
        assert result.ok, result
        assert result.answered_by == "internet"


def test_internet_host_serves_http(lab):
    out = lab.exec("n2", ["curl", "-s", "-m", "3", "http://203.0.113.10/"])
    assert out.exit_code == 0 and out.output.strip() == "internet", out.output


@pytest.mark.parametrize("src", ["n1", "n2"])
@pytest.mark.parametrize("dst", OUTSIDE)
@pytest.mark.parametrize("protocol", ["TCP", "UDP"])
def test_outside_addresses_are_unreachable(lab, src, dst, protocol):
    result = lab.probe(src, dst, port=80, protocol=protocol, timeout=1.0)
    assert not result.ok, result
    assert result.answered_by is None
    assert result.error


@pytest.mark.parametrize("dst", OUTSIDE)
def test_pods_have_no_route_off_the_lab(lab, dst):
    # The pod's route goes to its node; the node has no route to the outside.
    for node in ("node-1", "node-2"):
        c = node_container(LAB, node)
        code, out = c.exec_run(["ip", "-4", "route", "get", dst])
        text = out.decode()
        assert code != 0 or "unreachable" in text, f"{node} has a route to {dst}: {text}"
        routes = c.exec_run(["ip", "-4", "route", "show", "default"]).output.decode()
        assert routes.strip() == "", f"{node} has a default route: {routes}"


def test_policy_denies_egress_to_the_internet(lab):
    assert not lab.probe("locked", "203.0.113.10", port=80, timeout=0.5).ok
    assert lab.probe("n2", "203.0.113.10", port=80).ok


def test_host_unchanged_while_the_lab_runs(lab, before):
    assert lab.cluster.policies  # a lab with policies is running
    lab.matrix(port=80)          # ... and has just pushed packets through its nodes
    during = host_state()
    for key in before:
        assert during[key] == before[key], f"{key} changed on the host while a lab runs"


def test_node_containers_are_not_privileged_and_have_no_network(lab):
    nodes = [c for c in lab_containers(LAB) if c.labels[ROLE_LABEL] == "node"]
    assert len(nodes) == 2
    for c in nodes:
        host = c.attrs["HostConfig"]
        assert host["Privileged"] is False, c.name
        assert host["NetworkMode"] == "none", c.name
        assert "ALL" not in (host.get("CapAdd") or []), c.name
        assert not c.attrs["NetworkSettings"]["Networks"].get("bridge"), c.name


def test_every_lab_container_is_off_the_host_network(lab):
    found = lab_containers(LAB)
    pauses = {c.id for c in found if c.labels[ROLE_LABEL] == "pause"}
    for c in found:
        host = c.attrs["HostConfig"]
        assert host["Privileged"] is False, c.name
        mode = host["NetworkMode"]
        if c.labels[ROLE_LABEL] == "app":
            assert mode.startswith("container:") and mode.split(":", 1)[1] in pauses, (c.name, mode)
        else:
            assert mode == "none", (c.name, mode)
        assert not host.get("PortBindings"), c.name


@pytest.mark.skipif(not os.environ.get("DOCKER_HOST", "unix://").startswith("unix://"),
                    reason="the engine is remote (DOCKER_HOST), so its nodes cannot see this test's process")
@pytest.mark.parametrize("command", ["probe", "exec-in"])
def test_node_agent_refuses_a_host_process_namespace(lab, command):
    """Nodes run with --pid host, so this test process (on the host) is visible to them.
    Asked to act in its network namespace, the node's agent refuses; in a pod's, it acts."""
    node = next(c for c in lab_containers(LAB) if c.labels[ROLE_LABEL] == "node"
                and c.labels[NODE_LABEL] == "node-1")
    host_side = f"/proc/{os.getpid()}/ns/net"
    pause = next(c for c in pod_containers(LAB, "default/n1") if c.labels[ROLE_LABEL] == "pause")
    pod_side = f"/proc/{pause.attrs['State']['Pid']}/ns/net"
    for netns, refused in ((host_side, True), (pod_side, False)):
        request = ({"probes": [{"id": "p", "dst": "127.0.0.1", "port": 80, "netns": netns}]}
                   if command == "probe" else {"netns": netns, "argv": ["ip", "-o", "-4", "addr"]})
        code, out = node.exec_run(["sh", "-c", f"echo '{json.dumps(request)}' | "
                                   f"python3 -m labkit.node {command}"])
        reply = json.loads(out.decode().splitlines()[-1])
        if command == "probe":
            result = reply["results"][0]
            assert ("shares the node's PID namespace" in (result["error"] or "")) is refused, result
            assert result["ok"] is not refused, result  # n1 serves 80/TCP on its own localhost
        else:
            assert (code == 2) is refused, reply
            assert refused or lab.pod_ip("n1") in reply["output"], reply


def test_no_container_has_the_docker_socket(lab):
    for c in lab_containers(LAB):
        mounts = c.attrs.get("Mounts") or []
        binds = c.attrs["HostConfig"].get("Binds") or []
        text = repr(mounts) + repr(binds)
        assert "docker.sock" not in text and "/var/run/docker" not in text, c.name
        assert not [m for m in mounts if m.get("Type") == "bind"], (c.name, mounts)


def test_host_unchanged_after_a_lab_closes(before):
    # Runs last in this module: a second lab (with a policy) comes and goes; the host is as it was.
    with labkit.Lab("it-contain-b", backend="docker") as lab:
        lab.apply([pod_doc("a"), pod_doc("locked"), DENY_ALL])
        assert lab.probe("a", "default/a").ok
        assert host_state() == before
    assert lab_containers("it-contain-b") == []
    after = host_state()
    for key in before:
        assert after[key] == before[key], f"{key} changed on the host after a lab closed"
