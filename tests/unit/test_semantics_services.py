"""Services, cluster DNS and the lab's internet host as the oracle sees them."""
from __future__ import annotations

import pytest

from labkit.model.cluster import Cluster
from labkit.model.manifests import parse
from labkit.semantics import cluster_dns, services as svc
from labkit.semantics.oracle import explain
from labkit.semantics.reach import matrix_rows


def ns(name):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def pod(ref, labels, ports):
    n, p = ref.split("/")
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": p, "namespace": n, "labels": labels},
            "spec": {"containers": [{"name": "app", "ports": ports}]}}


def service(ref, selector, ports, **spec):
    n, name = ref.split("/")
    body = {"ports": ports, **spec} if ports is not None else dict(spec)
    if selector is not None:
        body["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": n}, "spec": body}


def netpol(ref, spec):
    n, name = ref.split("/")
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": n}, "spec": spec}


# w1 serves "http" on 8080, w2 on 9090: one Service sends to each on its own number.
BASE = [ns("x"), ns("y"),
        pod("x/client", {"role": "client"}, [{"containerPort": 80}]),
        pod("y/client", {"role": "client"}, [{"containerPort": 80}]),
        pod("x/w1", {"app": "web"}, [{"containerPort": 8080, "name": "http"}]),
        pod("x/w2", {"app": "web"}, [{"containerPort": 9090, "name": "http"}]),
        pod("x/other", {"app": "web"}, [{"containerPort": 8080, "name": "metrics"}]),
        service("x/web", {"app": "web"}, [{"port": 80, "targetPort": "http"}]),
        service("x/num", {"app": "web"}, [{"port": 80, "targetPort": 8080}]),
        service("x/db", {"app": "db"}, [{"port": 5432}]),
        service("x/manual", None, [{"port": 80}]),
        service("x/hl", {"app": "web"}, [{"port": 80, "targetPort": "http"}], clusterIP="None")]


def cluster(*extra, not_ready=()):
    c = Cluster.new().applied(parse(BASE + list(extra)))[0]
    return c.with_readiness(not_ready) if not_ready else c


# ------------------------------------------------------------------ Services
def test_target_port_by_name_is_resolved_per_pod():
    c = cluster()
    ex = explain(c, "x/client", "web", 80)
    assert ex.allowed
    assert sorted(ex.may_answer) == ["x/w1", "x/w2"]  # x/other lacks the port name "http"
    eps = svc.used_endpoints(c, c.services["x/web"], c.services["x/web"].ports[0])
    assert {(e.pod, e.port) for e in eps} == {("x/w1", 8080), ("x/w2", 9090)}


def test_target_port_by_number_goes_to_every_selected_pod():
    c = cluster()
    eps = svc.used_endpoints(c, c.services["x/num"], c.services["x/num"].ports[0])
    assert {(e.pod, e.port) for e in eps} == {("x/w1", 8080), ("x/w2", 8080), ("x/other", 8080)}
    ex = explain(c, "x/client", "num", 80)
    # w2 does not listen on 8080: an endpoint that refuses, so the result depends on the pick
    assert ex.allowed and sorted(ex.may_answer) == ["x/other", "x/w1"]
    assert "2 of 3 endpoints allow it" in str(ex)


def test_not_ready_pods_are_not_endpoints():
    ex = explain(cluster(not_ready={"x/w1"}), "x/client", "web", 80)
    assert ex.may_answer == ["x/w2"]
    assert not explain(cluster(not_ready={"x/w1", "x/w2"}), "x/client", "web", 80).allowed


@pytest.mark.parametrize("name", ["db", "manual"])
def test_service_without_endpoints_is_refused(name):
    ex = explain(cluster(), "x/client", name, 80 if name == "manual" else 5432)
    assert not ex.allowed
    assert ex.outcomes[0].error == "connection refused"
    assert "no ready endpoints" in str(ex)


def test_empty_selector_selects_no_pods():
    # ServiceSpec.selector: "If empty or not present, ... Kubernetes will not modify" the endpoints
    c = cluster(service("x/empty", {}, [{"port": 8080}]))
    assert c.services["x/empty"].selector is None
    ex = explain(c, "x/client", "empty", 8080)
    assert not ex.allowed and "no ready endpoints" in str(ex)


def test_service_port_that_does_not_exist_is_refused():
    ex = explain(cluster(), "x/client", "web", 8080)
    assert not ex.allowed and ex.outcomes[0].error == "connection refused"
    assert "has no port 8080/TCP" in str(ex)
    assert not explain(cluster(), "x/client", "web", 80, "UDP").allowed


def test_service_vip_works_like_its_name():
    c = cluster()
    vip = c.service_ips["x/web"]
    ex = explain(c, "y/client", vip, 80)
    assert ex.allowed and sorted(ex.may_answer) == ["x/w1", "x/w2"]


def test_policies_see_the_target_port_not_the_service_port():
    only_80 = netpol("x/only-80", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [{"port": 80}]}]})
    only_http = netpol("x/http", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [{"port": "http"}]}]})
    assert not explain(cluster(only_80), "y/client", "web.x", 80).allowed
    ex = explain(cluster(only_http), "y/client", "web.x", 80)
    assert ex.allowed and sorted(ex.may_answer) == ["x/w1", "x/w2"]


def test_service_with_some_endpoints_denied_names_the_split():
    allow_w1 = netpol("x/w1-only", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [
        {"ports": [{"port": 8080}]}]})
    ex = explain(cluster(allow_w1), "y/client", "web.x", 80)
    assert ex.allowed and ex.may_answer == ["x/w1"]
    assert "1 of 2 endpoints allow it" in str(ex)


# ------------------------------------------------------------------ DNS
@pytest.mark.parametrize("name", ["web", "web.x", "web.x.svc", "web.x.svc.cluster.local",
                                  "web.x.svc.cluster.local.", "WEB.X"])
def test_service_names_resolve_through_the_search_path(name):
    c = cluster()
    res = cluster_dns.resolve(c, "x", name)
    assert res.ips == (c.service_ips["x/web"],)
    assert res.fqdn == "web.x.svc.cluster.local"


def test_short_name_only_resolves_in_the_pods_own_namespace():
    c = cluster()
    assert cluster_dns.resolve(c, "y", "web").ips == ()
    assert cluster_dns.resolve(c, "y", "web.x").ips == (c.service_ips["x/web"],)


def test_kube_dns_name():
    assert cluster_dns.resolve(cluster(), "x", "kube-dns.kube-system").ips == ("10.96.0.10",)


def test_nxdomain_lists_the_names_tried():
    c = cluster()
    res = cluster_dns.resolve(c, "x", "nope")
    assert res.ips == () and res.fqdn is None
    assert res.tried == ("nope.x.svc.cluster.local", "nope.svc.cluster.local", "nope.cluster.local", "nope")
    ex = explain(c, "x/client", "nope", 80)
    assert not ex.allowed and ex.outcomes[0].error == "NXDOMAIN nope"
    assert "NXDOMAIN" in str(ex) and "nope.x.svc.cluster.local" in str(ex)


def test_trailing_dot_is_not_searched():
    res = cluster_dns.resolve(cluster(), "x", "web.")
    assert res.tried == ("web",) and res.ips == ()


def test_headless_service_resolves_to_ready_pod_ips():
    # x/other is selected but lacks the named targetPort "http": the EndpointSlice controller still lists
    # it (with no ports), and CoreDNS answers A queries for any port, so its address is in the answer too
    c = cluster()
    ips = lambda c, *refs: tuple(sorted((c.pod_ips[r] for r in refs), key=lambda a: tuple(map(int, a.split(".")))))
    assert cluster_dns.resolve(c, "y", "hl.x").ips == ips(c, "x/w1", "x/w2", "x/other")
    c2 = cluster(not_ready={"x/w1"})
    assert cluster_dns.resolve(c2, "y", "hl.x").ips == ips(c2, "x/w2", "x/other")
    c3 = cluster(not_ready={"x/w1", "x/w2", "x/other"})
    assert cluster_dns.resolve(c3, "y", "hl.x").ips == ()


def test_headless_service_connects_straight_to_the_pods():
    ex = explain(cluster(), "y/client", "hl.x", 8080)
    assert ex.may_answer == ["x/w1", "x/other"]  # the pod IPs themselves, on 8080: no port translation


def test_pod_dns_name():
    c = cluster()
    ip = c.pod_ips["x/w1"]
    res = cluster_dns.resolve(c, "y", ip.replace(".", "-") + ".x.pod.cluster.local")
    assert res.ips == (ip,)
    assert explain(c, "y/client", ip.replace(".", "-") + ".x.pod.cluster.local", 8080).may_answer == ["x/w1"]


# ------------------------------------------------------------------ DNS obeys egress policy
EGRESS_DENY = netpol("x/deny-egress", {"podSelector": {}, "policyTypes": ["Egress"]})
ALLOW_DNS = netpol("x/allow-dns", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{
    "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
    "ports": [{"port": 53, "protocol": "UDP"}]}]})


def test_egress_deny_all_breaks_name_resolution():
    c = cluster(EGRESS_DENY)
    ex = explain(c, "x/client", "num.x", 80)
    assert not ex.allowed
    assert ex.outcomes[0].error == "DNS lookup timed out"
    assert "x/deny-egress" in str(ex)  # the reason names the policy that blocks the query


def test_egress_deny_all_still_follows_the_policy_for_pod_ips():
    c = cluster(EGRESS_DENY)
    ex = explain(c, "x/client", c.pod_ips["x/w1"], 8080)
    assert not ex.allowed and "isolated for egress by x/deny-egress" in str(ex)
    assert explain(c, "y/client", c.pod_ips["x/w1"], 8080).allowed


def test_allowing_udp_53_to_kube_system_fixes_dns():
    c = cluster(EGRESS_DENY, ALLOW_DNS)
    ex = explain(c, "x/client", "web", 80)
    assert not ex.allowed and ex.outcomes[0].error == "timed out"   # resolved, then egress-denied
    assert "resolves to" in str(ex)
    allow_web = netpol("x/to-web", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
        {"to": [{"podSelector": {"matchLabels": {"app": "web"}}}]}]})
    assert explain(cluster(EGRESS_DENY, ALLOW_DNS, allow_web), "x/client", "web", 80).allowed


def test_dns_over_tcp_alone_is_not_enough():
    tcp_only = netpol("x/dns-tcp", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
        {"ports": [{"port": 53, "protocol": "TCP"}]}]})
    assert explain(cluster(tcp_only), "x/client", "web", 80).outcomes[0].error == "DNS lookup timed out"


def test_egress_ip_block_on_the_dns_service_ip_does_not_allow_dns():
    # policies see traffic after the Service VIP was translated to the DNS pod's own IP
    vip = netpol("x/dns-vip", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
        {"to": [{"ipBlock": {"cidr": "10.96.0.10/32"}}], "ports": [{"port": 53, "protocol": "UDP"}]}]})
    assert explain(cluster(vip), "x/client", "web", 80).outcomes[0].error == "DNS lookup timed out"


def test_ingress_policy_on_coredns_also_breaks_dns():
    lock = netpol("kube-system/lock", {"podSelector": {}})
    ex = explain(cluster(lock), "x/client", "web", 80)
    assert ex.outcomes[0].error == "DNS lookup timed out"
    assert "kube-system/coredns is isolated for ingress by kube-system/lock" in str(ex)


# ------------------------------------------------------------------ outside the cluster
@pytest.mark.parametrize("port, protocol, ok", [(80, "TCP", True), (443, "TCP", True), (22, "TCP", False)])
def test_lab_internet_host(port, protocol, ok):
    ex = explain(cluster(), "x/client", "203.0.113.10", port, protocol)
    assert ex.allowed is ok
    if not ok:
        assert ex.outcomes[0].error == "connection refused"


def test_an_unallocated_cluster_ip_is_rejected_like_kube_proxy_does():
    ex = explain(cluster(), "x/client", "10.96.9.9", 80)
    assert not ex.allowed and ex.outcomes[0].error == "connection refused"
    assert "no Service has it" in str(ex)


@pytest.mark.parametrize("ip", ["8.8.8.8", "10.244.9.9", "192.168.1.1"])
def test_addresses_outside_the_lab_fail_at_once_as_the_kernel_has_no_route(ip):
    """As observed on the docker backend: TCP gets 'network unreachable' at once (no node
    has a route off the lab); a UDP send gets no answer."""
    ex = explain(cluster(), "x/client", ip, 80)
    assert not ex.allowed and ex.outcomes[0].error == "network unreachable"
    assert "outside the lab" in str(ex)
    assert explain(cluster(), "x/client", ip, 80, "UDP").outcomes[0].error == "timed out"


@pytest.mark.parametrize("ip", ["203.0.113.11", "198.18.0.99", "10.244.1.250"])
def test_unused_addresses_on_a_lab_link_time_out(ip):
    ex = explain(cluster(), "x/client", ip, 80)
    assert not ex.allowed and ex.outcomes[0].error == "timed out"
    assert "ARP request" in str(ex)


@pytest.mark.parametrize("ip", ["198.18.0.1", "10.244.1.1"])
def test_a_node_itself_refuses_ports_nothing_listens_on(ip):
    ex = explain(cluster(), "x/client", ip, 80)
    assert not ex.allowed and ex.outcomes[0].error == "connection refused"
    assert "node-1 itself" in str(ex)


def test_a_pod_reaches_a_node_port_through_the_node_address_under_its_egress_policy():
    node_port = service("x/pub", {"app": "web"}, [{"port": 80, "targetPort": "http", "nodePort": 30080}],
                        type="NodePort")
    ex = explain(cluster(node_port), "x/client", "198.18.0.1", 30080)
    assert ex.allowed and sorted(ex.may_answer) == ["x/w1", "x/w2"]
    assert "NodePort 30080 of Service x/pub on node-1" in str(ex)
    gateway = explain(cluster(node_port), "x/client", "10.244.1.1", 30080)
    assert not gateway.allowed and "fabric address 198.18.0.1" in str(gateway)
    deny = netpol("x/no-egress", {"podSelector": {"matchLabels": {"role": "client"}}, "policyTypes": ["Egress"]})
    denied = explain(cluster(node_port, deny), "x/client", "198.18.0.1", 30080)
    assert not denied.allowed and "x/no-egress" in str(denied)


def test_egress_policy_applies_to_the_internet_host():
    assert not explain(cluster(EGRESS_DENY), "x/client", "203.0.113.10", 80).allowed
    outside = netpol("x/outside", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]}]})
    c = cluster(outside)
    assert explain(c, "x/client", "203.0.113.10", 443).allowed
    assert not explain(c, "x/client", c.pod_ips["x/w1"], 8080).allowed


# ------------------------------------------------------------------ the fast path sees pods only
def test_matrix_rows_are_per_pod_ip():
    c = cluster()
    pods = ["x/client", "x/w1", "x/w2"]
    rows = matrix_rows(c, pods, 8080, "TCP")
    assert rows == [0b010, 0b010, 0b010]


def test_a_pod_reaches_itself_through_its_own_node_port_even_when_isolated():
    node_port = service("x/pub1", {"app": "solo"}, [{"port": 80, "nodePort": 30081}], type="NodePort")
    solo = pod("x/solo", {"app": "solo"}, [{"containerPort": 80}])
    lock = netpol("x/lock", {"podSelector": {"matchLabels": {"app": "solo"}}, "policyTypes": ["Ingress", "Egress"]})
    ex = explain(cluster(solo, node_port, lock), "x/solo", "198.18.0.1", 30081)
    assert ex.allowed and ex.may_answer == ["x/solo"], str(ex)


# ------------------------------------------------------------------ issue 15: traffic policies, slices, aliases
def slice_doc(ref, service_name, endpoints, ports):
    n, name = ref.split("/")
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": name, "namespace": n, "labels": {"kubernetes.io/service-name": service_name}},
            "endpoints": endpoints, "ports": ports}


def on(node, doc):
    doc["spec"]["nodeName"] = node
    return doc


TWO_NODES = [ns("t"),
             on("node-1", pod("t/web1", {"app": "w"}, [{"containerPort": 8080}])),
             on("node-1", pod("t/c1", {"role": "client"}, [])),
             on("node-2", pod("t/c2", {"role": "client"}, []))]


def two_nodes(*extra, not_ready=()):
    c = Cluster.new(2).applied(parse(TWO_NODES + list(extra)))[0]
    return c.with_readiness(not_ready) if not_ready else c


ITP = service("t/local", {"app": "w"}, [{"port": 80, "targetPort": 8080}], internalTrafficPolicy="Local")
ETP = service("t/np", {"app": "w"}, [{"port": 80, "targetPort": 8080, "nodePort": 30080}], type="NodePort",
              externalTrafficPolicy="Local")


def test_internal_traffic_policy_local_drops_without_an_endpoint_on_the_clients_node():
    c = two_nodes(ITP)
    ok = explain(c, "t/c1", "local", 80)
    assert ok.allowed and ok.may_answer == ["t/web1"]
    assert "internalTrafficPolicy: Local" in str(ok)
    ex = explain(c, "t/c2", "local", 80)
    assert not ex.allowed and ex.outcomes[0].error == "timed out"  # dropped, not refused
    assert "none of its ready endpoints" in str(ex) and "node-2" in str(ex) and "drops" in str(ex)


def test_internal_traffic_policy_does_not_touch_node_ports():
    c = two_nodes(service("t/both", {"app": "w"}, [{"port": 80, "targetPort": 8080, "nodePort": 30081}],
                          type="NodePort", internalTrafficPolicy="Local"))
    assert explain(c, "t/c2", "198.18.0.2", 30081).allowed
    assert explain(c, "internet", "node-2", 30081).allowed


def test_external_traffic_policy_local_keeps_the_client_ip_and_drops_on_other_nodes():
    c = two_nodes(ETP)
    ex = explain(c, "internet", "node-1", 30080)
    assert ex.allowed and ex.outcomes[0].client_ip == "203.0.113.10"
    assert "does not masquerade" in str(ex)
    other = explain(c, "internet", "node-2", 30080)
    assert not other.allowed and other.outcomes[0].error == "timed out"
    assert "externalTrafficPolicy: Local and no ready endpoint on node-2" in str(other)
    cluster_wide = explain(two_nodes(service("t/np2", {"app": "w"}, [{"port": 80, "targetPort": 8080,
                                                                       "nodePort": 30082}], type="NodePort")),
                           "internet", "node-2", 30082)
    assert cluster_wide.allowed and cluster_wide.outcomes[0].client_ip == "198.18.0.2"  # masqueraded


def test_external_traffic_policy_local_leaves_pod_traffic_alone():
    c = two_nodes(ETP)
    ex = explain(c, "t/c2", "198.18.0.2", 30080)  # from a pod to the node without an endpoint: still goes
    assert ex.allowed and ex.outcomes[0].client_ip == "198.18.0.2"
    assert "applies only to traffic from outside" in str(ex)
    assert explain(c, "t/c2", "np", 80).allowed  # ClusterIP traffic is not affected


def test_publish_not_ready_addresses_sends_to_unready_pods():
    pn = service("t/pn", {"app": "w"}, [{"port": 80, "targetPort": 8080}], publishNotReadyAddresses=True)
    c = two_nodes(pn, ITP, not_ready={"t/web1"})
    assert explain(c, "t/c1", "pn", 80).may_answer == ["t/web1"]
    assert not explain(c, "t/c1", "local", 80).allowed


def test_service_without_selector_reaches_slice_addresses():
    manual = service("t/manual", None, [{"port": 80, "name": "http"}])
    c = two_nodes(manual, slice_doc("t/manual-1", "manual", [{"addresses": ["203.0.113.10"]}],
                                    [{"port": 443, "name": "http"}]))
    ex = explain(c, "t/c2", "manual", 80)
    assert ex.allowed and ex.may_answer == ["internet"]
    assert "203.0.113.10:443" in str(ex)
    to_pod = two_nodes(manual, slice_doc("t/manual-1", "manual", [{"addresses": [
        c.pod_ips["t/web1"]]}], [{"port": 8080, "name": "http"}]))
    assert explain(to_pod, "t/c2", "manual", 80).may_answer == ["t/web1"]


def test_external_name_is_an_alias_the_client_follows_to_the_targets_own_ports():
    alias = service("t/alias", None, [], type="ExternalName", externalName="web.x.svc.cluster.local")
    c = cluster(ns("t"), pod("t/c", {}, []), alias)
    ex = explain(c, "t/c", "alias", 80)
    assert ex.allowed and sorted(ex.may_answer) == ["x/w1", "x/w2"]
    assert "type ExternalName" in str(ex) and "CNAME to web.x.svc.cluster.local" in str(ex)
    assert not explain(c, "t/c", "alias", 9999).allowed
    out = cluster(ns("t"), pod("t/c", {}, []),
                  service("t/out", None, [], type="ExternalName", externalName="example.com"))
    nx = explain(out, "t/c", "out", 80)
    assert not nx.allowed and nx.outcomes[0].error == "NXDOMAIN out"
    assert "no upstream DNS" in str(nx)


def test_the_kubernetes_service_resolves_and_refuses():
    c = cluster()
    ex = explain(c, "x/client", "kubernetes.default", 443)
    assert not ex.allowed and ex.outcomes[0].error == "connection refused"
    assert "10.96.0.1" in str(ex)
    assert "labkit runs no API server: kubernetes.default has a ClusterIP and a DNS name but no endpoints" in str(ex)


@pytest.mark.parametrize("spec, why", [
    ({"dnsPolicy": "Default"}, "lists no nameserver"),
    ({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["198.18.0.53"]}}, "never answers")])
def test_a_pod_without_cluster_dns_cannot_resolve_cluster_names(spec, why):
    lost = pod("x/lost", {}, [])
    lost["spec"].update(spec)
    c = cluster(lost)
    ex = explain(c, "x/lost", "web", 80)
    assert not ex.allowed and ex.outcomes[0].error == "DNS lookup timed out"
    assert why in str(ex)
    assert explain(c, "x/lost", c.service_ips["x/web"], 80).allowed  # addresses still work


def test_dns_config_search_lets_short_names_of_other_namespaces_resolve():
    tuned = pod("y/tuned", {}, [])
    tuned["spec"]["dnsConfig"] = {"searches": ["x.svc.cluster.local"]}
    ex = explain(cluster(tuned), "y/tuned", "web", 80)
    assert ex.allowed and "web.x.svc.cluster.local" in str(ex)
