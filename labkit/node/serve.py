"""``serve``: the default app of a pod (like agnhost serve-hostname).

``python3 -m labkit.node serve --name NS/POD --port 80/TCP --port 53/UDP [--bind ADDR]``
listens on every given port/protocol (one thread each) and answers with ``NS/POD\\n``:
TCP and SCTP send it after reading one line (or 0.3 s of silence), or an HTTP/1.0 200
response when that line is an HTTP request line; UDP answers every datagram. The request
line ``probe`` (what labkit's probe sends) is answered ``NS/POD IP:PORT\\n``, with the source
address and port the server saw (TCP/SCTP: the accepted connection's peer; UDP: the
datagram's source), and ``GET /clientip`` answers ``IP:PORT\\n`` (like agnhost netexec's
``/clientip``): so a learner sees whether anything translated the client's address. A port that
cannot be opened (bind error, no SCTP in the kernel) is reported on stderr and the others
keep serving. SIGTERM/SIGINT end the process promptly. Nothing is written to stdout.
"""

import argparse
import errno
import re
import signal
import socket
import sys
import threading
import time

READ_TIMEOUT = 0.3
PROTOCOLS = ("TCP", "UDP", "SCTP")
IPPROTO_SCTP = getattr(socket, "IPPROTO_SCTP", 132)
_NO_SCTP = (errno.EPROTONOSUPPORT, errno.ESOCKTNOSUPPORT, errno.EAFNOSUPPORT)
HOLD_TIMEOUT = 600.0
_HTTP_LINE = re.compile(rb"^(GET|HEAD|POST|PUT|DELETE|OPTIONS|PATCH|TRACE|CONNECT) (\S+)")
PROBE_LINE = b"probe"


def peer_text(peer):
    """``IP:PORT`` of a socket address tuple."""
    return "%s:%d" % (peer[0], peer[1])


def reply_to(line, body, peer):
    """The answer to a non-HTTP request ``line``: the body, plus the client's address for ``probe``."""
    if line.strip() == PROBE_LINE:
        return body.rstrip(b"\n") + (" %s\n" % peer_text(peer)).encode()
    return body


def parse_port(spec):
    """'80/TCP' -> (80, 'TCP'); protocol defaults to TCP; raises ValueError."""
    text = str(spec).strip()
    port_text, _, proto = text.partition("/")
    proto = (proto or "TCP").upper()
    if proto not in PROTOCOLS:
        raise ValueError("bad port %r: protocol must be TCP, UDP or SCTP" % text)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError("bad port %r: port must be a number 1-65535" % text)
    return int(port_text), proto


def _log(message):
    sys.stderr.write("labkit serve: %s\n" % message)
    sys.stderr.flush()


def _read_line(conn, deadline, limit=4096):
    """Read until a newline, EOF, ``limit`` bytes or ``deadline``; returns bytes."""
    data = b""
    while b"\n" not in data and len(data) < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        conn.settimeout(left)
        try:
            chunk = conn.recv(limit - len(data))
        except (socket.timeout, OSError):
            break
        if not chunk:
            break
        data += chunk
    return data


def http_response(body, head=False):
    header = ("HTTP/1.0 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
              "Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)).encode()
    return header if head else header + body


def answer_stream(conn, body, peer=("0.0.0.0", 0)):
    """Serve one accepted TCP/SCTP connection from ``peer`` (the client's address)."""
    try:
        data = _read_line(conn, time.monotonic() + READ_TIMEOUT)
        if data.strip() == b"hold":  # a long-lived connection: answer every line until it closes
            conn.sendall(body)
            while _read_line(conn, time.monotonic() + HOLD_TIMEOUT):
                conn.sendall(body)
            return
        match = _HTTP_LINE.match(data)
        if match:
            deadline = time.monotonic() + READ_TIMEOUT
            while b"\r\n\r\n" not in data and b"\n\n" not in data and len(data) < 65536:
                more = _read_line(conn, deadline)
                if not more:
                    break
                data += more
            path = match.group(2).split(b"?", 1)[0]
            content = (peer_text(peer) + "\n").encode() if path == b"/clientip" else body
            reply = http_response(content, head=match.group(1) == b"HEAD")
        else:
            reply = reply_to(data, body, peer)
        conn.settimeout(READ_TIMEOUT)
        conn.sendall(reply)
        conn.shutdown(socket.SHUT_WR)
        # Drain what the client still sends so close() does not turn into a reset.
        _read_line(conn, time.monotonic() + 0.2, limit=65536)
    except OSError as exc:  # the client went away or reset: nothing left to answer
        _log("connection ended early: %s" % exc)
    finally:
        conn.close()


def _stream_loop(sock, body):
    while True:
        try:
            conn, peer = sock.accept()
        except OSError:
            time.sleep(0.05)
            continue
        threading.Thread(target=answer_stream, args=(conn, body, peer), daemon=True).start()


def _udp_loop(sock, body):
    while True:
        try:
            data, peer = sock.recvfrom(65535)
            sock.sendto(reply_to(data, body, peer), peer)
        except OSError:
            continue


def open_listener(bind, port, proto):
    """Bound (and listening) socket for port/proto; raises OSError."""
    if proto == "UDP":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM,
                             IPPROTO_SCTP if proto == "SCTP" else 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((bind, port))
        if proto != "UDP":
            sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def start(name, ports, bind="0.0.0.0"):
    """Open every port and start its thread; returns the list of 'port/PROTO' served."""
    body = ("%s\n" % name).encode()
    served = []
    for port, proto in ports:
        label = "%d/%s" % (port, proto)
        try:
            sock = open_listener(bind, port, proto)
        except OSError as exc:
            if proto == "SCTP" and exc.errno in _NO_SCTP:
                _log("SCTP not supported by this kernel; not serving %s" % label)
            else:
                _log("cannot listen on %s: %s" % (label, exc.strerror or exc))
            continue
        loop = _udp_loop if proto == "UDP" else _stream_loop
        threading.Thread(target=loop, args=(sock, body), name="serve-" + label,
                         daemon=True).start()
        served.append(label)
    return served


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # a ValueError becomes exit 2 + JSON in __main__
        raise ValueError("serve: %s" % message)


def main(argv):
    parser = _Parser(prog="python3 -m labkit.node serve")
    parser.add_argument("--name", required=True, help="answer text, e.g. NS/POD")
    parser.add_argument("--port", action="append", default=[], help="PORT[/PROTO]")
    parser.add_argument("--bind", default="0.0.0.0", help="address to listen on")
    args = parser.parse_args(argv)
    ports = []
    for spec in args.port:
        parsed = parse_port(spec)  # ValueError -> exit 2 in __main__
        if parsed not in ports:
            ports.append(parsed)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    served = start(args.name, ports, args.bind)
    _log("%s serving %s" % (args.name, ", ".join(served) if served else "no ports"))
    while not stop.wait(0.5):
        pass
    return 0
