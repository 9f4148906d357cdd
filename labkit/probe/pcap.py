"""Reading captured packets: a pcap file in, one readable row per packet out.

Owns ``PacketRow`` (time since the capture began, source, destination, protocol, a
summary such as ``SYN,ACK`` or ``DNS answer web.x.svc.cluster.local A 10.96.0.20``, frame
length, and which pod, Service or node each address is), ``parse`` (pure: bytes in, rows out,
decoded with the dpkt packet library: Ethernet frames of a pod's ``eth0``, Linux cooked v1/v2
frames of a node's ``-i any``, raw IP; IPv4 with TCP, UDP, DNS, ICMP and SCTP, and ARP) and
``address_names`` (the lab's addresses named from its model). The running capture, its file
and its tables are ``labkit.probe.capture``.
"""
from __future__ import annotations

import io
import socket
import struct
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

from labkit.errors import LabkitError
from labkit.model import addressing as addr
from labkit.model.cluster import Cluster

DLT_EN10MB, DLT_RAW, DLT_LINUX_SLL, DLT_LINUX_SLL2 = 1, 101, 113, 276
RAW_ALIASES = (12, 14)  # the BSDs' numbers for raw IP
TCP_FLAGS = (("SYN", 0x02), ("FIN", 0x01), ("RST", 0x04), ("PSH", 0x08), ("ACK", 0x10), ("URG", 0x20),
             ("ECE", 0x40), ("CWR", 0x80))
DNS_TYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 16: "TXT", 28: "AAAA", 33: "SRV"}
DNS_RCODES = {1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
UNREACHABLE = {0: "network unreachable", 1: "host unreachable", 2: "protocol unreachable", 3: "port unreachable",
               4: "fragmentation needed", 9: "network prohibited", 10: "host prohibited",
               13: "communication administratively prohibited"}
ICMP_TYPES = {0: "echo reply", 8: "echo request", 5: "redirect", 11: "time exceeded", 4: "source quench"}
SCTP_CHUNKS = {0: "DATA", 1: "INIT", 2: "INIT_ACK", 3: "SACK", 4: "HEARTBEAT", 5: "HEARTBEAT_ACK", 6: "ABORT",
               7: "SHUTDOWN", 8: "SHUTDOWN_ACK", 9: "ERROR", 10: "COOKIE_ECHO", 11: "COOKIE_ACK",
               14: "SHUTDOWN_COMPLETE"}
PREVIEW = 40


class PcapError(LabkitError):
    """The bytes are not a pcap file labkit can read."""


@dataclass(frozen=True)
class PacketRow:
    """One captured packet. ``time`` is in seconds since the capture began; ``src``/``dst`` are
    ``ip:port`` for TCP, UDP and SCTP, else the IP; ``length`` is the frame's length as captured;
    ``who`` names the addresses (``"x/a -> Service x/web"``); ``interface`` is set on a node's
    capture (``"cni0 in"``); ``simulated`` rows were made up by the sim backend from the oracle."""

    time: float
    src: str
    dst: str
    protocol: str
    summary: str
    length: int
    who: str = ""
    interface: str = ""
    simulated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def ports(self) -> tuple[int | None, int | None]:
        """The source and destination ports (None where the protocol has none)."""
        return _port(self.src), _port(self.dst)


def _port(endpoint: str) -> int | None:
    head, sep, tail = endpoint.rpartition(":")
    return int(tail) if sep and head and tail.isdigit() else None


def address_names(cluster: Cluster) -> dict[str, str]:
    """Every address of the lab named for people: pods by ref, ``Service ns/name``, nodes, ``internet``."""
    names = {addr.INTERNET_HOST_IP: "internet", addr.INTERNET_GATEWAY: addr.node_name(1)}
    for i in range(1, cluster.node_count + 1):
        names[addr.node_ip(i)] = names[addr.node_gateway(i)] = addr.node_name(i)
    names.update({ip: f"Service {ref}" for ref, ip in cluster.service_ips.items() if ip})
    names.update({ip: ref for ref, ip in cluster.pod_ips.items()})
    return names


def parse(data: bytes, *, started: float | None = None, names: Mapping[str, str] | None = None,
          interfaces: Mapping[int, str] | None = None, simulated: bool = False) -> list[PacketRow]:
    """The rows of a pcap file (``b""``: none). Times count from ``started`` (seconds since the epoch;
    default: the first packet); ``names`` maps IPs to names for ``who``; ``interfaces`` maps a node's
    interface indexes to names (cooked v2 frames carry the index)."""
    import dpkt  # noqa: PLC0415 - the packet library is loaded when packets are read

    if not data:
        return []
    try:
        reader = dpkt.pcap.Reader(io.BytesIO(data))
    except (ValueError, dpkt.UnpackError) as exc:
        raise PcapError(f"not a pcap file ({exc}): captures are written by tcpdump -w") from exc
    linktype = reader.datalink()
    packets = []
    try:
        for ts, frame in reader:
            packets.append((float(ts), frame))
    except dpkt.UnpackError:  # a record cut short at the end: the rows before it stand
        pass
    if not packets:
        return []
    base = min(started, packets[0][0]) if started is not None else packets[0][0]
    rows = []
    for ts, frame in packets:
        src, dst, protocol, summary, interface = decode(linktype, frame, interfaces or {})
        rows.append(PacketRow(round(ts - base, 6), src, dst, protocol, summary, len(frame),
                              _who(src, dst, names or {}), interface, simulated))
    return rows


def _who(src: str, dst: str, names: Mapping[str, str]) -> str:
    a, b = names.get(_host(src)), names.get(_host(dst))
    return f"{a or '?'} -> {b or '?'}" if a or b else ""


def _host(endpoint: str) -> str:
    return endpoint.rpartition(":")[0] if _port(endpoint) is not None else endpoint


def decode(linktype: int, frame: bytes, interfaces: Mapping[int, str]) -> tuple[str, str, str, str, str]:
    """(src, dst, protocol, summary, interface) of one frame of link type ``linktype``."""
    import dpkt  # noqa: PLC0415

    interface = ""
    try:
        if linktype == DLT_EN10MB:
            packet = dpkt.ethernet.Ethernet(frame)
            payload, ethertype = packet.data, packet.type
        elif linktype == DLT_LINUX_SLL:
            packet = dpkt.sll.SLL(frame)
            payload, ethertype, interface = packet.data, packet.ethtype, _direction(packet.type)
        elif linktype == DLT_LINUX_SLL2:
            packet = dpkt.sll2.SLL2(frame)
            name = interfaces.get(packet.intindex, f"if{packet.intindex}")
            payload, ethertype, interface = packet.data, packet.ethtype, f"{name} {_direction(packet.type)}"
        elif linktype in (DLT_RAW, *RAW_ALIASES):
            version = frame[0] >> 4 if frame else 0
            payload, ethertype = (dpkt.ip.IP(frame), 0x0800) if version == 4 else (frame, 0x86DD)
        else:
            return "", "", f"link type {linktype}", f"{len(frame)} bytes (this link type is not decoded)", ""
        return (*_network(payload, ethertype), interface)
    except (dpkt.UnpackError, ValueError, IndexError, NotImplementedError, struct.error) as exc:
        return "", "", "?", f"{len(frame)} bytes that do not decode ({type(exc).__name__})", interface


def _direction(packet_type: int) -> str:
    return "out" if packet_type == 4 else "in"


def _network(payload: Any, ethertype: int) -> tuple[str, str, str, str]:
    import dpkt  # noqa: PLC0415

    if isinstance(payload, dpkt.ip.IP):
        return _ip(payload)
    if isinstance(payload, dpkt.arp.ARP):
        return _arp(payload)
    if ethertype == 0x86DD:
        return "", "", "IPv6", "an IPv6 packet (IPv6 is off in the lab's pods)"
    return "", "", f"ethertype 0x{ethertype:04x}", f"{len(bytes(payload))} bytes"


def _arp(arp: Any) -> tuple[str, str, str, str]:
    spa, tpa = socket.inet_ntoa(arp.spa), socket.inet_ntoa(arp.tpa)
    if arp.op == 1:
        return spa, tpa, "ARP", f"ARP who-has {tpa} tell {spa}"
    if arp.op == 2:
        return spa, tpa, "ARP", f"ARP {spa} is-at {':'.join(f'{b:02x}' for b in arp.sha)}"
    return spa, tpa, "ARP", f"ARP operation {arp.op}"


def _ip(ip: Any) -> tuple[str, str, str, str]:
    import dpkt  # noqa: PLC0415

    src, dst, segment = socket.inet_ntoa(ip.src), socket.inet_ntoa(ip.dst), ip.data
    if isinstance(segment, dpkt.tcp.TCP):
        flags = ",".join(name for name, bit in TCP_FLAGS if segment.flags & bit) or "no flags"
        return f"{src}:{segment.sport}", f"{dst}:{segment.dport}", "TCP", flags + _payload(segment.data)
    if isinstance(segment, dpkt.udp.UDP):
        ends = f"{src}:{segment.sport}", f"{dst}:{segment.dport}"
        if 53 in (segment.sport, segment.dport):
            text = _dns(segment.data)
            if text:
                return *ends, "DNS", text
        return *ends, "UDP", f"{len(segment.data)} bytes" + _preview(segment.data)
    if isinstance(segment, dpkt.icmp.ICMP):
        return src, dst, "ICMP", _icmp(segment)
    if isinstance(segment, dpkt.sctp.SCTP):
        chunks = ",".join(SCTP_CHUNKS.get(c.type, str(c.type)) for c in segment.chunks) or "no chunks"
        return f"{src}:{segment.sport}", f"{dst}:{segment.dport}", "SCTP", chunks
    named = {6: "TCP", 17: "UDP", 1: "ICMP", 132: "SCTP"}.get(ip.p)
    if named:  # its header did not decode: the capture cut it short (snap length, or a cut file)
        return src, dst, named, f"cut short: {len(bytes(segment))} bytes of its {named} header and data"
    return src, dst, f"IP protocol {ip.p}", f"{len(bytes(segment))} bytes"


def _payload(data: bytes) -> str:
    return f" {len(data)} bytes{_preview(data)}" if data else ""


def _preview(data: bytes) -> str:
    """The start of a payload when it reads as text (labkit's probes and answers do)."""
    text = bytes(data[:PREVIEW * 2]).decode("utf-8", "replace")
    if not text.strip() or "\ufffd" in text or not all(c.isprintable() or c in "\r\n\t" for c in text):
        return ""
    text = " ".join(text.split())
    return f' "{text[:PREVIEW]}{"..." if len(text) > PREVIEW or len(data) > PREVIEW * 2 else ""}"'


def _dns(data: bytes) -> str:
    """``DNS query A name`` or ``DNS answer name A 1.2.3.4`` (or its error); "" when not DNS."""
    import dpkt  # noqa: PLC0415

    try:
        msg = dpkt.dns.DNS(bytes(data))
    except (dpkt.UnpackError, IndexError, ValueError):
        return ""
    question = msg.qd[0] if len(msg.qd) else None
    qname = question.name if question is not None else "?"
    if msg.qr == dpkt.dns.DNS_Q:
        qtype = DNS_TYPES.get(question.type, str(question.type)) if question is not None else "?"
        return f"DNS query {qtype} {qname}"
    if msg.rcode:
        return f"DNS answer {qname} {DNS_RCODES.get(msg.rcode, f'rcode {msg.rcode}')}"
    records = [_record(rr) for rr in msg.an]
    return f"DNS answer {qname} " + (", ".join(records) if records else "(no records)")


def _record(rr: Any) -> str:
    kind = DNS_TYPES.get(rr.type, str(rr.type))
    if rr.type == 1 and len(rr.rdata) == 4:
        return f"A {socket.inet_ntoa(rr.rdata)}"
    if rr.type == 28 and len(rr.rdata) == 16:
        return f"AAAA {socket.inet_ntop(socket.AF_INET6, rr.rdata)}"
    value = getattr(rr, "cname", None) or getattr(rr, "ptrname", None) or getattr(rr, "nsname", None)
    return f"{kind} {value}" if value else kind


def _icmp(icmp: Any) -> str:
    import dpkt  # noqa: PLC0415

    if icmp.type in (0, 8) and isinstance(icmp.data, dpkt.icmp.ICMP.Echo):
        return f"ICMP {ICMP_TYPES[icmp.type]} id {icmp.data.id} seq {icmp.data.seq}"
    if icmp.type == 3:
        what = UNREACHABLE.get(icmp.code, f"destination unreachable (code {icmp.code})")
        inner = getattr(icmp.data, "ip", None)
        return f"ICMP {what}" + (f" (for {_about(inner)})" if isinstance(inner, dpkt.ip.IP) else "")
    return f"ICMP {ICMP_TYPES.get(icmp.type, f'type {icmp.type}')} (code {icmp.code})"


def _about(ip: Any) -> str:
    """The packet an ICMP error quotes: ``UDP 10.244.1.3:40000 > 10.244.1.4:5000``."""
    src, dst, protocol, _ = _ip(ip)
    return f"{'UDP' if protocol == 'DNS' else protocol} {src} > {dst}"


def where(rows: Iterable[PacketRow], protocol: str | None = None, port: int | None = None) -> list[PacketRow]:
    """The rows of ``protocol`` (case does not matter) that have ``port`` at either end."""
    wanted = protocol.upper() if protocol else None
    return [r for r in rows if (wanted is None or r.protocol.upper() == wanted)
            and (port is None or port in r.ports)]
