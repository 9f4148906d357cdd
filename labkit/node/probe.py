"""``probe``: a batch of connection attempts, each made from inside a network namespace.

Request: ``{"timeout": 1.0, "probes": [{"id", "dst", "port", "protocol", "netns"?,
"resolv_conf"?, "hosts"?, "dns_port"?, "timeout"?}]}``. Every probe runs in its own new
thread (at most 64 at once) that enters ``netns`` with setns(2) first, then resolves a
host name with ``dnsclient`` (so the pod's own nameserver is asked, from the pod), then
opens its socket. TCP/SCTP: connect, send ``probe\\n``, read one answer line; UDP: send
``probe\\n`` on a connected socket and wait for a datagram. One deadline of ``timeout``
seconds covers connect + answer; DNS has its own budget of ``timeout`` seconds.
Result: ``{"id", "ok", "latency_ms", "answer", "client_ip", "error"}`` plus ``resolved`` and
``dns_queries`` when a name was resolved, ``unsupported: true`` for SCTP without kernel
support. ``latency_ms`` is the connect+answer time (or time until failure). labkit's
``serve`` answers ``probe`` with ``NS/POD IP:PORT``: ``answer`` is the first word and
``client_ip`` the source address the server saw (None when the answer has no address).
"""

import ipaddress
import socket
import time

from . import dnsclient
from .errors import NodeError, describe_oserror
from .netns import enter_netns, run_parallel

DEFAULT_TIMEOUT = 1.0
MAX_TIMEOUT = 60.0
MAX_WORKERS = 64
PAYLOAD = b"probe\n"
IPPROTO_SCTP = getattr(socket, "IPPROTO_SCTP", 132)
PROTOCOLS = ("TCP", "UDP", "SCTP")


def _timeout(value, where):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0 < value <= MAX_TIMEOUT:
        raise NodeError("%s: must be a number of seconds in (0, %g]" % (where, MAX_TIMEOUT))
    return float(value)


def _optional_str(spec, key, where):
    value = spec.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise NodeError("%s.%s: must be a non-empty string" % (where, key))
    return value


def parse_request(request):
    """Validate a probe request; returns (timeout, [normalised probe specs])."""
    timeout = _timeout(request.get("timeout", DEFAULT_TIMEOUT), "timeout")
    probes = request.get("probes")
    if not isinstance(probes, list):
        raise NodeError("probes: must be a list of probe objects")
    specs = []
    for index, spec in enumerate(probes):
        where = "probes[%d]" % index
        if not isinstance(spec, dict):
            raise NodeError("%s: must be an object" % where)
        dst = _optional_str(spec, "dst", where)
        if dst is None:
            raise NodeError("%s.dst: required (an IP address or a host name)" % where)
        port = spec.get("port")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise NodeError("%s.port: must be an integer 1-65535, got %r" % (where, port))
        proto = spec.get("protocol", "TCP")
        if not isinstance(proto, str) or proto.upper() not in PROTOCOLS:
            raise NodeError("%s.protocol: must be TCP, UDP or SCTP, got %r" % (where, proto))
        dns_port = spec.get("dns_port", 53)
        if isinstance(dns_port, bool) or not isinstance(dns_port, int) \
                or not 1 <= dns_port <= 65535:
            raise NodeError("%s.dns_port: must be an integer 1-65535" % where)
        sport = spec.get("sport")
        if sport is not None and (isinstance(sport, bool) or not isinstance(sport, int)
                                  or not 1024 <= sport <= 65535):
            raise NodeError("%s.sport: must be an integer 1024-65535 (the source port to use)" % where)
        specs.append({
            "sport": sport,
            "id": str(spec.get("id", index)), "dst": dst, "port": port,
            "protocol": proto.upper(), "dns_port": dns_port,
            "netns": _optional_str(spec, "netns", where),
            "resolv_conf": _optional_str(spec, "resolv_conf", where),
            "hosts": _optional_str(spec, "hosts", where),
            "timeout": _timeout(spec.get("timeout"), where + ".timeout") or timeout,
        })
    return timeout, specs


def _family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def _read_answer(sock, deadline):
    """(data, error) after reading up to one line before ``deadline``."""
    data = b""
    while b"\n" not in data and len(data) < 4096:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, None if data else "connected, but no answer (timed out)"
        sock.settimeout(left)
        try:
            chunk = sock.recv(4096)
        except OSError as exc:
            return data, None if data else describe_oserror(exc)
        if not chunk:
            return data, None if data else "connected, but closed without answer"
        data += chunk
    return data, None


def _bind(sock, sport):
    """Use source port ``sport`` (a packet walk marks exactly this connection), if given."""
    if sport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", sport))


def _stream_probe(addr, port, proto, deadline, result, sport=None):
    try:
        sock = socket.socket(_family(addr), socket.SOCK_STREAM, proto)
    except OSError as exc:
        if proto == IPPROTO_SCTP:
            result.update(error="SCTP not supported by this kernel", unsupported=True)
        else:
            result["error"] = describe_oserror(exc)
        return None
    with sock:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            _bind(sock, sport)
            sock.connect((addr, port))
            sock.sendall(PAYLOAD)
        except OSError as exc:
            result["error"] = describe_oserror(exc)
            return None
        data, error = _read_answer(sock, deadline)
        result["error"] = error
        return data if not error else None


def _udp_probe(addr, port, deadline, result, sport=None):
    with socket.socket(_family(addr), socket.SOCK_DGRAM) as sock:
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            _bind(sock, sport)
            sock.connect((addr, port))
            sock.send(PAYLOAD)
            return sock.recv(65535)
        except OSError as exc:
            result["error"] = describe_oserror(exc)
            return None


def parse_answer(line):
    """``"ns/pod 10.244.1.3:40112"`` -> ("ns/pod", "10.244.1.3"); a bare answer -> (answer, None)."""
    words = line.split()
    if not words:
        return "", None
    client = None
    if len(words) > 1:
        host, _, port = words[1].rpartition(":")
        try:
            ipaddress.ip_address(host)
            client = host if port.isdigit() else None
        except ValueError:
            client = None
    return (words[0], client) if client else (line, None)


def run_one(spec):
    """Run one probe in the calling thread (which enters spec['netns'] first)."""
    result = {"id": spec["id"], "ok": False, "latency_ms": None, "answer": None,
              "client_ip": None, "error": None}
    try:
        enter_netns(spec["netns"])
    except OSError as exc:
        result["error"] = exc.strerror or str(exc)
        return result
    addr = spec["dst"]
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        try:
            found = dnsclient.resolve(addr, spec["resolv_conf"] or "/etc/resolv.conf",
                                      timeout=spec["timeout"], port=spec["dns_port"],
                                      hosts=spec["hosts"])
        except dnsclient.DNSError as exc:
            result.update(error=str(exc), dns_queries=exc.queries)
            return result
        addr = found.addresses[0]
        result.update(resolved=addr, dns_queries=found.queries)
    started = time.monotonic()
    deadline = started + spec["timeout"]
    if spec["protocol"] == "UDP":
        data = _udp_probe(addr, spec["port"], deadline, result, spec.get("sport"))
    else:
        proto = IPPROTO_SCTP if spec["protocol"] == "SCTP" else socket.IPPROTO_TCP
        data = _stream_probe(addr, spec["port"], proto, deadline, result, spec.get("sport"))
    result["latency_ms"] = round((time.monotonic() - started) * 1000.0, 2)
    if data is not None and result["error"] is None:
        result["ok"] = True
        line = data.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
        result["answer"], result["client_ip"] = parse_answer(line)
    return result


def _staggered(spec, delay):
    time.sleep(delay)
    return run_one(spec)


def handle(request):
    _, specs = parse_request(request)
    stagger = request.get("stagger_ms", 0)  # a packet walk spreads its connections: the trace keeps up
    if isinstance(stagger, bool) or not isinstance(stagger, (int, float)) or not 0 <= stagger <= 100:
        raise NodeError("stagger_ms: must be a number of milliseconds in [0, 100]")
    outcomes = run_parallel([lambda s=s, k=k: _staggered(s, k * stagger / 1000.0) if stagger else run_one(s)
                             for k, s in enumerate(specs)], MAX_WORKERS)
    results = []
    for spec, outcome in zip(specs, outcomes):
        if isinstance(outcome, BaseException):  # a bug, not a network outcome
            outcome = {"id": spec["id"], "ok": False, "latency_ms": None, "answer": None,
                       "error": "internal error: %s: %s" % (type(outcome).__name__, outcome)}
        results.append(outcome)
    return {"results": results}
