"""The part of tcpdump's filter language (pcap-filter) that the sim backend's captures understand.

Owns ``compile_filter``: a filter text becomes a test of one simulated packet's protocol,
addresses and ports. Understood: ``tcp``, ``udp``, ``icmp``, ``arp``, ``ip``; ``[src|dst] host
IP``, ``[src|dst] net CIDR``, ``[src|dst] port N``; a protocol before a port or host
(``tcp port 80``); ``and``/``&&``, ``or``/``||``, ``not``/``!`` and parentheses. Anything else is
a ``ModelError`` on ``filter`` that says what the simulation understands (the docker backend
hands the filter to the real tcpdump).
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Callable

from labkit.errors import ModelError

PROTOCOLS = ("tcp", "udp", "icmp", "arp", "ip")
UNDERSTOOD = ("tcp, udp, icmp, arp, ip; [src|dst] host IP, [src|dst] net CIDR, [src|dst] port N; "
              "and, or, not, ( )")


@dataclass(frozen=True)
class Meta:
    """What a filter can ask of a simulated packet."""

    protocol: str  # tcp, udp, icmp, arp
    src: str
    dst: str
    sport: int | None = None
    dport: int | None = None


Test = Callable[[Meta], bool]


def compile_filter(text: str | None) -> Test:
    """A test of packets for ``text`` (None or blank: every packet passes)."""
    if text is None or not text.strip():
        return lambda meta: True
    parser = _Parser(text)
    test = parser.expression()
    if parser.peek() is not None:
        parser.fail(f"unexpected {parser.peek()!r}")
    return test


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = re.findall(r"\(|\)|&&|\|\||!|[^\s()!&|]+", text)
        self.i = 0

    def fail(self, problem: str) -> None:
        raise ModelError(f"the simulated capture cannot read the filter {self.text!r}: {problem}; it understands "
                         f"{UNDERSTOOD} (the docker backend gives the filter to the real tcpdump)", path="filter")

    def peek(self) -> str | None:
        return self.tokens[self.i].lower() if self.i < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            self.fail("it ends too early")
        self.i += 1
        return token  # type: ignore[return-value]

    def expression(self) -> Test:
        tests = [self.conjunction()]
        while self.peek() in ("or", "||"):
            self.take()
            tests.append(self.conjunction())
        return tests[0] if len(tests) == 1 else (lambda meta: any(t(meta) for t in tests))

    def conjunction(self) -> Test:
        tests = [self.factor()]
        while self.peek() in ("and", "&&"):
            self.take()
            tests.append(self.factor())
        return tests[0] if len(tests) == 1 else (lambda meta: all(t(meta) for t in tests))

    def factor(self) -> Test:
        token = self.take()
        if token in ("not", "!"):
            inner = self.factor()
            return lambda meta: not inner(meta)
        if token == "(":
            inner = self.expression()
            if self.take() != ")":
                self.fail("a '(' is not closed")
            return inner
        if token in PROTOCOLS:
            kind = self._protocol(token)
            if self.peek() in ("src", "dst", "host", "port", "net"):
                qualified = self.primitive(self.take())
                return lambda meta: kind(meta) and qualified(meta)
            return kind
        return self.primitive(token)

    @staticmethod
    def _protocol(name: str) -> Test:
        if name == "ip":
            return lambda meta: meta.protocol != "arp"
        return lambda meta: meta.protocol == name

    def primitive(self, token: str) -> Test:
        direction = None
        if token in ("src", "dst"):
            direction, token = token, self.take()
        if token == "host":
            value = self.take()
            try:
                ip = str(ipaddress.IPv4Address(value))
            except ValueError:
                self.fail(f"{value!r} is not an IPv4 address")
            return _ends(direction, lambda meta, end: (meta.src, meta.dst)[end] == ip)
        if token == "net":
            value = self.take()
            try:
                net = ipaddress.IPv4Network(value, strict=False)
            except ValueError:
                self.fail(f"{value!r} is not a network such as 10.244.0.0/16")
            return _ends(direction, lambda meta, end: ipaddress.IPv4Address((meta.src, meta.dst)[end]) in net)
        if token == "port":
            value = self.take()
            if not value.isdigit() or not 0 <= int(value) <= 65535:
                self.fail(f"{value!r} is not a port number")
            port = int(value)
            return _ends(direction, lambda meta, end: (meta.sport, meta.dport)[end] == port)
        self.fail(f"{token!r} is not understood")
        raise AssertionError("unreachable")


def _ends(direction: str | None, test: Callable[[Meta, int], bool]) -> Test:
    """The test at the source (0), the destination (1), or either end."""
    if direction == "src":
        return lambda meta: test(meta, 0)
    if direction == "dst":
        return lambda meta: test(meta, 1)
    return lambda meta: test(meta, 0) or test(meta, 1)
