"""The backend contract, checked the same way on every backend that exists (sim, docker).

A backend is done when this module passes on it: life cycle, all-or-nothing changes, probes,
matrix, explain, endpoints, exec, labs listed and removed by owner, capabilities, and the
plain-data forms of every result crossing the boundary as JSON. Only public API is used:
``labkit.Lab`` with a backend object passed in, and the backend's own methods.
"""
from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest

import labkit
from labkit.errors import BackendError, LabkitError, ModelError, NotFound
from labkit.runtime import registry
from labkit.runtime.base import Capabilities, LabInfo
from labkit.server.app import LabServer, Limits
from labkit.server.http import UnixHTTPServer
from labkit.semantics.oracle import Explanation
from labkit.semantics.services import Endpoint

BACKENDS = [pytest.param("sim", id="sim"), pytest.param("docker", id="docker", marks=pytest.mark.docker),
            pytest.param("remote", id="remote", marks=pytest.mark.docker)]
OWNER, OTHER, THIRD = "contract-a", "contract-b", "contract-c"

WORLD = """
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: client}}
spec: {containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: web}}
spec: {containers: [{name: app, ports: [{containerPort: 80}, {containerPort: 53, protocol: UDP}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: x, labels: {app: web}}
spec: {containers: [{name: app, ports: [{containerPort: 80}, {containerPort: 53, protocol: UDP}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: x}
spec:
  selector: {app: web}
  ports: [{name: http, port: 8080, targetPort: 80}]
"""
ONLY_CLIENTS = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: only-clients, namespace: x}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: 80}]
"""


class Backends:
    """The backend each owner talks to. sim and docker: one object for everyone (the caller names
    the owner). remote: a lab server in this process with one socket per owner, each socket's
    identity fixed (on one machine the server reads it from the socket's peer credentials;
    ``tests/integration/test_lab_server.py`` checks that with real Unix users)."""

    def __init__(self, kind: str, tmp: Path):
        self.kind, self._made, self._servers = kind, {}, []
        if kind == "remote":
            self._engine = registry.create("docker")
            self._app = LabServer(self._engine, Limits(labs_per_owner=5, pods_per_lab=20))
            for owner in (OWNER, OTHER, THIRD):
                path = str(tmp / f"{owner}.sock")
                server = UnixHTTPServer(path, self._app, identify=lambda sock, headers, who=owner: who)
                threading.Thread(target=server.serve_forever, daemon=True).start()
                self._servers.append(server)
                self._made[owner] = registry.create("remote", address=path)
        else:
            shared = registry.create(kind)
            self._made = {owner: shared for owner in (OWNER, OTHER, THIRD)}

    def __call__(self, owner: str = OWNER):
        return self._made[owner]

    def close(self) -> None:
        for owner in (OWNER, OTHER):  # a failed test must not leave its labs behind
            self(owner).remove_labs(owner)
        for server in self._servers:
            server.shutdown()
            server.server_close()
        if self.kind == "remote":
            self._app.close_all()
            self._engine.close()
        for backend in set(self._made.values()):
            backend.close()


@pytest.fixture(params=BACKENDS)
def backends(request, tmp_path_factory):
    made = Backends(request.param, tmp_path_factory.mktemp("sockets"))
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def backend(backends):
    return backends(OWNER)


@pytest.fixture
def lab(backend):
    with labkit.Lab("contract", backend=backend, nodes=2, owner=OWNER) as lab:
        lab.apply(WORLD)
        yield lab


def roundtrip(value):
    return type(value).from_dict(json.loads(json.dumps(value.to_dict())))


def test_capabilities_say_what_the_backend_does(backend):
    caps = backend.capabilities()
    assert isinstance(caps, Capabilities) and caps.backend == backend.name
    assert caps.where
    assert caps.real_packets is (not backend.simulated) and caps.simulated is backend.simulated
    assert {"TCP", "UDP"} <= set(caps.protocols) and ("SCTP" in caps.protocols) is caps.sctp
    assert caps.max_nodes >= 2 and caps.where
    assert roundtrip(caps) == caps


def test_life_cycle_list_attach_and_close(backend):
    before = time.time()
    lab = labkit.Lab("cycle", backend=backend, owner=OWNER)
    try:
        assert lab.owner == OWNER and lab.simulated is backend.simulated
        [info] = [i for i in backend.list_labs(OWNER) if i.name == "cycle"]
        assert isinstance(info, LabInfo) and info.owner == OWNER and info.backend == backend.name
        assert before - 5 <= info.created <= time.time() + 5 and info.age_seconds >= 0 and info.nodes == 1
        assert roundtrip(info) == info
        lab.apply(WORLD)
        with pytest.raises(BackendError, match="already runs"):  # one owner, one lab of a name
            labkit.Lab("cycle", backend=backend, owner=OWNER)
        again = labkit.Lab.attach("cycle", lab.history, backend=backend, owner=OWNER)
        assert again.pods == lab.pods and again.probe("x/a", "x/b").answered_by == "x/b"
        again.detach()  # leaves it running for its first handle
        assert lab.probe("x/a", "x/b").ok
    finally:
        lab.close()
    assert "cycle" not in {i.name for i in backend.list_labs(OWNER)}
    with pytest.raises(LabkitError, match="closed"):
        lab.probe("x/a", "x/b")
    lab.close()  # twice is fine


def test_another_owners_lab_is_not_found_and_survives_removal_by_owner(backends):
    backend = backends(OWNER)
    mine = labkit.Lab("shared-name", backend=backend, owner=OWNER)
    theirs = labkit.Lab("shared-name", backend=backends(OTHER), owner=OTHER)  # same name, another owner: no clash
    try:
        theirs.apply(WORLD)
        with pytest.raises(NotFound):
            labkit.Lab.attach("nobody", [], backend=backend, owner=OWNER)
        assert backends(THIRD).remove_lab("shared-name", THIRD) == 0  # not that owner's: nothing goes
        assert backend.remove_labs(OWNER) > 0
        assert "shared-name" not in {i.name for i in backend.list_labs(OWNER)}
        assert [i.owner for i in backends(OTHER).list_labs(OTHER) if i.name == "shared-name"] == [OTHER]
        assert theirs.probe("x/a", "x/b").answered_by == "x/b"  # still running, untouched
    finally:
        mine.close()
        theirs.close()


def rules_without_counters(lab) -> str:
    return re.sub(r"counter packets \d+ bytes \d+", "counter", lab.rules())  # traffic moves counters


def test_bad_input_names_the_field_and_changes_nothing(lab):
    rules, history, pods = rules_without_counters(lab), list(lab.history), lab.pods
    bad = WORLD.replace("targetPort: 80", "targetPort: 99999")
    with pytest.raises(ModelError, match=r"spec\.ports\[0\]\.targetPort"):
        lab.apply(bad)
    with pytest.raises(NotFound):
        lab.delete("networkpolicy", "nope", namespace="x")
    assert (rules_without_counters(lab), lab.history, lab.pods) == (rules, history, pods)
    assert lab.probe("x/a", "web.x", 8080).ok


def test_probes_matrix_and_explain_follow_a_policy(lab):
    assert lab.probe("x/a", "x/b").answered_by == "x/b"
    refused = lab.probe("x/a", "x/b", port=81)
    assert not refused.ok and refused.answered_by is None and refused.error
    assert lab.probe("x/a", "x/b", port=53, protocol="UDP").ok
    lab.apply(ONLY_CLIENTS)
    m = lab.matrix(port=80, namespaces=["x"])
    assert m.differences() == [] and m.simulated is lab.simulated
    assert m.allowed("x/a", "x/b") and not m.allowed("x/b", "x/c") and m.allowed("x/b", "x/a")
    assert roundtrip(m) == m
    allowed = lab.explain("x/a", "x/b")
    denied = lab.explain("x/c", "x/b")
    assert allowed.allowed and not denied.allowed
    assert "x/only-clients" in str(denied)
    if not lab.simulated:  # the kernel's rule that decided, with its counter
        assert any("only-clients" in c and "accept" in c for c in allowed.chains), allowed.chains
        assert any("drop" in c and "no policy allows it" in c for c in denied.chains), denied.chains
        assert not any("MISSING" in c for c in allowed.chains + denied.chains)
    for ex in (allowed, denied):
        assert roundtrip(ex) == ex and isinstance(roundtrip(ex), Explanation)
    probe = lab.probe("x/c", "x/b")
    assert not probe.ok and probe.matches_oracle and roundtrip(probe) == probe


def test_endpoints_and_load_balancing(lab):
    eps = lab.endpoints("x/web")
    assert sorted(e.pod for e in eps.ready) == ["x/b", "x/c"]
    assert all(roundtrip(e) == e and isinstance(roundtrip(e), Endpoint) for e in eps)
    answers = {r.answered_by for r in lab.sample("x/a", "web.x.svc.cluster.local", 8080, count=40)}
    assert answers == {"x/b", "x/c"}


NODEPORT = """
apiVersion: v1
kind: Service
metadata: {name: web-public, namespace: x}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 80, nodePort: 30080}]
"""


def test_the_server_sees_the_client_address(lab):
    """No NAT between pods, nor through a ClusterIP; masquerading for hairpin and NodePort traffic."""
    direct = lab.probe("x/a", "x/b")
    assert direct.client_ip == lab.pod_ip("x/a") and roundtrip(direct) == direct
    via_service = lab.sample("x/a", "web.x", 8080, count=12)
    assert {(r.answered_by, r.client_ip) for r in via_service} <= {("x/b", lab.pod_ip("x/a")),
                                                                  ("x/c", lab.pod_ip("x/a"))}
    gateway_of = {n: f"10.244.{n[-1]}.1" for n in ("node-1", "node-2")}  # each node's cni0 address
    for r in lab.sample("x/b", "web.x", 8080, count=20):  # b reaching itself through its Service: hairpin
        assert r.client_ip == (gateway_of[lab.cluster.node_of("x/b")] if r.answered_by == "x/b"
                               else lab.pod_ip("x/b")), r
    lab.apply(NODEPORT)
    for r in lab.sample("internet", "198.18.0.1", 30080, count=20):  # node-1 translates and masquerades
        assert r.ok, r
        expected = "10.244.1.1" if lab.cluster.node_of(r.answered_by) == "node-1" else "198.18.0.1"
        assert r.client_ip == expected, r


def test_trace_service_shows_the_rules_one_connection_went_through(lab):
    trace = lab.trace_service("x/a", "web.x", 8080)
    assert trace.result.ok and trace.result.answered_by in ("x/b", "x/c")
    assert [s.title.split(":")[0] for s in trace.steps] == ["dispatch", "endpoint choice", "DNAT"]
    ip, port = lab.pod_ip(trace.result.answered_by), 80
    assert any(line.endswith(f"dnat to {ip}:{port}") for line in trace.lines), trace.lines
    assert all(line.split(": ", 1)[1] in lab.rules() for line in trace.lines if "svc-dispatch:" not in line)


def test_exec_in_a_pod(lab):
    result = lab.exec("x/b", ["hostname"])
    assert result.ok and result.output.strip().splitlines()[-1] == "b"  # sim says first that it simulates
    assert roundtrip(result) == result
    with pytest.raises(ModelError, match="container"):
        lab.exec("x/b", ["hostname"], container="nope")
    with pytest.raises(NotFound):
        lab.exec("x/nope", ["hostname"])


def test_rules_are_the_rendered_ruleset(lab):
    lab.apply(ONLY_CLIENTS)
    text = lab.rules()
    assert "table inet labkit-pol" in text and "table ip labkit-svc" in text
    assert "x/only-clients ingress[0]" in text
