"""Issue 15's Service and DNS behaviours through ``labkit.Lab(backend="sim")``, with the manifests a
learner writes: the same behaviours the docker end-to-end tests check on real packets
(tests/integration/test_services_e2e.py)."""
from __future__ import annotations

import pytest

import labkit
from labkit.runtime.sim import SimBackend
from labkit.runtime.sim_exec import HEADER


def ns(name):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def pod(name, labels=None, node=None, ports=(8080,), probe=False, **spec):
    container = {"name": "app", "ports": [{"containerPort": p, "name": "http"} for p in ports]}
    if probe:
        container["readinessProbe"] = {"exec": {"command": ["test", "-e", "/tmp/ready"]}, "periodSeconds": 1}
    body = {"containers": [container], **spec}
    if node:
        body["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "s", "labels": labels or {}},
            "spec": body}


def service(name, spec):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "s"}, "spec": spec}


HTTP = [{"name": "http", "port": 80, "targetPort": "http"}]
WORLD = [
    ns("s"),
    pod("w1", {"app": "w", "zone": "one"}, "node-1"),
    pod("w2", {"app": "w"}, "node-2"),
    pod("late", {"app": "late"}, "node-1", probe=True),  # never ready: /tmp/ready is never made
    pod("c1", node="node-1", ports=()),
    pod("c2", node="node-2", ports=()),
    pod("web-0", {"app": "set"}, "node-2", hostname="web-0", subdomain="set"),
    pod("dflt", node="node-1", ports=(), dnsPolicy="Default"),
    pod("none", node="node-1", ports=(), dnsPolicy="None",
        dnsConfig={"nameservers": ["10.96.0.10"], "searches": ["s.svc.cluster.local"],
                   "options": [{"name": "ndots", "value": "1"}]}),
    pod("far", node="node-1", ports=(), dnsPolicy="None", dnsConfig={"nameservers": ["198.18.0.53"]}),
    pod("extra", node="node-1", ports=(), dnsConfig={"searches": ["other.svc.cluster.local"]}),
    service("pnra", {"selector": {"app": "late"}, "ports": HTTP, "publishNotReadyAddresses": True}),
    service("pnra-hl", {"selector": {"app": "late"}, "ports": HTTP, "clusterIP": "None",
                        "publishNotReadyAddresses": True}),
    service("sticky", {"selector": {"app": "w"}, "ports": HTTP, "sessionAffinity": "ClientIP",
                       "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 2}}}),
    service("only1", {"selector": {"app": "w", "zone": "one"}, "ports": HTTP, "internalTrafficPolicy": "Local"}),
    service("np", {"type": "NodePort", "selector": {"app": "w", "zone": "one"}, "externalTrafficPolicy": "Local",
                   "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080}]}),
    service("set", {"selector": {"app": "set"}, "clusterIP": "None", "ports": HTTP}),
    service("alias", {"type": "ExternalName", "externalName": "sticky.s.svc.cluster.local"}),
    service("manual", {"ports": [{"name": "http", "port": 80}]}),
    {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
     "metadata": {"name": "manual-1", "namespace": "s", "labels": {"kubernetes.io/service-name": "manual"}},
     "ports": [{"name": "http", "port": 80}], "endpoints": [{"addresses": ["203.0.113.10"]}]},
]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


CLOCK = Clock()


@pytest.fixture(scope="module")
def lab():
    with labkit.Lab("svc15", nodes=2, backend=SimBackend(clock=CLOCK)) as lab:
        lab.apply(WORLD)
        yield lab


def out(result) -> str:
    first, _, rest = result.output.partition("\n")
    assert first == HEADER
    return rest


def test_publish_not_ready_addresses_serves_and_names_an_unready_pod(lab):
    eps = lab.endpoints("s/pnra")  # the pod is not ready, but the EndpointSlice controller writes it as ready
    assert [(e.pod, e.ready) for e in eps] == [("s/late", True)] and not lab.cluster.is_ready("s/late")
    r = lab.probe("s/c1", "pnra", 80)
    assert r.ok and r.answered_by == "s/late"
    assert out(lab.exec("s/c1", ["dig", "+short", "pnra-hl.s.svc.cluster.local"])) == f"{lab.pod_ip('s/late')}\n"


def test_client_ip_affinity_lasts_its_timeout_after_the_last_connection(lab):
    clock = CLOCK  # the lab's backend measures affinity timeouts on it
    first = lab.probe("s/c1", "sticky", 80).answered_by
    for _ in range(6):  # each new connection within 2 s renews the affinity
        clock.now += 1.5
        assert lab.probe("s/c1", "sticky", 80).answered_by == first
    assert {r.answered_by for r in lab.sample("s/c1", "sticky", 80, count=20)} == {first}
    seen = set()
    for _ in range(40):  # 3 s apart: the affinity has ended each time, so the load balancer picks again
        clock.now += 3
        seen.add(lab.probe("s/c1", "sticky", 80).answered_by)
    assert seen == {"s/w1", "s/w2"}
    other = {r.answered_by for r in lab.sample("s/c2", "sticky", 80, count=5)}
    assert len(other) == 1  # another client has its own affinity


def test_internal_traffic_policy_local_drops_from_a_node_without_endpoint(lab):
    assert lab.probe("s/c1", "only1", 80).answered_by == "s/w1"
    r = lab.probe("s/c2", "only1", 80)
    assert not r.ok and "timed out" in r.error
    assert "internalTrafficPolicy: Local" in str(lab.explain("s/c2", "only1", 80))


def test_external_traffic_policy_local_keeps_the_internet_hosts_address(lab):
    r = lab.probe("internet", "198.18.0.1", 30080)
    assert r.ok and r.answered_by == "s/w1" and r.client_ip == "203.0.113.10"
    other = lab.probe("internet", "198.18.0.2", 30080)
    assert not other.ok and "timed out" in other.error
    from_pod = lab.probe("s/c2", "198.18.0.2", 30080)  # pods: cluster-wide and masqueraded
    assert from_pod.ok and from_pod.client_ip == "198.18.0.2"


def test_headless_srv_and_per_endpoint_names(lab):
    ip = lab.pod_ip("s/web-0")
    srv = out(lab.exec("s/c1", ["dig", "+short", "SRV", "_http._tcp.set.s.svc.cluster.local"]))
    assert srv == "0 100 8080 web-0.set.s.svc.cluster.local.\n"
    assert out(lab.exec("s/c1", ["dig", "+short", "web-0.set.s.svc.cluster.local"])) == f"{ip}\n"
    assert lab.probe("s/c1", "web-0.set", 8080).answered_by == "s/web-0"


def test_hosts_file_and_hostname(lab):
    ip = lab.pod_ip("s/web-0")
    assert out(lab.exec("s/web-0", ["cat", "/etc/hosts"])).endswith(
        f"{ip}\tweb-0.set.s.svc.cluster.local\tweb-0\n")
    assert out(lab.exec("s/web-0", ["hostname", "-i"])) == f"{ip}\n"
    assert out(lab.exec("s/web-0", ["hostname"])) == "web-0\n"
    assert out(lab.exec("s/c1", ["hostname"])) == "c1\n"


def test_dns_policies_and_what_resolves(lab):
    assert out(lab.exec("s/dflt", ["cat", "/etc/resolv.conf"])) == ""
    assert out(lab.exec("s/none", ["cat", "/etc/resolv.conf"])) == (
        "search s.svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:1\n")
    assert out(lab.exec("s/extra", ["cat", "/etc/resolv.conf"])) == (
        "search s.svc.cluster.local svc.cluster.local cluster.local other.svc.cluster.local\n"
        "nameserver 10.96.0.10\noptions ndots:5\n")
    assert lab.probe("s/none", "sticky", 80).ok
    for name in ("dflt", "far"):
        r = lab.probe(f"s/{name}", "sticky.s.svc.cluster.local", 80)
        assert not r.ok, name
        assert lab.exec(f"s/{name}", ["getent", "hosts", "sticky.s.svc.cluster.local"]).exit_code == 2
    assert "lists no nameserver" in str(lab.explain("s/dflt", "sticky", 80))
    assert "never answers" in str(lab.explain("s/far", "sticky", 80))
    assert lab.probe("s/dflt", lab.service_ip("s/sticky"), 80).ok  # addresses need no DNS


def test_external_name_is_a_cname(lab):
    vip = lab.service_ip("s/sticky")
    assert out(lab.exec("s/c1", ["dig", "+short", "alias.s.svc.cluster.local"])) == (
        f"sticky.s.svc.cluster.local.\n{vip}\n")
    assert "canonical name = sticky.s.svc.cluster.local." in out(lab.exec("s/c1", ["nslookup", "alias"]))
    assert lab.probe("s/c1", "alias", 80).ok


def test_kubernetes_default_resolves_and_is_refused(lab):
    assert out(lab.exec("s/c1", ["dig", "+short", "+search", "kubernetes.default"])) == "10.96.0.1\n"
    r = lab.probe("s/c1", "kubernetes.default", 443)
    assert not r.ok and "refused" in r.error
    assert "labkit runs no API server" in str(lab.explain("s/c1", "kubernetes.default", 443))


def test_service_without_selector_uses_the_hand_written_slice(lab):
    r = lab.probe("s/c1", "manual", 80)
    assert r.ok and r.answered_by == "internet"
    eps = lab.endpoints("s/manual")
    assert [(e.ip, e.port, e.slice) for e in eps] == [("203.0.113.10", 80, "s/manual-1")]
    assert "from EndpointSlice s/manual-1" in repr(eps)
