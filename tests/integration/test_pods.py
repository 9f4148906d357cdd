"""Pods on the docker backend: what a learner can observe about one pod and its network.

One module-scoped lab (read-only tests) holds a two-container pod and a pod in another
namespace; mutating tests (Deployments, deletion) get their own labs; a two-node lab
covers placement and cross-node traffic.
"""
from __future__ import annotations

import ipaddress
import re

import pytest

import labkit
from labkit.errors import LabkitError
from tests.conftest import share_lab
from tests.integration.helpers import (CONTAINER_LABEL, NODE_LABEL, ROLE_LABEL, deployment_doc, namespace_doc,
                                       node_container, pod_containers, pod_doc, veths)

pytestmark = pytest.mark.docker

LAB = "it-pods"
LAB2 = "it-pods2"

# A socket client run inside a pod container: connect to localhost:PORT, print the first line.
LOCAL_CLIENT = (
    "import socket,sys\n"
    "s=socket.create_connection(('127.0.0.1',int(sys.argv[1])),timeout=3)\n"
    "s.sendall(b'hello\\n')\n"
    "print(s.makefile().readline().strip())\n")


@pytest.fixture(scope="module")
def lab(request):
    share_lab(request.config, LAB)
    lab = labkit.Lab(LAB, backend="docker")
    try:
        lab.apply([
            namespace_doc("team"),
            pod_doc("duo", containers=[
                {"name": "app", "ports": [{"containerPort": 80}]},
                {"name": "sidecar", "command": ["python3", "-m", "labkit.node", "serve", "--name", "sidecar",
                                                "--port", "9090/TCP"]}]),
            pod_doc("solo", namespace="team", ports=[(8080, "TCP"), (8080, "UDP")]),
        ])
        yield lab
    finally:
        lab.close()


@pytest.fixture(scope="module")
def lab2(request):
    share_lab(request.config, LAB2)
    lab = labkit.Lab(LAB2, backend="docker", nodes=2)
    try:
        lab.apply([pod_doc(n, ports=[(80, "TCP"), (80, "UDP")]) for n in ("p1", "p2", "p3", "p4")]
                  + [pod_doc("pinned", ports=[(80, "TCP"), (80, "UDP")], node="node-2")])
        yield lab
    finally:
        lab.close()


# ------------------------------------------------------------------ one pod
def test_containers_of_a_pod_share_localhost(lab):
    # The sidecar's own server is reachable from the app container on localhost, and back.
    from_app = lab.exec("duo", ["python3", "-c", LOCAL_CLIENT, "9090"], container="app")
    assert from_app.exit_code == 0, from_app.output
    assert from_app.output.strip() == "sidecar"
    from_sidecar = lab.exec("duo", ["python3", "-c", LOCAL_CLIENT, "80"], container="sidecar")
    assert from_sidecar.exit_code == 0, from_sidecar.output
    assert from_sidecar.output.strip() == "default/duo"


def test_containers_of_a_pod_share_one_network_namespace(lab):
    ns = [lab.exec("duo", ["readlink", "/proc/self/ns/net"], container=c).output.strip() for c in ("app", "sidecar")]
    assert ns[0].startswith("net:[") and ns[0] == ns[1]
    other = lab.exec("team/solo", ["readlink", "/proc/self/ns/net"]).output.strip()
    assert other.startswith("net:[") and other != ns[0]


def test_sidecar_port_is_reachable_from_another_pod(lab):
    # The sidecar listens on the pod's IP too: the pod has one address for all its containers.
    result = lab.probe("team/solo", "default/duo", port=9090)
    assert result.ok, result
    assert result.answered_by == "sidecar"


def test_hostname_is_the_pod_name(lab):
    for ref, container in (("default/duo", "app"), ("default/duo", "sidecar"), ("team/solo", None)):
        out = lab.exec(ref, ["hostname"], container=container)
        assert out.exit_code == 0
        assert out.output.strip() == ref.split("/")[1]


def _global_ipv4(lab, ref: str) -> list[tuple[str, str]]:
    out = lab.exec(ref, ["ip", "-4", "-o", "addr", "show"]).output
    found = re.findall(r"^\d+:\s+(\S+)\s+inet\s+(\d+\.\d+\.\d+\.\d+)/\d+", out, re.M)
    return [(dev, ip) for dev, ip in found if dev != "lo"]


def test_one_ip_per_pod_equal_to_pod_ip(lab):
    for ref in ("default/duo", "team/solo"):
        addresses = _global_ipv4(lab, ref)
        assert addresses == [("eth0", lab.pod_ip(ref))], addresses
    assert lab.pod_ip("duo") != lab.pod_ip("team/solo")
    eth0 = lab.exec("duo", ["ip", "-4", "addr", "show", "eth0"]).output
    assert f"inet {lab.pod_ip('duo')}/32 scope global eth0" in eth0  # routed through the node: no on-link /24


def test_default_route_via_the_node_gateway(lab):
    out = lab.exec("duo", ["ip", "route", "show", "default"]).output
    assert re.match(r"default via 10\.244\.1\.1 dev eth0", out.strip()), out
    assert ipaddress.ip_address(lab.pod_ip("duo")) in ipaddress.ip_network("10.244.1.0/24")


def test_no_ipv6_in_pods(lab):
    out = lab.exec("duo", ["cat", "/proc/sys/net/ipv6/conf/all/disable_ipv6"])
    assert out.output.strip() == "1"


def test_resolv_conf(lab):
    for ref, ns in (("default/duo", "default"), ("team/solo", "team")):
        text = lab.exec(ref, ["cat", "/etc/resolv.conf"]).output
        lines = [line.split() for line in text.splitlines() if line.strip() and not line.startswith("#")]
        assert ["search", f"{ns}.svc.cluster.local", "svc.cluster.local", "cluster.local"] in lines, text
        assert [line for line in lines if line[0] == "nameserver"] == [["nameserver", "10.96.0.10"]], text
        options = [o for line in lines if line[0] == "options" for o in line[1:]]
        assert "ndots:5" in options, text


def test_exec_returns_exit_code_and_output(lab):
    result = lab.exec("duo", ["sh", "-c", "echo to-out; echo to-err >&2; exit 7"])
    assert isinstance(result, labkit.ExecResult)
    assert result.exit_code == 7 and not result.ok
    assert "to-out" in result.output and "to-err" in result.output
    assert lab.exec("duo", ["true"]).ok


def test_exec_in_a_missing_container_is_an_error(lab):
    with pytest.raises(LabkitError, match="sidecar"):  # names the containers the pod has
        lab.exec("duo", ["true"], container="nope")


def test_logs_of_the_default_app(lab):
    assert "team/solo serving 8080/TCP, 8080/UDP" in lab.logs("team/solo")
    assert "sidecar serving 9090/TCP" in lab.logs("duo", container="sidecar")


def test_pod_containers_are_labelled(lab):
    containers = pod_containers(LAB, "default/duo")
    roles = sorted((c.labels[ROLE_LABEL], c.labels.get(CONTAINER_LABEL, "")) for c in containers)
    assert roles == [("app", "app"), ("app", "sidecar"), ("pause", "")]
    pause = next(c for c in containers if c.labels[ROLE_LABEL] == "pause")
    for c in containers:
        if c is not pause:
            assert c.attrs["HostConfig"]["NetworkMode"] == f"container:{pause.id}"


# ------------------------------------------------------------------ workloads over time
def test_deployment_scales_up_and_down():
    name = "it-pods-dep"
    with labkit.Lab(name, backend="docker") as lab:
        lab.apply(deployment_doc("web", 3))
        refs = [r for r in lab.pods if r.startswith("default/web-")]
        assert len(refs) == 3
        before = veths(name)
        for ref in refs:
            roles = sorted(c.labels[ROLE_LABEL] for c in pod_containers(name, ref))
            assert roles == ["app", "pause"], (ref, roles)
        assert all(lab.probe(refs[0], r).ok for r in refs)

        lab.apply(deployment_doc("web", 1))
        kept = [r for r in lab.pods if r.startswith("default/web-")]
        assert len(kept) == 1 and kept[0] in refs
        for ref in refs:
            assert len(pod_containers(name, ref)) == (2 if ref == kept[0] else 0), ref
        after = veths(name)
        assert after < before and len(before - after) == 2
        # The survivor is untouched and still serves.
        result = lab.probe(kept[0], kept[0])
        assert result.ok and result.answered_by == kept[0]


def test_deleting_a_pod_removes_containers_veth_and_ip():
    name = "it-pods-del"
    with labkit.Lab(name, backend="docker") as lab:
        lab.apply([pod_doc("keep"), pod_doc("gone")])
        old_ip = lab.pod_ip("gone")
        assert lab.probe("keep", "default/gone").ok
        assert len(pod_containers(name, "default/gone")) == 2
        before = veths(name)

        lab.delete("pod", "gone")
        assert pod_containers(name, "default/gone") == []
        after = veths(name)
        assert after < before and len(before - after) == 1
        # Its address answers no more.
        dead = lab.probe("keep", old_ip, port=80, timeout=0.5)
        assert not dead.ok and dead.answered_by is None

        lab.apply(pod_doc("fresh"))
        assert lab.pod_ip("fresh") != old_ip  # host-local style: a released address is not reused at once
        addresses = _global_ipv4(lab, "fresh")
        assert addresses == [("eth0", lab.pod_ip("fresh"))]
        assert lab.probe("keep", "default/fresh").answered_by == "default/fresh"


def test_replaced_pod_keeps_working():
    # Re-applying a pod with a changed spec replaces its containers; the pod answers on the new port.
    name = "it-pods-repl"
    with labkit.Lab(name, backend="docker") as lab:
        lab.apply([pod_doc("client"), pod_doc("srv", ports=[(80, "TCP")])])
        first = {c.id for c in pod_containers(name, "default/srv")}
        lab.apply(pod_doc("srv", ports=[(8080, "TCP")]))
        second = {c.id for c in pod_containers(name, "default/srv")}
        assert len(second) == 2 and not first & second
        assert lab.probe("client", "default/srv", port=8080).answered_by == "default/srv"
        assert not lab.probe("client", "default/srv", port=80, timeout=0.5).ok


# ------------------------------------------------------------------ two nodes
def test_pods_spread_over_both_nodes(lab2):
    nodes = {lab2.cluster.node_of(r) for r in lab2.pods}
    assert nodes == {"node-1", "node-2"}
    for ref in lab2.pods:
        node = lab2.cluster.node_of(ref)
        index = int(node.split("-")[1])
        pause = next(c for c in pod_containers(LAB2, ref) if c.labels[ROLE_LABEL] == "pause")
        assert pause.labels[NODE_LABEL] == node
        assert ipaddress.ip_address(lab2.pod_ip(ref)) in ipaddress.ip_network(f"10.244.{index}.0/24")
        route = lab2.exec(ref, ["ip", "route", "show", "default"]).output
        assert route.startswith(f"default via 10.244.{index}.1 dev eth0"), (ref, route)


def test_node_name_pins_a_pod(lab2):
    assert lab2.cluster.node_of("pinned") == "node-2"
    assert lab2.pod_ip("pinned").startswith("10.244.2.")
    # Its veth is in node-2's namespace: node-2 holds one veth per pod placed there.
    on_node2 = [r for r in lab2.pods if lab2.cluster.node_of(r) == "node-2"]
    assert len(veths(LAB2, "node-2")) == len(on_node2)


@pytest.mark.parametrize("protocol", ["TCP", "UDP"])
def test_cross_node_probes(lab2, protocol):
    one = [r for r in lab2.pods if lab2.cluster.node_of(r) == "node-1"]
    two = [r for r in lab2.pods if lab2.cluster.node_of(r) == "node-2"]
    assert one and two
    for src, dst in ((one[0], two[0]), (two[0], one[0]), (one[0], "default/pinned")):
        result = lab2.probe(src, dst, port=80, protocol=protocol)
        assert result.ok, result
        assert result.answered_by == dst
        assert result.src == src and result.dst == dst


def test_node_containers_are_distinct_hosts(lab2):
    # Each node is its own network namespace: cni0 exists in both, with that node's gateway.
    for index in (1, 2):
        out = node_container(LAB2, f"node-{index}").exec_run(["ip", "-4", "-o", "addr", "show", "cni0"]).output
        assert f"10.244.{index}.1/24" in out.decode()
