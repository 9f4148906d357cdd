"""The dataplane renderers as text: what ``nft_svc``, ``nft_pol``, ``ruleset`` and ``dns`` write
for a model (no Docker, no kernel; ``test_dataplane_nft.py`` feeds the same text to nft).

Structural ("golden-ish") checks of what a learner reads in ``lab.rules()`` and what the
kernel enforces: deterministic text, readable chain names, sorted elements, empty and
headless Services, NodePorts, ClientIP affinity, per-pod policy chains only for isolated
local pods, named ports, endPort ranges, ipBlock/except, SCTP, and the DNS records.
"""
from __future__ import annotations

import ipaddress
import re

import pytest

from labkit.dataplane import dns, names, nft_guard, nft_pol, nft_svc, ruleset
from labkit.model import addressing as addr
from labkit.model.cluster import Cluster
from labkit.model.manifests import parse
from labkit.semantics import cluster_dns


# ------------------------------------------------------------------ a small two-node world
def ns(name, **labels):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def pod(ref, labels, ports, node=None):
    n, p = ref.split("/")
    spec = {"containers": [{"name": "app", "ports": ports}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": p, "namespace": n, "labels": labels},
            "spec": spec}


def service(ref, selector, ports, **spec):
    n, name = ref.split("/")
    body = {"ports": ports, **spec}
    if selector is not None:
        body["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": n}, "spec": body}


def netpol(ref, spec):
    n, name = ref.split("/")
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": n}, "spec": spec}


HTTP_8080 = [{"containerPort": 8080, "name": "http"}, {"containerPort": 5353, "protocol": "UDP", "name": "dns"}]
WORLD = [
    ns("x", team="blue"), ns("y", team="red"),
    pod("x/web-1", {"app": "web"}, HTTP_8080, "node-1"),
    pod("x/web-2", {"app": "web"}, [{"containerPort": 9090, "name": "http"}], "node-1"),
    pod("x/db", {"app": "db"}, [{"containerPort": 5432, "name": "pg"}], "node-2"),
    pod("x/sctp", {"app": "sctp"}, [{"containerPort": 9000, "protocol": "SCTP", "name": "s"}], "node-2"),
    pod("y/client", {"role": "client"}, [{"containerPort": 80}], "node-2"),
    *[pod(f"x/m{i}", {"app": "many"}, [{"containerPort": 80}], "node-1") for i in range(12)],
    service("x/web", {"app": "web"}, [{"name": "http", "port": 80, "targetPort": "http"},
                                      {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": "dns"}]),
    service("x/unnamed", {"app": "web"}, [{"port": 80, "targetPort": 8080}]),
    service("x/both", {"app": "web"}, [{"name": "t", "port": 53, "targetPort": 8080},
                                       {"name": "u", "port": 53, "protocol": "UDP", "targetPort": 5353}]),
    service("x/many", {"app": "many"}, [{"port": 80}]),
    service("x/empty", {"app": "nothing"}, [{"name": "http", "port": 80},
                                            {"name": "u", "port": 81, "protocol": "UDP"}]),
    service("x/hl", {"app": "web"}, [{"name": "http", "port": 80, "targetPort": "http"}], clusterIP="None"),
    service("x/hl-empty", {"app": "nothing"}, [{"port": 80}], clusterIP="None"),
    service("x/np", {"app": "db"}, [{"name": "pg", "port": 5432, "nodePort": 30432}], type="NodePort"),
    service("x/np-empty", {"app": "nothing"}, [{"port": 80, "nodePort": 30080}], type="NodePort"),
    service("x/sticky", {"app": "web"}, [{"name": "http", "port": 80, "targetPort": "http"}],
            sessionAffinity="ClientIP"),
    service("x/sctp", {"app": "sctp"}, [{"name": "s", "port": 9000, "protocol": "SCTP"}]),
    service("x/manual", None, [{"port": 80}]),
]


@pytest.fixture(scope="module")
def world() -> Cluster:
    return Cluster.new(nodes=2).applied(parse(WORLD))[0]


def with_policies(cluster: Cluster, *policies) -> Cluster:
    return cluster.applied(parse(list(policies)))[0]


def ip(cluster, ref):
    return cluster.pod_ips[ref]


def vip(cluster, ref):
    return cluster.service_ips[ref]


def block(text: str, kind: str, name: str) -> list[str]:
    """The body lines of ``chain``/``map``/``set`` ``name`` in rendered text (stripped)."""
    lines = text.splitlines()
    start = lines.index(f"  {kind} {name} {{")
    end = next(i for i in range(start + 1, len(lines)) if lines[i] == "  }")
    return [line.strip() for line in lines[start + 1:end]]


def chains(text: str) -> list[str]:
    return re.findall(r"^  chain (\S+) \{$", text, re.M)


def elements(text: str, kind: str, name: str) -> list[str]:
    body = " ".join(block(text, kind, name))
    m = re.search(r"elements = \{ (.*) \}", body)
    return [e.strip() for e in m.group(1).split(",")] if m else []


def rules_of(text: str, chain: str) -> list[str]:
    return [line for line in block(text, "chain", chain) if not line.startswith(("comment ", "type "))]


# ------------------------------------------------------------------ determinism and shape
def shuffled(cluster: Cluster) -> Cluster:
    """The same model with every dict in reverse insertion order."""
    other = cluster.copy()
    for name in ("namespaces", "pods", "services", "policies", "pod_ips", "pod_nodes", "service_ips"):
        setattr(other, name, dict(reversed(list(getattr(other, name).items()))))
    return other


POLICIES = [
    netpol("x/web-in", {"podSelector": {"matchLabels": {"app": "web"}},
                        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "red"}}},
                                              {"podSelector": {"matchLabels": {"app": "many"}}}],
                                     "ports": [{"port": "http"}, {"port": 30000, "endPort": 30100},
                                               {"protocol": "UDP", "port": 5353}]}]}),
    netpol("x/db-out", {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Egress"],
                        "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                                    "ports": [{"port": "http"}]},
                                   {"to": [{"ipBlock": {"cidr": "10.0.0.0/8",
                                                        "except": ["10.1.0.0/16", "10.2.0.0/16"]}}]}]}),
    netpol("x/sctp-in", {"podSelector": {"matchLabels": {"app": "sctp"}},
                         "ingress": [{"ports": [{"protocol": "SCTP", "port": 9000}]}]}),
]


def test_same_model_gives_byte_identical_text(world):
    c = with_policies(world, *POLICIES)
    for node in (1, 2):
        text = ruleset.render(c, node)
        assert ruleset.render(c, node) == text
        assert ruleset.render(c.copy(), node) == text
        assert ruleset.render(shuffled(c), node) == text, "rendering depends on dict order"
    assert dns.render(shuffled(c)) == dns.render(c)


def test_transaction_replaces_every_table_atomically(world):
    text = ruleset.render(world, 1)
    assert text.splitlines()[:6] == ["add table ip labkit-svc", "delete table ip labkit-svc",
                                     "add table inet labkit-pol", "delete table inet labkit-pol",
                                     "add table bridge labkit-guard", "delete table bridge labkit-guard"]
    for table in ("ip labkit-svc", "inet labkit-pol", "bridge labkit-guard"):
        assert text.count(f"table {table} {{") == 1, table
    assert ruleset.delete_all().splitlines() == text.splitlines()[:6]


def test_every_pod_port_is_guarded_with_its_own_addresses(world):
    text = nft_guard.render(world, 1)
    local = sorted(r for r, n in world.pod_nodes.items() if n == 1)
    assert local
    for ref in local:
        ip_, chain = world.pod_ips[ref], nft_guard.guard_chain(ref)
        port, mac = names.pod_port(ip_), names.pod_mac(ip_)
        assert f'"{port}" : jump {chain}' in text
        body = text.split(f"chain {chain} {{", 1)[1].split("\n  }", 1)[0]
        for rule in (f"ether saddr != {mac} counter drop", f"arp saddr ether != {mac} counter drop",
                     f"arp saddr ip != {ip_} counter drop", f"ip saddr != {ip_} counter drop",
                     "ether type != { ip, arp } counter drop"):
            assert rule in body, (ref, rule)
        assert body.rstrip().splitlines()[-1].strip().startswith("accept"), "what is left is the pod's own"
    # a pod port the map does not know (a pod being set up or torn down) sends nothing
    assert text.index("iifname vmap @pod-ports") < text.index('iifname "lkp*" counter drop')
    others = [r for r, n in world.pod_nodes.items() if n != 1]
    assert all(nft_guard.guard_chain(r) not in text for r in others), "another node's pods are not ours"


def test_pod_ports_and_macs_follow_from_the_address():
    assert names.pod_port("10.244.1.5") == "lkp0af40105" and len(names.pod_port("10.244.255.255")) <= 15
    assert names.pod_mac("10.244.1.5") == "0a:58:0a:f4:01:05"


def test_chain_names_are_readable(world):
    text = nft_svc.render(world, 1)
    w1, w2 = ip(world, "x/web-1"), ip(world, "x/web-2")
    for name in ("svc_x_web_http", "svc_x_web_dns", "svc_x_unnamed_tcp-80", "svc_x_many_tcp-80",
                 f"ep_x_web_http_{w1}", f"ep_x_web_http_{w2}", f"ep_x_unnamed_tcp-80_{w1}", "svc_x_sctp_s"):
        assert name in chains(text), name
    # the named targetPort is resolved per pod: 8080 on web-1, 9090 on web-2
    assert f"meta l4proto tcp dnat to {w1}:8080" in rules_of(text, f"ep_x_web_http_{w1}")
    assert f"meta l4proto tcp dnat to {w2}:9090" in rules_of(text, f"ep_x_web_http_{w2}")
    # web-2 has no port named "dns": it is no endpoint of port dns; a numeric targetPort takes every
    # selected pod, declared or not (as in Kubernetes: containerPorts are informational)
    assert f"ep_x_web_dns_{w2}" not in chains(text)
    assert f"meta l4proto tcp dnat to {w2}:8080" in rules_of(text, f"ep_x_unnamed_tcp-80_{w2}")
    assert f"meta l4proto udp dnat to {w1}:5353" in rules_of(text, f"ep_x_web_dns_{w1}")
    # every endpoint chain masquerades hairpin traffic (the pod reaching itself via its Service)
    assert rules_of(text, f"ep_x_web_http_{w1}")[0] == f"ip saddr {w1} jump want-masq"
    assert 'comment "Service x/web port http 80/TCP"' in block(text, "chain", "svc_x_web_http")


def test_dispatch_map_keys_vip_proto_port(world):
    text = nft_svc.render(world, 1)
    entries = elements(text, "map", "svc-dispatch")
    web = vip(world, "x/web")
    assert f"{web} . tcp . 80 : goto svc_x_web_http" in entries
    assert f"{web} . udp . 53 : goto svc_x_web_dns" in entries
    both = vip(world, "x/both")
    assert f"{both} . tcp . 53 : goto svc_x_both_t" in entries
    assert f"{both} . udp . 53 : goto svc_x_both_u" in entries
    assert f"{vip(world, 'x/sctp')} . sctp . 9000 : goto svc_x_sctp_s" in entries
    assert f"{addr.DNS_SERVICE_IP} . udp . 53 : goto svc_kube-system_kube-dns_dns" in entries
    assert len(entries) == len(set(entries))


def test_endpoints_are_sorted_numerically_and_spread_with_numgen(world):
    text = nft_svc.render(world, 1)
    ips = sorted((ip(world, f"x/m{i}") for i in range(12)), key=ipaddress.IPv4Address)
    assert [str(i) for i in ips] != sorted(ips), "the world should contain .9 and .10-like addresses"
    (rule,) = rules_of(text, "svc_x_many_tcp-80")
    targets = ", ".join(f"{k} : goto ep_x_many_tcp-80_{a}" for k, a in enumerate(ips))
    assert rule == f"numgen random mod 12 vmap {{ {targets} }}"
    eps = [c for c in chains(text) if c.startswith("ep_x_many_")]
    assert eps == [f"ep_x_many_tcp-80_{a}" for a in ips]


def test_single_endpoint_is_a_plain_goto(world):
    text = nft_svc.render(world, 1)
    assert rules_of(text, "svc_x_np_pg") == [f"goto ep_x_np_pg_{ip(world, 'x/db')}"]


def test_services_without_ready_endpoints_are_refused_not_dispatched(world):
    text = nft_svc.render(world, 1)
    empty = vip(world, "x/empty")
    assert f"{empty} . tcp . 80 : goto refuse" in elements(text, "map", "svc-empty")
    assert f"{empty} . udp . 81 : goto refuse" in elements(text, "map", "svc-empty")
    assert not any(e.startswith(f"{empty} ") for e in elements(text, "map", "svc-dispatch"))
    assert not [c for c in chains(text) if c.startswith("svc_x_empty_") or c.startswith("ep_x_empty_")]
    # the empty NodePort is refused on this node's address
    assert f"{addr.node_ip(1)} . tcp . 30080 : goto refuse" in elements(text, "map", "svc-empty")
    assert f"{addr.node_ip(2)} . tcp . 30080 : goto refuse" in elements(nft_svc.render(world, 2), "map", "svc-empty")
    # a selector-less Service has no endpoints either
    assert f"{vip(world, 'x/manual')} . tcp . 80 : goto refuse" in elements(text, "map", "svc-empty")
    # the guards: new connections to an empty port or anything else in the Service range are refused
    for guard in ("svc-guard-in", "svc-guard-local"):
        assert rules_of(text, guard) == ["ct state new ip daddr . meta l4proto . th dport vmap @svc-empty",
                                         f"ct state new ip daddr {addr.SERVICE_CIDR} goto refuse"]
    assert rules_of(text, "refuse") == ["meta l4proto tcp reject with tcp reset", "reject"]


def test_not_ready_pods_leave_the_endpoints(world):
    w1, w2 = ip(world, "x/web-1"), ip(world, "x/web-2")
    half = nft_svc.render(world.with_readiness({"x/web-2"}), 1)
    assert rules_of(half, "svc_x_web_http") == [f"goto ep_x_web_http_{w1}"]
    assert f"ep_x_web_http_{w2}" not in chains(half)
    none = nft_svc.render(world.with_readiness({"x/web-1", "x/web-2"}), 1)
    assert f"{vip(world, 'x/web')} . tcp . 80 : goto refuse" in elements(none, "map", "svc-empty")
    assert "svc_x_web_http" not in chains(none)


def test_headless_services_produce_no_rules(world):
    assert world.service_ips["x/hl"] is None
    for node in (1, 2):
        text = ruleset.render(world, node)
        assert "_x_hl_" not in text and "x/hl" not in text and "hl-empty" not in text


def test_nodeport_map_and_external_chain(world):
    one, two = nft_svc.render(world, 1), nft_svc.render(world, 2)
    assert elements(one, "map", "nodeport-dispatch") == ["tcp . 30432 : goto ext_x_np_pg"]
    assert rules_of(one, "ext_x_np_pg") == ["jump want-masq", "goto svc_x_np_pg"]
    assert f"ip daddr {addr.node_ip(1)} meta l4proto . th dport vmap @nodeport-dispatch" in rules_of(one, "dnat-in")
    assert f"ip daddr {addr.node_ip(2)} meta l4proto . th dport vmap @nodeport-dispatch" in rules_of(two, "dnat-in")
    # Services are identical on every node (cluster-wide endpoints), except the node's own address
    assert two == one.replace(addr.node_ip(1), addr.node_ip(2))
    assert f"dnat to {ip(world, 'x/db')}:5432" in two  # x/db runs on node-2, listed on both nodes
    assert f"dnat to {ip(world, 'x/db')}:5432" in one


def test_client_ip_affinity_sets(world):
    text = nft_svc.render(world, 1)
    w1, w2 = ip(world, "x/web-1"), ip(world, "x/web-2")
    for e in (w1, w2):
        assert block(text, "set", f"aff_x_sticky_http_{e}") == [
            "type ipv4_addr", "flags dynamic,timeout", "timeout 10800s"]
        assert rules_of(text, f"ep_x_sticky_http_{e}") == [
            f"ip saddr {e} jump want-masq", f"update @aff_x_sticky_http_{e} {{ ip saddr }}",
            f"meta l4proto tcp dnat to {e}:{8080 if e == w1 else 9090}"]
    rules = rules_of(text, "svc_x_sticky_http")
    assert rules[:2] == [f"ip saddr @aff_x_sticky_http_{w1} goto ep_x_sticky_http_{w1}",
                         f"ip saddr @aff_x_sticky_http_{w2} goto ep_x_sticky_http_{w2}"]
    assert rules[2].startswith("numgen random mod 2 vmap")
    # Services without affinity have no sets
    assert not re.search(r"set aff_x_web_", text)


def test_masquerade_and_dnat_hooks(world):
    text = nft_svc.render(world, 1)
    assert block(text, "chain", "want-masq") == [f"meta mark set meta mark | {nft_svc.MASQ_MARK}"]
    assert rules_of(text, "snat-out")[0] == f"meta mark & {nft_svc.MASQ_MARK} == {nft_svc.MASQ_MARK} masquerade"
    assert block(text, "chain", "dnat-local")[0] == "type nat hook output priority -100; policy accept;"
    assert rules_of(text, "dnat-local") == ["ip daddr . meta l4proto . th dport vmap @svc-dispatch"]


# ------------------------------------------------------------------ NetworkPolicies
def test_per_pod_chains_only_for_isolated_local_pods(world):
    c = with_policies(world, *POLICIES)
    one, two = nft_pol.render(c, 1), nft_pol.render(c, 2)
    w1, w2, db = ip(c, "x/web-1"), ip(c, "x/web-2"), ip(c, "x/db")
    # node-1 holds web-1 and web-2 (ingress-isolated by x/web-in); nothing egress-isolated there
    assert elements(one, "map", "ingress-isolated") == [f"{w1} : jump in_x_web-1", f"{w2} : jump in_x_web-2"]
    assert elements(one, "map", "egress-isolated") == []
    assert [ch for ch in chains(one) if ch.startswith(("in_", "out_"))] == ["in_x_web-1", "in_x_web-2"]
    # node-2 holds db (egress-isolated) and sctp (ingress-isolated); the client is not isolated
    assert elements(two, "map", "egress-isolated") == [f"{db} : jump out_x_db"]
    assert elements(two, "map", "ingress-isolated") == [f"{ip(c, 'x/sctp')} : jump in_x_sctp"]
    assert [ch for ch in chains(two) if ch.startswith(("in_", "out_"))] == ["out_x_db", "in_x_sctp"]
    assert not any(e.startswith(ip(c, "y/client") + " ") for m in ("ingress-isolated", "egress-isolated")
                   for e in elements(two, "map", m))
    # a policy's chain exists only where a local pod uses it
    assert "np_x_web-in_in" in chains(one) and "np_x_web-in_in" not in chains(two)
    assert "np_x_db-out_out" in chains(two) and "np_x_db-out_out" not in chains(one)


def test_pod_chain_accepts_self_jumps_policies_then_drops(world):
    c = with_policies(world, *POLICIES, netpol("x/also-web", {"podSelector": {"matchLabels": {"app": "web"}},
                                                              "ingress": [{}]}))
    text = nft_pol.render(c, 1)
    w1 = ip(c, "x/web-1")
    rules = rules_of(text, "in_x_web-1")
    assert rules[:3] == [f"ip saddr {w1} accept", "jump np_x_also-web_in", "jump np_x_web-in_in"]
    assert len(rules) == 4 and rules[3].startswith("counter drop comment ")
    assert "no policy allows it" in rules[3] and "x/web-1" in rules[3]
    # an empty rule allows everything: one unconditional accept
    assert rules_of(text, "np_x_also-web_in") == ['counter accept comment "x/also-web ingress[0] any from any port"']


def test_deny_all_policy_has_an_empty_policy_chain(world):
    c = with_policies(world, netpol("x/deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}))
    text = nft_pol.render(c, 1)
    assert rules_of(text, "np_x_deny_in") == [] and rules_of(text, "np_x_deny_out") == []
    assert "in_x_web-1" in chains(text) and "out_x_web-1" in chains(text)
    assert "in_kube-system_coredns" not in chains(text)  # other namespaces untouched


def test_peer_sets_and_port_forms(world):
    c = with_policies(world, *POLICIES)
    text = nft_pol.render(c, 1)
    rules = rules_of(text, "np_x_web-in_in")
    client = ip(c, "y/client")
    many = sorted((ip(c, f"x/m{i}") for i in range(12)), key=ipaddress.IPv4Address)
    # named port "http": a concatenated set of (pod IP, proto, that pod's number), sorted
    named = "ip daddr . meta l4proto . th dport { " + ", ".join(
        f"{a} . tcp . {p}" for a, p in sorted([(ip(c, "x/web-1"), 8080), (ip(c, "x/web-2"), 9090)],
                                              key=lambda e: ipaddress.IPv4Address(e[0]))) + " }"
    assert f"ip saddr {client} {named} counter accept comment \"x/web-in ingress[0] from[0] ports[0]\"" in rules
    assert f"ip saddr {client} tcp dport 30000-30100 counter accept comment \"x/web-in ingress[0] from[0] ports[1]\"" \
        in rules
    assert f"ip saddr {client} udp dport 5353 counter accept comment \"x/web-in ingress[0] from[0] ports[2]\"" in rules
    many_set = "{ " + ", ".join(many) + " }"
    assert f"ip saddr {many_set} tcp dport 30000-30100 counter accept comment " \
           "\"x/web-in ingress[0] from[1] ports[1]\"" in rules
    assert len(rules) == 6  # 2 peers x 3 ports
    out = rules_of(nft_pol.render(c, 2), "np_x_db-out_out")
    webs = "{ " + ", ".join(sorted((ip(c, "x/web-1"), ip(c, "x/web-2")), key=ipaddress.IPv4Address)) + " }"
    assert out[0] == f"ip daddr {webs} {named} counter accept comment \"x/db-out egress[0] to[0] ports[0]\""
    assert out[1] == ("ip daddr 10.0.0.0/8 ip daddr != { 10.1.0.0/16, 10.2.0.0/16 } counter accept "
                      "comment \"x/db-out egress[1] to[0] any port\"")
    assert rules_of(nft_pol.render(c, 2), "np_x_sctp-in_in") == [
        'sctp dport 9000 counter accept comment "x/sctp-in ingress[0] any from ports[0]"']


def test_named_port_nobody_exposes_renders_no_rule(world):
    c = with_policies(world, netpol("x/ghost", {"podSelector": {"matchLabels": {"app": "web"}},
                                                "ingress": [{"ports": [{"port": "nope"}]},
                                                            {"ports": [{"protocol": "UDP", "port": "http"}]}]}))
    assert rules_of(nft_pol.render(c, 1), "np_x_ghost_in") == []


def test_single_ip_and_ipv6_peers(world):
    peers = [{"podSelector": {"matchLabels": {"role": "x"}}}, {"ipBlock": {"cidr": "fd00::/8"}},
             {"namespaceSelector": {"matchLabels": {"team": "red"}}}]
    c = with_policies(world, netpol("x/one", {"podSelector": {"matchLabels": {"app": "db"}},
                                              "ingress": [{"from": peers}]}))
    rules = rules_of(nft_pol.render(c, 2), "np_x_one_in")
    # nobody matches from[0], from[1] is IPv6 (the fence drops IPv6): only from[2] renders, as a single address
    assert rules == [f"ip saddr {ip(c, 'y/client')} counter accept comment \"x/one ingress[0] from[2] any port\""]


def test_fence_and_base_chains(world):
    text = nft_pol.render(world, 1)
    assert elements(text, "set", "lab-prefixes") == [str(n) for n in nft_pol.LAB_PREFIXES]
    for name, hook in (("fence", "forward"), ("fence-out", "output")):
        body = block(text, "chain", name)
        assert body[0] == f"type filter hook {hook} priority -300; policy accept;"
        assert body[1] == "meta nfproto ipv6 drop"
        assert body[2].startswith("ip daddr != @lab-prefixes counter reject")
    for name in ("egress", "ingress"):
        assert rules_of(text, name)[:2] == ["ct state established,related accept", "ct state invalid drop"]
    assert nft_pol.lab_contains("10.96.0.10") and not nft_pol.lab_contains("8.8.8.8")


# ------------------------------------------------------------------ DNS records
def records(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("host-record="):
            name, value = line[len("host-record="):].split(",")
            out.setdefault(name, []).append(value)
    return out


def test_dns_records_follow_the_model(world):
    c = world.with_readiness({"x/web-2"})
    text = dns.render(c)
    recs = records(text)
    assert recs["web.x.svc.cluster.local"] == [vip(c, "x/web")]
    assert recs["empty.x.svc.cluster.local"] == [vip(c, "x/empty")]  # a name with no endpoints still resolves
    assert recs["hl.x.svc.cluster.local"] == [ip(c, "x/web-1")]  # headless: ready endpoints only
    assert "hl-empty.x.svc.cluster.local" not in recs  # headless without ready endpoints: NXDOMAIN
    assert recs[f"{ip(c, 'x/db').replace('.', '-')}.x.pod.cluster.local"] == [ip(c, "x/db")]
    # every service record is what the oracle's lookup answers
    for ref, svc_obj in c.services.items():
        fqdn = f"{svc_obj.name}.{svc_obj.namespace}.svc.cluster.local"
        assert recs.get(fqdn) == cluster_dns.lookup(c, fqdn), fqdn
    # NXDOMAIN for everything else, and no upstream server
    assert "address=/#/" in text.splitlines() and "no-resolv" in text.splitlines()
    assert not re.search(r"^server=", text, re.M)


def test_dns_srv_records_for_named_ports_only(world):
    text = dns.render(world)
    srv = sorted(line for line in text.splitlines() if line.startswith("srv-host="))
    # a ClusterIP Service: one record, to the Service's name and port (priority 0, weight 100)
    assert "srv-host=_http._tcp.web.x.svc.cluster.local,web.x.svc.cluster.local,80,0,100" in srv
    assert "srv-host=_dns._udp.web.x.svc.cluster.local,web.x.svc.cluster.local,53,0,100" in srv
    assert "srv-host=_s._sctp.sctp.x.svc.cluster.local,sctp.x.svc.cluster.local,9000,0,100" in srv
    assert not any(".unnamed." in s or ".many." in s for s in srv)  # unnamed ports: no SRV
    assert not any("hl-empty" in s for s in srv)


def test_dns_text_is_sorted_and_stable(world):
    text = dns.render(world)
    names = [line.split("=")[1].split(",")[0] for line in text.splitlines()
             if line.startswith("host-record=") and ".svc." in line]
    # as DNS reads names, right to left: namespace, then Service, then a headless Service's endpoints
    assert names == sorted(names, key=lambda n: tuple(reversed(n.split("."))))
    after_hl = len(names) - names[::-1].index("hl.x.svc.cluster.local")  # just after hl's own A records
    assert names[after_hl] == f"{ip(world, 'x/web-1').replace('.', '-')}.hl.x.svc.cluster.local"
    assert dns.render(world) == text
