"""Packet captures without a Docker engine: reading pcap files built with dpkt (Ethernet, Linux cooked
v1 and v2, TCP flags, UDP, DNS, ICMP, ARP), the bounds of ``lab.capture`` (each error names its
field), and what the sim backend's captures show for an answered, a dropped and a DNS-name probe.
The node agent's half of the stream protocol (whole records, checked request) runs here too."""
from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import dpkt
import pytest

import labkit
from labkit import ModelError, NotFound
from labkit.node import capture as agent
from labkit.node.errors import NodeError
from labkit.probe import pcap

A, B, GW, SVC = "10.244.1.3", "10.244.1.4", "10.244.1.1", "10.96.0.10"
MAC_A, MAC_GW = b"\x0a\x58\x0a\xf4\x01\x03", b"\x0a\x58\x0a\xf4\x01\x01"


def _ip(src: str, dst: str, segment, proto: int):
    return dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=proto, ttl=64, data=segment)


def _tcp(src, sport, dst, dport, flags, data=b""):
    return _ip(src, dst, dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, seq=7, win=512, data=data), 6)


def _udp(src, sport, dst, dport, data):
    return _ip(src, dst, dpkt.udp.UDP(sport=sport, dport=dport, data=data), 17)


def _eth(ip) -> bytes:
    return bytes(dpkt.ethernet.Ethernet(src=MAC_A, dst=MAC_GW, type=dpkt.ethernet.ETH_TYPE_IP, data=ip))


def _pcap(frames: list[bytes], linktype: int = dpkt.pcap.DLT_EN10MB, start: float = 1000.0) -> bytes:
    out = io.BytesIO()
    writer = dpkt.pcap.Writer(out, snaplen=65535, linktype=linktype)
    for i, frame in enumerate(frames):
        writer.writepkt(frame, ts=start + i * 0.25)
    return out.getvalue()


def _dns_query(name: str, qid: int = 9) -> bytes:
    return bytes(dpkt.dns.DNS(id=qid, qd=[dpkt.dns.DNS.Q(name=name, type=1, cls=1)]))


def _dns_answer(name: str, ips: list[str], rcode: int = 0, qid: int = 9) -> bytes:
    msg = dpkt.dns.DNS(id=qid, qd=[dpkt.dns.DNS.Q(name=name, type=1, cls=1)],
                       an=[dpkt.dns.DNS.RR(name=name, type=1, cls=1, ttl=5, rdata=socket.inet_aton(ip)) for ip in ips])
    msg.qr, msg.rcode = dpkt.dns.DNS_R, rcode
    return bytes(msg)


# ------------------------------------------------------------------ reading pcap files
def test_ethernet_tcp_flags_payload_times_and_names():
    frames = [_eth(_tcp(A, 40000, B, 80, dpkt.tcp.TH_SYN)),
              _eth(_tcp(B, 80, A, 40000, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK)),
              _eth(_tcp(A, 40000, B, 80, dpkt.tcp.TH_ACK)),
              _eth(_tcp(A, 40000, B, 80, dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK, b"probe\n")),
              _eth(_tcp(B, 80, A, 40000, dpkt.tcp.TH_RST | dpkt.tcp.TH_ACK)),
              _eth(_tcp(A, 40000, B, 80, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK))]
    rows = pcap.parse(_pcap(frames), started=999.5, names={A: "x/a", B: "x/b"})
    assert [r.summary for r in rows] == ["SYN", "SYN,ACK", "ACK", 'PSH,ACK 6 bytes "probe"', "RST,ACK", "FIN,ACK"]
    assert (rows[0].src, rows[0].dst, rows[0].protocol) == (f"{A}:40000", f"{B}:80", "TCP")
    assert (rows[1].src, rows[1].dst) == (f"{B}:80", f"{A}:40000")
    assert [r.time for r in rows[:2]] == [0.5, 0.75]  # seconds since the capture began
    assert rows[0].who == "x/a -> x/b" and rows[0].length == len(frames[0])
    assert rows[0].ports == (40000, 80) and not rows[0].simulated and rows[0].interface == ""


def test_udp_dns_query_answer_and_nxdomain():
    name = "web.x.svc.cluster.local"
    frames = [_eth(_udp(A, 5353, SVC, 53, _dns_query(name))),
              _eth(_udp(SVC, 53, A, 5353, _dns_answer(name, ["10.96.0.20"]))),
              _eth(_udp(SVC, 53, A, 5353, _dns_answer("nope.x.svc.cluster.local", [], rcode=3))),
              _eth(_udp(A, 41000, B, 5000, b"probe\n")),
              _eth(_udp(A, 41001, B, 53, b"\x00\x01 not dns"))]
    rows = pcap.parse(_pcap(frames))
    assert [(r.protocol, r.summary) for r in rows[:3]] == [
        ("DNS", f"DNS query A {name}"), ("DNS", f"DNS answer {name} A 10.96.0.20"),
        ("DNS", "DNS answer nope.x.svc.cluster.local NXDOMAIN")]
    assert (rows[3].protocol, rows[3].summary, rows[3].dst) == ("UDP", '6 bytes "probe"', f"{B}:5000")
    assert rows[4].protocol == "UDP"  # port 53 but not DNS: read as plain UDP
    assert pcap.where(rows, protocol="dns") == rows[:3] and pcap.where(rows, port=5000) == [rows[3]]


def test_icmp_echo_and_port_unreachable_quote_the_datagram():
    echo = dpkt.icmp.ICMP(type=8, data=dpkt.icmp.ICMP.Echo(id=3, seq=1, data=b"x" * 8))
    reply = dpkt.icmp.ICMP(type=0, data=dpkt.icmp.ICMP.Echo(id=3, seq=1, data=b"x" * 8))
    quoted = bytes(_udp(A, 41000, B, 5001, b"probe\n"))
    unreach = dpkt.icmp.ICMP(type=3, code=3, data=dpkt.icmp.ICMP.Unreach(data=quoted))
    rows = pcap.parse(_pcap([_eth(_ip(A, B, echo, 1)), _eth(_ip(B, A, reply, 1)), _eth(_ip(B, A, unreach, 1))]))
    assert [r.summary for r in rows] == [
        "ICMP echo request id 3 seq 1", "ICMP echo reply id 3 seq 1",
        f"ICMP port unreachable (for UDP {A}:41000 > {B}:5001)"]
    assert {(r.protocol, r.src) for r in rows[1:]} == {("ICMP", B)}


def test_arp_request_and_reply():
    ask = dpkt.arp.ARP(op=1, sha=MAC_A, spa=socket.inet_aton(A), tha=b"\0" * 6, tpa=socket.inet_aton(GW))
    tell = dpkt.arp.ARP(op=2, sha=MAC_GW, spa=socket.inet_aton(GW), tha=MAC_A, tpa=socket.inet_aton(A))
    frames = [bytes(dpkt.ethernet.Ethernet(src=MAC_A, dst=b"\xff" * 6, type=dpkt.ethernet.ETH_TYPE_ARP, data=ask)),
              bytes(dpkt.ethernet.Ethernet(src=MAC_GW, dst=MAC_A, type=dpkt.ethernet.ETH_TYPE_ARP, data=tell))]
    rows = pcap.parse(_pcap(frames))
    assert [(r.protocol, r.summary) for r in rows] == [
        ("ARP", f"ARP who-has {GW} tell {A}"), ("ARP", f"ARP {GW} is-at 0a:58:0a:f4:01:01")]


def test_linux_cooked_v1_and_v2_frames_of_a_node():
    syn = _tcp(A, 40000, B, 80, dpkt.tcp.TH_SYN)
    v1 = bytes(dpkt.sll.SLL(type=4, ethtype=dpkt.ethernet.ETH_TYPE_IP, data=syn))
    rows = pcap.parse(_pcap([v1], linktype=dpkt.pcap.DLT_LINUX_SLL))
    assert (rows[0].summary, rows[0].src, rows[0].interface) == ("SYN", f"{A}:40000", "out")
    v2 = [bytes(dpkt.sll2.SLL2(ethtype=dpkt.ethernet.ETH_TYPE_IP, intindex=7, type=0, data=syn)),
          bytes(dpkt.sll2.SLL2(ethtype=dpkt.ethernet.ETH_TYPE_IP, intindex=3, type=4, data=syn))]
    rows = pcap.parse(_pcap(v2, linktype=pcap.DLT_LINUX_SLL2), interfaces={3: "cni0"})
    assert [(r.summary, r.dst, r.interface) for r in rows] == [("SYN", f"{B}:80", "if7 in"),
                                                               ("SYN", f"{B}:80", "cni0 out")]


def test_empty_truncated_and_foreign_files():
    assert pcap.parse(b"") == []
    assert pcap.parse(_pcap([])) == []  # a capture that saw nothing: the file header only
    whole = _pcap([_eth(_tcp(A, 1, B, 2, dpkt.tcp.TH_SYN))] * 2)
    rows = pcap.parse(whole[:-5])  # a record cut short at the end: the rows before it stand, it says so
    assert [r.summary for r in rows] == ["SYN", "cut short: 15 bytes of its TCP header and data"]
    with pytest.raises(pcap.PcapError, match="not a pcap file"):
        pcap.parse(b"<html>not a capture, certainly not</html>")


def test_address_names_cover_pods_services_nodes_and_the_internet(lab):
    names = pcap.address_names(lab.cluster)
    assert names[lab.pod_ip("x/a")] == "x/a" and names[SVC] == "Service kube-system/kube-dns"
    assert names[lab.service_ip("x/web")] == "Service x/web"
    assert names["198.18.0.1"] == names["10.244.1.1"] == "node-1" and names["203.0.113.10"] == "internet"


# ------------------------------------------------------------------ bounds
WORLD = """
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec: {containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: b}}
spec: {containers: [{name: app, ports: [{containerPort: 8080}, {containerPort: 5000, protocol: UDP}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: x}
spec: {selector: {app: b}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: only-a, namespace: x}
spec: {podSelector: {matchLabels: {app: a}}, policyTypes: [Ingress]}
"""


@pytest.fixture
def lab(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # captures/ is made in the current directory
    with labkit.Lab("cap", backend="sim") as lab:
        lab.apply(WORLD)
        yield lab


@pytest.mark.parametrize("kwargs, path", [
    ({"seconds": 0}, "seconds"), ({"seconds": 601}, "seconds"), ({"seconds": "5"}, "seconds"),
    ({"count": 0}, "count"), ({"count": 100_001}, "count"), ({"count": 2.5}, "count"), ({"count": True}, "count"),
    ({"max_bytes": 1023}, "max_bytes"), ({"max_bytes": 64 * 2**20 + 1}, "max_bytes"),
    ({"filter": 80}, "filter"), ({"filter": "tcp\nport 80"}, "filter"), ({"filter": "tcp prot 80"}, "filter"),
    ({"path": 3}, "path"),
])
def test_bad_bounds_name_the_field_and_start_nothing(lab, kwargs, path):
    with pytest.raises(ModelError) as err:
        lab.capture("x/b", **kwargs)
    assert err.value.path == path
    assert not list(Path("captures").glob("*.pcap"))  # no file is left for a capture that never started


def test_bounds_at_their_limits_are_accepted(lab):
    for cap in (lab.capture("x/b", seconds=600, count=100_000, max_bytes=64 * 2**20),
                lab.capture("x/b", seconds=0.01, count=1, max_bytes=1024)):
        assert cap.stop().reason in ("stopped", "time")


def test_unknown_targets_are_not_found(lab):
    for target in ("x/nope", "node-2", "nope"):
        with pytest.raises(NotFound):
            lab.capture(target)
    with pytest.raises(ModelError) as err:
        lab.capture(None)
    assert err.value.path == "target"


# ------------------------------------------------------------------ the sim backend's packets
def test_sim_capture_of_an_answered_tcp_probe(lab):
    a, b = lab.pod_ip("x/a"), lab.pod_ip("x/b")
    with lab.capture("x/b", seconds=30) as cap:
        assert cap.running and cap.simulated
        lab.probe("x/a", "x/b", port=8080)
    assert cap.reason == "stopped" and not cap.running
    rows = cap.rows
    client = rows[0].src
    assert client.startswith(f"{a}:") and (rows[0].dst, rows[0].summary) == (f"{b}:8080", "SYN")
    assert (rows[1].src, rows[1].dst, rows[1].summary) == (f"{b}:8080", client, "SYN,ACK")
    answers = [r for r in rows if r.src == f"{b}:8080" and "bytes" in r.summary]
    assert answers and f'"x/b {client}"' in answers[0].summary
    assert all(r.simulated for r in rows) and rows[0].who == "x/a -> x/b"
    assert cap.path.read_bytes() == cap.pcap and cap.path.parent.name == "captures"
    assert cap.path.name.startswith("cap-x_b-") and cap.path.suffix == ".pcap"
    assert len(list(dpkt.pcap.Reader(open(cap.path, "rb")))) == len(rows)
    text = repr(cap)
    assert "SIMULATED" in text and "SYN,ACK" in text and "it was stopped" in text
    assert "SIMULATED" in cap._repr_html_() and f"captures/{cap.path.name}" in cap._repr_html_()
    assert json.loads(json.dumps(cap.to_dict()))["rows"][0]["summary"] == "SYN"


def test_a_pcap_outside_the_notebook_folder_is_named_not_linked(lab, tmp_path, monkeypatch):
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    monkeypatch.setenv("LABKIT_CAPTURE_DIR", str(elsewhere))
    with lab.capture("x/b", seconds=30) as cap:
        lab.probe("x/a", "x/b", port=8080)
    page = cap._repr_html_()
    assert cap.path.parent == elsewhere and str(cap.path.resolve()) in page and "href" not in page


def test_sim_capture_of_a_dropped_probe_shows_only_the_clients_syns(lab):
    a = lab.pod_ip("x/a")
    with lab.capture("x/b", seconds=30) as at_b, lab.capture("x/a", seconds=30) as at_a:
        result = lab.probe("x/b", "x/a", port=80, timeout=2)  # x/a admits nobody
    assert not result.ok
    assert at_a.rows == []  # the node's forward hook dropped it before x/a
    assert [r.summary for r in at_b.rows] == ["SYN", "SYN"]  # sent again after 1 s, then the probe gave up
    assert {r.dst for r in at_b.rows} == {f"{a}:80"} and at_b.rows[1].time - at_b.rows[0].time == pytest.approx(1)


def test_sim_capture_of_a_dns_name_probe_shows_query_and_answer(lab):
    vip = lab.service_ip("x/web")
    with lab.capture("x/a", filter="udp port 53") as client, lab.capture("kube-system/coredns") as dns:
        assert lab.probe("x/a", "web.x", port=80).ok
    summaries = [r.summary for r in client.rows]
    assert summaries == ["DNS query A web.x.x.svc.cluster.local", "DNS answer web.x.x.svc.cluster.local NXDOMAIN",
                         "DNS query A web.x.svc.cluster.local", f"DNS answer web.x.svc.cluster.local A {vip}"]
    assert client.rows[2].dst == f"{SVC}:53" and client.rows[2].who == "x/a -> Service kube-system/kube-dns"
    coredns = lab.pod_ip("kube-system/coredns")
    assert [r.dst for r in dns.rows if "query" in r.summary] == [f"{coredns}:53"] * 2  # after the DNAT


def test_sim_node_capture_sees_both_sides_of_a_service_connection(lab):
    with lab.capture("node-1", filter="tcp") as cap:
        lab.probe("x/a", lab.service_ip("x/web"), port=80)
    syns = [r for r in cap.rows if r.summary == "SYN"]
    assert [s.dst for s in syns] == [f"{lab.service_ip('x/web')}:80", f"{lab.pod_ip('x/b')}:8080"]


def test_sim_bounds_end_the_capture_with_their_reason(lab):
    cap = lab.capture("x/b", count=3)
    lab.probe("x/a", "x/b", port=8080)
    assert cap.wait(5).reason == "count" and [r.summary for r in cap.rows] == ["SYN", "SYN,ACK", "ACK"]
    cap = lab.capture("x/b", max_bytes=1024)
    for _ in range(3):
        lab.probe("x/a", "x/b", port=8080)
    assert cap.reason == "bytes" and len(cap.pcap) <= 1024 and len(cap.rows) >= 10
    assert lab.capture("x/b", seconds=0.05).wait(5).reason == "time"
    with pytest.raises(KeyboardInterrupt):
        with lab.capture("x/b", seconds=60) as cap:
            raise KeyboardInterrupt
    assert cap.reason == "stopped"
    running = lab.capture("x/b", seconds=60)
    lab.close()
    assert running.reason == "stopped" and running.stop().reason == "stopped"  # idempotent


def test_sim_filter_keeps_what_it_names(lab):
    with lab.capture("x/b", filter="udp and not port 53", path="mine/udp.pcap") as cap:
        lab.probe("x/a", "x/b", port=8080)
        lab.probe("x/a", "x/b", port=5000, protocol="UDP")
    assert [r.protocol for r in cap.rows] == ["UDP", "UDP"] and str(cap.path) == "mine/udp.pcap"
    assert cap.rows_where(port=5000) == cap.rows and cap.rows_where(protocol="tcp") == []


# ------------------------------------------------------------------ the node agent's side
def test_agent_cuts_the_stream_into_whole_records():
    data = _pcap([_eth(_tcp(A, 1, B, 2, dpkt.tcp.TH_SYN)), _eth(_udp(A, 3, B, 4, b"hi"))])
    records, pieces = agent.Records(), []
    for i in range(len(data)):  # one byte at a time, as a pipe may hand them over
        pieces += records.feed(data[i:i + 1])
    assert b"".join(pieces) == data and [len(p) for p in pieces[:1]] == [24] and len(pieces) == 3


def test_agent_checks_its_request():
    good = {"netns": None, "iface": "any", "filter": " tcp ", "seconds": 1, "count": 5, "max_bytes": 2048}
    assert agent.read_spec(json.dumps(good))["filter"] == "tcp"
    for key, value in [("iface", "lo"), ("seconds", 0), ("count", 0), ("max_bytes", 10), ("filter", "a\nb"),
                       ("netns", "")]:
        with pytest.raises(NodeError) as err:
            agent.read_spec(json.dumps({**good, key: value}))
        assert err.value.extra["field"] == key
