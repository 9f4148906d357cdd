"""Minimal DNS A-record client (stdlib only) used by probes to resolve names.

It builds RFC 1035 queries, parses answers (with name compression), follows CNAME chains
(re-asking for the target when the answer stops at a CNAME), falls back to TCP when a UDP
answer is truncated, and reproduces the resolver's ``search``/``ndots`` expansion from a
resolv.conf. It uses plain sockets created by the calling thread, so a probe thread that
entered a pod's network namespace asks that pod's nameserver from inside the pod.
"""

import ipaddress
import os
import random
import socket
import struct
import time

from .errors import describe_oserror

TYPE_A = 1
TYPE_CNAME = 5
CLASS_IN = 1
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
MAX_CNAME_HOPS = 8


class DNSError(Exception):
    """Resolution failed; ``str()`` is the message, ``queries`` the names asked."""

    def __init__(self, message, queries=()):
        super().__init__(message)
        self.queries = list(queries)


class ResolvConf:
    """The parts of resolv.conf(5) a stub resolver needs."""

    def __init__(self, nameservers=(), search=(), ndots=1):
        self.nameservers, self.search, self.ndots = list(nameservers), list(search), ndots

    @classmethod
    def parse(cls, text):
        conf = cls()
        for raw in text.splitlines():
            words = raw.split("#", 1)[0].split(";", 1)[0].split()
            if not words:
                continue
            key, values = words[0], words[1:]
            if key == "nameserver" and values:
                conf.nameservers.append(values[0])
            elif key in ("search", "domain"):
                conf.search = [v.rstrip(".") for v in values if v.rstrip(".")]
            elif key == "options":
                for opt in values:
                    name, _, val = opt.partition(":")
                    if name == "ndots" and val.isdigit():
                        conf.ndots = min(int(val), 15)
        return conf

    @classmethod
    def load(cls, path):
        with open(path, encoding="utf-8", errors="replace") as handle:
            return cls.parse(handle.read())


def encode_name(name):
    """'a.b.c' -> wire format; raises ValueError on empty or over-long labels."""
    name = name.rstrip(".")
    out = b""
    for label in name.split(".") if name else []:
        raw = label.encode("ascii", errors="strict")
        if not 1 <= len(raw) <= 63:
            raise ValueError("bad DNS name %r: labels must be 1-63 characters" % name)
        out += bytes([len(raw)]) + raw
    if len(out) > 254:
        raise ValueError("bad DNS name %r: longer than 253 characters" % name)
    return out + b"\x00"


def build_query(name, qtype=TYPE_A, qid=None):
    """Returns (qid, packet) for a recursive query of ``name``."""
    if qid is None:
        qid = random.SystemRandom().randrange(0, 65536)
    header = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    return qid, header + encode_name(name) + struct.pack("!HH", qtype, CLASS_IN)


def _read_name(data, offset):
    labels, jumps, end = [], 0, None
    while True:
        if offset >= len(data):
            raise ValueError("truncated name")
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(data) or jumps > 64:
                raise ValueError("bad compression pointer")
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            jumps += 1
        elif length == 0:
            return ".".join(labels), (end if end is not None else offset + 1)
        else:
            labels.append(data[offset + 1:offset + 1 + length].decode("ascii", "replace"))
            offset += 1 + length


class Response:
    def __init__(self, qid, rcode, truncated, question, answers):
        self.qid, self.rcode, self.truncated = qid, rcode, truncated
        self.question = question      # name asked, as echoed by the server
        self.answers = answers        # [(owner, type, ttl, data)]; data: IPv4/target/bytes


def parse_response(data):
    """Parse a DNS message; raises ValueError when it is malformed."""
    if len(data) < 12:
        raise ValueError("short DNS message")
    qid, flags, qdcount, ancount, _, _ = struct.unpack("!HHHHHH", data[:12])
    if not flags & 0x8000:
        raise ValueError("not a DNS response")
    offset, question = 12, None
    for _ in range(qdcount):
        qname, offset = _read_name(data, offset)
        question = question if question is not None else qname
        offset += 4
    answers = []
    for _ in range(ancount):
        owner, offset = _read_name(data, offset)
        if offset + 10 > len(data):
            raise ValueError("truncated record")
        rtype, _, ttl, rdlen = struct.unpack("!HHIH", data[offset:offset + 10])
        offset += 10
        rdata = data[offset:offset + rdlen]
        if len(rdata) != rdlen:
            raise ValueError("truncated record data")
        if rtype == TYPE_A and rdlen == 4:
            value = socket.inet_ntoa(rdata)
        elif rtype == TYPE_CNAME:
            value = _read_name(data, offset)[0]
        else:
            value = rdata
        answers.append((owner, rtype, ttl, value))
        offset += rdlen
    return Response(qid, flags & 0x000F, bool(flags & 0x0200), question, answers)


def _family(server):
    return socket.AF_INET6 if ":" in server else socket.AF_INET


def _exchange_udp(server, port, packet, qid, timeout):
    deadline = time.monotonic() + timeout
    with socket.socket(_family(server), socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect((server, port))
        sock.send(packet)
        while True:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            data = sock.recv(65535)
            if len(data) >= 2 and struct.unpack("!H", data[:2])[0] == qid:
                return data


def _recv_exact(sock, count):
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionResetError(104, "connection closed by DNS server")
        data += chunk
    return data


def _exchange_tcp(server, port, packet, timeout):
    with socket.create_connection((server, port), timeout=timeout) as sock:
        sock.sendall(struct.pack("!H", len(packet)) + packet)
        length = struct.unpack("!H", _recv_exact(sock, 2))[0]
        return _recv_exact(sock, length)


def query(server, name, qtype=TYPE_A, timeout=2.0, port=53):
    """One query to one server (UDP, TCP if truncated). Raises OSError/ValueError."""
    qid, packet = build_query(name, qtype)
    started = time.monotonic()
    response = parse_response(_exchange_udp(server, port, packet, qid, timeout))
    if response.truncated:
        left = max(timeout - (time.monotonic() - started), 0.05)
        response = parse_response(_exchange_tcp(server, port, packet, left))
    return response


def follow_chain(qname, answers):
    """(final name, [IPv4...]) after following CNAMEs from ``qname`` in ``answers``."""
    current, seen = qname.rstrip(".").lower(), set()
    while current not in seen:
        seen.add(current)
        target = [v for o, t, _, v in answers if t == TYPE_CNAME and o.lower() == current]
        if not target:
            break
        current = target[0].rstrip(".").lower()
    addrs = [v for o, t, _, v in answers if t == TYPE_A and o.lower() == current]
    return current, addrs


def candidates(name, search, ndots):
    """Names to ask, in the order glibc's resolver asks them."""
    if name.endswith("."):
        return [name.rstrip(".")]
    expanded = ["%s.%s" % (name, domain) for domain in search]
    if name.count(".") >= ndots:
        return [name] + expanded
    return expanded + [name]


def lookup_hosts(name, path):
    """IPv4 addresses for ``name`` in a hosts(5) file (missing file -> [])."""
    wanted, found = name.rstrip(".").lower(), []
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                words = line.split("#", 1)[0].split()
                if len(words) >= 2 and wanted in (w.lower() for w in words[1:]):
                    try:
                        found.append(str(ipaddress.IPv4Address(words[0])))
                    except ValueError:
                        continue
    except OSError:
        return []
    return found


class Resolution:
    """Outcome of ``resolve``: addresses, canonical name, names queried."""

    def __init__(self, name, addresses, canonical, queries):
        self.name, self.addresses = name, addresses
        self.canonical, self.queries = canonical, queries


def _ask(conf, name, deadline, port, queries):
    """Ask each nameserver in turn until one answers; returns a Response."""
    queries.append(name)
    problems = []
    servers = conf.nameservers
    for index, server in enumerate(servers):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            return query(server, name, timeout=left / (len(servers) - index), port=port)
        except (OSError, ValueError) as exc:
            why = describe_oserror(exc) if isinstance(exc, OSError) else str(exc)
            problems.append("%s (%s)" % (server, why))
    raise DNSError("DNS query for %s failed: %s" % (name, "; ".join(problems) or "timed out"),
                   queries)


def resolve(name, resolv_conf="/etc/resolv.conf", timeout=2.0, port=53, hosts=None):
    """Resolve ``name`` to IPv4 addresses; raises DNSError ("NXDOMAIN <name>", ...)."""
    if name.count(".") == 3 and all(p.isdigit() and int(p) <= 255 for p in name.split(".")):
        return Resolution(name, [str(ipaddress.IPv4Address(name))], name, [])
    if hosts:
        found = lookup_hosts(name, hosts)
        if found:
            return Resolution(name, found, name.rstrip("."), [])
    try:
        encode_name(name)
    except (ValueError, UnicodeError) as exc:
        raise DNSError("bad DNS name %r: %s" % (name, exc))
    conf = resolv_conf if isinstance(resolv_conf, ResolvConf) else None
    if conf is None:
        try:
            conf = ResolvConf.load(resolv_conf or "/etc/resolv.conf")
        except OSError as exc:
            raise DNSError("cannot read %s: %s" % (resolv_conf, os.strerror(exc.errno or 0)))
    if not conf.nameservers:
        # (the path is the pod's file seen from its node, /proc/<pid>/root/etc/resolv.conf: name the pod's own)
        raise DNSError("no nameserver in /etc/resolv.conf (glibc would ask 127.0.0.1 inside the pod, where "
                       "nothing listens)")
    deadline, queries, other = time.monotonic() + timeout, [], None
    for candidate in candidates(name, conf.search, conf.ndots):
        current = candidate
        for _ in range(MAX_CNAME_HOPS):
            response = _ask(conf, current, deadline, port, queries)
            if response.rcode != 0:
                break
            final, addrs = follow_chain(current, response.answers)
            if addrs:
                return Resolution(name, addrs, final, queries)
            if final == current.rstrip(".").lower():
                break
            current = final  # the answer stopped at a CNAME: ask for its target
        if response.rcode == 0:
            other = other or "no A record for %s" % name
        elif response.rcode != 3:
            other = "%s %s" % (RCODES.get(response.rcode, "RCODE%d" % response.rcode), name)
    raise DNSError(other or "NXDOMAIN %s" % name, queries)
