"""Endpoints follow the model within the apply, on the docker backend: scaling, deleting and
relabelling pods change where the very next connection goes, with no sleep in between.

One module-scoped lab: a Deployment ``x/web`` behind Service ``x/web`` and a client. Every
test starts by putting the Deployment back to the size it needs, so tests can run alone.
"""
from __future__ import annotations

import collections
import os
import time

import pytest

import labkit
from tests.conftest import share_lab

pytestmark = pytest.mark.docker

# The pid keeps two concurrent runs of this file from sharing a lab name: starting a Lab whose name is
# already running is refused, and that refusal currently removes the running lab's containers
# (see tests/integration/test_lifecycle.py::test_refusing_a_duplicate_leaves_the_running_lab_alone).
LAB = f"sv-scale-{os.getpid() % 10000}"


def deployment(replicas):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "x"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "app", "ports": [
                                      {"containerPort": 8080, "name": "http"},
                                      {"containerPort": 5353, "protocol": "UDP", "name": "echo"}]}]}}}}


MANIFESTS = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}},
    deployment(3),
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "namespace": "x", "labels": {"role": "client"}},
     "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 80}]}]}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "x"},
     "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"},
                                                    {"name": "echo", "port": 53, "protocol": "UDP",
                                                     "targetPort": "echo"}]}},
]


@pytest.fixture(scope="module")
def lab(request):
    share_lab(request.config, LAB)
    lab = labkit.Lab(LAB, backend="docker")
    try:
        lab.apply(MANIFESTS)
        yield lab
    finally:
        lab.close()


def batch(lab, dst, n, src="x/client", port=80, timeout=2.0):
    return lab.sample(src, dst, port, count=n, timeout=timeout)


def answered(results):
    failed = [r for r in results if not r.ok]
    assert not failed, f"{len(failed)} of {len(results)} connections failed, e.g. {failed[0]!r}"
    return collections.Counter(r.answered_by for r in results)


def replicas(lab):
    return sorted(r for r, p in lab.cluster.pods.items() if p.owner == "Deployment x/web")


def ready(lab, protocol="TCP"):
    return sorted(e.pod for e in lab.endpoints("x/web").ready if e.protocol == protocol)


def scale(lab, n):
    lab.apply(deployment(n))
    assert len(replicas(lab)) == n
    return replicas(lab)


def test_scale_down_is_followed_within_the_apply(lab):
    scale(lab, 3)
    kept = scale(lab, 1)
    counts = answered(batch(lab, lab.service_ip("x/web"), 50))  # no sleep: the apply returned, so it is in force
    assert set(counts) == set(kept), dict(counts)
    assert set(answered(batch(lab, "web", 20))) == set(kept)
    assert ready(lab) == kept and lab.explain("x/client", "web", 80).may_answer == kept
    scale(lab, 0)
    refused = lab.probe("x/client", "web", 80, timeout=5)
    assert not refused.ok and refused.error == "connection refused" and refused.latency_ms < 50, refused


def test_new_replicas_receive_traffic_right_after_the_apply(lab):
    before = set(scale(lab, 1))
    after = scale(lab, 3)
    new = set(after) - before
    assert len(new) == 2
    counts = answered(batch(lab, lab.service_ip("x/web"), 150))
    assert set(counts) == set(after), dict(counts)
    for ref in after:
        assert counts[ref] >= 0.15 * 150, dict(counts)
    assert ready(lab) == after


def test_a_deleted_pod_leaves_the_endpoints_at_once(lab):
    scale(lab, 2)
    lab.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "extra", "namespace": "x",
                                                               "labels": {"app": "web"}},
               "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 8080, "name": "http"}]}]}})
    assert "x/extra" in ready(lab)
    assert "x/extra" in answered(batch(lab, "web", 90))
    lab.delete("pod", "extra", namespace="x")
    assert "x/extra" not in ready(lab)
    counts = answered(batch(lab, "web", 60))
    assert set(counts) == set(replicas(lab)), dict(counts)
    assert "x/extra" not in lab.rules()


def test_a_deleted_replica_is_replaced_and_serves_right_after_the_delete(lab):
    """As with a ReplicaSet: the Deployment's pod count is kept; the replacement is a new
    pod (new name, new IP, new containers) that is in the endpoints and answers at once."""
    before = scale(lab, 2)
    gone = before[0]
    gone_ip = lab.pod_ip(gone)
    changes = lab.delete("pod", gone.split("/")[1], namespace="x")
    after = replicas(lab)
    (added,) = set(after) - set(before)
    assert len(after) == 2 and gone not in after
    assert [str(c) for c in changes] == [f"pod/{gone} deleted", f"pod/{added} created"]
    assert lab.pod_ip(added) != gone_ip
    assert ready(lab) == after
    counts = answered(batch(lab, "web", 60))
    assert set(counts) == set(after), dict(counts)
    assert lab.probe("x/client", added, 8080).answered_by == added


def test_relabelling_a_pod_moves_it_out_of_and_back_into_the_service(lab):
    pods = scale(lab, 3)
    target = pods[0]
    lab.label("pod", target, {"app": None})
    try:
        assert target not in ready(lab) and target not in lab.explain("x/client", "web", 80).may_answer
        counts = answered(batch(lab, lab.service_ip("x/web"), 60))
        assert target not in counts and set(counts) == set(pods[1:]), dict(counts)
        assert lab.pod_ip(target) not in lab.rules().split("table inet")[0]
    finally:
        lab.label("pod", target, {"app": "web"})
    assert target in ready(lab)
    counts = answered(batch(lab, lab.service_ip("x/web"), 90))
    assert set(counts) == set(pods), dict(counts)


HOLD = """
import os, socket, sys, time
s = socket.create_connection((sys.argv[1], 80), timeout=60)
s.sendall(b"hold\\n")
f = s.makefile()
open("/tmp/hold.first", "w").write(f.readline().strip())
while not os.path.exists("/tmp/hold.go"):
    time.sleep(0.05)
s.sendall(b"again\\n")
open("/tmp/hold.second", "w").write(f.readline().strip() or "closed")
"""


UDP_FLOW = """
import os, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.connect((sys.argv[1], 53))  # one source port for the whole test: one conntrack entry
s.send(b"one\\n")
open("/tmp/udp.first", "w").write(s.recv(100).decode().strip())
while not os.path.exists("/tmp/udp.go"):
    time.sleep(0.05)
try:
    s.send(b"two\\n")
    answer = s.recv(100).decode().strip()
except OSError as e:
    answer = "error: %s" % e
open("/tmp/udp.second", "w").write(answer)
"""


def read_file(lab, path, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = lab.exec("x/client", ["cat", path])
        if out.exit_code == 0 and out.output.strip():
            return out.output.strip()
        time.sleep(0.1)
    raise AssertionError(f"{path} did not appear in x/client: {lab.exec('x/client', ['cat', '/tmp/hold.log'])}")


def test_an_established_connection_stays_on_its_endpoint_while_the_others_change(lab):
    pods = scale(lab, 3)
    lab.exec("x/client", ["rm", "-f", "/tmp/hold.first", "/tmp/hold.second", "/tmp/hold.go"])
    start = lab.exec("x/client", ["sh", "-c", 'python3 -c "$0" "$1" >/tmp/hold.log 2>&1 &', HOLD,
                                  lab.service_ip("x/web")])
    assert start.exit_code == 0, start.output
    first = read_file(lab, "/tmp/hold.first")
    assert first in pods
    others = [p for p in pods if p != first]
    try:
        for p in others:  # two whole-table replacements while the connection is open
            lab.label("pod", p, {"app": None})
        assert ready(lab) == [first]
        lab.exec("x/client", ["touch", "/tmp/hold.go"])
        assert read_file(lab, "/tmp/hold.second") == first
    finally:
        for p in others:
            lab.label("pod", p, {"app": "web"})


def test_a_udp_flow_leaves_an_endpoint_that_left_the_service(lab):
    pods = scale(lab, 3)
    lab.exec("x/client", ["rm", "-f", "/tmp/udp.first", "/tmp/udp.second", "/tmp/udp.go"])
    start = lab.exec("x/client", ["sh", "-c", 'python3 -c "$0" "$1" >/tmp/udp.log 2>&1 &', UDP_FLOW,
                                  lab.service_ip("x/web")])
    assert start.exit_code == 0, start.output
    first = read_file(lab, "/tmp/udp.first")
    assert first in pods
    lab.label("pod", first, {"app": None})
    try:
        assert first not in ready(lab, "UDP")
        lab.exec("x/client", ["touch", "/tmp/udp.go"])
        second = read_file(lab, "/tmp/udp.second")
        assert second in pods and second != first, f"the flow still reaches {second} (left the Service: {first})"
    finally:
        lab.label("pod", first, {"app": "web"})
