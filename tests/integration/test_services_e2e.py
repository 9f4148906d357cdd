"""The upstream e2e behaviours of Services and cluster DNS (``test/e2e/network/service.go``,
``dns.go``, ``endpointslice.go``, the DNS specification) on the docker backend, with real
connections and real ``dig`` from pods, each compared with the oracle (``labkit.semantics``).

One two-node lab (module scope). Node-1 holds the only ``lone`` endpoint (traffic policies,
hand-written EndpointSlices), two of three ``srv`` endpoints (affinity, headless SRV, stable pod
names) and the DNS pod; node-2 holds a never-ready pod (publishNotReadyAddresses) and the
clients with their dnsPolicy variants.
"""
from __future__ import annotations

import collections
import ipaddress
import os
import re
import time

import pytest

import labkit
from labkit.model import addressing as addr
from labkit.semantics import cluster_dns
from tests.conftest import share_lab

pytestmark = pytest.mark.docker

LAB = f"svc-e2e-{os.getpid() % 10000}"  # the pid keeps two concurrent runs apart (see test_dns.py)
NS = "e2e"
NODE_PORT = 30151
ZONE = "svc.cluster.local"


def pod(name, labels, node, ready_file=False, **spec):
    container = {"name": "app", "ports": [{"containerPort": 8080, "name": "http"}]}
    if ready_file:
        container["readinessProbe"] = {"exec": {"command": ["test", "-e", "/tmp/ready"]}, "periodSeconds": 5}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS, "labels": labels},
            "spec": {"nodeName": node, "containers": [container], **spec}}


def service(name, selector, ports=None, **spec):
    default = [] if spec.get("type") == "ExternalName" else [{"name": "http", "port": 80, "targetPort": 8080}]
    body = {"ports": ports or default, **spec}
    if selector is not None:
        body["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS}, "spec": body}


def endpoint_slice(name, svc, address, port, **endpoint):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": name, "namespace": NS, "labels": {"kubernetes.io/service-name": svc}},
            "endpoints": [{"addresses": [address], **endpoint}], "ports": [{"name": "http", "port": port}]}


MANIFESTS = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
    pod("s1", {"app": "srv"}, "node-1", hostname="srv-0", subdomain="hsrv"),
    pod("s2", {"app": "srv"}, "node-1"),
    pod("s3", {"app": "srv"}, "node-2"),
    pod("lone", {"app": "lone"}, "node-1"),
    pod("unready", {"app": "unready"}, "node-2", ready_file=True),
    pod("c1", {"role": "client"}, "node-1"),
    pod("c2", {"role": "client"}, "node-2",
        dnsConfig={"searches": [f"hsrv.{NS}.{ZONE}"], "options": [{"name": "ndots", "value": "1"}]}),
    pod("dnone", {"role": "client"}, "node-2", dnsPolicy="None",
        dnsConfig={"nameservers": [addr.DNS_SERVICE_IP], "searches": [f"{NS}.{ZONE}"]}),
    pod("ddefault", {"role": "client"}, "node-2", dnsPolicy="Default"),
    service("aff", {"app": "srv"}, sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 2}}),
    service("hsrv", {"app": "srv"}, clusterIP="None"),
    service("itp", {"app": "lone"}, internalTrafficPolicy="Local"),
    service("etp", {"app": "lone"}, [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": NODE_PORT}],
            type="NodePort", externalTrafficPolicy="Local"),
    service("pnr", {"app": "unready"}, publishNotReadyAddresses=True),
    service("pnr-hl", {"app": "unready"}, clusterIP="None", publishNotReadyAddresses=True),
    service("alias", None, None, type="ExternalName", externalName=f"aff.{NS}.{ZONE}"),
    service("away", None, None, type="ExternalName", externalName="www.example.com"),
    service("manual", None),
    service("outside", None),
]


@pytest.fixture(scope="module")
def lab(request):
    share_lab(request.config, LAB)
    lab = labkit.Lab(LAB, backend="docker", nodes=2)
    try:
        lab.apply(MANIFESTS)
        # slices name addresses: the pod's, known once it exists, and the lab's internet host
        lab.apply([endpoint_slice("manual-1", "manual", lab.pod_ip(f"{NS}/s3"), 8080, nodeName="node-2"),
                   endpoint_slice("outside-1", "outside", addr.INTERNET_HOST_IP, 80)])
        yield lab
    finally:
        lab.close()


def fqdn(name):
    return f"{name}.{NS}.{ZONE}"


def dig(lab, src, *args):
    out = lab.exec(src, ["dig", "+time=2", "+tries=1", *args])
    assert out.exit_code == 0, out.output
    return out.output


def short(lab, src, *args):
    return dig(lab, src, "+short", *args).split()


def answer_section(text):
    """The ANSWER SECTION of dig's output as (owner, type, value) triples."""
    m = re.search(r";; ANSWER SECTION:\n(.*?)\n\n", text, re.S)
    rows = [line.split() for line in m.group(1).splitlines()] if m else []
    return [(r[0], r[3], " ".join(r[4:])) for r in rows]


def status(text):
    return re.search(r"status: (\w+)", text).group(1)


def by_ip(ips):
    return sorted(ips, key=ipaddress.IPv4Address)


def srv_pods(lab):
    return [f"{NS}/s1", f"{NS}/s2", f"{NS}/s3"]


def in_pod(lab, src, script):
    out = lab.exec(src, ["sh", "-c", script])
    return out.exit_code, out.output


# ------------------------------------------------------------------ publishNotReadyAddresses
def test_an_unready_pod_is_published_and_reachable_with_publish_not_ready_addresses(lab):
    unready = f"{NS}/unready"
    assert not lab.cluster.is_ready(unready)
    result = lab.probe(f"{NS}/c1", "pnr", 80, timeout=3)
    assert result.ok and result.answered_by == unready and result.matches_oracle, result
    ip = lab.pod_ip(unready)
    assert short(lab, f"{NS}/c1", fqdn("pnr-hl")) == [ip] == cluster_dns.lookup(lab.cluster, fqdn("pnr-hl"))
    dashed = f"{ip.replace('.', '-')}.pnr-hl.{NS}.{ZONE}"
    assert short(lab, f"{NS}/c1", dashed) == [ip] == list(cluster_dns.records(lab.cluster).a[dashed])


# ------------------------------------------------------------------ sessionAffinity timeoutSeconds
def test_affinity_lasts_timeout_seconds_after_the_last_new_connection(lab):
    client, vip = f"{NS}/c1", lab.service_ip(f"{NS}/aff")
    assert "timeout 2s" in lab.rules("labkit-svc")
    first = lab.probe(client, vip, 80, timeout=3)
    assert first.ok and first.matches_oracle, first
    rest = lab.sample(client, vip, 80, count=9, timeout=3)
    assert {r.answered_by for r in rest} == {first.answered_by}, [r.answered_by for r in rest]
    # a new connection every second re-arms the 2 s timeout: 4 s later the client is still there
    for _ in range(4):
        time.sleep(1.0)
        again = lab.probe(client, vip, 80, timeout=3)
        assert again.answered_by == first.answered_by, again
    # idle for longer than the timeout: the next connection chooses again (1 in 3 it is the same one)
    current, seen = first.answered_by, collections.Counter()
    for _ in range(8):
        time.sleep(2.8)
        series = [lab.probe(client, vip, 80, timeout=3) for _ in range(3)]
        chosen = {r.answered_by for r in series}
        assert len(chosen) == 1 and None not in chosen, series  # each new series sticks again
        seen[chosen.pop()] += 1
        if set(seen) - {current}:
            break
    assert set(seen) - {current}, f"after the timeout the client never left {current}: {dict(seen)}"
    assert set(seen) <= set(srv_pods(lab))


# ------------------------------------------------------------------ internalTrafficPolicy: Local
def test_internal_traffic_policy_local_keeps_pods_on_their_node(lab):
    here = lab.probe(f"{NS}/c1", "itp", 80, timeout=3)  # c1 shares node-1 with the only endpoint
    assert here.ok and here.answered_by == f"{NS}/lone" and here.matches_oracle, here
    started = time.monotonic()
    there = lab.probe(f"{NS}/c2", "itp", 80, timeout=1.5)  # node-2 has none: dropped, not refused
    assert not there.ok and time.monotonic() - started >= 1.2 and there.matches_oracle, there
    assert "refused" not in (there.error or ""), there
    assert not lab.explain(f"{NS}/c2", "itp", 80).allowed  # ORACLE
    rules = lab.rules("labkit-svc")
    assert f"{NS}/itp has no local endpoints" in rules
    # the walk shows where: the Service guard drops it in node-2, with kube-proxy's comment
    walk = lab.trace(f"{NS}/c2", "itp", 80, timeout=1.5)
    assert walk.verdict == "dropped" and walk.agrees, walk
    drop = walk.request[-1]
    assert drop.kind == "drop" and drop.node == "node-2" and "has no local endpoints" in drop.text, walk.request
    shown = lab.trace_service(f"{NS}/c2", "itp", 80)
    assert "dropped" in shown.steps[0].title and "traffic policy Local" in shown.steps[0].title, shown
    here_shown = lab.trace_service(f"{NS}/c1", "itp", 80)
    assert here_shown.steps[1].title.endswith("on node-1 (traffic policy Local), at random"), here_shown


# ------------------------------------------------------------------ externalTrafficPolicy: Local
def test_external_traffic_policy_local_keeps_the_client_ip_and_only_local_endpoints(lab):
    home = lab.probe("internet", addr.node_ip(1), NODE_PORT, timeout=3)
    assert home.ok and home.answered_by == f"{NS}/lone" and home.matches_oracle, home
    assert home.client_ip == addr.INTERNET_HOST_IP, home  # not masqueraded
    away = lab.probe("internet", addr.node_ip(2), NODE_PORT, timeout=1.5)
    assert not away.ok and "refused" not in (away.error or "") and away.matches_oracle, away
    # a pod reaching a NodePort still goes cluster-wide and is masqueraded
    from_pod = lab.probe(f"{NS}/c2", addr.node_ip(1), NODE_PORT, timeout=3)
    assert from_pod.ok and from_pod.answered_by == f"{NS}/lone" and from_pod.matches_oracle, from_pod
    assert from_pod.client_ip != lab.pod_ip(f"{NS}/c2"), from_pod
    walk = lab.trace("internet", addr.node_ip(1), NODE_PORT, timeout=3)
    assert walk.verdict == f"delivered to {NS}/lone" and not walk.facts.masquerade and walk.agrees, walk
    shown = lab.trace_service("internet", addr.node_ip(1), NODE_PORT)
    assert not any("masquerade" in step.title for step in shown.steps), shown
    assert "traffic policy Local" in shown.steps[1].title, shown
    dropped = lab.trace("internet", addr.node_ip(2), NODE_PORT, timeout=1.5)
    assert dropped.verdict == "dropped" and dropped.agrees, dropped
    # the ClusterIP is not affected: a pod on node-2 reaches the endpoint on node-1
    vip = lab.probe(f"{NS}/c2", "etp", 80, timeout=3)
    assert vip.ok and vip.answered_by == f"{NS}/lone", vip


# ------------------------------------------------------------------ headless SRV and stable pod names
def test_headless_srv_has_one_record_per_endpoint_with_its_port_and_name(lab):
    recs = cluster_dns.records(lab.cluster)
    name = f"_http._tcp.hsrv.{NS}.{ZONE}"
    observed = sorted(tuple(r.split()) for r in dig(lab, f"{NS}/c1", "+short", "SRV", name).strip().splitlines())
    expected = sorted((str(p), str(w), str(port), f"{t}.") for p, w, port, t in recs.srv[name])
    assert observed == expected and len(observed) == 3, observed
    assert {r[2] for r in observed} == {"8080"}  # the endpoint's port, not the Service's 80
    targets = {r[3].rstrip(".") for r in observed}
    s1, s2 = lab.pod_ip(f"{NS}/s1"), lab.pod_ip(f"{NS}/s2")
    assert f"srv-0.hsrv.{NS}.{ZONE}" in targets and f"{s2.replace('.', '-')}.hsrv.{NS}.{ZONE}" in targets
    for target in targets:  # every target has its own A record
        assert short(lab, f"{NS}/c1", target) == list(recs.a[target])
    assert short(lab, f"{NS}/c1", f"srv-0.hsrv.{NS}.{ZONE}") == [s1]
    got = lab.probe(f"{NS}/c1", f"srv-0.hsrv.{NS}.{ZONE}", 8080, timeout=3)
    assert got.ok and got.answered_by == f"{NS}/s1", got
    # a ClusterIP Service's SRV still names the Service and its own port
    assert short(lab, f"{NS}/c1", "SRV", f"_http._tcp.aff.{NS}.{ZONE}") == ["0", "100", "80", f"aff.{NS}.{ZONE}."]


def test_pod_hostname_etc_hosts_and_hostname_i(lab):
    s1 = f"{NS}/s1"
    ip = lab.pod_ip(s1)
    code, out = in_pod(lab, s1, "cat /etc/hosts; echo ==; hostname; hostname -i; getent hosts srv-0")
    assert code == 0, out
    hosts, rest = out.split("==\n")
    assert hosts == cluster_dns.etc_hosts(lab.cluster, s1)
    assert f"{ip}\tsrv-0.hsrv.{NS}.{ZONE}\tsrv-0\n" in hosts
    assert rest.split("\n")[:2] == ["srv-0", ip]
    assert rest.split("\n")[2].split() == [ip, f"srv-0.hsrv.{NS}.{ZONE}", "srv-0"]
    # a pod without hostname: its name, and the same kubelet-style file in every container
    code, out = in_pod(lab, f"{NS}/s2", "hostname; hostname -i; getent hosts s2 | awk '{print $1}'")
    assert code == 0 and out.split() == ["s2", lab.pod_ip(f"{NS}/s2"), lab.pod_ip(f"{NS}/s2")], out


# ------------------------------------------------------------------ dnsPolicy and dnsConfig
def test_cluster_first_with_dns_config_merges_search_and_ndots(lab):
    c2 = f"{NS}/c2"
    conf = lab.exec(c2, ["cat", "/etc/resolv.conf"]).output
    assert conf == cluster_dns.resolv_conf(lab.cluster, c2)
    assert conf.splitlines() == [f"search {NS}.{ZONE} {ZONE} cluster.local hsrv.{NS}.{ZONE}",
                                 f"nameserver {addr.DNS_SERVICE_IP}", "options ndots:1"]
    # the extra search domain makes the stable pod name short
    code, out = in_pod(lab, c2, "getent hosts srv-0 | awk '{print $1}'")
    oracle = cluster_dns.resolve_for(lab.cluster, c2, "srv-0")
    assert code == 0 and out.split() == list(oracle.ips) == [lab.pod_ip(f"{NS}/s1")], (out, oracle)
    # ndots:1: a dotted name is tried as it is first (ndots:5 would try the search list first)
    def first_question(src):
        text = dig(lab, src, "+search", "+showsearch", "aff.e2e")
        return re.search(r";; QUESTION SECTION:\n;(\S+)", text).group(1)
    assert first_question(c2) == "aff.e2e."
    assert first_question(f"{NS}/c1") == f"aff.e2e.{NS}.{ZONE}."
    assert cluster_dns.resolve_for(lab.cluster, c2, "aff.e2e").tried[0] == "aff.e2e"


def test_dns_policy_none_uses_only_its_dns_config(lab):
    src = f"{NS}/dnone"
    conf = lab.exec(src, ["cat", "/etc/resolv.conf"]).output
    assert conf == cluster_dns.resolv_conf(lab.cluster, src) == \
        f"search {NS}.{ZONE}\nnameserver {addr.DNS_SERVICE_IP}\n"
    code, out = in_pod(lab, src, "getent hosts aff | awk '{print $1}'; echo ==; getent hosts aff.e2e; echo rc=$?")
    found, rest = out.split("==\n")
    assert found.split() == list(cluster_dns.resolve_for(lab.cluster, src, "aff").ips) == [lab.service_ip(f"{NS}/aff")]
    assert "rc=2" in rest and not cluster_dns.resolve_for(lab.cluster, src, "aff.e2e").ips  # no svc.cluster.local search


def test_dns_policy_default_resolves_no_cluster_name(lab):
    src = f"{NS}/ddefault"
    conf = lab.exec(src, ["cat", "/etc/resolv.conf"]).output
    assert conf == cluster_dns.resolv_conf(lab.cluster, src) == ""
    code, out = in_pod(lab, src, f"getent hosts {fqdn('aff')}; echo rc=$?; getent hosts ddefault")
    assert "rc=2" in out and lab.pod_ip(src) in out, out  # its own name still comes from /etc/hosts
    oracle = cluster_dns.resolve_for(lab.cluster, src, fqdn("aff"))
    assert not oracle.ips and oracle.why, oracle
    result = lab.probe(src, "aff", 80, timeout=3)
    assert not result.ok and result.matches_oracle, result


# ------------------------------------------------------------------ ExternalName, kubernetes.default
def test_external_name_is_a_cname_to_another_services_name(lab):
    text = dig(lab, f"{NS}/c1", fqdn("alias"))
    vip = lab.service_ip(f"{NS}/aff")
    assert status(text) == "NOERROR"
    assert answer_section(text) == [(f"{fqdn('alias')}.", "CNAME", f"{fqdn('aff')}."), (f"{fqdn('aff')}.", "A", vip)]
    found = cluster_dns.answer(lab.cluster, fqdn("alias"))
    assert found.cnames == ((fqdn("alias"), fqdn("aff")),) and found.ips == (vip,)
    result = lab.probe(f"{NS}/c1", "alias", 80, timeout=3)
    assert result.ok and result.answered_by in srv_pods(lab) and result.matches_oracle, result
    assert f"{NS}/alias" not in lab.rules("labkit-svc") and "_e2e_alias_" not in lab.rules("labkit-svc")


def test_external_name_to_an_outside_name_answers_the_cname_alone(lab):
    """The lab has no upstream DNS: dnsmasq answers the alias (NOERROR) and nothing for the target."""
    text = dig(lab, f"{NS}/c1", fqdn("away"))
    assert status(text) == "NOERROR" and answer_section(text) == [(f"{fqdn('away')}.", "CNAME", "www.example.com.")]
    assert status(dig(lab, f"{NS}/c1", "www.example.com")) == "NXDOMAIN"
    found = cluster_dns.answer(lab.cluster, fqdn("away"))
    assert found.cnames == ((fqdn("away"), "www.example.com"),) and found.ips == ()
    code, out = in_pod(lab, f"{NS}/c1", "getent hosts away; echo rc=$?")
    assert "rc=2" in out, out
    result = lab.probe(f"{NS}/c1", "away", 80, timeout=3)
    assert not result.ok and result.matches_oracle, result


def test_an_alias_loop_answers_nothing_and_every_other_name_still_resolves(lab):
    """Each looped ExternalName is valid on its own; dnsmasq would refuse a configuration with the loop
    (and every pod of the lab would lose DNS), so the looped names have no record at all."""
    loop = [service("loop-a", None, None, type="ExternalName", externalName=fqdn("loop-b")),
            service("loop-b", None, None, type="ExternalName", externalName=fqdn("loop-a"))]
    lab.apply(loop)
    try:
        assert status(dig(lab, f"{NS}/c1", fqdn("loop-a"))) == "NXDOMAIN"
        assert cluster_dns.lookup(lab.cluster, fqdn("loop-a")) is None
        assert short(lab, f"{NS}/c1", fqdn("aff")) == [lab.service_ip(f"{NS}/aff")]  # dnsmasq still runs
        assert short(lab, f"{NS}/c1", fqdn("alias"))[-1] == lab.service_ip(f"{NS}/aff")
    finally:
        lab.delete("service", "loop-a", NS)
        lab.delete("service", "loop-b", NS)


def test_kubernetes_default_has_a_cluster_ip_and_refuses(lab):
    assert short(lab, f"{NS}/c1", "kubernetes.default.svc.cluster.local") == ["10.96.0.1"]
    assert cluster_dns.lookup(lab.cluster, "kubernetes.default.svc.cluster.local") == ["10.96.0.1"]
    started = time.monotonic()
    result = lab.probe(f"{NS}/c1", "kubernetes.default", 443, timeout=3)
    assert not result.ok and "refused" in (result.error or "") and result.matches_oracle, result
    assert time.monotonic() - started < 2.0


# ------------------------------------------------------------------ selector-less Services
def test_a_selectorless_service_reaches_the_addresses_of_its_endpoint_slices(lab):
    to_pod = lab.probe(f"{NS}/c1", "manual", 80, timeout=3)
    assert to_pod.ok and to_pod.answered_by == f"{NS}/s3" and to_pod.matches_oracle, to_pod
    eps = lab.endpoints(f"{NS}/manual")
    assert [(e.pod, e.ip, e.port, e.slice) for e in eps] == [
        (f"{NS}/s3", lab.pod_ip(f"{NS}/s3"), 8080, f"{NS}/manual-1")]
    outside = lab.probe(f"{NS}/c2", "outside", 80, timeout=3)  # DNAT to the internet host, back through node-2
    assert outside.ok and outside.answered_by == "internet" and outside.matches_oracle, outside
    assert outside.client_ip == addr.node_ip(2), outside  # it left node-2 from the node's own address
