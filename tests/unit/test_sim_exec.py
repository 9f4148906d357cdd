"""``lab.exec`` on the sim backend: the teaching commands answered from the model.

The expected texts are the docker backend's real output (iproute2, bind9's nslookup and dig,
curl 7.88, labkit's serve), recorded from the lab image; only MAC addresses, interface
numbers and timings may differ.
"""
from __future__ import annotations

import random
import re

import pytest

import labkit
from labkit import ModelError
from labkit.runtime import sim_exec

HEADER = sim_exec.HEADER
WORLD = """
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec:
  containers:
  - name: app
    ports: [{containerPort: 80}]
  - name: side
    command: ["sleep", "infinity"]
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: b, tier: web}}
spec: {containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b2, namespace: x, labels: {app: b2, tier: web}}
spec: {containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: x, labels: {app: c}}
spec: {containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: d, namespace: x, labels: {app: d}}
spec: {containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: x}
spec:
  selector: {app: b}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: both, namespace: x}
spec:
  selector: {tier: web}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: hl, namespace: x}
spec:
  clusterIP: None
  selector: {tier: web}
  ports: [{port: 80}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: c-no-egress, namespace: x}
spec:
  podSelector: {matchLabels: {app: c}}
  policyTypes: [Egress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: d-only-from-a, namespace: x}
spec:
  podSelector: {matchLabels: {app: d}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}]
"""


@pytest.fixture(scope="module")
def lab():
    with labkit.Lab("simexec", backend="sim") as lab:
        lab.apply(WORLD)
        yield lab


def body(result) -> str:
    """The output without the simulated header (which must be there)."""
    first, _, rest = result.output.partition("\n")
    assert first == HEADER
    return rest


# ------------------------------------------------------------------ iproute2
def test_ip_addr_shows_lo_and_eth0_with_the_pod_ip(lab):
    ip = lab.pod_ip("x/a")
    result = lab.exec("x/a", ["ip", "addr"])
    assert result.exit_code == 0
    text = body(result)
    lines = text.splitlines()
    assert lines[0] == "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN group default qlen 1000"
    assert lines[1] == "    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00"
    assert lines[2] == "    inet 127.0.0.1/8 scope host lo"
    assert re.fullmatch(r"2: eth0@if\d+: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP "
                        r"group default ", lines[4])
    mac = "0a:58:" + ":".join(f"{int(o):02x}" for o in ip.split("."))
    assert lines[5] == f"    link/ether {mac} brd ff:ff:ff:ff:ff:ff link-netnsid 0"
    assert lines[6] == f"    inet {ip}/32 scope global eth0"
    assert lines[7] == "       valid_lft forever preferred_lft forever"
    assert len(lines) == 8 and text.endswith("\n")


def test_ip_addr_is_stable_and_differs_between_pods(lab):
    first, again = lab.exec("x/a", ["ip", "addr"]).output, lab.exec("x/a", ["ip", "addr"]).output
    assert first == again
    mac = re.search(r"link/ether (\S+)", first).group(1)
    assert mac not in lab.exec("x/b", ["ip", "addr"]).output
    assert int(mac.split(":")[0], 16) & 0b11 == 0b10  # locally administered, unicast


def test_ip_dash4_addr_omits_link_lines(lab):
    text = body(lab.exec("x/a", ["ip", "-4", "addr"]))
    assert "link/" not in text
    assert re.search(r"^2: eth0@if\d+: .* state UP group default  link-netnsid 0$", text, re.M)
    assert f"inet {lab.pod_ip('x/a')}/32 scope global eth0" in text and "inet 127.0.0.1/8 scope host lo" in text


@pytest.mark.parametrize("argv", [["ip", "addr", "show", "eth0"], ["ip", "addr", "show", "dev", "eth0"],
                                  ["ip", "a", "show", "eth0"], ["ip", "-4", "a", "show", "dev", "eth0"]])
def test_ip_addr_show_eth0_only(lab, argv):
    text = body(lab.exec("x/a", argv))
    assert text.startswith("2: eth0@if") and " lo:" not in text and f"inet {lab.pod_ip('x/a')}/32" in text


def test_ip_addr_needs_show_before_a_device_like_iproute2(lab):
    result = lab.exec("x/a", ["ip", "address", "eth0"])
    assert result.exit_code == 255 and body(result) == 'Command "eth0" is unknown, try "ip address help".\n'


def test_ip_addr_show_lo_and_a_missing_device(lab):
    assert body(lab.exec("x/a", ["ip", "addr", "show", "lo"])).startswith("1: lo:")
    missing = lab.exec("x/a", ["ip", "addr", "show", "eth1"])
    assert missing.exit_code == 1 and body(missing) == 'Device "eth1" does not exist.\n'


def test_ip_link(lab):
    text = body(lab.exec("x/a", ["ip", "link"]))
    assert "state UNKNOWN mode DEFAULT group default qlen 1000" in text and "inet" not in text
    assert re.search(r"^2: eth0@if\d+: .* state UP mode DEFAULT group default $", text, re.M)


TWO_NODES = """
apiVersion: v1
kind: Namespace
metadata: {name: net}
---
apiVersion: v1
kind: Pod
metadata: {name: a1, namespace: net}
spec: {nodeName: node-1, containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: a2, namespace: net}
spec: {nodeName: node-1, containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b1, namespace: net}
spec: {nodeName: node-2, containers: [{name: app, ports: [{containerPort: 80}]}]}
"""


def test_eth0_at_if_n_is_the_pods_port_on_its_node():
    """``eth0@ifN`` in a pod is the number of that pod's ``lkp…`` line in ``ip link show master cni0``
    (and in ``bridge link``) on its node, as on the docker backend (a1: 7, after coredns's 6)."""
    with labkit.Lab("h7-ifn", backend="sim", nodes=2) as lab:
        lab.apply(TWO_NODES)
        seen = {}
        for pod, node in (("net/a1", "node-1"), ("net/a2", "node-1"), ("net/b1", "node-2"),
                          ("kube-system/coredns", "node-1")):
            peer = int(re.search(r"^2: eth0@if(\d+):", body(lab.exec(pod, ["ip", "addr", "show", "eth0"])),
                                 re.M).group(1))
            port = "lkp" + "".join(f"{int(o):02x}" for o in lab.pod_ip(pod).split("."))
            for view in (["ip", "link", "show", "master", "cni0"], ["bridge", "link"]):
                ports = re.findall(r"^(\d+): (lkp\w+)@", lab.exec_node(node, view).output, re.M)
                assert (str(peer), port) in ports, (pod, view, peer, ports)
            seen[pod] = peer
        assert seen == {"kube-system/coredns": 6, "net/a1": 7, "net/a2": 8, "net/b1": 4}


def test_ip_neigh_holds_only_the_gateway(lab):
    assert body(lab.exec("x/a", ["ip", "neigh"])) == "10.244.1.1 dev eth0 lladdr 0a:58:0a:f4:01:01 REACHABLE \n"


def test_ip_route_sends_everything_through_the_nodes_gateway(lab):
    result = lab.exec("x/a", ["ip", "route"])
    assert result.exit_code == 0
    assert body(result) == "default via 10.244.1.1 dev eth0 \n10.244.1.1 dev eth0 scope link \n"
    assert body(lab.exec("x/a", ["ip", "r"])) == body(result) == body(lab.exec("x/a", ["ip", "route", "show"]))


def test_ip_route_on_the_second_node():
    with labkit.Lab("simexec2", backend="sim", nodes=2) as lab:
        lab.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "far"},
                   "spec": {"nodeName": "node-2", "containers": [{"name": "app"}]}})
        ip = lab.pod_ip("far")
        assert ip.startswith("10.244.2.")
        assert body(lab.exec("far", ["ip", "route"])) == "default via 10.244.2.1 dev eth0 \n10.244.2.1 dev eth0 scope link \n"
        assert f"inet {ip}/32 scope global eth0" in lab.exec("far", ["ip", "addr"]).output


# ------------------------------------------------------------------ identity and resolver
def test_hostname_is_the_pod_name_in_every_container(lab):
    assert body(lab.exec("x/a", ["hostname"])) == "a\n"
    assert body(lab.exec("x/a", ["hostname"], container="side")) == "a\n"
    assert lab.exec("x/a", ["ip", "addr"], container="side").output == lab.exec("x/a", ["ip", "addr"]).output


def test_an_unknown_container_is_an_error_like_on_docker(lab):
    with pytest.raises(ModelError, match="no container 'nope'"):
        lab.exec("x/a", ["hostname"], container="nope")


def test_resolv_conf(lab):
    result = lab.exec("x/a", ["cat", "/etc/resolv.conf"])
    assert result.exit_code == 0
    assert body(result) == ("search x.svc.cluster.local svc.cluster.local cluster.local\n"
                            "nameserver 10.96.0.10\noptions ndots:5\n")


# ------------------------------------------------------------------ nslookup
NSLOOKUP_HEAD = "Server:\t\t10.96.0.10\nAddress:\t10.96.0.10#53\n\n"


@pytest.mark.parametrize("name", ["web", "web.x", "web.x.svc.cluster.local", "web.x.svc.cluster.local."])
def test_nslookup_a_service(lab, name):
    result = lab.exec("x/a", ["nslookup", name])
    assert result.exit_code == 0
    assert body(result) == NSLOOKUP_HEAD + f"Name:\tweb.x.svc.cluster.local\nAddress: {lab.service_ip('x/web')}\n\n"


def test_nslookup_nxdomain(lab):
    result = lab.exec("x/a", ["nslookup", "nope"])
    assert result.exit_code == 1
    assert body(result) == NSLOOKUP_HEAD + "** server can't find nope: NXDOMAIN\n\n"


def test_nslookup_a_headless_service_lists_the_pods(lab):
    text = body(lab.exec("x/a", ["nslookup", "hl"]))
    ips = sorted([lab.pod_ip("x/b"), lab.pod_ip("x/b2")])
    assert text == NSLOOKUP_HEAD + "".join(f"Name:\thl.x.svc.cluster.local\nAddress: {ip}\n" for ip in ips) + "\n"


def test_nslookup_reverse_lookup_is_nxdomain(lab):
    result = lab.exec("x/a", ["nslookup", "203.0.113.10"])
    assert result.exit_code == 1 and body(result) == "** server can't find 10.113.0.203.in-addr.arpa: NXDOMAIN\n\n"


def test_nslookup_when_egress_blocks_dns(lab):
    result = lab.exec("x/c", ["nslookup", "web"])
    assert result.exit_code == 1
    assert body(result) == ";; communications error to 10.96.0.10#53: timed out\n" * 3 + \
        ";; no servers could be reached\n\n"
    quick = lab.exec("x/c", ["nslookup", "-timeout=1", "-retry=0", "web"])
    assert body(quick) == (";; communications error to 10.96.0.10#53: timed out\n"
                           ";; no servers could be reached\n\n")


# ------------------------------------------------------------------ dig
def test_dig_short(lab):
    vip = lab.service_ip("x/web")
    assert body(lab.exec("x/a", ["dig", "+short", "web.x.svc.cluster.local"])) == f"{vip}\n"
    # like the real dig: no search list unless asked, so a short name is a miss (and exit 0)
    plain = lab.exec("x/a", ["dig", "+short", "web"])
    assert plain.exit_code == 0 and body(plain) == ""
    assert body(lab.exec("x/a", ["dig", "+short", "+search", "web"])) == f"{vip}\n"
    nx = lab.exec("x/a", ["dig", "+short", "nope.x.svc.cluster.local"])
    assert nx.exit_code == 0 and body(nx) == ""


def test_dig_short_headless(lab):
    ips = sorted([lab.pod_ip("x/b"), lab.pod_ip("x/b2")])
    assert body(lab.exec("x/a", ["dig", "+short", "hl.x.svc.cluster.local"])).split() == ips


def test_dig_when_egress_blocks_dns(lab):
    result = lab.exec("x/c", ["dig", "+short", "+time=1", "+tries=1", "web.x.svc.cluster.local"])
    assert result.exit_code == 9
    assert body(result) == ";; communications error to 10.96.0.10#53: timed out\n;; no servers could be reached\n"


def test_full_dig_output_is_not_simulated(lab):
    assert lab.exec("x/a", ["dig", "web.x.svc.cluster.local"]).exit_code == 127


# ------------------------------------------------------------------ curl
def test_curl_a_service_answers_like_the_default_app(lab):
    result = lab.exec("x/a", ["curl", "-s", "http://web/"])
    assert result.exit_code == 0 and body(result) == "x/b\n"
    assert body(lab.exec("x/a", ["curl", "-s", "http://web.x.svc.cluster.local:80/index.html"])) == "x/b\n"
    assert body(lab.exec("x/a", ["curl", "-s", f"http://{lab.pod_ip('x/b')}/"])) == "x/b\n"


def test_curl_spreads_over_a_services_endpoints(lab):
    seen = {body(lab.exec("x/a", ["curl", "-s", "http://both/"])) for _ in range(40)}
    assert seen == {"x/b\n", "x/b2\n"}


def test_curl_the_internet_host(lab):
    assert body(lab.exec("x/a", ["curl", "-s", "http://203.0.113.10/"])) == "internet\n"
    assert body(lab.exec("x/a", ["curl", "-s", "http://203.0.113.10:443/"])) == "internet\n"


def test_curl_unknown_host(lab):
    silent = lab.exec("x/a", ["curl", "-s", "http://nope/"])
    assert silent.exit_code == 6 and body(silent) == ""
    loud = lab.exec("x/a", ["curl", "-sS", "http://nope/"])
    assert loud.exit_code == 6 and body(loud) == "curl: (6) Could not resolve host: nope\n"
    assert body(lab.exec("x/a", ["curl", "http://nope/"])) == "curl: (6) Could not resolve host: nope\n"


def test_curl_refused(lab):
    result = lab.exec("x/a", ["curl", "-sS", "http://web:81/"])
    assert result.exit_code == 7
    assert body(result) == "curl: (7) Failed to connect to web port 81 after 0 ms: Couldn't connect to server\n"
    assert lab.exec("x/a", ["curl", "-s", "http://web:81/"]).exit_code == 7


def test_curl_dropped_by_a_policy_times_out(lab):
    target = lab.pod_ip("x/d")
    assert lab.exec("x/a", ["curl", "-s", f"http://{target}/"]).exit_code == 0  # a is allowed in
    result = lab.exec("x/b", ["curl", "-sS", "-m", "2", f"http://{target}/"])
    assert result.exit_code == 28 and body(result) == "curl: (28) Connection timed out after 2001 milliseconds\n"
    result = lab.exec("x/b", ["curl", "-sS", "--connect-timeout", "3", f"http://{target}/"])
    assert result.exit_code == 28
    assert body(result) == f"curl: (28) Failed to connect to {target} port 80 after 3001 ms: Timeout was reached\n"
    assert lab.exec("x/b", ["curl", "-sS", f"http://{target}/"]).exit_code == 28


def test_curl_when_egress_blocks_dns(lab):
    quick = lab.exec("x/c", ["curl", "-sS", "-m", "2", "http://web/"])
    assert quick.exit_code == 28 and body(quick) == "curl: (28) Resolving timed out after 2000 milliseconds\n"
    slow = lab.exec("x/c", ["curl", "-sS", "http://web/"])
    assert slow.exit_code == 6 and body(slow) == "curl: (6) Could not resolve host: web\n"


def test_curl_localhost_is_the_pod_itself_from_any_container(lab):
    assert body(lab.exec("x/a", ["curl", "-s", "http://localhost/"], container="side")) == "x/a\n"
    assert body(lab.exec("x/b", ["curl", "-s", "http://127.0.0.1:80/"])) == "x/b\n"
    refused = lab.exec("x/a", ["curl", "-sS", "http://localhost:8080/"])
    assert refused.exit_code == 7 and "Failed to connect to localhost port 8080" in refused.output


def test_curl_agrees_with_probes(lab):
    for src in ("x/a", "x/b", "x/c"):
        for dst in ("x/a", "x/b", "x/d"):
            probe = lab.probe(src, dst, port=80)
            curl = lab.exec(src, ["curl", "-s", "-m", "1", f"http://{lab.pod_ip(dst)}/"])
            assert (curl.exit_code == 0) is probe.ok, (src, dst)


# ------------------------------------------------------------------ everything else
@pytest.mark.parametrize("argv", [["ps"], ["mkdir", "/tmp/ready"], ["ip", "-6", "addr"], ["ip", "neigh", "flush", "all"],
                                  ["getent", "passwd"], ["curl", "https://web/"], ["curl", "-v", "http://web/"],
                                  ["nslookup", "web", "8.8.8.8"], ["hostname", "-A"], []])
def test_anything_else_exits_127_and_names_the_docker_backend(lab, argv):
    result = lab.exec("x/a", argv)
    assert result.exit_code == 127 and not result.ok
    first = result.output.splitlines()[0]
    assert first.startswith("# simulated by labkit's sim backend") and "cannot run" in first
    assert 'backend="docker"' in result.output and "ip addr" in result.output


def test_run_directly_on_a_cluster(lab):
    result = sim_exec.run(lab.cluster, "x/a", ["hostname"], None, random.Random(1))
    assert result.output == f"{HEADER}\na\n"
    assert sim_exec.run(lab.cluster, "x/a", ["hostname"]).exit_code == 0


# ------------------------------------------------------------------ names: hosts file, resolvers, SRV, CNAME
NAMES = WORLD + """
---
apiVersion: v1
kind: Pod
metadata: {name: s0, namespace: x, labels: {set: s}}
spec:
  hostname: web-0
  subdomain: set
  containers: [{name: app, ports: [{containerPort: 8080, name: http}]}]
---
apiVersion: v1
kind: Service
metadata: {name: set, namespace: x}
spec:
  clusterIP: None
  selector: {set: s}
  ports: [{port: 80, targetPort: http, name: http}]
---
apiVersion: v1
kind: Service
metadata: {name: alias, namespace: x}
spec: {type: ExternalName, externalName: web.x.svc.cluster.local}
---
apiVersion: v1
kind: Service
metadata: {name: out, namespace: x}
spec: {type: ExternalName, externalName: example.com}
---
apiVersion: v1
kind: Pod
metadata: {name: dflt, namespace: x}
spec: {dnsPolicy: Default, containers: [{name: app}]}
---
apiVersion: v1
kind: Pod
metadata: {name: far, namespace: x}
spec:
  dnsPolicy: None
  dnsConfig: {nameservers: [198.18.0.53], searches: [x.svc.cluster.local]}
  containers: [{name: app}]
"""


@pytest.fixture(scope="module")
def names_lab():
    with labkit.Lab("simnames", backend="sim") as lab:
        lab.apply(NAMES)
        yield lab


def test_hostname_and_hosts_file_follow_hostname_and_subdomain(names_lab):
    ip = names_lab.pod_ip("x/s0")
    assert body(names_lab.exec("x/s0", ["hostname"])) == "web-0\n"
    assert body(names_lab.exec("x/s0", ["hostname", "-i"])) == f"{ip}\n"
    assert body(names_lab.exec("x/s0", ["hostname", "-f"])) == "web-0.set.x.svc.cluster.local\n"
    hosts = body(names_lab.exec("x/s0", ["cat", "/etc/hosts"]))
    assert hosts.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n")
    assert hosts.endswith(f"{ip}\tweb-0.set.x.svc.cluster.local\tweb-0\n")
    assert body(names_lab.exec("x/a", ["cat", "/etc/hosts"])).endswith(f"{names_lab.pod_ip('x/a')}\ta\n")


def test_getent_hosts_reads_the_hosts_file_then_dns(names_lab):
    ip = names_lab.pod_ip("x/s0")
    line = f"{ip:<15} web-0.set.x.svc.cluster.local web-0\n"
    assert body(names_lab.exec("x/s0", ["getent", "hosts", "web-0"])) == line
    assert body(names_lab.exec("x/s0", ["getent", "hosts", "localhost"])) == (
        "::1             localhost ip6-localhost ip6-loopback\n")
    vip = names_lab.service_ip("x/web")
    assert body(names_lab.exec("x/a", ["getent", "hosts", "web"])) == f"{vip:<15} web.x.svc.cluster.local\n"
    assert body(names_lab.exec("x/a", ["getent", "hosts", "alias"])) == (
        f"{vip:<15} web.x.svc.cluster.local alias.x.svc.cluster.local\n")
    missing = names_lab.exec("x/a", ["getent", "hosts", "nope"])
    assert missing.exit_code == 2 and body(missing) == ""
    # from another pod, web-0 is a DNS name only through the headless Service
    assert names_lab.exec("x/a", ["getent", "hosts", "web-0"]).exit_code == 2
    assert body(names_lab.exec("x/a", ["getent", "hosts", "web-0.set"])) == f"{ip:<15} web-0.set.x.svc.cluster.local\n"


def test_resolv_conf_follows_dns_policy(names_lab):
    assert body(names_lab.exec("x/dflt", ["cat", "/etc/resolv.conf"])) == ""
    assert body(names_lab.exec("x/far", ["cat", "/etc/resolv.conf"])) == (
        "search x.svc.cluster.local\nnameserver 198.18.0.53\n")


def test_a_pod_without_cluster_dns_cannot_resolve(names_lab):
    far = names_lab.exec("x/far", ["nslookup", "-timeout=1", "-retry=0", "web"])
    assert far.exit_code == 1
    assert body(far) == ";; communications error to 198.18.0.53#53: timed out\n;; no servers could be reached\n\n"
    dflt = names_lab.exec("x/dflt", ["dig", "+short", "web.x.svc.cluster.local"])
    assert dflt.exit_code == 9 and "127.0.0.1#53: connection refused" in body(dflt)
    assert names_lab.exec("x/dflt", ["getent", "hosts", "web.x.svc.cluster.local"]).exit_code == 2
    curl = names_lab.exec("x/dflt", ["curl", "-sS", "http://web.x/"])
    assert curl.exit_code == 6 and "Could not resolve host: web.x" in body(curl)
    # its own name still resolves, from /etc/hosts
    assert names_lab.exec("x/dflt", ["getent", "hosts", "dflt"]).exit_code == 0


def test_headless_srv_names_each_endpoint_with_its_port(names_lab):
    srv = body(names_lab.exec("x/a", ["dig", "+short", "SRV", "_http._tcp.set.x.svc.cluster.local"]))
    assert srv == "0 100 8080 web-0.set.x.svc.cluster.local.\n"
    ns = body(names_lab.exec("x/a", ["nslookup", "-type=SRV", "_http._tcp.set"]))
    assert ns == NSLOOKUP_HEAD + ("_http._tcp.set.x.svc.cluster.local\tservice = 0 100 8080 "
                                  "web-0.set.x.svc.cluster.local.\n\n")
    ip = names_lab.pod_ip("x/s0")
    assert body(names_lab.exec("x/a", ["dig", "+short", "web-0.set.x.svc.cluster.local"])) == f"{ip}\n"


def test_external_name_prints_the_cname_first(names_lab):
    vip = names_lab.service_ip("x/web")
    assert body(names_lab.exec("x/a", ["dig", "+short", "alias.x.svc.cluster.local"])) == (
        f"web.x.svc.cluster.local.\n{vip}\n")
    assert body(names_lab.exec("x/a", ["dig", "+short", "out.x.svc.cluster.local"])) == "example.com.\n"
    ns = names_lab.exec("x/a", ["nslookup", "alias"])
    assert ns.exit_code == 0 and body(ns) == NSLOOKUP_HEAD + (
        "alias.x.svc.cluster.local\tcanonical name = web.x.svc.cluster.local.\n"
        f"Name:\tweb.x.svc.cluster.local\nAddress: {vip}\n\n")
    assert names_lab.exec("x/a", ["nslookup", "out"]).exit_code == 1
    assert body(names_lab.exec("x/a", ["curl", "-s", "http://alias/"])) == "x/b\n"


def test_kubernetes_default_resolves_and_refuses(names_lab):
    assert body(names_lab.exec("x/a", ["dig", "+short", "+search", "kubernetes.default"])) == "10.96.0.1\n"
    refused = names_lab.exec("x/a", ["curl", "-sS", "http://kubernetes.default:443/"])
    assert refused.exit_code == 7
    ptr = names_lab.exec("x/a", ["nslookup", "10.96.0.1"])
    assert body(ptr) == "1.0.96.10.in-addr.arpa\tname = kubernetes.default.svc.cluster.local.\n\n"
