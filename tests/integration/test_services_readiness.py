"""Readiness on the docker backend: a pod with a readinessProbe gets Service traffic only while
the kubelet-like prober says it is ready (exec, tcpSocket and httpGet handlers), and every
transition is visible in ``lab.endpoints()`` and ``lab.events``.

One module-scoped lab with periodSeconds: 1 everywhere, so transitions take about a second.
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
LAB = f"sv-ready-{os.getpid() % 10000}"
WAIT = 8.0  # seconds: several periods (1 s) plus the time a probe round takes on a busy machine

# Serves 8080 only once /tmp/go exists: the pod starts without a listener.
LATE_SERVER = ["sh", "-c", "while [ ! -e /tmp/go ]; do sleep 0.1; done; "
               "exec python3 -m labkit.node serve --name \"$0\" --port 8080/TCP"]


def probed_pod(name, app, probe, command=None, port=8080):
    container = {"name": "app", "ports": [{"containerPort": port, "name": "http"}], "readinessProbe": probe}
    if command:
        container["command"] = command[:3] + [f"x/{name}"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "x", "labels": {"app": app}},
            "spec": {"containers": [container]}}


def service(name, app):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "x"},
            "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}


TIMING = {"periodSeconds": 1, "failureThreshold": 1, "successThreshold": 1, "timeoutSeconds": 1}
MANIFESTS = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}},
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "namespace": "x"},
     "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 80}]}]}},
    probed_pod("ex", "ex", {"exec": {"command": ["test", "-e", "/tmp/ready"]}, **TIMING}),
    probed_pod("tcp", "tcp", {"tcpSocket": {"port": "http"}, **TIMING}, LATE_SERVER),
    probed_pod("http", "http", {"httpGet": {"path": "/healthz", "port": 8080}, **TIMING}),
    probed_pod("http-bad", "http", {"httpGet": {"path": "/", "port": 8081}, **TIMING}),
    service("ex", "ex"), service("tcp", "tcp"), service("http", "http"),
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


def state(lab, service, pod):
    eps = [e for e in lab.endpoints(f"x/{service}") if e.pod == f"x/{pod}"]
    assert len(eps) == 1, lab.endpoints(f"x/{service}")
    return eps[0].ready


def wait_for(lab, service, pod, ready, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state(lab, service, pod) == ready:
            return time.monotonic() - (deadline - timeout)
        time.sleep(0.1)
    raise AssertionError(f"x/{pod} did not become {'ready' if ready else 'not ready'} within {timeout} s; "
                         f"events: {list(lab.events)[-5:]}; endpoints: {lab.endpoints(f'x/{service}')!r}")


def connections(lab, service, n=20):
    results = lab.sample("x/client", service, 80, count=n, timeout=2.0)
    return collections.Counter(r.answered_by if r.ok else r.error for r in results)


def events_about(lab, pod):
    return [e for e in lab.events if f"pod x/{pod} " in e]


def test_exec_probe_gates_traffic_both_ways(lab):
    assert state(lab, "ex", "ex") is False  # a probed pod starts not ready
    assert connections(lab, "ex") == {"connection refused": 20}
    assert "no ready endpoints" in str(lab.explain("x/client", "ex", 80))
    assert "Endpoints x/ex: <none>" in repr(lab.endpoints("x/ex")) and "not ready: x/ex" in repr(lab.endpoints("x/ex"))
    lab.exec("x/ex", ["touch", "/tmp/ready"])
    took = wait_for(lab, "ex", "ex", True)
    assert took < 5, f"became ready after {took:.1f} s with periodSeconds 1"
    assert connections(lab, "ex") == {"x/ex": 20}
    assert lab.explain("x/client", "ex", 80).may_answer == ["x/ex"]
    assert any("is ready" in e and "exec probe" in e and "passed" in e for e in events_about(lab, "ex")), \
        list(lab.events)
    lab.exec("x/ex", ["rm", "/tmp/ready"])  # failureThreshold 1: out at the next period
    wait_for(lab, "ex", "ex", False)
    assert connections(lab, "ex") == {"connection refused": 20}
    assert any("is not ready" in e and "failed" in e for e in events_about(lab, "ex")), list(lab.events)


def test_tcp_socket_probe_waits_for_the_listener(lab):
    assert state(lab, "tcp", "tcp") is False
    assert connections(lab, "tcp", 5) == {"connection refused": 5}
    lab.exec("x/tcp", ["touch", "/tmp/go"])
    wait_for(lab, "tcp", "tcp", True)
    assert connections(lab, "tcp") == {"x/tcp": 20}
    assert any("is ready" in e and "tcpSocket" in e for e in events_about(lab, "tcp")), list(lab.events)


def test_http_get_probe_against_the_default_app(lab):
    wait_for(lab, "http", "http", True)  # the default app answers HTTP on every declared port
    assert state(lab, "http", "http-bad") is False  # nothing listens on 8081: never ready
    assert connections(lab, "http") == {"x/http": 20}
    assert lab.explain("x/client", "http", 80).may_answer == ["x/http"]
    detail = lab.readiness("x/http-bad")
    assert "httpGet" in detail and "failed" in detail, detail
    assert not any("x/http-bad is ready" in e for e in lab.events)


def test_headless_dns_publishes_only_ready_pods(lab):
    lab.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hl", "namespace": "x"},
               "spec": {"clusterIP": "None", "selector": {"app": "http"},
                        "ports": [{"name": "http", "port": 8080, "targetPort": "http"}]}})
    wait_for(lab, "http", "http", True)
    out = lab.exec("x/client", ["dig", "+short", "hl.x.svc.cluster.local"])
    assert out.output.split() == [lab.pod_ip("x/http")], out.output  # x/http-bad is not ready
