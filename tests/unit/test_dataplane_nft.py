"""The rendered rulesets against the real nft and kernel, in throw-away network namespaces.

Every ruleset ``labkit.dataplane.ruleset`` renders must be accepted by ``nft -c`` (checked
against the running kernel), and once loaded, what nft lists must be what labkit rendered:
the same chains, the same number of rules in each, the same number of elements in every
map and set (semantic facts, not text: nft normalises its output). A seeded random world
(many pods on three nodes, every Service and policy form) covers combinations a
hand-written case would miss. Each check runs ``unshare -n``: a private network namespace
that disappears with the command, so the host's own ruleset is never touched.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess

import pytest

from labkit.dataplane import ruleset
from labkit.model.cluster import Cluster
from labkit.model.manifests import parse
from tests.unit.test_dataplane_render import POLICIES, WORLD
from tests.unit.test_dataplane_render_services import traffic_world


def _nft_sandbox() -> str | None:
    """Why rulesets cannot be checked here, or None when they can."""
    if not shutil.which("nft"):
        return "nft is not installed (apt-get install nftables)"
    if not shutil.which("unshare"):
        return "unshare (util-linux) is not installed"
    if os.geteuid() != 0:
        return "needs root: nft -c talks to the kernel inside a private network namespace (unshare -n)"
    probe = subprocess.run(["unshare", "-n", "nft", "-c", "-f", "-"], input="table ip t { }\n", text=True,
                           capture_output=True, timeout=30)
    if probe.returncode != 0:
        return f"unshare -n nft -c fails here: {probe.stderr.strip()[:200]}"
    return None


WHY_NOT = _nft_sandbox()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")


def nft_check(text: str) -> None:
    proc = subprocess.run(["unshare", "-n", "nft", "-c", "-f", "-"], input=text, text=True, capture_output=True,
                          timeout=120)
    if proc.returncode != 0:
        lines = text.splitlines()
        where = [int(n) for n in re.findall(r"stdin:(\d+):", proc.stderr)]
        context = "\n".join(f"{n}: {lines[n - 1]}" for n in where[:5] if 0 < n <= len(lines))
        pytest.fail(f"nft -c rejected the rendered ruleset:\n{proc.stderr[:2000]}\n{context}")


def nft_load_and_list(text: str, times: int = 1) -> dict:
    """Load ``text`` ``times`` times in a fresh namespace, then list the ruleset as JSON."""
    script = 'for i in $(seq "$2"); do nft -f "$1" || exit 3; done; nft -j list ruleset'
    with open(f"/tmp/labkit-dataplane-{os.getpid()}.nft", "w", encoding="utf-8") as fh:
        fh.write(text)
        path = fh.name
    try:
        proc = subprocess.run(["unshare", "-n", "sh", "-c", script, "sh", path, str(times)], text=True,
                              capture_output=True, timeout=120)
    finally:
        os.unlink(path)
    assert proc.returncode == 0, proc.stderr[:2000]
    return json.loads(proc.stdout)


# ------------------------------------------------------------------ rendered text -> facts
def rendered_facts(text: str) -> dict:
    """{(family, table): {"chains": {name: rule count}, "sets": {name: element count}}} from labkit's text."""
    facts: dict = {}
    table = kind = name = None
    body: list[str] = []
    for line in text.splitlines():
        m = re.match(r"^table (\S+) (\S+) \{$", line)
        if m:
            table = (m.group(1), m.group(2))
            facts[table] = {"chains": {}, "sets": {}}
            continue
        m = re.match(r"^  (chain|map|set) (\S+) \{$", line)
        if m:
            kind, name, body = m.group(1), m.group(2), []
            continue
        if line == "  }" and kind:
            if kind == "chain":
                facts[table]["chains"][name] = sum(1 for b in body if not b.startswith(("type ", "comment ")))
            else:
                joined = " ".join(body)
                m = re.search(r"elements = \{ (.*) \}", joined)
                facts[table]["sets"][name] = len(m.group(1).split(",")) if m else 0
            kind = None
            continue
        if kind:
            body.append(line.strip())
    return facts


def listed_facts(listing: dict) -> dict:
    facts: dict = {}
    for item in listing["nftables"]:
        (what, obj), = item.items()
        if what == "table":
            facts[(obj["family"], obj["name"])] = {"chains": {}, "sets": {}}
        elif what == "chain":
            facts[(obj["family"], obj["table"])]["chains"][obj["name"]] = 0
        elif what in ("set", "map"):
            facts[(obj["family"], obj["table"])]["sets"][obj["name"]] = len(obj.get("elem", []))
        elif what == "rule":
            facts[(obj["family"], obj["table"])]["chains"][obj["chain"]] += 1
    return facts


# ------------------------------------------------------------------ a seeded random world
APPS = ["web", "api", "db", "cache"]


def random_world(seed: int, pods: int = 150, nodes: int = 3, n_services: int = 40, n_policies: int = 40) -> Cluster:
    rnd = random.Random(seed)
    namespaces = ["ns0", "ns1", "9lives", "team-a", "x"]
    docs = [{"apiVersion": "v1", "kind": "Namespace",
             "metadata": {"name": n, "labels": {"team": rnd.choice(["a", "b"]), "env": rnd.choice(["prod", "dev"])}}}
            for n in namespaces]
    for i in range(pods):
        ports = [{"containerPort": rnd.choice([80, 8080, 8443]), "name": "http"}]
        if rnd.random() < 0.5:
            ports.append({"containerPort": 53, "protocol": "UDP", "name": "dns"})
        if rnd.random() < 0.2:
            ports.append({"containerPort": 9000, "protocol": "SCTP", "name": "sctp"})
        spec = {"containers": [{"name": "c", "ports": ports}]}
        if rnd.random() < 0.3:
            spec["nodeName"] = f"node-{rnd.randint(1, nodes)}"
        labels = {"app": rnd.choice(APPS)}
        if rnd.random() < 0.5:
            labels["tier"] = rnd.choice(["fe", "be"])
        name = f"p{i}" if rnd.random() < 0.8 else f"pod.{i}.v{rnd.randint(1, 9)}"  # dots are legal in pod names
        docs.append({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": name, "namespace": rnd.choice(namespaces), "labels": labels},
                     "spec": spec})
    node_ports = iter(range(30000, 32768))
    for k in range(n_services):
        ns = rnd.choice(namespaces)
        app = rnd.choice(APPS + ["nobody"])
        shape = k % 8
        spec: dict = {"selector": {"app": app}}
        if shape == 0:
            spec["ports"] = [{"port": 80, "targetPort": 8080}]
            if k % 16 == 0:
                spec["internalTrafficPolicy"] = "Local"
        elif shape == 1:
            spec["ports"] = [{"name": "http", "port": 80, "targetPort": "http"},
                             {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": "dns"}]
        elif shape == 2:
            spec.update(type="NodePort", ports=[{"name": "http", "port": 80, "targetPort": "http",
                                                 "nodePort": next(node_ports)}])
            if k % 16 == 2:
                spec["externalTrafficPolicy"] = "Local"
        elif shape == 3:
            spec.update(sessionAffinity="ClientIP", ports=[{"name": "http", "port": 80, "targetPort": "http"}])
        elif shape == 4:
            spec.update(clusterIP="None", ports=[{"name": "http", "port": 80, "targetPort": "http"}])
        elif shape == 5:
            spec["ports"] = [{"name": "t", "port": 53, "targetPort": "http"},
                             {"name": "u", "port": 53, "protocol": "UDP", "targetPort": "dns"}]
        elif shape == 6:
            spec["ports"] = [{"name": "sctp", "port": 9000, "protocol": "SCTP", "targetPort": "sctp"}]
        else:
            spec.update(type="NodePort", sessionAffinity="ClientIP",
                        ports=[{"name": "a", "port": 81, "targetPort": 8443, "nodePort": next(node_ports)},
                               {"name": "b", "port": 82, "protocol": "UDP", "targetPort": "dns",
                                "nodePort": next(node_ports)}])
        docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc{k}", "namespace": ns},
                     "spec": spec})
    for k in range(n_policies):
        ns = rnd.choice(namespaces)
        app = rnd.choice(APPS)
        shape = k % 8
        if shape == 0:
            spec = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        elif shape == 1:
            spec = {"podSelector": {"matchLabels": {"app": app}},
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": rnd.choice(APPS)}}}],
                                 "ports": [{"port": "http"}, {"protocol": "UDP", "port": "dns"}]}]}
        elif shape == 2:
            spec = {"podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["be"]}]},
                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "a"}},
                                           "podSelector": {"matchLabels": {"tier": "fe"}}}],
                                 "ports": [{"port": 8000, "endPort": 8999}, {"protocol": "SCTP", "port": 9000}]}]}
        elif shape == 3:
            spec = {"podSelector": {"matchLabels": {"app": app}}, "policyTypes": ["Egress"],
                    "egress": [{"to": [{"namespaceSelector": {"matchExpressions": [
                        {"key": "env", "operator": "NotIn", "values": ["dev"]}]}}], "ports": [{"port": "http"}]},
                               {"to": [{"ipBlock": {"cidr": "10.244.0.0/16",
                                                    "except": ["10.244.1.0/28", "10.244.1.0/24", "10.244.2.7/32"]}}],
                                "ports": [{"protocol": "UDP", "port": 53}]}]}
        elif shape == 4:
            spec = {"podSelector": {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]},
                    "ingress": [{}], "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}],
                    "policyTypes": ["Ingress", "Egress"]}
        elif shape == 5:
            spec = {"podSelector": {"matchLabels": {"app": app}},
                    "ingress": [{"from": [{"ipBlock": {"cidr": "203.0.113.0/24", "except": ["203.0.113.10/32"]}},
                                          {"ipBlock": {"cidr": "2001:db8::/32"}},
                                          {"namespaceSelector": {}}],
                                 "ports": [{"protocol": "TCP"}, {"protocol": "SCTP"}]}]}
        elif shape == 6:
            spec = {"podSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]},
                    "policyTypes": ["Egress"],
                    "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "db"}}, "namespaceSelector": {}}],
                                "ports": [{"port": "http"}, {"port": "nope"}, {"port": 30000, "endPort": 32767}]}]}
        else:
            spec = {"podSelector": {"matchLabels": {"app": app}}, "ingress": [{"ports": [{"port": 80}]}]}
        docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                     "metadata": {"name": f"pol{k}" if k % 5 else f"pol.{k}", "namespace": ns}, "spec": spec})
    cluster = Cluster.new(nodes=nodes).applied(parse(docs))[0]
    not_ready = rnd.sample(sorted(cluster.user_pods()), k=pods // 10)
    return cluster.with_readiness(not_ready)


# ------------------------------------------------------------------ tests
@pytest.fixture(scope="module")
def base() -> Cluster:
    return Cluster.new(nodes=2).applied(parse(WORLD + POLICIES))[0]


@pytest.mark.parametrize("node", [1, 2])
def test_hand_written_world_compiles(base, node):
    nft_check(ruleset.render(base, node))


@pytest.mark.parametrize("node", [1, 2])
def test_traffic_policies_affinity_timeouts_and_slices_load(node):
    """Local traffic policies (local_/nolocal_ chains, drops in the guard), timed affinity sets and a
    slice endpoint outside the pods: accepted by the kernel and listed as rendered."""
    cluster = traffic_world()
    text = ruleset.render(cluster, node)
    nft_check(text)
    assert listed_facts(nft_load_and_list(text)) == rendered_facts(text)


def test_empty_lab_compiles():
    nft_check(ruleset.render(Cluster.new(), 1))
    nft_check(ruleset.delete_all())


# Seeds 2 and 5 pile several policies onto one pod (long per-pod chain comments: see the regression
# tests at the end); 1 and 8 do not.
@pytest.mark.parametrize("seed", [1, 2, 5, 8])
def test_big_random_world_compiles_on_every_node(seed):
    cluster = random_world(seed)
    assert len(cluster.pods) > 150 and len(cluster.policies) == 40
    for node in range(1, cluster.node_count + 1):
        nft_check(ruleset.render(cluster, node))


@pytest.mark.parametrize("node", [1, 2])
def test_loaded_ruleset_is_what_was_rendered(base, node):
    text = ruleset.render(base, node)
    assert listed_facts(nft_load_and_list(text)) == rendered_facts(text)


def test_loaded_random_world_is_what_was_rendered():
    cluster = random_world(9)
    text = ruleset.render(cluster, 1)
    facts = rendered_facts(text)
    assert len(facts[("ip", "labkit-svc")]["chains"]) > 40 and len(facts[("inet", "labkit-pol")]["chains"]) > 20
    assert listed_facts(nft_load_and_list(text)) == facts


def test_applying_twice_replaces_instead_of_adding(base):
    """The add/delete preamble makes a re-apply a replacement: nothing doubles."""
    text = ruleset.render(base, 1)
    assert listed_facts(nft_load_and_list(text, times=2)) == rendered_facts(text)


def test_sctp_service_and_policy_rules_compile(base):
    text = ruleset.render(base, 2)
    assert " . sctp . 9000 : goto svc_x_sctp_s" in text and "sctp dport 9000" in text
    nft_check(text)


# ------------------------------------------------------------------ nft's limits on names and comments
# Regressions: these three failed (whole ruleset rejected) until comments were bounded to 128 bytes
# and chain names to 255 characters (labkit/dataplane/names.py nft_comment / nft_chain).
def _ns(name):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def _pod(ns, name, port_name="grpc"):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": {"app": "app"}},
            "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 5050, "name": port_name}]}]}}


def _policy(ns, name, selector=None):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name, "namespace": ns},
            "spec": {"podSelector": selector or {}, "ingress": [{"ports": [{"port": "grpc"}]}]}}


def comments(text: str) -> list[str]:
    return re.findall(r'comment "([^"]*)"', text)


def test_pod_selected_by_three_ordinary_policies_compiles():
    """nft rejects comments over 128 bytes: the per-pod chain comment lists every selecting policy."""
    ns = "online-boutique"
    docs = [_ns(ns), _pod(ns, "checkoutservice-5d9f8b6c5d-x2x9z"),
            _policy(ns, "default-deny-ingress"),
            _policy(ns, "allow-frontend-to-checkout", {"matchLabels": {"app": "app"}}),
            _policy(ns, "allow-prometheus-scrape", {"matchLabels": {"app": "app"}})]
    text = ruleset.render(Cluster.new().applied(parse(docs))[0], 1)
    assert all(len(c.encode()) <= 128 for c in comments(text))
    assert "in_online-boutique_checkoutservice-5d9f8b6c5d-x2x9z" in text  # short names stay readable
    nft_check(text)


def test_service_with_long_legal_names_compiles():
    """A 63-character namespace and Service name (both legal) in the Service chain comments."""
    ns, name = "n" * 63, "s" * 63
    docs = [_ns(ns), _pod(ns, "web", "http-metrics-xy"),
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
             "spec": {"selector": {"app": "app"}, "sessionAffinity": "ClientIP", "type": "NodePort",
                      "ports": [{"name": "http-metrics-xy", "port": 80, "targetPort": "http-metrics-xy"}]}}]
    text = ruleset.render(Cluster.new().applied(parse(docs))[0], 1)
    assert all(len(c.encode()) <= 128 for c in comments(text))
    nft_check(text)


def test_pod_with_longest_legal_name_compiles():
    """A 253-character pod name in a 63-character namespace: 'in_<ns>_<pod>' would be 320 characters."""
    ns = "n" * 63
    docs = [_ns(ns), _pod(ns, "p" * 253), _policy(ns, "q" * 253)]
    text = ruleset.render(Cluster.new().applied(parse(docs))[0], 1)
    names = re.findall(r"^  chain (\S+) \{$", text, re.M)
    assert names and max(len(n) for n in names) <= 255
    assert any(n.startswith("in_" + ns + "_ppp") for n in names)  # still recognisable
    nft_check(text)
    assert listed_facts(nft_load_and_list(text)) == rendered_facts(text)
