"""The source address a server sees (the oracle's client_ip, its JSON form), explanations that give
each reason once, and the kube-proxy trace read from either nft formatting."""
import json

import pytest

import labkit
from labkit.dataplane import svc_trace
from labkit.errors import ModelError
from labkit.results import ProbeResult
from labkit.semantics import oracle

WORLD = """
apiVersion: v1
kind: Namespace
metadata: {name: net}
---
apiVersion: v1
kind: Pod
metadata: {name: a1, namespace: net, labels: {app: web}}
spec: {nodeName: node-1, containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: a2, namespace: net, labels: {app: client}}
spec: {nodeName: node-1, containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b1, namespace: net, labels: {app: web}}
spec: {nodeName: node-2, containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: net}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 80, nodePort: 30080}]
"""


@pytest.fixture(scope="module")
def lab():
    with labkit.Lab("h1-cip", backend="sim", nodes=2) as lab:
        lab.apply(WORLD)
        yield lab


def seen(lab, src, dst, port=80):
    ex = oracle.explain(lab.cluster, src, oracle.resolve_destination(lab.cluster, dst), port, "TCP")
    return {(o.answered_by, o.client_ip) for o in ex.outcomes if o.allowed}


def test_pods_and_clusterips_keep_the_client_address(lab):
    a2 = lab.pod_ip("net/a2")
    assert seen(lab, "net/a2", "net/b1") == {("net/b1", a2)}
    assert seen(lab, "net/a2", "web") == {("net/a1", a2), ("net/b1", a2)}
    assert {r.client_ip for r in lab.sample("net/a2", "web.net", 80, count=10)} == {a2}


def test_hairpin_and_nodeport_are_masqueraded_to_the_node_address_on_the_way_out(lab):
    # a1 reaching itself through its Service: node-1 masquerades to its cni0 address
    assert seen(lab, "net/a1", "web") == {("net/a1", "10.244.1.1"), ("net/b1", lab.pod_ip("net/a1"))}
    # node-1 translates: to its own pod from cni0's address, to node-2's pod from its fabric address
    assert seen(lab, "internet", "198.18.0.1", 30080) == {("net/a1", "10.244.1.1"), ("net/b1", "198.18.0.1")}
    assert seen(lab, "internet", "198.18.0.2", 30080) == {("net/a1", "198.18.0.2"), ("net/b1", "10.244.2.1")}
    # pods reach the internet host from their node's address
    assert seen(lab, "net/a2", "203.0.113.10") == {("internet", "203.0.113.1")}
    assert seen(lab, "net/b1", "203.0.113.10") == {("internet", "198.18.0.2")}


def test_failed_probes_saw_no_client(lab):
    refused = lab.probe("net/a2", "net/b1", port=81)
    assert not refused.ok and refused.client_ip is None


def test_client_ip_crosses_json_and_an_older_form_without_it_still_reads(lab):
    result = lab.probe("net/a2", "net/b1")
    data = json.loads(json.dumps(result.to_dict()))
    assert data["client_ip"] == lab.pod_ip("net/a2") and ProbeResult.from_dict(data) == result
    del data["client_ip"]  # what a lab server of an older labkit sends
    assert ProbeResult.from_dict(data).client_ip is None
    with pytest.raises(ModelError, match="client_ip"):
        ProbeResult.from_dict({**result.to_dict(), "client_ip": 7})
    assert f"which saw the client as {lab.pod_ip('net/a2')}" in repr(result)
    ex = oracle.explain(lab.cluster, "net/a2", "web", 80)
    assert oracle.Explanation.from_dict(json.loads(json.dumps(ex.to_dict()))) == ex


def test_explain_gives_each_reason_once(lab):
    # two endpoints share the Service sentence and the client's egress sentence
    ex = lab.explain("net/a2", "web.net", port=80)
    assert len(ex.reasons) == len(set(ex.reasons)), ex.reasons
    assert sum("is Service net/web" in r for r in ex.reasons) == 1
    assert str(ex).count("no NetworkPolicy selects net/a2 for egress") <= 1
    outside = lab.explain("internet", "198.18.0.1", port=30080)
    assert len(outside.reasons) == len(set(outside.reasons)), outside.reasons
    assert oracle.Explanation("a", "b", 1, "TCP", True, ["x", "y", "x"]).reasons == ["x", "y"]


def test_trace_shows_dispatch_choice_dnat_and_masquerade(lab):
    trace = lab.trace_service("net/a2", "web", 80)
    assert [s.title.split(":")[0] for s in trace.steps] == ["dispatch", "endpoint choice", "DNAT"]
    assert trace.node == "node-1" and trace.service == "net/web"
    vip = lab.service_ip("net/web")
    assert f"svc-dispatch: {vip} . tcp . 80 : goto svc_net_web_tcp-80" in trace.lines
    assert any("numgen random mod 2" in line for line in trace.lines)
    assert any(f"dnat to {lab.pod_ip(trace.result.answered_by)}:80" in line for line in trace.lines)
    assert "KUBE-SVC" in repr(trace) and "endpoint-" in repr(trace) and "service-ips" in repr(trace)
    outside = lab.trace_service("internet", "198.18.0.1", 30080)
    assert outside.steps[0].lines[1] == "nodeport-dispatch: tcp . 30080 : goto ext_net_web_tcp-80"
    assert outside.steps[-1].title.startswith("masquerade (NodePort")
    assert any("masquerade" in line for line in outside.steps[-1].lines)
    assert "KUBE-MARK-MASQ" in outside.steps[-1].kube_proxy
    with pytest.raises(ModelError, match="not a Service"):
        lab.trace_service("net/a2", "nope", 80)


def test_trace_of_a_service_without_endpoints_shows_the_refusal():
    with labkit.Lab("h1-empty", backend="sim") as lab:
        lab.apply(WORLD.replace("nodeName: node-2", "nodeName: node-1").replace("selector: {app: web}", "selector: {app: gone}"))
        trace = lab.trace_service("net/a2", "web.net", 80)
        assert not trace.result.ok and trace.steps[0].title.startswith("no ready endpoint")
        assert f"svc-empty: {lab.service_ip('net/web')} . tcp . 80 : goto refuse" in trace.lines


KERNEL_LISTING = """table ip labkit-svc {
\tmap svc-dispatch {
\t\ttype ipv4_addr . inet_proto . inet_service : verdict
\t\telements = { 10.96.0.10 . udp . 53 : goto svc_kube-system_kube-dns_dns,
\t\t\t     10.96.0.20 . tcp . 80 : goto svc_net_web_tcp-80 }
\t}

\tchain want-masq {
\t\tmeta mark set meta mark | 0x00004000
\t}

\tchain dnat-in {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tip daddr . meta l4proto . th dport vmap @svc-dispatch
\t}

\tchain snat-out {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tmeta mark & 0x00004000 == 0x00004000 masquerade
\t}

\tchain svc_net_web_tcp-80 {
\t\tcomment "Service net/web port tcp-80 80/TCP"
\t\tgoto ep_net_web_tcp-80_10.244.1.3
\t}

\tchain ep_net_web_tcp-80_10.244.1.3 {
\t\tcomment "endpoint net/a1 10.244.1.3:80"
\t\tip saddr 10.244.1.3 jump want-masq
\t\tmeta l4proto tcp dnat to 10.244.1.3:80
\t}
}
"""


def test_the_kernel_listing_is_read_like_the_rendered_text(lab):
    """docker's ``nft list`` output (tabs, long marks): the same steps and lines."""
    result = ProbeResult(True, 1.0, "net/a1", None, False, "net/a2", "10.96.0.20", 80, "TCP",
                         client_ip="10.244.1.4")
    single = labkit.Lab("h1-one", backend="sim")
    try:
        single.apply(WORLD.replace("nodeName: node-2", "nodeName: node-1"))
        trace = svc_trace.trace(single.cluster, KERNEL_LISTING, "net/a2", "10.96.0.20", 80, "TCP", result)
    finally:
        single.close()
    assert trace.lines == ["dnat-in: ip daddr . meta l4proto . th dport vmap @svc-dispatch",
                           "svc-dispatch: 10.96.0.20 . tcp . 80 : goto svc_net_web_tcp-80",
                           'svc_net_web_tcp-80: comment "Service net/web port tcp-80 80/TCP"',
                           "svc_net_web_tcp-80: goto ep_net_web_tcp-80_10.244.1.3",
                           'ep_net_web_tcp-80_10.244.1.3: comment "endpoint net/a1 10.244.1.3:80"',
                           "ep_net_web_tcp-80_10.244.1.3: ip saddr 10.244.1.3 jump want-masq",
                           "ep_net_web_tcp-80_10.244.1.3: meta l4proto tcp dnat to 10.244.1.3:80"]


def test_trace_reads_in_a_notebook_without_scrolling_sideways(lab):
    """Titles, kube-proxy notes and the result wrap at about 100 columns; only rule lines may be longer."""
    for trace in (lab.trace_service("net/a2", "web", 80), lab.trace_service("internet", "198.18.0.1", 30080),
                  lab.trace_service("net/a1", "web", 80)):
        text = repr(trace)
        rules = {f"     {line}" for line in trace.lines}
        assert all(len(line) <= svc_trace.NOTE_WIDTH for line in text.splitlines() if line not in rules), text
        assert "KUBE-SVC-<hash>" in text and "mark-for-masquerade" in text  # nothing lost in the wrapping
        assert "white-space: pre-wrap" in trace._repr_html_()


def test_rules_keeps_one_table_when_asked(lab):
    every = lab.rules()
    services = lab.rules("ip labkit-svc")
    assert services == lab.rules("labkit-svc") == lab.rules(table=["ip labkit-svc"])
    assert services.count("table ip labkit-svc {") == 2 and "# node-1" in services and "# node-2" in services
    assert "labkit-pol" not in services and "labkit-guard" not in services and "add table" not in services
    assert services.startswith("# simulated")  # the banner stays
    node_1 = every.split("# node-2")[0]
    block = node_1[node_1.index("table ip labkit-svc {"):]
    assert block[:block.index("\n}\n") + 3] in services  # the table itself, unchanged
    both = lab.rules(["labkit-pol", "bridge labkit-guard"])
    assert "table inet labkit-pol {" in both and "table bridge labkit-guard {" in both and "labkit-svc" not in both
    with pytest.raises(ModelError, match=r"table='svc' .* 'ip labkit-svc', 'inet labkit-pol', 'bridge labkit-guard'"):
        lab.rules("svc")


def test_the_table_filter_reads_the_kernel_listing_too():
    from labkit.dataplane import rules_view
    listing = "# node-1\n" + KERNEL_LISTING + "table inet labkit-pol {\n\tchain forward {\n\t}\n}\n"
    assert rules_view.select(listing, rules_view.resolve("labkit-svc")) == "# node-1\n" + KERNEL_LISTING
