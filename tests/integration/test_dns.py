"""Cluster DNS on the docker backend, asked from inside pods the way learners ask it: labkit's
probes, ``dig``, ``nslookup`` and glibc (``getent``), compared with the oracle
(``labkit.semantics.services``).

One two-node lab (module scope); the DNS pod runs on node-1 and the main client on node-2,
so every query crosses nodes. A third web pod never becomes ready (headless answers must
leave it out). Tests that add records remove them again.
"""
from __future__ import annotations

import ipaddress
import os
import re
import time

import pytest

import labkit
from labkit.semantics import cluster_dns, services
from tests.conftest import share_lab

pytestmark = pytest.mark.docker

# The pid keeps two concurrent runs of this file from sharing a lab name: starting a Lab whose name is
# already running is refused, and that refusal currently removes the running lab's containers
# (see tests/integration/test_lifecycle.py::test_refusing_a_duplicate_leaves_the_running_lab_alone).
LAB = f"dns-main-{os.getpid() % 10000}"


def ns(name):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def pod(ref, labels, node=None, ready_file=False):
    n, name = ref.split("/")
    container = {"name": "app", "ports": [{"containerPort": 8080, "name": "http"},
                                          {"containerPort": 5000, "protocol": "UDP", "name": "sync"}]}
    if ready_file:
        container["readinessProbe"] = {"exec": {"command": ["test", "-e", "/tmp/ready"]}, "periodSeconds": 5}
    spec = {"containers": [container]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": n, "labels": labels},
            "spec": spec}


def service(ref, selector, ports, **spec):
    n, name = ref.split("/")
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": n},
            "spec": {"selector": selector, "ports": ports, **spec}}


MANIFESTS = [
    ns("x"), ns("other"),
    pod("x/w1", {"app": "web"}, "node-1"), pod("x/w2", {"app": "web"}, "node-2"),
    pod("x/w3", {"app": "web"}, "node-2", ready_file=True),
    pod("x/client", {"role": "client"}, "node-2"),
    pod("other/o1", {"app": "web"}, "node-1"),
    service("x/web", {"app": "web"}, [{"name": "http", "port": 80, "targetPort": "http"},
                                      {"name": "sync", "port": 5000, "protocol": "UDP", "targetPort": "sync"}]),
    service("other/web", {"app": "web"}, [{"port": 80, "targetPort": 8080}]),
    service("x/hl", {"app": "web"}, [{"name": "http", "port": 8080, "targetPort": "http"}], clusterIP="None"),
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


def dig(lab, *args, src="x/client"):
    out = lab.exec(src, ["dig", "+time=2", "+tries=1", *args])
    assert out.exit_code == 0, out.output
    return out.output


def short(lab, *args, src="x/client"):
    return dig(lab, "+short", *args, src=src).split()


def status(lab, name, *args, src="x/client"):
    m = re.search(r"status: (\w+)", dig(lab, *args, name, src=src))
    assert m, "no DNS answer"
    return m.group(1)


def getent(lab, name, src="x/client"):
    """What glibc (search path, ndots:5) resolves ``name`` to, as a set of IPv4 addresses."""
    out = lab.exec(src, ["getent", "ahostsv4", name])
    return {line.split()[0] for line in out.output.splitlines() if line.strip()} if out.exit_code == 0 else set()


def fqdn(name, namespace):
    return f"{name}.{namespace}.svc.cluster.local"


def dashed(ip):
    return ip.replace(".", "-")


def test_the_dns_pod_is_on_another_node_than_the_client(lab):
    assert lab.cluster.node_of("kube-system/coredns") != lab.cluster.node_of("x/client")
    assert lab.exec("x/client", ["cat", "/etc/resolv.conf"]).output.split("\n") == [
        "search x.svc.cluster.local svc.cluster.local cluster.local", "nameserver 10.96.0.10", "options ndots:5", ""]


def test_a_short_name_resolves_in_the_pods_own_namespace(lab):
    vip = lab.service_ip("x/web")
    result = lab.probe("x/client", "web", 80)
    assert result.ok and result.answered_by in ("x/w1", "x/w2"), result
    assert short(lab, fqdn("web", "x")) == [vip]
    out = lab.exec("x/client", ["nslookup", "web"]).output
    assert "Name:\tweb.x.svc.cluster.local" in out and f"Address: {vip}" in out, out
    # the same short name means the other namespace's Service from a pod there
    assert getent(lab, "web", src="other/o1") == {lab.service_ip("other/web")}
    mine = lab.probe("other/o1", "web", 80)
    assert mine.ok and mine.answered_by == "other/o1", mine  # its own Service, back to itself


def test_other_namespaces_need_the_namespace_in_the_name(lab):
    result = lab.probe("x/client", "web.other", 80)
    assert result.ok and result.answered_by == "other/o1", result
    assert short(lab, fqdn("web", "other")) == [lab.service_ip("other/web")]
    assert getent(lab, "web.other") == {lab.service_ip("other/web")}
    back = lab.probe("other/o1", "web.x", 80)
    assert back.ok and back.answered_by in ("x/w1", "x/w2"), back


@pytest.mark.parametrize("name", ["web.x.svc", "web.x.svc.cluster.local", "web.x.svc.cluster.local.",
                                  "WEB.X.svc.Cluster.Local"])
def test_qualified_names_trailing_dot_and_case(lab, name):
    result = lab.probe("x/client", name, 80)
    assert result.ok and result.answered_by in ("x/w1", "x/w2") and result.matches_oracle, result
    assert getent(lab, name) == {lab.service_ip("x/web")}


def test_headless_service_answers_with_the_ready_pod_ips(lab):
    assert lab.service_ip("x/hl") is None
    assert not lab.cluster.is_ready("x/w3")
    observed = sorted(short(lab, fqdn("hl", "x")), key=ipaddress.IPv4Address)
    oracle = cluster_dns.lookup(lab.cluster, fqdn("hl", "x"))
    assert observed == oracle == sorted([lab.pod_ip("x/w1"), lab.pod_ip("x/w2")], key=ipaddress.IPv4Address)
    assert getent(lab, "hl") == set(oracle)
    answered = {lab.probe("x/client", "hl", 8080).answered_by for _ in range(6)}
    assert answered <= {"x/w1", "x/w2"} and None not in answered, answered
    assert "hl" not in lab.rules()  # DNS only: no VIP, no rules


def test_pod_records(lab):
    for ref in ("x/w1", "x/w2", "x/client", "other/o1"):
        ip = lab.pod_ip(ref)
        namespace = ref.split("/")[0]
        assert short(lab, f"{dashed(ip)}.{namespace}.pod.cluster.local") == [ip]
    ip = lab.pod_ip("x/w2")
    result = lab.probe("x/client", f"{dashed(ip)}.x.pod.cluster.local", 8080)
    assert result.ok and result.answered_by == "x/w2", result


def test_srv_records_for_named_ports(lab):
    target = "web.x.svc.cluster.local."
    assert dig(lab, "+short", "SRV", "_http._tcp.web.x.svc.cluster.local").split("\n")[0].split() == \
        ["0", "100", "80", target]
    assert short(lab, "SRV", "_sync._udp.web.x.svc.cluster.local") == ["0", "100", "5000", target]
    # headless: one record per ready endpoint, its port and its own name (w3 is not ready)
    observed = sorted(short(lab, "SRV", "_http._tcp.hl.x.svc.cluster.local")[3::4])
    assert observed == sorted(f"{dashed(lab.pod_ip(p))}.hl.x.svc.cluster.local." for p in ("x/w1", "x/w2"))
    assert short(lab, "SRV", "_http._udp.web.x.svc.cluster.local") == []  # wrong protocol: no record
    assert short(lab, "SRV", "+tcp", "_http._tcp.web.x.svc.cluster.local")[2] == "80"


@pytest.mark.parametrize("name", ["nope.x.svc.cluster.local", "web.nope.svc.cluster.local", "example.com",
                                  "web.x.pod.cluster.local", "10-1-2-300.x.pod.cluster.local"])
def test_unknown_names_are_nxdomain_at_once(lab, name):
    started = time.monotonic()
    assert status(lab, name) == "NXDOMAIN"
    assert time.monotonic() - started < 2.0


def test_a_probe_to_an_unknown_name_fails_with_nxdomain(lab):
    started = time.monotonic()
    result = lab.probe("x/client", "nope", 80, timeout=3)
    assert not result.ok and "NXDOMAIN" in (result.error or "") and result.matches_oracle, result
    assert time.monotonic() - started < 3.0, "NXDOMAIN must not wait for a timeout"
    expl = lab.explain("x/client", "nope", 80)
    assert not expl.allowed and "NXDOMAIN" in str(expl)
    assert getent(lab, "nope") == set()


def test_a_name_without_ipv6_records_is_nodata_not_nxdomain(lab):
    out = dig(lab, "AAAA", fqdn("web", "x"))
    assert "status: NOERROR" in out and "ANSWER: 0" in out, out


def test_dns_over_tcp(lab):
    assert short(lab, "+tcp", fqdn("web", "x")) == [lab.service_ip("x/web")]
    assert "(TCP)" in dig(lab, "+tcp", fqdn("web", "other"))
    assert sorted(short(lab, "+tcp", fqdn("hl", "x"))) == sorted([lab.pod_ip("x/w1"), lab.pod_ip("x/w2")])


def test_reverse_lookup_of_a_cluster_ip(lab):
    assert short(lab, "-x", lab.service_ip("x/web")) == ["web.x.svc.cluster.local."]


def test_reverse_lookups_of_pods_are_the_records_the_oracle_lists(lab):
    # an endpoint of a headless Service by its per-endpoint name; any other pod by its a-b-c-d.<ns>.pod name
    ptr = cluster_dns.records(lab.cluster).ptr
    for ref in ("x/client", "x/w1"):
        ip = lab.pod_ip(ref)
        assert short(lab, "-x", ip) == [ptr[ip] + "."], ref
    assert ptr[lab.pod_ip("x/client")] == f"{lab.pod_ip('x/client').replace('.', '-')}.x.pod.cluster.local"


def test_records_change_with_every_apply_before_it_returns(lab):
    lab.apply(service("x/fresh", {"app": "web"}, [{"name": "http", "port": 81, "targetPort": "http"}]))
    vip = lab.service_ip("x/fresh")
    try:
        assert short(lab, fqdn("fresh", "x")) == [vip]  # no sleep: the apply returned
        result = lab.probe("x/client", "fresh", 81)
        assert result.ok and result.answered_by in ("x/w1", "x/w2"), result
        assert short(lab, "SRV", "_http._tcp.fresh.x.svc.cluster.local")[2] == "81"
    finally:
        lab.delete("service", "fresh", namespace="x")
    assert status(lab, fqdn("fresh", "x")) == "NXDOMAIN"
    gone = lab.probe("x/client", "fresh", 81, timeout=3)
    assert not gone.ok and "NXDOMAIN" in gone.error, gone
    # a new namespace with a Service and a pod: names exist as soon as the apply returns
    lab.apply([ns("late"), pod("late/p", {"app": "late"}),
               service("late/svc", {"app": "late"}, [{"port": 80, "targetPort": 8080}])])
    try:
        assert short(lab, "svc.late.svc.cluster.local") == [lab.service_ip("late/svc")]
        assert short(lab, f"{dashed(lab.pod_ip('late/p'))}.late.pod.cluster.local") == [lab.pod_ip("late/p")]
        result = lab.probe("x/client", "svc.late", 80)
        assert result.ok and result.answered_by == "late/p", result
    finally:
        lab.delete("namespace", "late")
    assert status(lab, "svc.late.svc.cluster.local") == "NXDOMAIN"


NAMES = ["web", "web.x", "web.other", "web.other.svc", "web.x.svc.cluster.local", "web.x.svc.cluster.local.",
         "hl", "hl.x", "hl.other", "nope", "web.nope", "kube-dns.kube-system", "kube-dns", "WEB", "example.com",
         "x.svc.cluster.local"]


RESOLVE_ALL = """
for name in "$@"; do
  echo "== getent $name"; getent ahostsv4 "$name" | awk '{print $1}' | sort -u
  echo "== dig $name"; dig +time=2 +tries=1 +short +search "$name"
done
"""


def resolve_all(lab, names, src):
    """{(tool, name): set of IPv4 addresses} for every name, from one exec in ``src``."""
    out = lab.exec(src, ["sh", "-c", RESOLVE_ALL, "sh", *names])
    assert out.exit_code == 0, out.output
    found, key = {}, None
    for line in out.output.splitlines():
        if line.startswith("== "):
            tool, name = line[3:].split(" ", 1)
            key = (tool, name)
            found[key] = set()
        elif line.strip() and re.fullmatch(r"[0-9.]+", line.strip()):
            found[key].add(line.strip())
    return found


@pytest.mark.parametrize("src", ["x/client", "other/o1"])
def test_resolution_in_pods_equals_the_oracle(lab, src):
    namespace = src.split("/")[0]
    names = NAMES + [f"{dashed(lab.pod_ip(r))}.{r.split('/')[0]}.pod.cluster.local" for r in ("x/w1", "other/o1")]
    found = resolve_all(lab, names, src)
    for name in names:
        oracle = set(cluster_dns.resolve(lab.cluster, namespace, name).ips)
        assert found[("getent", name)] == oracle, f"glibc: {name!r} from {src}"
        assert found[("dig", name)] == oracle, f"dig +search {name!r} from {src}"


def test_pod_records_of_absent_pods_agree_with_the_oracle(lab):
    names = ["10-1-2-3.x.pod.cluster.local", f"{dashed(lab.pod_ip('x/w1'))}.other.pod.cluster.local"]
    for name in names:
        assert getent(lab, name) == set(cluster_dns.resolve(lab.cluster, "x", name).ips), name
    assert lab.probe("x/client", names[1], 8080).matches_oracle


def dns_log(lab) -> str:
    return lab.logs("kube-system/coredns")


def test_search_path_expansion_is_what_the_oracle_tries(lab):
    """With ndots:5 a pod tries every search suffix first; the DNS pod logs the queries in that order."""
    name = f"probe-{int(time.time() * 1000) % 100000}.example"
    assert getent(lab, name) == set()
    client_ip = lab.pod_ip("x/client")
    deadline = time.monotonic() + 5
    while True:
        log = dns_log(lab)
        asked = re.findall(rf"query\[A\] ({re.escape(name)}\S*) from {re.escape(client_ip)}", log)
        if len(asked) >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [a.rstrip(".") for a in asked[:4]] == services.candidates("x", name), log[-2000:]
