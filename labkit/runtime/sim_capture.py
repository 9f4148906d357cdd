"""Captures in a simulated lab: the packets a probe would have sent, made up from the oracle's answer.

Owns ``SimCapture`` (a capture on a pod, a node or the internet host that collects packets
until its time, count or byte bound, or ``stop``) and ``SimCaptures`` (a lab's running
captures; ``observe`` turns one answered probe into packets, built with dpkt, and hands each
capture those it would see). A probe to a name first asks cluster DNS (kube-dns, as the pod's
resolver does: one query per search-path name until one answers); then TCP is a three-way
handshake, the probe line, the answer ``<ns>/<pod> <client ip>:<port>`` and FINs when it was
answered, a SYN and a RST when refused, SYNs alone (retransmitted) when a policy dropped it;
UDP is the datagram and its answer, or an ICMP port unreachable. Each exchange is seen from
the client's side (by its pod and node; addressed to the Service VIP when it used one) and,
where the packets got that far, from the answering pod's side (after DNAT, from the address
it saw). SCTP probes make no packets here. Every packet and row is marked simulated.
"""
from __future__ import annotations

import io
import random
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from labkit.dataplane import names
from labkit.model import addressing as addr
from labkit.model.cluster import Cluster
from labkit.results import ProbeResult
from labkit.runtime import capturing, sim_filter
from labkit.runtime.base import ProbeRequest
from labkit.semantics import cluster_dns, oracle
from labkit.semantics import services as svc

STEP = 0.0002  # seconds between the simulated packets of one exchange
RETRIES = (1.0, 3.0, 7.0)  # when Linux sends a SYN again
SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10
Place = tuple  # ("pod", ref) | ("node", index) | ("internet", None)


@dataclass(frozen=True)
class Packet:
    ts: float
    meta: sim_filter.Meta
    frame: bytes
    places: frozenset


class SimCapture(capturing.CaptureHandle):
    simulated = True

    def __init__(self, target: str, place: Place, spec: dict[str, Any]):
        import dpkt  # noqa: PLC0415 - the packet library is loaded when packets are made

        super().__init__(target, spec)
        self.place = place
        self._test = sim_filter.compile_filter(spec["filter"])
        header = io.BytesIO()
        dpkt.pcap.Writer(header, snaplen=262144, linktype=dpkt.pcap.DLT_EN10MB)
        self._size = len(header.getvalue())
        self._append(header.getvalue())
        self._timer = threading.Timer(spec["seconds"], self._finish, args=("time",))
        self._timer.daemon = True
        self._timer.start()

    def stop(self) -> None:
        self._timer.cancel()
        self._finish("stopped")

    def take(self, packets: list[Packet]) -> None:
        import dpkt  # noqa: PLC0415

        for p in packets:
            if self.done:
                return
            if self.place not in p.places or not self._test(p.meta):
                continue
            sec = int(p.ts)
            record = bytes(dpkt.pcap.LEPktHdr(tv_sec=sec, tv_usec=int((p.ts - sec) * 1e6), caplen=len(p.frame),
                                              len=len(p.frame))) + p.frame
            if self._size + len(record) > self.spec["max_bytes"]:
                self._finish("bytes")
                return
            if not self._append(record, 1):  # the timer ended it meanwhile
                return
            self._size += len(record)
            if self.packets >= self.spec["count"]:
                self._finish("count")


class SimCaptures(capturing.Running):
    """A simulated lab's running captures, fed by its probes."""

    def __init__(self) -> None:
        super().__init__()
        self._random = random.Random()  # ports and sequence numbers only: the lab's own seeded choices stay as they are
        self._clock = 0.0  # when the last simulated packet was sent: the next probe's come after it

    def start(self, cluster: Cluster, target: str, spec: dict[str, Any]) -> SimCapture:
        spec = capturing.check_spec(**spec)
        kind, what = capturing.resolve_target(cluster, target)
        name = what if kind == "pod" else addr.node_name(what) if kind == "node" else capturing.INTERNET
        return self.add(SimCapture(name, (kind, what), spec))  # type: ignore[return-value]

    def observe(self, cluster: Cluster, requests: list[ProbeRequest], results: list[ProbeResult],
                timeout: float) -> None:
        """Hand the packets of answered probes to every running capture (those it would see)."""
        running = self.running()
        for request, result in zip(requests, results) if running else ():
            conversation = _Conversation(cluster, request, result, timeout, self._random, self._clock)
            packets = conversation.packets()
            self._clock = conversation.clock
            for handle in running:
                handle.take(packets)  # type: ignore[attr-defined]


def _mac(ip: str) -> bytes:
    return bytes.fromhex(names.pod_mac(ip).replace(":", ""))


class _View:
    """One exchange as seen at some places: client ``a`` and server ``b`` (ip, port), and the gateway MAC."""

    def __init__(self, protocol: str, a: tuple[str, int], b: tuple[str, int], local: int, gateway: str,
                 places: set):
        self.protocol, self.ends, self.local, self.places = protocol, (a, b), local, frozenset(places)
        self.gateway = _mac(gateway)

    def same_wire(self, other: "_View") -> bool:
        return self.ends == other.ends

    def frame(self, side: int, segment: Any, protocol: int) -> tuple[bytes, sim_filter.Meta]:
        import dpkt  # noqa: PLC0415

        (sip, sport), (dip, dport) = self.ends[side], self.ends[1 - side]
        ip = dpkt.ip.IP(src=socket.inet_aton(sip), dst=socket.inet_aton(dip), p=protocol, ttl=64, data=segment)
        local_ip = self.ends[self.local][0]
        src_mac, dst_mac = (_mac(local_ip), self.gateway) if side == self.local else (self.gateway, _mac(local_ip))
        eth = dpkt.ethernet.Ethernet(src=src_mac, dst=dst_mac, type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
        kind = {6: "tcp", 17: "udp", 1: "icmp"}[protocol]
        ports = (sport, dport) if protocol != 1 else (None, None)
        return bytes(eth), sim_filter.Meta(kind, sip, dip, *ports)


class _Conversation:
    """The packets of one probe: its DNS lookup (for a name), then the connection."""

    def __init__(self, cluster: Cluster, request: ProbeRequest, result: ProbeResult, timeout: float,
                 rng: random.Random, after: float = 0.0):
        self.cluster, self.request, self.result, self.timeout, self.rng = cluster, request, result, timeout, rng
        self.clock = max(time.time(), after)
        self.out: list[Packet] = []
        src = request.src
        self.client_ip = addr.INTERNET_HOST_IP if src == oracle.INTERNET else cluster.pod_ips[src]
        self.client_places = self._places(src)
        self.client_gateway = (addr.INTERNET_GATEWAY if src == oracle.INTERNET
                               else addr.node_gateway(cluster.pod_nodes[src]))

    def _places(self, who: str) -> set:
        if who == oracle.INTERNET:
            return {("internet", None), ("node", 1)}
        return {("pod", who), ("node", self.cluster.pod_nodes[who])}

    def _gateway(self, who: str) -> str:
        return addr.INTERNET_GATEWAY if who == oracle.INTERNET else addr.node_gateway(self.cluster.pod_nodes[who])

    def packets(self) -> list[Packet]:
        dst, internet = self.request.dst, self.request.src == oracle.INTERNET
        ip: str | None = None
        if oracle.is_ip(dst):
            ip = dst
        elif "/" in dst:
            ip = self.cluster.pod_ips.get(dst)
        elif internet and dst in self.cluster.node_names:  # the internet host knows the nodes by name
            ip = addr.node_ip(self.cluster.node_names.index(dst) + 1)
        elif not internet:  # a pod asks cluster DNS first
            ip = self._lookup(dst)
        if ip is not None and self.request.protocol in ("TCP", "UDP"):
            self._connection(ip)
        return sorted(self.out, key=lambda p: p.ts)

    # ------------------------------------------------------------ one exchange, several views
    def _views(self, protocol: str, server_ip: str, port: int, server: str | None, seen_from: str) -> list[_View]:
        """The client's view, and the server's (after DNAT, from ``seen_from``) when the packets reach it."""
        sport = self.rng.randint(32768, 60999)
        views = [_View(protocol, (self.client_ip, sport), (server_ip, port), 0, self.client_gateway,
                       self.client_places)]
        if server is not None:
            target_ip = addr.INTERNET_HOST_IP if server == oracle.INTERNET else self.cluster.pod_ips[server]
            view = _View(protocol, (seen_from, sport), (target_ip, self._target_port(server_ip, port, server)), 1,
                         self._gateway(server), self._places(server))
            if view.same_wire(views[0]):  # no translation: a node holding both ends sees it once
                view.places = view.places - views[0].places
            views.append(view)
        return views

    def _emit(self, views: list[_View], script) -> None:
        """``script(view)``: (seconds after now, side 0 client / 1 server, segment, IP protocol) per packet.

        The side that sends shows a packet a moment before the other side's view does."""
        longest = 0.0
        for view in views:
            for delay, side, segment, protocol in script(view):
                frame, meta = view.frame(side, segment, protocol)
                later = STEP / 4 if side != view.local else 0.0
                self.out.append(Packet(self.clock + delay + later, meta, frame, view.places))
                longest = max(longest, delay + later)
        self.clock += longest + STEP

    def _target_port(self, server_ip: str, port: int, server: str) -> int:
        """The port the answering pod was reached on (a Service's or NodePort's targetPort, else ``port``)."""
        if server == oracle.INTERNET:
            return port
        service = svc.service_by_ip(self.cluster, server_ip)
        sport = svc.service_port(service, port, self.request.protocol) if service else None
        if sport is None:
            match = [(s, p) for s in self.cluster.services.values() for p in s.ports
                     if p.node_port == port and p.protocol == self.request.protocol]
            if not match or server_ip not in [addr.node_ip(i) for i in range(1, self.cluster.node_count + 1)]:
                return port
            sport = match[0][1]
        return svc.target_port(self.cluster.pods[server], sport) or port

    # ------------------------------------------------------------ DNS
    def _lookup(self, name: str) -> str | None:
        import dpkt  # noqa: PLC0415

        source = self.cluster.pods[self.request.src]
        if source.ref == oracle.DNS_POD:  # it answers itself: nothing on the wire
            return next(iter(cluster_dns.resolve_for(self.cluster, source.ref, name).ips), None)
        config = cluster_dns.resolver(self.cluster, source)  # the pod's own resolv.conf (dnsPolicy, dnsConfig)
        server_ip, _ = cluster_dns.nameserver_for(self.cluster, config)
        if server_ip is None and not config.nameservers:
            return None  # glibc asks 127.0.0.1 inside the pod: nothing crosses eth0
        allowed = server_ip is not None and oracle.dns_outcome(self.cluster, source).allowed
        server_ip = server_ip or config.nameservers[0]  # one that never answers: the queries go out unanswered
        dns_server = oracle.DNS_POD if allowed else None
        for fqdn in svc.expand(name, config.searches, config.ndots):
            qid = self.rng.randint(1, 65535)
            question = dpkt.dns.DNS.Q(name=fqdn, type=1, cls=1)
            query = dpkt.dns.DNS(id=qid, op=dpkt.dns.DNS_RD, qd=[question])
            views = self._views("udp", server_ip, 53, dns_server, self.client_ip)
            ips = cluster_dns.lookup(self.cluster, fqdn)
            answer = dpkt.dns.DNS(id=qid, op=dpkt.dns.DNS_RD | dpkt.dns.DNS_RA, qd=[question],
                                  an=[dpkt.dns.DNS.RR(name=fqdn, type=1, cls=1, ttl=5, rdata=socket.inet_aton(ip))
                                      for ip in ips or ()])
            answer.qr = dpkt.dns.DNS_R  # both live in the op bits: set after op
            answer.rcode = dpkt.dns.DNS_RCODE_NOERR if ips else dpkt.dns.DNS_RCODE_NXDOMAIN

            def script(view, query=bytes(query), answer=bytes(answer)):
                (_, a_port), (_, b_port) = view.ends
                return [(0.0, 0, _udp(a_port, b_port, query), 17)] + \
                    ([(STEP, 1, _udp(b_port, a_port, answer), 17)] if allowed else [])
            self._emit(views, script)
            if not allowed:
                return None
            if ips:
                answered = self.cluster.pod_ips.get(self.result.answered_by or "")
                return answered if answered in ips else ips[0]
        return None

    # ------------------------------------------------------------ the connection
    def _connection(self, ip: str) -> None:
        r, protocol = self.result, self.request.protocol
        refused = not r.ok and "refused" in (r.error or "")
        if not r.ok and not refused and "timed out" not in (r.error or ""):
            return  # unreachable networks and failed lookups send nothing
        server = r.answered_by if r.ok else (self.cluster.pod_by_ip().get(ip) if refused else None)
        if ip == self.client_ip:  # a pod reaching its own address talks over its loopback, not eth0
            return
        views = self._views(protocol.lower(), ip, self.request.port, server, r.client_ip or self.client_ip)
        sport = views[0].ends[0][1]
        answer = f"{r.answered_by} {r.client_ip or self.client_ip}:{sport}\n".encode()
        if protocol == "TCP":
            self._emit(views, self._tcp_script(r.ok, refused, answer))
        else:
            self._emit(views, self._udp_script(r.ok, refused, answer))

    def _tcp_script(self, ok: bool, refused: bool, answer: bytes):
        c, s = self.rng.randint(1, 2**31), self.rng.randint(1, 2**31)
        if ok:
            n = len(answer)
            steps = [(0, SYN, c, 0, b""), (1, SYN | ACK, s, c + 1, b""), (0, ACK, c + 1, s + 1, b""),
                     (0, PSH | ACK, c + 1, s + 1, b"probe\n"), (1, PSH | ACK, s + 1, c + 7, answer),
                     (0, FIN | ACK, c + 7, s + 1 + n, b""), (1, FIN | ACK, s + 1 + n, c + 8, b""),
                     (0, ACK, c + 8, s + 2 + n, b"")]
            timing = [i * STEP for i in range(len(steps))]
        elif refused:
            steps, timing = [(0, SYN, c, 0, b""), (1, RST | ACK, 0, c + 1, b"")], [0.0, STEP]
        else:  # dropped: the client sends its SYN again until it gives up
            timing = [0.0] + [t for t in RETRIES if t < self.timeout]
            steps = [(0, SYN, c, 0, b"")] * len(timing)

        def script(view: _View):
            (_, a_port), (_, b_port) = view.ends
            return [(delay, side, _tcp(*((a_port, b_port) if side == 0 else (b_port, a_port)), flags, seq, ack, data),
                     6) for delay, (side, flags, seq, ack, data) in zip(timing, steps)]
        return script

    @staticmethod
    def _udp_script(ok: bool, refused: bool, answer: bytes):
        import dpkt  # noqa: PLC0415

        def script(view: _View):
            (_, a_port), (_, b_port) = view.ends
            out = [(0.0, 0, _udp(a_port, b_port, b"probe\n"), 17)]
            if ok:
                out.append((STEP, 1, _udp(b_port, a_port, answer), 17))
            elif refused:  # the kernel of the address that refused quotes the datagram
                quoted = view.frame(0, _udp(a_port, b_port, b"probe\n"), 17)[0][14:]
                out.append((STEP, 1, dpkt.icmp.ICMP(type=3, code=3, data=dpkt.icmp.ICMP.Unreach(data=quoted)), 1))
            return out
        return script


def _tcp(sport: int, dport: int, flags: int, seq: int, ack: int, data: bytes) -> Any:
    import dpkt  # noqa: PLC0415
    return dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq % 2**32, ack=ack % 2**32, flags=flags, win=64240,
                        data=data)


def _udp(sport: int, dport: int, data: bytes) -> Any:
    import dpkt  # noqa: PLC0415
    return dpkt.udp.UDP(sport=sport, dport=dport, data=data)

