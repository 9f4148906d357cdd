"""Commands "run" in a pod of a simulated lab: the few the notebooks use, answered from the model.

The sim backend has no processes, so ``lab.exec`` cannot run anything. This module answers
the commands that teach pod networking with the text the docker backend's real tools print
(iproute2, hostname, bind9's nslookup and dig, curl, labkit's default app), computed from the
model and the oracle, under a first line that says the output is simulated:

* ``ip addr`` / ``ip -4 addr`` / ``ip addr show [dev] eth0`` / ``ip link`` / ``ip route``
* names (``sim_dns``): ``hostname [-i|-f]``, ``cat /etc/resolv.conf|/etc/hosts|/etc/hostname``,
  ``getent hosts NAME``, ``nslookup [-timeout=N] [-retry=N] [-type=SRV] NAME|IP``,
  ``dig +short [+search] [+time=N] [+tries=N] [SRV] NAME``: through the pod's own resolver
  (dnsPolicy, dnsConfig), CNAMEs followed; the query itself obeys the pod's egress policy and the
  DNS pod's ingress policy, as in the oracle
* the container's files (``sim_pods``): ``touch FILE...``, ``rm [-f] FILE...``, ``test -e|-f
  FILE``, ``[ -e FILE ]``, ``cat FILE`` (a touched file is empty), ``ls FILE``: what
  readiness probes check
* ``curl [-s] [-S] [-m N | --max-time N] [--connect-timeout N] http://HOST[:PORT][/PATH]``
  (the oracle decides, the lab's ``pick`` chooses the endpoint (ClientIP affinity); an answer is
  ``<namespace>/<pod>`` like labkit's default app, a failure is curl's own message and exit code:
  6 unknown host, 7 refused, 28 timed out)
* ``ping -c N [-W N] [-q] IP`` of a pod or the internet host (ICMP as labkit's policies treat
  it: see ``sim_ping``)

Anything else exits 127 with a message naming the docker backend. Nothing waits: a timeout
is reported at once, with the duration the real tool would have taken.
"""
from __future__ import annotations

import random
import shlex
from dataclasses import dataclass, field
from typing import Callable

from labkit.dataplane import names
from labkit.errors import ModelError
from labkit.model import addressing as addr
from labkit.model.cluster import Cluster
from labkit.model.objects import Pod
from labkit.results import ExecResult
from labkit.runtime import node_views, sim_dns, sim_pods
from labkit.runtime import sim_ping
from labkit.semantics import cluster_dns, oracle

HEADER = ("# simulated by labkit's sim backend (no real processes): "
          "this is what the docker backend shows")
SUPPORTED = ("ip addr, ip -4 addr, ip addr show eth0, ip link, ip route, hostname [-i], cat /etc/resolv.conf, "
             "cat /etc/hosts, getent hosts NAME, nslookup NAME, dig +short [SRV] NAME, curl -s http://NAME[:PORT]/, "
             "ping -c N IP, "
             "touch /FILE, rm /FILE, test -e /FILE, cat /FILE, ls /FILE")
NOT_FOUND = 127
# curl gives up resolving after 20 s.
CURL_RESOLVE_GIVE_UP_MS = 20000
# A connection whose SYN is dropped: 6 SYN retries (tcp_syn_retries) end after about 130 s.
KERNEL_CONNECT_TIMEOUT_MS = 130000


def run(cluster: Cluster, pod: str, argv: list[str], container: str | None = None,
        rng: random.Random | None = None, files: sim_pods.Files | None = None,
        pick: Callable[[str, oracle.Explanation], oracle.Outcome] | None = None) -> ExecResult:
    """Answer ``argv`` as if it ran in ``pod`` (a ref from ``cluster``), or exit 127.

    ``files`` holds the containers' files (a throw-away store when None); ``pick(src, explanation)``
    chooses the outcome of one connection (the lab's, with ClientIP affinity; else at random)."""
    target = cluster.pods[pod]
    names = [c.name for c in target.spec.containers]
    if container is not None and container not in names:
        raise ModelError(f"pod {pod} has no container {container!r} (it has {', '.join(names)})", path="container")
    argv = [str(a) for a in argv]
    rng = rng or random.Random(0)
    ctx = _Context(cluster, target, rng, (files or sim_pods.Files()).of(pod, container or names[0]),
                   pick or (lambda src, ex: rng.choice(ex.outcomes)))
    handler = _HANDLERS.get(argv[0] if argv else "")
    result = handler(ctx, argv[1:]) if handler else None
    if result is None:
        return unsupported(argv)
    code, text = result
    return ExecResult(code, f"{HEADER}\n{text}")


def unsupported(argv: list[str]) -> ExecResult:
    command = shlex.join(argv) if argv else "(an empty command)"
    return ExecResult(NOT_FOUND, (
        f"# simulated by labkit's sim backend (no real processes): cannot run {command}\n"
        f"sim backend: {command!r} cannot run here, because a simulated lab has no containers or "
        f"processes. It answers only: {SUPPORTED}.\n"
        "Use the docker backend to run any command: labkit.Lab(..., backend=\"docker\") "
        "(`labkit doctor` says whether this machine can).\n"))


@dataclass
class _Context:
    cluster: Cluster
    pod: Pod
    rng: random.Random
    files: set[str] = field(default_factory=set)  # the container's files (sim_pods.Files)
    pick: Callable[[str, oracle.Explanation], oracle.Outcome] | None = None

    @property
    def ip(self) -> str:
        return self.cluster.pod_ips[self.pod.ref]

    @property
    def node(self) -> int:
        return self.cluster.pod_nodes[self.pod.ref]


# ---------------------------------------------------------------- iproute2
def _mac(ctx: _Context) -> str:
    """The pod's MAC, as the docker backend sets it (``0a:58`` + the IPv4 address)."""
    return names.pod_mac(ctx.ip)


def _peer_index(ctx: _Context) -> int:
    """The node-side veth's interface index (``eth0@ifN``): its number in ``ip link show master cni0``."""
    return node_views.port_index(ctx.cluster, ctx.pod.ref)


def _lo(family4: bool) -> list[str]:
    lines = ["1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN group default qlen 1000"]
    if not family4:
        lines.append("    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00")
    return lines + ["    inet 127.0.0.1/8 scope host lo", "       valid_lft forever preferred_lft forever"]


def _eth0(ctx: _Context, family4: bool) -> list[str]:
    head = (f"2: eth0@if{_peer_index(ctx)}: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP "
            "group default ")
    if family4:
        lines = [head + " link-netnsid 0"]
    else:
        lines = [head, f"    link/ether {_mac(ctx)} brd ff:ff:ff:ff:ff:ff link-netnsid 0"]
    return lines + [f"    inet {ctx.ip}/32 scope global eth0",  # routed through the node: no on-link subnet
                    "       valid_lft forever preferred_lft forever"]


def _ip(ctx: _Context, args: list[str]) -> tuple[int, str] | None:
    family4 = False
    while args and args[0].startswith("-"):
        if args[0] != "-4":
            return None
        family4, args = True, args[1:]
    if not args:
        return None
    obj, rest = args[0], args[1:]
    if obj in ("a", "addr", "address", "l", "link"):
        is_link = obj in ("l", "link")
        if rest and rest[0] not in ("show", "list"):
            return 255, f'Command "{rest[0]}" is unknown, try "ip {"link" if is_link else "address"} help".\n'
        rest = rest[1:]
        if rest[:1] == ["dev"]:
            rest = rest[1:]
        if len(rest) > 1:
            return None
        wanted = rest[0] if rest else None
        if wanted not in (None, "lo", "eth0"):
            return 1, f'Device "{wanted}" does not exist.\n'
        if is_link:
            lines = []
            if wanted in (None, "lo"):
                lines += ["1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT "
                          "group default qlen 1000", "    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00"]
            if wanted in (None, "eth0"):
                lines += [f"2: eth0@if{_peer_index(ctx)}: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc "
                          "noqueue state UP mode DEFAULT group default ",
                          f"    link/ether {_mac(ctx)} brd ff:ff:ff:ff:ff:ff link-netnsid 0"]
            return 0, "\n".join(lines) + "\n"
        lines = (_lo(family4) if wanted in (None, "lo") else []) + (
            _eth0(ctx, family4) if wanted in (None, "eth0") else [])
        return 0, "\n".join(lines) + "\n"
    if obj in ("n", "neigh", "neighbor", "neighbour"):
        if rest not in ([], ["show"], ["list"]):
            return None
        gateway = addr.node_gateway(ctx.node)  # routed through the node: the only neighbour a pod has
        return 0, f"{gateway} dev eth0 lladdr {names.pod_mac(gateway)} REACHABLE \n"
    if obj in ("r", "route", "ro"):
        if rest not in ([], ["show"], ["list"]):
            return None
        gateway = addr.node_gateway(ctx.node)
        return 0, f"default via {gateway} dev eth0 \n{gateway} dev eth0 scope link \n"
    return None


# ---------------------------------------------------------------- curl
@dataclass
class _Curl:
    silent: bool = False
    show_error: bool = False
    max_time: float | None = None
    connect_timeout: float | None = None
    url: str | None = None

    @property
    def quiet(self) -> bool:
        return self.silent and not self.show_error


def _seconds(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value > 0 else None


def _parse_curl(args: list[str]) -> _Curl | None:
    opts, i = _Curl(), 0
    while i < len(args):
        arg = args[i]
        if arg in ("-m", "--max-time", "--connect-timeout"):
            if i + 1 >= len(args) or _seconds(args[i + 1]) is None:
                return None
            if arg == "--connect-timeout":
                opts.connect_timeout = _seconds(args[i + 1])
            else:
                opts.max_time = _seconds(args[i + 1])
            i += 2
            continue
        if arg == "--silent":
            opts.silent = True
        elif arg == "--show-error":
            opts.show_error = True
        elif arg.startswith("-") and not arg.startswith("--") and len(arg) > 1 and set(arg[1:]) <= set("sS"):
            opts.silent = opts.silent or "s" in arg
            opts.show_error = opts.show_error or "S" in arg
        elif arg.startswith("-") or opts.url is not None:
            return None
        else:
            opts.url = arg
        i += 1
    return opts if opts.url else None


def _split_url(url: str) -> tuple[str, int] | None:
    """``http://web:8080/x`` -> ("web", 8080); only plain http is simulated."""
    rest = url
    if "://" in url:
        scheme, rest = url.split("://", 1)
        if scheme.lower() != "http":
            return None
    hostport = rest.split("/", 1)[0].split("?", 1)[0]
    host, _, port_text = hostport.partition(":")
    if not host or "@" in hostport:
        return None
    if not port_text:
        return host, 80
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        return None
    return host, int(port_text)


def _curl(ctx: _Context, args: list[str]) -> tuple[int, str] | None:
    opts = _parse_curl(args)
    if opts is None:
        return None
    target = _split_url(opts.url)
    if target is None:
        return None
    host, port = target
    limits = [t for t in (opts.max_time, opts.connect_timeout) if t is not None]
    limit_ms = int(min(limits) * 1000) if limits else None

    def fail(code: int, message: str) -> tuple[int, str]:
        return code, "" if opts.quiet else f"curl: ({code}) {message}\n"

    if host.lower() in ("localhost", "127.0.0.1"):
        # Containers of a pod share its network namespace: localhost is the pod itself.
        if any(p.container_port == port and p.protocol == "TCP" for p in ctx.pod.spec.served_ports()):
            return 0, f"{ctx.pod.ref}\n"
        return fail(7, f"Failed to connect to {host} port {port} after 0 ms: Couldn't connect to server")
    if oracle.is_ip(host):
        ips = [host]
    else:
        if ":" in host or host.replace(".", "").isdigit():
            return None  # IPv6 and odd numeric forms: not simulated
        ips = [ip for ip, _ in sim_dns.from_hosts_file(ctx, host) if ":" not in ip]
        asked = sim_dns.ask(ctx)
        if not ips and asked.server is None:
            if asked.silent is not None and limit_ms is not None and limit_ms < CURL_RESOLVE_GIVE_UP_MS:
                return fail(28, f"Resolving timed out after {limit_ms} milliseconds")
            return fail(6, f"Could not resolve host: {host}")
        ips = ips or list(cluster_dns.resolve_for(ctx.cluster, ctx.pod.ref, host).ips)
        if not ips:
            return fail(6, f"Could not resolve host: {host}")
    explanations = [oracle.explain(ctx.cluster, ctx.pod.ref, ip, port, "TCP") for ip in ips]
    # the client reaches one endpoint (and one address): the lab's pick keeps ClientIP affinity
    outcome = (ctx.pick(ctx.pod.ref, explanations[0]) if len(explanations) == 1
               else ctx.rng.choice([o for ex in explanations for o in ex.outcomes]))
    if outcome.allowed:
        return 0, f"{outcome.answered_by}\n"
    error = outcome.error or "timed out"
    if "refused" in error or "unreachable" in error:
        return fail(7, f"Failed to connect to {host} port {port} after 0 ms: Couldn't connect to server")
    # The packets are dropped: curl waits for its own limit, or for the kernel to give up.
    if opts.max_time is not None and (opts.connect_timeout is None or opts.max_time <= opts.connect_timeout):
        return fail(28, f"Connection timed out after {limit_ms + 1} milliseconds")
    if opts.connect_timeout is not None:
        return fail(28, f"Failed to connect to {host} port {port} after {limit_ms + 1} ms: Timeout was reached")
    return fail(28, f"Failed to connect to {host} port {port} after {KERNEL_CONNECT_TIMEOUT_MS} ms: "
                    "Couldn't connect to server")


_HANDLERS = {"ip": _ip, "hostname": sim_dns.hostname, "cat": sim_dns.cat, "nslookup": sim_dns.nslookup,
             "dig": sim_dns.dig, "getent": sim_dns.getent, "curl": _curl,
             "ping": sim_ping.ping, **sim_pods.COMMANDS}
