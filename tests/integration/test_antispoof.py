"""A pod cannot pretend to be another pod: each attack an attacker with NET_RAW would try, on
a real engine, fails; normal traffic, ping and tcpdump of a pod's own traffic still work.

World: x/a may reach x/b (a NetworkPolicy lets only a in), x/c is an attacker on a's node,
x/d an attacker on the other node. The attacks are real packets made with raw sockets in
the attacker pods (Python from the lab image); the victim's view comes from tcpdump in the
victim pod and ``ip neigh`` in the pods and nodes.
"""
from __future__ import annotations

import re
import threading

import pytest

import labkit
from tests.conftest import share_lab
from tests.integration.helpers import node_exec, pod_doc

pytestmark = pytest.mark.docker
LAB = "it-spoof"

POLICY = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "only-a", "namespace": "x"},
          "spec": {"podSelector": {"matchLabels": {"app": "b"}}, "policyTypes": ["Ingress"],
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}]}]}}

# Raw packets, built by hand in the attacker pod (the lab image has python3; pods keep NET_RAW).
RAW = r'''
import socket, struct, sys
def csum(data):
    if len(data) % 2: data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
def ip_packet(src, dst, proto, payload):
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0,
                       socket.inet_aton(src), socket.inet_aton(dst))
    return head[:10] + struct.pack("!H", csum(head)) + head[12:] + payload
def pseudo(src, dst, proto, seg):
    return struct.pack("!4s4sBBH", socket.inet_aton(src), socket.inet_aton(dst), 0, proto, len(seg))
kind, src, dst, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
if kind == "udp":
    data = b"forged"
    seg = struct.pack("!HHHH", 40000, port, 8 + len(data), 0) + data
    seg = seg[:6] + struct.pack("!H", csum(pseudo(src, dst, 17, seg) + seg)) + seg[8:]
    pkt = ip_packet(src, dst, 17, seg)
else:
    seg = struct.pack("!HHIIBBHHH", 40001, port, 1000, 0, 5 << 4, 0x02, 64240, 0, 0)
    seg = seg[:16] + struct.pack("!H", csum(pseudo(src, dst, 6, seg) + seg)) + seg[18:]
    pkt = ip_packet(src, dst, 6, seg)
for _ in range(3):
    s.sendto(pkt, (dst, 0))
print("sent")
'''
ETHER = r'''
import socket, struct, sys
def mac(text): return bytes(int(x, 16) for x in text.split(":"))
kind, src_mac, dst_mac = sys.argv[1], sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
if kind == "arp":  # "ip is-at src_mac", to dst_mac
    claimed, target_ip = sys.argv[4], sys.argv[5]
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, mac(src_mac), socket.inet_aton(claimed),
                       mac(dst_mac), socket.inet_aton(target_ip))
    frame = mac(dst_mac) + mac(src_mac) + struct.pack("!H", 0x0806) + body
else:  # any frame whose source MAC is src_mac (the bridge would learn it on this port)
    frame = mac(dst_mac) + mac(src_mac) + struct.pack("!H", 0x0800) + b"\0" * 46
for _ in range(3):
    s.send(frame)
print("sent")
'''


@pytest.fixture(scope="module")
def lab(request):
    share_lab(request.config, LAB)
    lab = labkit.Lab(LAB, backend="docker", nodes=2)
    try:
        lab.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}},
                   pod_doc("a", "x", node="node-1", ports=[(80, "TCP"), (9999, "UDP")]),
                   pod_doc("b", "x", node="node-1", ports=[(80, "TCP"), (9999, "UDP")]),
                   pod_doc("c", "x", node="node-1"), pod_doc("d", "x", node="node-2"), POLICY])
        yield lab
    finally:
        lab.close()


def capture_while(lab, pod: str, bpf: str, action, seconds: int = 4) -> str:
    """tcpdump in ``pod`` (its own traffic only) while ``action()`` runs; returns what it printed."""
    box: dict = {}
    argv = ["timeout", str(seconds), "tcpdump", "-n", "-l", "-i", "eth0", bpf]
    thread = threading.Thread(target=lambda: box.update(out=lab.exec(pod, argv).output))
    thread.start()
    try:
        lab.exec(pod, ["sleep", "1"])  # tcpdump is listening by then
        action()
    finally:
        thread.join()
    return box["out"]


def packets(dump: str) -> list[str]:
    return [line for line in dump.splitlines() if re.match(r"^\d\d:\d\d:\d\d\.", line)]


def guard_drops(lab, pod: str, what: str) -> int:
    """The counter of a pod's anti-spoofing rule, read from the node's kernel (the docker CLI)."""
    node = lab.cluster.node_of(pod)
    text = node_exec(LAB, ["nft", "list", "ruleset"], node)
    line = next((line for line in text.splitlines() if f'"{pod}: {what}"' in line), None)
    return int(re.search(r"packets (\d+)", line).group(1)) if line else 0  # no such rule: nothing dropped


def test_normal_traffic_ping_and_tcpdump_still_work(lab):
    assert lab.probe("x/a", "x/b").answered_by == "x/b"
    assert not lab.probe("x/c", "x/b").ok  # the policy: only a gets in
    ping = lab.exec("x/c", ["ping", "-c", "1", "-W", "2", lab.pod_ip("x/d")])
    assert ping.ok, ping.output  # NET_RAW is still there
    dump = capture_while(lab, "x/b", "tcp port 80", lambda: lab.probe("x/a", "x/b"))
    assert any(lab.pod_ip("x/a") in p for p in packets(dump)), dump


@pytest.mark.parametrize("attacker", ["x/c", "x/d"], ids=["same-node", "other-node"])
@pytest.mark.parametrize("kind,port", [("udp", 9999), ("syn", 80)])
def test_a_forged_source_address_never_arrives(lab, attacker, kind, port):
    a, b = lab.pod_ip("x/a"), lab.pod_ip("x/b")
    before = guard_drops(lab, attacker, "spoofed source address")
    dump = capture_while(lab, "x/b", f"src host {a} and dst port {port}", lambda: lab.exec(
        attacker, ["python3", "-c", RAW, kind, a, b, str(port)]))
    assert packets(dump) == [], f"x/b received packets forged by {attacker}: {dump}"
    assert guard_drops(lab, attacker, "spoofed source address") >= before + 3
    chains = lab.explain(attacker, "x/b").chains  # explain shows the rule that stopped them, with its counter
    assert any("labkit-guard" in c and "spoofed source address" in c for c in chains), chains
    # the same packet with the attacker's own address is let through to the policy (which drops it)
    own = lab.exec(attacker, ["python3", "-c", RAW, kind, lab.pod_ip(attacker), b, str(port)])
    assert own.ok and "sent" in own.output


def test_arp_poisoning_is_dropped(lab):
    c_mac = lab.exec("x/c", ["cat", "/sys/class/net/eth0/address"]).output.strip()
    b_mac = lab.exec("x/b", ["cat", "/sys/class/net/eth0/address"]).output.strip()
    gateway = "10.244.1.1"
    lab.probe("x/b", "x/a")  # b has the gateway's entry
    before = lab.exec("x/b", ["ip", "neigh", "show", gateway]).output
    for claimed in (gateway, lab.pod_ip("x/a")):  # "the gateway is me", "a is me"
        sent = lab.exec("x/c", ["python3", "-c", ETHER, "arp", c_mac, b_mac, claimed, lab.pod_ip("x/b")])
        assert sent.ok, sent.output
    after = lab.exec("x/b", ["ip", "neigh", "show", gateway]).output
    assert c_mac not in after and after.split("lladdr")[-1:] == before.split("lladdr")[-1:], (before, after)
    assert guard_drops(lab, "x/c", "ARP for another address") >= 6
    node_view = node_exec(LAB, ["ip", "neigh", "show", lab.pod_ip("x/a")], "node-1")
    assert c_mac not in node_view, node_view
    assert lab.probe("x/b", "x/a").answered_by == "x/a"


def test_a_pod_cannot_take_over_anothers_mac_to_sniff_its_replies(lab):
    a_mac = lab.exec("x/a", ["cat", "/sys/class/net/eth0/address"]).output.strip()
    a = lab.pod_ip("x/a")
    b_mac = lab.exec("x/b", ["cat", "/sys/class/net/eth0/address"]).output.strip()

    def attack_then_talk():
        sent = lab.exec("x/c", ["python3", "-c", ETHER, "frame", a_mac, b_mac])  # "I am a" (to the bridge)
        assert sent.ok, sent.output
        lab.probe("x/b", "x/a")

    dump = capture_while(lab, "x/c", f"host {a} and tcp port 80", attack_then_talk)
    assert packets(dump) == [], f"x/c saw x/a's traffic: {dump}"
    assert guard_drops(lab, "x/c", "frame with another MAC") >= 3


# A well-formed UDP datagram in a frame sent straight to another pod's MAC, past the gateway.
DIRECT = r'''
import socket, struct, sys
def mac(text): return bytes(int(x, 16) for x in text.split(":"))
def csum(data):
    if len(data) % 2: data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
src_mac, dst_mac, src, dst, port = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
data = b"direct"
udp = struct.pack("!HHHH", 40002, port, 8 + len(data), 0) + data
head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 7, 0, 64, 17, 0, socket.inet_aton(src), socket.inet_aton(dst))
head = head[:10] + struct.pack("!H", csum(head)) + head[12:]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
for _ in range(3):
    s.send(mac(dst_mac) + mac(src_mac) + struct.pack("!H", 0x0800) + head + udp)
print("sent")
'''


def pod_mac(lab, pod: str) -> str:
    return "0a:58:" + ":".join(f"{int(part):02x}" for part in lab.pod_ip(pod).split("."))


@pytest.mark.parametrize("sender, arrives", [("x/a", True), ("x/c", False)])
def test_a_frame_sent_straight_to_another_pods_mac_still_meets_the_policy(lab, sender, arrives):
    """Bridged, not routed: the pods' bridge hands such frames to the node's IP hooks, so x/b's policy
    (only x/a may come in) decides as for routed traffic. x/a's frame arrives, which shows the frame
    itself is good; the attacker x/c's, with its own true addresses, is dropped."""
    argv = ["python3", "-c", DIRECT, pod_mac(lab, sender), pod_mac(lab, "x/b"), lab.pod_ip(sender),
            lab.pod_ip("x/b"), "9999"]
    dump = capture_while(lab, "x/b", f"udp and src host {lab.pod_ip(sender)} and port 9999",
                         lambda: lab.exec(sender, argv))
    assert bool(packets(dump)) is arrives, dump
