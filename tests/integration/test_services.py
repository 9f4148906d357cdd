"""Services on the docker backend: what a learner relies on when traffic goes through a ClusterIP,
a DNS name or a NodePort, observed with real connections.

One two-node lab (module scope) holds a 3-replica Deployment behind Services of every kind:
numeric and named targetPorts, TCP and UDP, no endpoints, ClientIP affinity, NodePorts with
endpoints on either node. Tests that add objects remove them again; tests that move
endpoints (scale, delete, relabel, readiness) live in test_services_endpoints.py and
test_services_readiness.py with labs of their own.
"""
from __future__ import annotations

import collections
import json
import os
import re
import time

import pytest

import labkit
from labkit.dataplane import names, ruleset
from labkit.model import addressing as addr
from tests.conftest import share_lab
from tests.integration.helpers import node_exec

pytestmark = pytest.mark.docker

# The pid keeps two concurrent runs of this file from sharing a lab name: starting a Lab whose name is
# already running is refused, and that refusal currently removes the running lab's containers
# (see tests/integration/test_lifecycle.py::test_refusing_a_duplicate_leaves_the_running_lab_alone).
LAB = f"sv-main-{os.getpid() % 10000}"


def ns(name):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def pod(ref, labels, ports, node=None):
    n, name = ref.split("/")
    spec = {"containers": [{"name": "app", "ports": ports}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": n, "labels": labels},
            "spec": spec}


def service(ref, selector, ports, **spec):
    n, name = ref.split("/")
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": n},
            "spec": {"selector": selector, "ports": ports, **spec}}


WEB_PORTS = [{"containerPort": 8080, "name": "http"}, {"containerPort": 5353, "protocol": "UDP", "name": "echo"}]
MANIFESTS = [
    ns("x"),
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "x"},
     "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
              "template": {"metadata": {"labels": {"app": "web"}},
                           "spec": {"containers": [{"name": "app", "ports": WEB_PORTS}]}}}},
    pod("x/client", {"role": "client"}, [{"containerPort": 80}], "node-1"),
    pod("x/client2", {"role": "client"}, [{"containerPort": 80}], "node-2"),
    # one port name, a different number on each pod; alt-c lacks the name and is no endpoint
    pod("x/alt-a", {"app": "alt"}, [{"containerPort": 8081, "name": "web"}], "node-1"),
    pod("x/alt-b", {"app": "alt"}, [{"containerPort": 9091, "name": "web"}], "node-2"),
    pod("x/alt-c", {"app": "alt"}, [{"containerPort": 7070, "name": "metrics"}], "node-1"),
    pod("x/n1", {"app": "n1"}, [{"containerPort": 8080}], "node-1"),
    pod("x/n2", {"app": "n2"}, [{"containerPort": 8080}], "node-2"),
    service("x/web", {"app": "web"}, [{"name": "http", "port": 80, "targetPort": "http"},
                                      {"name": "echo", "port": 53, "protocol": "UDP", "targetPort": "echo"}]),
    service("x/empty", {"app": "nothing"}, [{"name": "http", "port": 80},
                                            {"name": "u", "port": 81, "protocol": "UDP"}]),
    service("x/alt", {"app": "alt"}, [{"port": 80, "targetPort": "web"}]),
    service("x/sticky", {"app": "web"}, [{"name": "http", "port": 80, "targetPort": "http"}],
            sessionAffinity="ClientIP"),
    service("x/np1", {"app": "n1"}, [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30081}],
            type="NodePort"),
    service("x/np2", {"app": "n2"}, [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30082}],
            type="NodePort"),
]


@pytest.fixture(scope="module")
def lab(request):
    share_lab(request.config, LAB)
    lab = labkit.Lab(LAB, backend="docker", nodes=2)
    try:
        lab.apply(MANIFESTS)
        yield lab
    finally:
        lab.close()


def batch(lab, src, dst, port, n, protocol="TCP", timeout=2.0):
    """``n`` new connections from ``src`` at once (one agent call, parallel inside the source's node)."""
    return lab.sample(src, dst, port, protocol, count=n, timeout=timeout)


def replicas(lab, deployment="x/web"):
    return sorted(r for r, p in lab.cluster.pods.items() if p.owner == f"Deployment {deployment}")


def spread(results):
    failed = [r for r in results if not r.ok]
    assert not failed, f"{len(failed)} of {len(results)} connections failed, e.g. {failed[0]!r}"
    return collections.Counter(r.answered_by for r in results)


def assert_fair(counts, pods, total):
    assert set(counts) == set(pods), f"answered by {dict(counts)}, expected every one of {pods}"
    for p in pods:
        assert 0.20 * total <= counts[p] <= 0.47 * total, f"{p} got {counts[p]} of {total}: {dict(counts)}"


# ------------------------------------------------------------------ load balancing
def test_replicas_share_connections_through_the_cluster_ip(lab):
    web = replicas(lab)
    assert len(web) == 3 and {lab.cluster.node_of(r) for r in web} == {"node-1", "node-2"}  # cross-node too
    counts = spread(batch(lab, "x/client", lab.service_ip("x/web"), 80, 300))
    assert_fair(counts, web, 300)
    assert set(counts) <= set(lab.explain("x/client", lab.service_ip("x/web"), 80).may_answer)


def test_replicas_share_connections_through_the_dns_name(lab):
    web = replicas(lab)
    counts = spread(batch(lab, "x/client2", "web", 80, 300))
    assert_fair(counts, web, 300)
    assert set(counts) <= set(lab.explain("x/client2", "web", 80).may_answer)


def test_udp_service_port_reaches_every_replica(lab):
    results = batch(lab, "x/client", lab.service_ip("x/web"), 53, 90, protocol="UDP")
    counts = spread(results)
    assert set(counts) == set(replicas(lab)), dict(counts)  # each datagram flow is a new conntrack entry


# ------------------------------------------------------------------ refusals
DIRECT_CONNECT = """
import errno, socket, sys, time
kind = socket.SOCK_DGRAM if sys.argv[3] == "UDP" else socket.SOCK_STREAM
s = socket.socket(socket.AF_INET, kind)
s.settimeout(5)
t = time.monotonic()
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    if kind == socket.SOCK_DGRAM:
        s.send(b"probe\\n")
        s.recv(100)
    print("OK", round((time.monotonic() - t) * 1000, 2))
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e)), round((time.monotonic() - t) * 1000, 2))
"""


def direct(lab, src, ip, port, protocol="TCP"):
    """Connect from inside ``src`` with a plain socket; return (outcome, milliseconds)."""
    out = lab.exec(src, ["python3", "-c", DIRECT_CONNECT, ip, str(port), protocol])
    assert out.exit_code == 0, out.output
    word, ms = out.output.split()
    return word, float(ms)


def test_service_without_endpoints_is_refused_at_once(lab):
    vip = lab.service_ip("x/empty")
    assert lab.endpoints("x/empty") == []
    started = time.monotonic()
    result = lab.probe("x/client", vip, 80, timeout=5)
    wall = time.monotonic() - started
    assert not result.ok and result.error == "connection refused", result
    assert result.latency_ms < 50 and result.matches_oracle, result
    assert wall < 2.0, f"lab.probe took {wall:.2f} s: it waited instead of being refused"
    assert direct(lab, "x/client", vip, 80) [0] == "ECONNREFUSED"
    word, ms = direct(lab, "x/client2", vip, 80)  # from the other node as well
    assert word == "ECONNREFUSED" and ms < 50, (word, ms)
    by_name = lab.probe("x/client", "empty", 80, timeout=5)
    assert not by_name.ok and by_name.error == "connection refused" and by_name.latency_ms < 50, by_name
    expl = lab.explain("x/client", "empty", 80)
    assert not expl.allowed and expl.outcomes[0].error == "connection refused"


def test_udp_to_a_service_without_endpoints_fails_quickly(lab):
    vip = lab.service_ip("x/empty")
    result = lab.probe("x/client", vip, 81, protocol="UDP", timeout=5)
    assert not result.ok and result.error == "connection refused" and result.latency_ms < 50, result
    word, ms = direct(lab, "x/client", vip, 81, "UDP")
    assert word == "ECONNREFUSED" and ms < 50, (word, ms)


def test_a_port_the_service_does_not_have_is_refused(lab):
    vip = lab.service_ip("x/web")
    for port, protocol in ((81, "TCP"), (8080, "TCP"), (80, "UDP")):
        result = lab.probe("x/client", vip, port, protocol=protocol, timeout=5)
        assert not result.ok and result.error == "connection refused" and result.latency_ms < 50, result
        assert not lab.explain("x/client", vip, port, protocol).allowed
    word, ms = direct(lab, "x/client", vip, 81)
    assert word == "ECONNREFUSED" and ms < 50, (word, ms)


def test_an_unallocated_service_address_is_refused(lab):
    result = lab.probe("x/client", "10.96.200.200", 80, timeout=5)
    assert not result.ok and result.error == "connection refused" and result.latency_ms < 50, result
    assert not lab.explain("x/client", "10.96.200.200", 80).allowed and result.matches_oracle


def test_the_oracle_explains_an_unallocated_service_address_as_refused(lab):
    observed = lab.probe("x/client", "10.96.200.200", 80, timeout=5)
    (outcome,) = lab.explain("x/client", "10.96.200.200", 80).outcomes
    assert outcome.error == observed.error == "connection refused", (outcome, observed)
    assert "outside the lab" not in " ".join(outcome.reasons)


# ------------------------------------------------------------------ targetPort, hairpin, affinity
def test_named_target_port_is_resolved_per_pod(lab):
    eps = {(e.pod, e.port) for e in lab.endpoints("x/alt")}
    assert eps == {("x/alt-a", 8081), ("x/alt-b", 9091)}
    counts = spread(batch(lab, "x/client", lab.service_ip("x/alt"), 80, 60))
    assert set(counts) == {"x/alt-a", "x/alt-b"}, dict(counts)  # both answer, each on its own number
    counts = spread(batch(lab, "x/client2", "alt", 80, 60))
    assert set(counts) == {"x/alt-a", "x/alt-b"}, dict(counts)
    assert set(counts) <= set(lab.explain("x/client2", "alt", 80).may_answer)


def test_a_pod_reaches_itself_through_its_own_service(lab):
    for dst in (lab.service_ip("x/np1"), "np1", "np1.x.svc.cluster.local"):
        result = lab.probe("x/n1", dst, 80, timeout=3)
        assert result.ok and result.answered_by == "x/n1" and result.matches_oracle, result
        assert lab.explain("x/n1", dst, 80).may_answer == ["x/n1"]
    # a replica reaching the Service it belongs to: itself among the answers (hairpin) and the others
    me = replicas(lab)[0]
    counts = spread(batch(lab, me, "web", 80, 60))
    assert me in counts and set(counts) == set(replicas(lab)), dict(counts)


def affinity_members(lab, client_ip):
    """aff_* sets (as nft lists them in every node) that hold ``client_ip``."""
    found = set()
    for node in lab.cluster.node_names:
        for item in nft_json(node, f"ip {names.SVC_TABLE}"):
            s = item.get("set")
            if s and s["name"].startswith("aff_"):
                elems = [e["elem"]["val"] if isinstance(e, dict) else e for e in s.get("elem", [])]
                if client_ip in elems:
                    found.add((node, s["name"]))
    return found


def test_client_ip_affinity_keeps_a_client_on_one_endpoint(lab):
    vip = lab.service_ip("x/sticky")
    chosen = {}
    for client in ("x/client", "x/client2"):
        first = lab.probe(client, vip, 80, timeout=3)
        assert first.ok, first
        rest = batch(lab, client, vip, 80, 19)
        counts = spread(rest)
        assert set(counts) == {first.answered_by}, f"{client}: first {first.answered_by}, then {dict(counts)}"
        by_name = batch(lab, client, "sticky", 80, 10)
        assert set(spread(by_name)) == {first.answered_by}
        chosen[client] = first.answered_by
        # the kernel remembers the client in the chosen endpoint's affinity set, on the client's node
        ep_ip = lab.pod_ip(first.answered_by)
        members = affinity_members(lab, lab.pod_ip(client))
        assert (lab.cluster.node_of(client), f"aff_x_sticky_http_{ep_ip}") in members, members
    # without affinity the same client is spread
    assert len(spread(batch(lab, "x/client", lab.service_ip("x/web"), 80, 30))) > 1
    assert set(chosen.values()) <= set(replicas(lab))


# ------------------------------------------------------------------ NodePort and the outside world
@pytest.mark.parametrize("node_ip", [addr.node_ip(1), addr.node_ip(2)])
def test_node_port_answers_on_every_node_for_endpoints_on_either(lab, node_ip):
    for port, owner in ((30081, "x/n1"), (30082, "x/n2")):
        result = lab.probe("internet", node_ip, port, timeout=3)
        assert result.ok and result.answered_by == owner and result.matches_oracle, (node_ip, port, result)
        assert lab.explain("internet", node_ip, port).may_answer == [owner]
    refused = lab.probe("internet", node_ip, 30099, timeout=3)
    assert not refused.ok and not lab.explain("internet", node_ip, 30099).allowed


def test_the_internet_reaches_neither_cluster_ips_nor_pods(lab):
    targets = [(lab.service_ip("x/np1"), 80), (lab.service_ip("x/web"), 80), (lab.pod_ip("x/n1"), 8080),
               (lab.pod_ip("x/n2"), 8080)]
    for ip, port in targets:
        result = lab.probe("internet", ip, port, timeout=1)
        assert not result.ok and result.answered_by is None and result.matches_oracle, result
        assert not lab.explain("internet", ip, port).allowed


# ------------------------------------------------------------------ Services and NetworkPolicies
def test_policies_judge_the_endpoint_behind_the_vip_and_refusals_come_first(lab):
    """Egress of x/client allowed to one replica only (by its IP): through the VIP only that replica
    answers and the other picks time out; an empty Service is still refused at once."""
    web = replicas(lab)
    chosen = web[1]
    lab.apply({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "client-out", "namespace": "x"},
               "spec": {"podSelector": {"matchLabels": {"role": "client"}}, "policyTypes": ["Egress"],
                        "egress": [{"to": [{"ipBlock": {"cidr": f"{lab.pod_ip(chosen)}/32"}}]},
                                   {"ports": [{"port": 53, "protocol": "UDP"}]}]}})
    try:
        results = batch(lab, "x/client", lab.service_ip("x/web"), 80, 45, timeout=0.5)
        answered = {r.answered_by for r in results if r.ok}
        expl = lab.explain("x/client", lab.service_ip("x/web"), 80)
        assert answered == {chosen} == set(expl.may_answer), (answered, str(expl))
        assert any(not r.ok and r.error == "timed out" for r in results)
        assert "1 of 3 endpoints allow it" in str(expl)
        refused = lab.probe("x/client", lab.service_ip("x/empty"), 80, timeout=3)
        assert not refused.ok and refused.error == "connection refused" and refused.latency_ms < 50, refused
    finally:
        lab.delete("networkpolicy", "client-out", namespace="x")
    assert len(spread(batch(lab, "x/client", lab.service_ip("x/web"), 80, 30))) > 1


# ------------------------------------------------------------------ the oracle agrees
@pytest.mark.parametrize("src,dst,port,protocol", [
    ("x/client", "web", 80, "TCP"), ("x/client2", "web.x", 53, "UDP"), ("x/client", "alt", 80, "TCP"),
    ("x/client2", "empty", 80, "TCP"), ("x/alt-c", "np2", 80, "TCP"), ("x/n2", "web.x.svc.cluster.local.", 80, "TCP"),
    ("x/client", "alt", 81, "TCP"), ("x/client", "nope", 80, "TCP"),
    # a pod to a node's address: NodePorts lead to the endpoints on either node, other ports are refused
    ("x/client", addr.node_ip(1), 30082, "TCP"), ("x/client2", addr.node_ip(1), 30081, "TCP"),
    ("x/client", addr.node_ip(2), 30081, "TCP"), ("x/client", addr.node_ip(1), 80, "TCP"),
    ("x/client", addr.node_gateway(1), 30081, "TCP"),
])
def test_observed_answers_are_among_those_the_oracle_allows(lab, src, dst, port, protocol):
    results = batch(lab, src, dst, port, 40, protocol=protocol, timeout=1.5)
    expl = lab.explain(src, dst, port, protocol)
    answered = {r.answered_by for r in results if r.ok}
    assert answered <= set(expl.may_answer), (answered, expl.may_answer, str(expl))
    assert bool(answered) == expl.allowed, str(expl)
    if expl.allowed:
        assert all(r.ok for r in results), [r for r in results if not r.ok][:3]


EGRESS_ONLY_TO_N2 = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                     "metadata": {"name": "np-egress", "namespace": "x"},
                     "spec": {"podSelector": {"matchLabels": {"role": "client"}}, "policyTypes": ["Egress"],
                              "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "n2"}}}]},
                                         {"ports": [{"port": 53, "protocol": "UDP"}]}]}}
INGRESS_N2_FROM_CLIENTS = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                           "metadata": {"name": "np-ingress", "namespace": "x"},
                           "spec": {"podSelector": {"matchLabels": {"app": "n2"}}, "policyTypes": ["Ingress"],
                                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]}}


INGRESS_N2_FROM_INTERNET = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                            "metadata": {"name": "np-internet", "namespace": "x"},
                            "spec": {"podSelector": {"matchLabels": {"app": "n2"}}, "policyTypes": ["Ingress"],
                                     "ingress": [{"from": [{"ipBlock": {"cidr": "203.0.113.0/24"}}]}]}}


@pytest.mark.parametrize("src,policy,node,allowed", [
    # x/client is on node-1, x/n2 (behind NodePort 30082) on node-2
    ("x/client", EGRESS_ONLY_TO_N2, 1, True),         # node-1 translates first: egress judged against x/n2
    ("x/client", EGRESS_ONLY_TO_N2, 2, False),        # egress judged against node-2's address: not allowed
    ("x/client", INGRESS_N2_FROM_CLIENTS, 1, False),  # masqueraded by node-1: x/n2 sees 198.18.0.1
    ("x/client", INGRESS_N2_FROM_CLIENTS, 2, True),   # node-2 translates for its own pod: x/n2 sees x/client
    ("internet", INGRESS_N2_FROM_INTERNET, 2, True),  # the internet host's own address reaches x/n2
    ("internet", INGRESS_N2_FROM_INTERNET, 1, False),  # ... unless another node masquerades it first
], ids=["egress-own-node", "egress-other-node", "ingress-masqueraded", "ingress-direct", "internet-direct",
        "internet-masqueraded"])
def test_node_ports_under_policies_follow_the_real_path(lab, src, policy, node, allowed):
    lab.apply(policy)
    try:
        expl = lab.explain(src, addr.node_ip(node), 30082)
        results = [lab.probe(src, addr.node_ip(node), 30082, timeout=1.0) for _ in range(4)]
        assert expl.allowed is allowed, str(expl)
        assert all(r.ok is allowed for r in results), (results, str(expl))
    finally:
        lab.delete("networkpolicy", policy["metadata"]["name"], namespace="x")


@pytest.mark.parametrize("dst,port,protocol,errors", [
    ("192.0.2.1", 80, "TCP", {"network unreachable"}),   # documentation address: no node routes there
    ("192.0.2.1", 80, "UDP", {"timed out"}),
    ("10.244.9.9", 80, "TCP", {"network unreachable"}),  # pod range, but no node has that subnet
    (addr.node_ip(1), 80, "TCP", {"connection refused"}),
    (addr.node_gateway(2), 30081, "TCP", {"connection refused"}),
    ("198.18.0.99", 80, "TCP", {"timed out", "no route to host"}),  # unanswered ARP (then remembered as failed)
])
def test_failures_look_the_way_the_oracle_says(lab, dst, port, protocol, errors):
    result = lab.probe("x/client", dst, port, protocol=protocol, timeout=1.0)
    expected = lab.explain("x/client", dst, port, protocol)
    assert not result.ok and not expected.allowed, (result, str(expected))
    assert result.error in errors and expected.outcomes[0].error in errors, (result, str(expected))


# ------------------------------------------------------------------ the rules in the kernel
def rendered_facts(text: str) -> dict:
    facts: dict = {}
    table = kind = name = None
    body: list[str] = []
    for line in text.splitlines():
        m = re.match(r"^table (\S+) (\S+) \{$", line)
        if m:
            table = f"{m.group(1)} {m.group(2)}"
            facts[table] = {"chains": {}, "sets": {}}
            continue
        m = re.match(r"^  (chain|map|set) (\S+) \{$", line)
        if m:
            kind, name, body = m.group(1), m.group(2), []
            continue
        if line == "  }" and kind:
            if kind == "chain":
                facts[table]["chains"][name] = sum(1 for b in body if not b.startswith(("type ", "comment ")))
            elif not name.startswith("aff_"):  # dynamic affinity sets fill up with traffic
                m = re.search(r"elements = \{ (.*) \}", " ".join(body))
                facts[table]["sets"][name] = len(m.group(1).split(",")) if m else 0
            kind = None
            continue
        if kind:
            body.append(line.strip())
    return facts


def nft_json(node: str, table: str) -> list[dict]:
    """``nft -j list table`` in a node's namespace, read with the docker CLI (not through labkit)."""
    return json.loads(node_exec(LAB, ["nft", "-j", "list", "table", *table.split()], node))["nftables"]


def kernel_facts(lab, node: str) -> dict:
    facts: dict = {}
    for key in (f"{f} {t}" for f, t in ruleset.TABLES):
        facts[key] = {"chains": {}, "sets": {}}
        for item in nft_json(node, key):
            if "metainfo" in item:
                continue
            (what, obj), = item.items()
            if what == "chain":
                facts[key]["chains"][obj["name"]] = 0
            elif what in ("set", "map") and not obj["name"].startswith("aff_"):
                facts[key]["sets"][obj["name"]] = len(obj.get("elem", []))
            elif what == "rule":
                facts[key]["chains"][obj["chain"]] += 1
    return facts


def test_the_kernel_holds_exactly_the_rendered_rules(lab):
    for index, node in enumerate(lab.cluster.node_names, start=1):
        assert kernel_facts(lab, node) == rendered_facts(ruleset.render(lab.cluster, index)), node
    text = lab.rules()
    for chain in ("svc_x_web_http", "svc_x_web_echo", "svc_x_alt_tcp-80", "ext_x_np1_http", "svc_x_sticky_http"):
        assert re.search(rf"chain {chain} \{{", text), chain
    assert text.count("# node-") == 2  # one listing per node


def test_a_deleted_service_leaves_nothing_behind(lab):
    lab.apply(service("x/tmp", {"app": "web"}, [{"name": "t", "port": 8888, "targetPort": "http", "nodePort": 30099}],
                      type="NodePort", sessionAffinity="ClientIP"))
    vip = lab.service_ip("x/tmp")
    try:
        assert lab.probe("x/client", vip, 8888, timeout=3).ok
        assert lab.probe("internet", addr.node_ip(2), 30099, timeout=3).ok
        text = lab.rules()
        assert "svc_x_tmp_t" in text and "ext_x_tmp_t" in text and vip in text and "aff_x_tmp_t_" in text
    finally:
        lab.delete("service", "tmp", namespace="x")
    text = lab.rules()
    assert "x_tmp_" not in text and f"{vip} " not in text and "30099" not in text, "rules of x/tmp are left over"
    for index, node in enumerate(lab.cluster.node_names, start=1):
        assert kernel_facts(lab, node) == rendered_facts(ruleset.render(lab.cluster, index)), node
    gone = lab.probe("x/client", vip, 8888, timeout=3)
    assert not gone.ok and gone.error == "connection refused", gone
    assert not lab.probe("internet", addr.node_ip(2), 30099, timeout=1).ok
    nx = lab.exec("x/client", ["dig", "+time=1", "+tries=1", "tmp.x.svc.cluster.local"])
    assert "status: NXDOMAIN" in nx.output, nx.output
