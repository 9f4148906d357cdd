"""The sim backend's containers: files that touch/rm/test/cat/ls act on, and readiness probes judged
from them and from declared ports, so endpoints leave and come back as on docker."""
import time

import pytest

import labkit
from labkit.errors import ModelError

PROBED = """
apiVersion: v1
kind: Pod
metadata: {name: api, labels: {app: api}}
spec:
  containers:
  - name: app
    ports: [{containerPort: 8080, name: http}]
    readinessProbe:
      exec: {command: [%s]}
      periodSeconds: 1
      failureThreshold: %d
  - name: side
---
apiVersion: v1
kind: Service
metadata: {name: api}
spec: {selector: {app: api}, ports: [{port: 80, targetPort: http}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec: {containers: [{name: app}]}
"""


def body(result):
    return result.output.split("\n", 1)[1]


def wait_ready(lab, count, seconds=6.0):
    deadline = time.monotonic() + seconds
    while len(lab.endpoints("api").ready) != count and time.monotonic() < deadline:
        time.sleep(0.1)
    return len(lab.endpoints("api").ready)


@pytest.fixture
def lab():
    with labkit.Lab("h1-ready", backend="sim") as lab:
        lab.apply(PROBED % ('"test", "-e", "/tmp/ready"', 1))
        yield lab


def test_files_are_per_container_and_follow_coreutils(lab):
    assert lab.exec("api", ["test", "-e", "/tmp/ready"]).exit_code == 1
    assert lab.exec("api", ["touch", "/tmp/ready"]).exit_code == 0
    assert lab.exec("api", ["test", "-e", "/tmp/ready"]).exit_code == 0
    assert lab.exec("api", ["[", "-f", "/tmp/ready", "]"]).exit_code == 0
    assert lab.exec("api", ["test", "-e", "/tmp/ready"], container="side").exit_code == 1  # its own filesystem
    assert body(lab.exec("api", ["ls", "/tmp/ready"])) == "/tmp/ready\n"
    assert body(lab.exec("api", ["cat", "/tmp/ready"])) == ""
    assert lab.exec("api", ["rm", "/tmp/ready"]).exit_code == 0
    missing = lab.exec("api", ["rm", "/tmp/ready"])
    assert missing.exit_code == 1 and body(missing) == "rm: cannot remove '/tmp/ready': No such file or directory\n"
    assert lab.exec("api", ["rm", "-f", "/tmp/ready"]).exit_code == 0
    assert lab.exec("api", ["ls", "/tmp/ready"]).exit_code == 2
    assert body(lab.exec("api", ["cat", "/tmp/ready"])) == "cat: /tmp/ready: No such file or directory\n"
    assert lab.exec("api", ["test", "-e", "/etc/resolv.conf"]).exit_code == 0  # the image's files are there
    assert lab.exec("api", ["touch", "relative"]).exit_code == 127  # no working directory: not simulated


def test_an_exec_probe_follows_the_file_and_the_endpoints_follow_the_probe(lab):
    assert lab.endpoints("api").ready == [] and not lab.probe("client", "api", 80).ok
    assert "failed (exit 1)" in lab.readiness("api")
    lab.exec("api", ["touch", "/tmp/ready"])
    assert wait_ready(lab, 1) == 1
    assert lab.probe("client", "api", 80).answered_by == "default/api"
    lab.exec("api", ["rm", "/tmp/ready"])
    assert wait_ready(lab, 0) == 0
    assert not lab.probe("client", "api", 80).ok
    assert any("default/api is not ready" in e for e in lab.events)


def test_a_replaced_pod_starts_with_fresh_files():
    with labkit.Lab("h1-fresh", backend="sim") as lab:
        lab.apply(PROBED % ('"cat", "/tmp/ready"', 1))
        lab.exec("api", ["touch", "/tmp/ready"])
        assert wait_ready(lab, 1) == 1
        lab.apply(PROBED % ('"ls", "/tmp/ready"', 1))  # a new spec: a new pod, not ready, no file
        assert lab.endpoints("api").ready == []
        assert lab.exec("api", ["test", "-e", "/tmp/ready"]).exit_code == 1


def test_failure_threshold_counts_probes_in_a_row():
    with labkit.Lab("h1-thresh", backend="sim") as lab:
        lab.apply(PROBED % ('"test", "-e", "/tmp/ready"', 3))
        lab.exec("api", ["touch", "/tmp/ready"])
        assert wait_ready(lab, 1) == 1
        lab.exec("api", ["rm", "/tmp/ready"])
        time.sleep(1.2)  # one or two failed probes: still ready
        assert len(lab.endpoints("api").ready) == 1
        assert wait_ready(lab, 0) == 0


@pytest.mark.parametrize("handler,ready", [
    ({"tcpSocket": {"port": "http"}}, True), ({"tcpSocket": {"port": 9999}}, False),
    ({"httpGet": {"port": 8080, "path": "/healthz"}}, True), ({"httpGet": {"port": 81}}, False),
    ({"exec": {"command": ["true"]}}, True), ({"exec": {"command": ["false"]}}, False),
    ({"exec": {"command": ["pgrep", "app"]}}, False),  # not simulated: exit 127, as a missing command
])
def test_socket_and_http_probes_check_the_declared_ports(handler, ready):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 8080, "name": "http"}],
                                    "readinessProbe": handler}]}}
    with labkit.Lab("h1-ports", backend="sim") as lab:
        lab.apply(pod)
        assert lab.cluster.is_ready("default/p") is ready, lab.readiness("p")
        assert lab.readiness("p").endswith("(simulated)")


def test_node_views_only_the_allowed_ones():
    with labkit.Lab("h1-views", backend="sim", nodes=2) as lab:
        lab.apply(PROBED % ('"true"', 1))
        routes = lab.exec_node("node-2", ["ip", "route"])
        assert "10.244.1.0/24 via 198.18.0.1 dev fabric0" in routes.output
        assert "10.244.2.0/24 dev cni0 proto kernel scope link src 10.244.2.1" in routes.output
        ports = lab.exec_node("node-1", ["ip", "link", "show", "master", "cni0"]).output
        assert ports.count("master cni0") == 2 and "lkp0af40103@if2" in ports  # coredns and api (client: node-2)
        assert "inet 10.244.1.1/24" in lab.exec_node("node-1", ["ip", "addr", "show", "cni0"]).output
        with pytest.raises(ModelError, match="only these views"):
            lab.exec_node("node-1", ["nft", "flush", "ruleset"])
        with pytest.raises(ModelError, match="node-3"):
            lab.exec_node("node-3", ["ip", "route"])
