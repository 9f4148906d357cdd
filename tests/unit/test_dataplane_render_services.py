"""The Service fields of issue 15 as rendered text (``nft_svc``, ``dns``): the affinity timeout,
traffic policies (``local_``/``nolocal_`` chains, the drop, the unmasqueraded NodePort),
publishNotReadyAddresses, selector-less Services with EndpointSlices, ExternalName, the
``kubernetes`` Service, and the DNS lines (per-endpoint SRV, CNAME, PTR). ``test_dataplane_nft.py``
feeds the same world to nft; ``tests/integration/test_services_e2e.py`` sends real packets.
"""
from __future__ import annotations

import pytest

from labkit.dataplane import dns, nft_svc
from labkit.model import addressing as addr
from labkit.model.cluster import Cluster
from labkit.model.manifests import parse
from labkit.semantics import cluster_dns
from tests.unit.test_dataplane_render import block, chains, elements, rules_of


def pod(name, labels, node, ready_file=False, **spec):
    container = {"name": "app", "ports": [{"containerPort": 8080, "name": "http"}]}
    if ready_file:
        container["readinessProbe"] = {"exec": {"command": ["true"]}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "t", "labels": labels},
            "spec": {"nodeName": node, "containers": [container], **spec}}


def service(name, selector, ports=None, **spec):
    default = [] if spec.get("type") == "ExternalName" else [{"name": "http", "port": 80, "targetPort": 8080}]
    body = {"ports": ports or default, **spec}
    if selector is not None:
        body["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "t"}, "spec": body}


def nodeport(port):
    return [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": port}]


TRAFFIC = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "t"}},
    pod("a1", {"app": "a"}, "node-1", hostname="a-0", subdomain="hl"), pod("a2", {"app": "a"}, "node-1"),
    pod("b1", {"app": "b"}, "node-2"),
    pod("u1", {"app": "u"}, "node-2", ready_file=True),
    service("aff", {"app": "a"}, sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 2}}),
    service("itp", {"app": "a"}, internalTrafficPolicy="Local"),
    service("itp-np", {"app": "a"}, nodeport(30201), type="NodePort", internalTrafficPolicy="Local"),
    service("etp", {"app": "a"}, nodeport(30202), type="NodePort", externalTrafficPolicy="Local"),
    service("pnr", {"app": "u"}, publishNotReadyAddresses=True),
    service("hl", {"app": "a"}, clusterIP="None"),
    service("alias", None, None, type="ExternalName", externalName="aff.t.svc.cluster.local"),
    service("manual", None),
    {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
     "metadata": {"name": "manual-1", "namespace": "t", "labels": {"kubernetes.io/service-name": "manual"}},
     "endpoints": [{"addresses": [addr.INTERNET_HOST_IP]}], "ports": [{"name": "http", "port": 80}]},
]


def traffic_world() -> Cluster:
    """TRAFFIC, then a slice naming pod b1's address on another port than its selector endpoint."""
    cluster = Cluster.new(nodes=2).applied(parse(TRAFFIC))[0]
    mixed = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
             "metadata": {"name": "mixed-1", "namespace": "t", "labels": {"kubernetes.io/service-name": "mixed"}},
             "endpoints": [{"addresses": [cluster.pod_ips["t/b1"]]}], "ports": [{"name": "http", "port": 9090}]}
    cluster = cluster.applied(parse([service("mixed", {"app": "b"}, sessionAffinity="ClientIP"), mixed]))[0]
    return cluster.with_readiness({"t/u1"})  # u1 never ready: only publishNotReadyAddresses publishes it


@pytest.fixture(scope="module")
def world() -> Cluster:
    return traffic_world()


def ip(world, ref):
    return world.pod_ips[ref]


def vip(world, ref):
    return world.service_ips[ref]


def test_affinity_sets_time_out_after_the_services_timeout_seconds(world):
    text = nft_svc.render(world, 1)
    for ref in ("t/a1", "t/a2"):
        e = ip(world, ref)
        assert block(text, "set", f"aff_t_aff_http_{e}") == ["type ipv4_addr", "flags dynamic,timeout", "timeout 2s"]
        # each new connection through the endpoint re-arms its client's timeout ("update", not "add")
        assert f"update @aff_t_aff_http_{e} {{ ip saddr }}" in rules_of(text, f"ep_t_aff_http_{e}")


def test_internal_traffic_policy_local(world):
    one, two = nft_svc.render(world, 1), nft_svc.render(world, 2)
    key = f"{vip(world, 't/itp')} . tcp . 80"
    a1, a2 = ip(world, "t/a1"), ip(world, "t/a2")
    # node-1 has both endpoints: pods there choose among them in the local chain
    assert f"{key} : goto local_t_itp_http" in elements(one, "map", "svc-dispatch")
    assert rules_of(one, "local_t_itp_http") == [
        f"numgen random mod 2 vmap {{ 0 : goto ep_t_itp_http_{a1}, 1 : goto ep_t_itp_http_{a2} }}"]
    assert "svc_t_itp_http" not in chains(one)  # no NodePort: nothing uses the cluster-wide chain
    # node-2 has none: dropped (a timeout), never refused, with kube-proxy's comment
    assert not any(e.startswith(key) for e in elements(two, "map", "svc-dispatch"))
    assert f"{key} : goto nolocal_t_itp_http" in elements(two, "map", "svc-empty")
    assert rules_of(two, "nolocal_t_itp_http") == ['drop comment "t/itp has no local endpoints"']
    assert not [c for c in chains(two) if c.startswith(("ep_t_itp_", "local_t_itp_"))]


def test_internal_traffic_policy_leaves_node_ports_cluster_wide(world):
    two = nft_svc.render(world, 2)
    assert f"{vip(world, 't/itp-np')} . tcp . 80 : goto nolocal_t_itp-np_http" in elements(two, "map", "svc-empty")
    assert rules_of(two, "ext_t_itp-np_http") == ["jump want-masq", "goto svc_t_itp-np_http"]
    (choice,) = rules_of(two, "svc_t_itp-np_http")
    assert choice.startswith("numgen random mod 2")  # both endpoints, though none is on node-2


def test_external_traffic_policy_local(world):
    one, two = nft_svc.render(world, 1), nft_svc.render(world, 2)
    pods_masq = f"ip saddr {addr.POD_CIDR} jump want-masq"
    pods_cluster = f"ip saddr {addr.POD_CIDR} goto svc_t_etp_http"
    # from outside the pod network: this node's endpoints, and no masquerade on the way (the client IP is kept)
    assert rules_of(one, "ext_t_etp_http") == [pods_masq, pods_cluster, "goto local_t_etp_http"]
    assert "jump want-masq" not in rules_of(one, "ext_t_etp_http")
    assert not any("want-masq" in r for r in rules_of(one, "local_t_etp_http"))
    # node-2 has no endpoint: pods still go cluster-wide, the rest is dropped by the guard
    assert rules_of(two, "ext_t_etp_http") == [pods_masq, pods_cluster]
    assert f"{addr.node_ip(2)} . tcp . 30202 : goto nolocal_t_etp_http" in elements(two, "map", "svc-empty")
    assert rules_of(two, "nolocal_t_etp_http") == ['drop comment "t/etp has no local endpoints"']
    assert "externalTrafficPolicy Local" in " ".join(block(two, "chain", "nolocal_t_etp_http"))
    # the ClusterIP is not affected
    for text in (one, two):
        assert f"{vip(world, 't/etp')} . tcp . 80 : goto svc_t_etp_http" in elements(text, "map", "svc-dispatch")


def test_publish_not_ready_addresses_keeps_an_unready_endpoint(world):
    assert not world.is_ready("t/u1")
    text = nft_svc.render(world, 1)
    assert f"{vip(world, 't/pnr')} . tcp . 80 : goto svc_t_pnr_http" in elements(text, "map", "svc-dispatch")
    assert rules_of(text, "svc_t_pnr_http") == [f"goto ep_t_pnr_http_{ip(world, 't/u1')}"]


def test_a_slice_endpoint_outside_the_pods_is_dnatted_with_a_readable_comment(world):
    text = nft_svc.render(world, 2)
    chain = f"ep_t_manual_http_{addr.INTERNET_HOST_IP}"
    assert block(text, "chain", chain)[0] == f'comment "endpoint internet {addr.INTERNET_HOST_IP}:80"'
    assert rules_of(text, chain)[-1] == f"meta l4proto tcp dnat to {addr.INTERNET_HOST_IP}:80"
    # the way back: pods reach the internet host from their node's address
    assert any("ip daddr 203.0.113.0/24 masquerade" in r for r in rules_of(text, "snat-out"))


def test_one_address_on_two_ports_gets_two_endpoint_chains(world):
    text = nft_svc.render(world, 1)
    b1 = ip(world, "t/b1")
    ep1, ep2 = f"ep_t_mixed_http_{b1}_8080", f"ep_t_mixed_http_{b1}_9090"
    assert rules_of(text, ep1)[-1] == f"meta l4proto tcp dnat to {b1}:8080"
    assert rules_of(text, ep2)[-1] == f"meta l4proto tcp dnat to {b1}:9090"
    assert rules_of(text, "svc_t_mixed_http")[-1] == f"numgen random mod 2 vmap {{ 0 : goto {ep1}, 1 : goto {ep2} }}"
    assert block(text, "set", f"aff_t_mixed_http_{b1}_9090")[-1] == "timeout 10800s"


def test_external_name_has_no_rules_and_kubernetes_is_refused(world):
    text = nft_svc.render(world, 1)
    assert "t_alias" not in text and "t/alias" not in text
    assert "10.96.0.1 . tcp . 443 : goto refuse" in elements(text, "map", "svc-empty")


# ------------------------------------------------------------------ DNS
def lines(text, prefix):
    return [line[len(prefix):] for line in text.splitlines() if line.startswith(prefix)]


def test_headless_srv_has_one_record_per_endpoint_with_its_own_name_and_port(world):
    text = dns.render(world)
    a1, a2 = ip(world, "t/a1"), ip(world, "t/a2")
    dashed = f"{a2.replace('.', '-')}.hl.t.svc.cluster.local"
    assert sorted(lines(text, "srv-host=_http._tcp.hl.t.svc.cluster.local,")) == sorted([
        "a-0.hl.t.svc.cluster.local,8080,0,50", f"{dashed},8080,0,50"])
    hosts = lines(text, "host-record=")
    assert f"a-0.hl.t.svc.cluster.local,{a1}" in hosts and f"{dashed},{a2}" in hosts
    assert f"pnr.t.svc.cluster.local,{vip(world, 't/pnr')}" in hosts


def test_cname_and_ptr_lines(world):
    text = dns.render(world)
    assert lines(text, "cname=") == ["alias.t.svc.cluster.local,aff.t.svc.cluster.local"]
    assert not any(h.startswith("alias.") for h in lines(text, "host-record="))
    a1 = ip(world, "t/a1")
    reverse = ".".join(reversed(a1.split("."))) + ".in-addr.arpa"
    # an endpoint's address answers with one of its endpoint names (a1 backs several Services)
    named = cluster_dns.records(world).ptr[a1]
    assert f"{reverse},{named}" in lines(text, "ptr-record=") and named.endswith(".t.svc.cluster.local")
    assert named.split(".")[0] in ("a-0", a1.replace(".", "-"))
    assert "1.0.96.10.in-addr.arpa,kubernetes.default.svc.cluster.local" in lines(text, "ptr-record=")


def test_dns_lines_are_exactly_the_records(world):
    recs, text = cluster_dns.records(world), dns.render(world)
    assert len(lines(text, "host-record=")) == sum(len(v) for v in recs.a.values())
    assert len(lines(text, "srv-host=")) == sum(len(v) for v in recs.srv.values())
    assert len(lines(text, "cname=")) == len(recs.cname) and len(lines(text, "ptr-record=")) == len(recs.ptr)
