"""The default app and the probes on the docker backend: what answers, how failures read, what a
matrix costs.

One module-scoped two-node lab: a pod declaring many ports (in a non-default namespace) and
eight small pods, so the pods of the matrix test sit on both nodes.
"""
from __future__ import annotations

import json
import subprocess
import time

import pytest

import labkit
from tests.conftest import share_lab
from tests.integration.helpers import LAB_LABEL, namespace_doc, node_container, pod_doc

pytestmark = pytest.mark.docker

LAB = "it-serve"
MANY_PORTS = [(80, "TCP"), (8080, "TCP"), (53, "UDP"), (5353, "UDP"), (81, "TCP"), (81, "UDP")]
SMALL = [f"s{i}" for i in range(8)]


@pytest.fixture(scope="module")
def lab(request):
    share_lab(request.config, LAB)
    lab = labkit.Lab(LAB, backend="docker", nodes=2)
    try:
        lab.apply([namespace_doc("shop"),
                   pod_doc("multi", namespace="shop", node="node-1", containers=[
                       {"name": "one", "ports": [{"containerPort": p, "protocol": proto}
                                                 for p, proto in MANY_PORTS[:3]]},
                       {"name": "two", "ports": [{"containerPort": p, "protocol": proto}
                                                 for p, proto in MANY_PORTS[3:]]}]),
                   pod_doc("sctp", ports=[(80, "TCP"), (80, "SCTP")])]
                  + [pod_doc(n, ports=[(80, "TCP"), (80, "UDP")]) for n in SMALL])
        yield lab
    finally:
        lab.close()


@pytest.mark.parametrize("port,protocol", MANY_PORTS, ids=[f"{p}-{proto}" for p, proto in MANY_PORTS])
def test_default_app_answers_every_declared_port(lab, port, protocol):
    for src in ("default/s0", "default/s1"):  # from both nodes (the placement alternates)
        result = lab.probe(src, "shop/multi", port=port, protocol=protocol)
        assert result.ok, result
        assert result.answered_by == "shop/multi"
        assert result.error is None


def test_sources_of_the_port_test_are_on_both_nodes(lab):
    assert {lab.cluster.node_of("s0"), lab.cluster.node_of("s1")} == {"node-1", "node-2"}


def test_default_app_answers_on_the_pod_ip_from_inside_the_pod(lab):
    # The pod reaches itself on its own IP (hairpin through cni0).
    result = lab.probe("shop/multi", "shop/multi", port=8080)
    assert result.ok and result.answered_by == "shop/multi"


def test_default_app_answers_http(lab):
    out = lab.exec("s0", ["curl", "-s", "-m", "3", f"http://{lab.pod_ip('shop/multi')}:8080/"])
    assert out.exit_code == 0, out.output
    assert out.output.strip() == "shop/multi"


@pytest.mark.parametrize("protocol", ["TCP", "UDP"])
def test_undeclared_port_is_refused_quickly(lab, protocol):
    result = lab.probe("s0", "shop/multi", port=82, protocol=protocol, timeout=2.0)
    assert not result.ok
    assert result.answered_by is None
    assert result.error is not None and "refused" in result.error, result
    assert result.latency_ms is not None and result.latency_ms < 500, result  # refused, not timed out


def test_declared_port_of_another_protocol_is_not_served(lab):
    # 8080 is declared on TCP only: UDP on 8080 gets nothing.
    result = lab.probe("s0", "shop/multi", port=8080, protocol="UDP", timeout=1.0)
    assert not result.ok and result.answered_by is None


def test_sctp_is_served_or_explicitly_unsupported(lab):
    result = lab.probe("s0", "default/sctp", port=80, protocol="SCTP")
    if lab.capabilities.sctp:
        assert result.ok and result.answered_by == "default/sctp", result
    else:
        assert not result.ok, result  # never a silent pass
        assert result.answered_by is None
        assert result.error and "not supported" in result.error, result
    # The same pod's TCP port is unaffected.
    assert lab.probe("s0", "default/sctp", port=80).answered_by == "default/sctp"


def test_probe_results_carry_latency(lab):
    ok = lab.probe("s0", "default/s1", port=80)
    assert ok.ok and isinstance(ok.latency_ms, float) and ok.latency_ms > 0
    udp = lab.probe("s0", "default/s1", port=80, protocol="UDP")
    assert udp.ok and isinstance(udp.latency_ms, float) and udp.latency_ms > 0
    refused = lab.probe("s0", "default/s1", port=82)
    assert not refused.ok and isinstance(refused.latency_ms, float) and refused.latency_ms > 0
    assert ok.simulated is False and refused.simulated is False


def test_probe_by_ip_names_the_answering_pod(lab):
    result = lab.probe("s0", lab.pod_ip("default/s5"), port=80)
    assert result.ok and result.answered_by == "default/s5"


def engine_execs(since: float, until: float) -> list[tuple[str, str]]:
    """(container id, command) of every exec the engine started in this lab's containers in
    [since, until], read from the engine's own event log (not from labkit)."""
    out = subprocess.run(["docker", "events", "--since", f"{since:.3f}", "--until", f"{until:.3f}",
                          "--filter", "type=container", "--filter", "event=exec_create",
                          "--filter", f"label={LAB_LABEL}={LAB}", "--format", "{{json .}}"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [(e["id"], e.get("status", "")) for e in events]


def test_nine_pod_matrix_costs_one_exec_per_node(lab):
    pods = [f"default/{n}" for n in SMALL] + ["shop/multi"]
    nodes = {lab.cluster.node_of(p) for p in pods}
    assert nodes == {"node-1", "node-2"}
    since = time.time()
    m = lab.matrix(port=80, protocol="TCP", pods=pods)
    time.sleep(1.1)  # the engine's event log has one-second resolution at its edges
    execs = engine_execs(since - 0.05, time.time())
    node_ids = {node_container(LAB, n).id for n in nodes}
    assert len(execs) == len(nodes), execs  # the engine saw one exec per node, no more
    assert {cid for cid, _ in execs} == node_ids
    assert all("labkit.node probe" in status for _, status in execs), execs
    # ... and it really probed all 81 cells.
    assert m.count_allowed == 81 and m.differences() == []
    assert len(m.results) == 81
    for (src, dst), cell in m.results.items():
        assert cell.answered_by == dst, (src, dst, cell)
