"""Cluster DNS and Service endpoints as Kubernetes defines them: EndpointSlices, publishNotReadyAddresses,
headless per-endpoint names and SRV, hostname/subdomain, ExternalName, kubernetes.default, a pod's
resolver (dnsPolicy, dnsConfig), /etc/resolv.conf and /etc/hosts."""
from __future__ import annotations

import pytest

from labkit.model.cluster import Cluster
from labkit.model.manifests import parse
from labkit.semantics import cluster_dns as dns
from labkit.semantics import services as svc


def ns(name):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def pod(ref, labels=None, ports=(), node=None, **spec):
    n, p = ref.split("/")
    body = {"containers": [{"name": "app", "ports": list(ports)}], **spec}
    if node:
        body["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": p, "namespace": n, "labels": labels or {}},
            "spec": body}


def service(ref, selector, ports, **spec):
    n, name = ref.split("/")
    body = {"ports": ports, **spec}
    if selector is not None:
        body["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": n}, "spec": body}


def endpoint_slice(ref, service_name, endpoints, ports):
    n, name = ref.split("/")
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": name, "namespace": n, "labels": {"kubernetes.io/service-name": service_name}},
            "endpoints": endpoints, "ports": ports}


HTTP = [{"containerPort": 8080, "name": "http"}]
BASE = [ns("x"),
        pod("x/w1", {"app": "web"}, HTTP, "node-1", hostname="web-0", subdomain="hl"),
        pod("x/w2", {"app": "web"}, HTTP, "node-2"),
        pod("x/client", {}, [], "node-2"),
        service("x/hl", {"app": "web"}, [{"port": 80, "targetPort": "http", "name": "http"}], clusterIP="None"),
        service("x/web", {"app": "web"}, [{"port": 80, "targetPort": "http", "name": "http"}])]


def cluster(*extra, not_ready=(), nodes=2):
    c = Cluster.new(nodes).applied(parse(BASE + list(extra)))[0]
    return c.with_readiness(not_ready) if not_ready else c


def eps(c, ref, index=0):
    s = c.services[ref]
    return svc.endpoints(c, s, s.ports[index])


# ------------------------------------------------------------------ endpoints
def test_selector_endpoints_know_their_node_and_hostname():
    c = cluster()
    got = {e.pod: (e.node, e.hostname, e.slice, e.port) for e in eps(c, "x/hl")}
    assert got == {"x/w1": (1, "web-0", None, 8080), "x/w2": (2, None, None, 8080)}
    # the hostname counts only for the Service its subdomain names
    assert {e.hostname for e in eps(c, "x/web")} == {None}


def test_slice_endpoints_back_a_service_without_selector():
    c = cluster(service("x/ext", None, [{"port": 80, "name": "http"}, {"port": 53, "protocol": "UDP", "name": "dns"}]),
                endpoint_slice("x/ext-1", "ext", [{"addresses": ["203.0.113.10"]},
                                                  {"addresses": ["10.244.2.2"], "conditions": {"ready": False}},
                                                  {"addresses": ["10.244.1.3"], "nodeName": "node-2"}],
                               [{"port": 8443, "name": "http"}]),
                endpoint_slice("x/other", "web", [], []))
    got = eps(c, "x/ext")
    owner = c.pod_by_ip()
    assert [(e.ip, e.port, e.ready, e.node, e.pod, e.slice) for e in got] == [
        ("203.0.113.10", 8443, True, None, "", "x/ext-1"),
        # kube-proxy counts a slice endpoint as on a node only by its nodeName, never by its address
        ("10.244.2.2", 8443, False, None, owner.get("10.244.2.2", ""), "x/ext-1"),
        ("10.244.1.3", 8443, True, 2, owner.get("10.244.1.3", ""), "x/ext-1")]
    s = c.services["x/ext"]
    assert [e.ip for e in svc.used_endpoints(c, s, s.ports[0])] == ["203.0.113.10", "10.244.1.3"]
    assert svc.endpoints(c, s, s.ports[1]) == []  # the slice has no "dns" port


def test_publish_not_ready_addresses_uses_unready_endpoints():
    c = cluster(service("x/pn", {"app": "web"}, [{"port": 80, "targetPort": 8080}], publishNotReadyAddresses=True),
                not_ready={"x/w1", "x/w2"})
    s = c.services["x/pn"]
    assert {e.pod for e in svc.used_endpoints(c, s, s.ports[0])} == {"x/w1", "x/w2"}
    assert svc.used_endpoints(c, c.services["x/web"], c.services["x/web"].ports[0]) == []


def test_local_endpoints_are_those_on_the_node():
    c = cluster()
    s = c.services["x/web"]
    assert [e.pod for e in svc.local_endpoints(c, s, s.ports[0], 2)] == ["x/w2"]
    assert svc.local_endpoints(c, s, s.ports[0], 3) == []


def test_endpoint_round_trips_through_a_dict():
    e = eps(cluster(), "x/hl")[0]
    assert svc.Endpoint.from_dict(e.to_dict()) == e
    old = {"pod": "x/a", "ip": "10.244.1.2", "port": 80, "protocol": "TCP", "ready": True}
    assert svc.Endpoint.from_dict(old) == svc.Endpoint("x/a", "10.244.1.2", 80, "TCP", True)


# ------------------------------------------------------------------ records
def test_headless_service_names_each_endpoint_and_serves_srv_with_the_endpoint_port():
    c = cluster()
    r = dns.records(c)
    w1, w2 = c.pod_ips["x/w1"], c.pod_ips["x/w2"]
    assert r.a["hl.x.svc.cluster.local"] == (w1, w2)
    assert r.a["web-0.hl.x.svc.cluster.local"] == (w1,)  # hostname + subdomain
    dashed = w2.replace(".", "-")
    assert r.a[f"{dashed}.hl.x.svc.cluster.local"] == (w2,)
    assert r.srv["_http._tcp.hl.x.svc.cluster.local"] == (
        (0, 50, 8080, f"{dashed}.hl.x.svc.cluster.local"), (0, 50, 8080, "web-0.hl.x.svc.cluster.local"))
    assert r.ptr[w1] == "web-0.hl.x.svc.cluster.local"


def test_cluster_ip_service_srv_points_at_the_service_and_its_port():
    c = cluster()
    r = dns.records(c)
    assert r.a["web.x.svc.cluster.local"] == (c.service_ips["x/web"],)
    assert r.srv["_http._tcp.web.x.svc.cluster.local"] == ((0, 100, 80, "web.x.svc.cluster.local"),)
    assert r.ptr[c.service_ips["x/web"]] == "web.x.svc.cluster.local"


def test_pod_hostname_record_needs_the_headless_service_to_select_it():
    c = cluster(not_ready={"x/w1"})
    assert dns.lookup(c, "web-0.hl.x.svc.cluster.local") is None  # not ready: not an endpoint
    c2 = cluster(service("x/hl2", {"app": "web"}, [{"port": 80}], clusterIP="None", publishNotReadyAddresses=True),
                 pod("x/w3", {"app": "web"}, HTTP, hostname="db-0", subdomain="hl2"), not_ready={"x/w3"})
    assert dns.lookup(c2, "db-0.hl2.x.svc.cluster.local") == [c2.pod_ips["x/w3"]]
    lonely = cluster(pod("x/alone", {}, [], hostname="a", subdomain="nothing"))
    assert dns.lookup(lonely, "a.nothing.x.svc.cluster.local") is None


def test_slice_hostnames_name_headless_endpoints():
    c = cluster(service("x/db", None, [{"port": 5432, "name": "pg"}], clusterIP="None"),
                endpoint_slice("x/db-a", "db", [{"addresses": ["10.244.1.200"], "hostname": "primary"}],
                               [{"port": 15432, "name": "pg"}]))
    r = dns.records(c)
    assert r.a["primary.db.x.svc.cluster.local"] == ("10.244.1.200",)
    assert r.srv["_pg._tcp.db.x.svc.cluster.local"] == ((0, 100, 15432, "primary.db.x.svc.cluster.local"),)


def test_external_name_is_a_cname_followed_inside_the_cluster():
    c = cluster(service("x/alias", None, [], type="ExternalName",
                        externalName="web.x.svc.cluster.local"),
                service("x/out", None, [], type="ExternalName", externalName="example.com."))
    r = dns.records(c)
    assert r.cname["alias.x.svc.cluster.local"] == "web.x.svc.cluster.local"
    assert "alias.x.svc.cluster.local" not in r.a
    assert dns.lookup(c, "alias.x.svc.cluster.local") == [c.service_ips["x/web"]]
    res = dns.resolve(c, "x", "alias")
    assert res.ips == (c.service_ips["x/web"],) and res.cnames == (("alias.x.svc.cluster.local",
                                                                     "web.x.svc.cluster.local"),)
    assert dns.lookup(c, "out.x.svc.cluster.local") is None  # the lab has no upstream DNS
    assert dns.answer(c, "out.x.svc.cluster.local").cnames == (("out.x.svc.cluster.local", "example.com"),)
    assert svc.portless_endpoints(c, c.services["x/alias"]) == []


def test_aliases_in_a_loop_answer_nothing_and_break_nothing_else():
    # the API server accepts each of these; CoreDNS answers the looped names with nothing, and dnsmasq would
    # refuse its whole configuration (every name of the lab would stop resolving), so they are left out
    c = cluster(service("x/self", None, [], type="ExternalName", externalName="self.x.svc.cluster.local"),
                service("x/l1", None, [], type="ExternalName", externalName="l2.x.svc.cluster.local"),
                service("x/l2", None, [], type="ExternalName", externalName="l1.x.svc.cluster.local"),
                service("x/into", None, [], type="ExternalName", externalName="l1.x.svc.cluster.local"),
                service("x/fine", None, [], type="ExternalName", externalName="web.x.svc.cluster.local"))
    r = dns.records(c)
    assert set(r.cname) == {"into.x.svc.cluster.local", "fine.x.svc.cluster.local"}
    for name in ("self", "l1", "l2", "into"):
        assert dns.lookup(c, f"{name}.x.svc.cluster.local") is None, name
    assert dns.lookup(c, "fine.x.svc.cluster.local") == [c.service_ips["x/web"]]
    assert dns.lookup(c, "web.x.svc.cluster.local") == [c.service_ips["x/web"]]


def test_kubernetes_default_resolves_to_the_first_service_address():
    c = cluster()
    assert dns.resolve(c, "x", "kubernetes.default").ips == ("10.96.0.1",)
    assert dns.records(c).a["kubernetes.default.svc.cluster.local"] == ("10.96.0.1",)


def test_lookup_agrees_with_records():
    c = cluster()
    r = dns.records(c)
    for name, ips in r.a.items():
        assert dns.lookup(c, name) == list(ips)
    assert dns.lookup(c, f"{c.pod_ips['x/w1'].replace('.', '-')}.x.pod.cluster.local") == [c.pod_ips["x/w1"]]


# ------------------------------------------------------------------ a pod's resolver
def test_cluster_first_resolv_conf():
    c = cluster()
    assert dns.resolv_conf(c, "x/client") == ("search x.svc.cluster.local svc.cluster.local cluster.local\n"
                                              "nameserver 10.96.0.10\noptions ndots:5\n")


def test_dns_config_is_merged_into_cluster_first():
    c = cluster(pod("x/tuned", dnsConfig={"nameservers": ["10.96.0.10", "198.18.0.9"], "searches": ["corp.example"],
                                          "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}))
    cfg = dns.resolver(c, "x/tuned")
    assert cfg.nameservers == ("10.96.0.10", "198.18.0.9") and cfg.ndots == 2
    assert dns.resolv_conf(c, "x/tuned") == (
        "search x.svc.cluster.local svc.cluster.local cluster.local corp.example\n"
        "nameserver 10.96.0.10\nnameserver 198.18.0.9\noptions ndots:2 edns0\n")
    # ndots:2: "web.x" has one dot, so the search list comes first
    assert dns.resolve_for(c, "x/tuned", "web.x").fqdn == "web.x.svc.cluster.local"
    assert dns.resolve_for(c, "x/tuned", "a.b.c").tried[0] == "a.b.c"


def test_dns_policy_none_uses_exactly_dns_config():
    c = cluster(pod("x/own", dnsPolicy="None",
                    dnsConfig={"nameservers": ["10.96.0.10"], "searches": ["x.svc.cluster.local"]}),
                pod("x/foreign", dnsPolicy="None", dnsConfig={"nameservers": ["198.18.0.53"]}))
    assert dns.resolv_conf(c, "x/own") == "search x.svc.cluster.local\nnameserver 10.96.0.10\n"
    assert dns.resolver(c, "x/own").ndots == 1
    assert dns.resolve_for(c, "x/own", "web").ips == (c.service_ips["x/web"],)
    # ndots:1 (glibc's default): "web.x" is tried as it is first, then with the only search domain
    assert dns.resolve_for(c, "x/own", "web.x").tried == ("web.x", "web.x.x.svc.cluster.local")
    res = dns.resolve_for(c, "x/foreign", "web.x.svc.cluster.local")
    assert res.ips == () and res.timed_out and "198.18.0.53" in res.why and "never answers" in res.why


def test_dns_policy_default_has_no_nameserver():
    c = cluster(pod("x/dflt", dnsPolicy="Default"))
    assert dns.resolv_conf(c, "x/dflt") == ""
    res = dns.resolve_for(c, "x/dflt", "web.x.svc.cluster.local")
    assert res.timed_out and "no nameserver" in res.why and "127.0.0.1" in res.why


def test_the_coredns_pod_ip_answers_too():
    c = cluster()
    ip = c.pod_ips["kube-system/coredns"]
    c = cluster(pod("x/direct", dnsPolicy="None", dnsConfig={"nameservers": ["198.18.0.53", ip]}))
    res = dns.resolve_for(c, "x/direct", "web.x.svc.cluster.local")
    assert res.ips == (c.service_ips["x/web"],) and res.nameserver == ip


# ------------------------------------------------------------------ hostname and /etc/hosts
def test_hosts_file_with_subdomain():
    c = cluster()
    ip = c.pod_ips["x/w1"]
    text = dns.etc_hosts(c, "x/w1")
    assert text.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost "
                           "ip6-loopback\n")
    assert text.endswith(f"\n{ip}\tweb-0.hl.x.svc.cluster.local\tweb-0\n")
    assert dns.pod_hostname(c.pods["x/w1"]) == "web-0"
    assert dns.pod_fqdn(c.pods["x/w1"]) == "web-0.hl.x.svc.cluster.local"


def test_hosts_file_without_subdomain_names_the_pod():
    c = cluster()
    assert dns.etc_hosts(c, "x/w2").endswith(f"\n{c.pod_ips['x/w2']}\tw2\n")
    assert dns.pod_fqdn(c.pods["x/w2"]) is None


@pytest.mark.parametrize("name, expected", [("a" * 70, "a" * 63), ("a" * 62 + "-b", "a" * 62)])
def test_long_pod_names_are_cut_to_63_characters(name, expected):
    c = cluster(pod(f"x/{name}"))
    assert dns.pod_hostname(c.pods[f"x/{name}"]) == expected


def test_every_pod_address_has_one_reverse_name_endpoint_names_first():
    c = Cluster.new()
    c, _ = c.applied(parse([
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "lone"}, "spec": {"containers": [{"name": "a"}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "member", "labels": {"app": "m"}},
         "spec": {"containers": [{"name": "a"}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hl"},
         "spec": {"clusterIP": "None", "selector": {"app": "m"}}}]))
    ptr = dns.records(c).ptr
    lone, member = c.pod_ips["default/lone"], c.pod_ips["default/member"]
    assert ptr[lone] == f"{lone.replace('.', '-')}.default.pod.cluster.local"
    assert ptr[member] == f"{member.replace('.', '-')}.hl.default.svc.cluster.local"
