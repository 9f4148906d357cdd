"""``ping`` in a pod of a simulated lab: ICMP echo as labkit's nftables policies treat it.

Owns the sim backend's answer to ``ping -c N [-W N] [-q] [-n] IP`` (a pod's IP or the lab's
internet host), printed as iputils' ``ping`` prints it on the docker backend. The
NetworkPolicy API has ports for TCP, UDP and SCTP only, so what a policy does to ICMP is
left to each implementation. labkit's rules (``dataplane/nft_pol.py``) decide it this way,
and so does this module: a pod not isolated for a direction lets ICMP through; an isolated
pod lets it through only by a rule *without* ``ports`` whose peers match (a rule that lists
ports matches only those TCP/UDP/SCTP ports); replies of an allowed echo are let back, like
every reply. A pod can always ping itself. Anything else exits through the caller's
"not simulated" answer.
"""
from __future__ import annotations

from labkit.model import addressing as addr
from labkit.semantics import oracle
from labkit.semantics import policy as pol

ICMP = "ICMP"  # not a NetworkPolicy protocol: no port entry ever matches it, peer-only rules do
SIMULATED_RTT = "0.100"


def echo_allowed(cluster, source, ip: str) -> bool | None:
    """Would an ICMP echo from pod ``source`` to ``ip`` be answered? None: not modelled."""
    owner = cluster.pod_by_ip().get(ip)
    if owner == source.ref:
        return True
    if owner is not None:
        target = cluster.pods[owner]
        return (pol.egress(cluster, source, target, ip, 0, ICMP).allowed
                and pol.ingress(cluster, target, source, cluster.pod_ips[source.ref], 0, ICMP).allowed)
    if ip == addr.INTERNET_HOST_IP:
        return pol.egress(cluster, source, None, ip, 0, ICMP).allowed
    return None


def _ttl(cluster, source, ip: str) -> int:
    """64 minus the routers on the way: the source's node, and the target's node if another."""
    owner = cluster.pod_by_ip().get(ip)
    if owner == source.ref:
        return 64
    here = cluster.pod_nodes[source.ref]
    there = cluster.pod_nodes[owner] if owner is not None else 1  # the internet host hangs off node-1
    return 63 if here == there else 62


def _parse(args: list[str]) -> tuple[int, bool, str] | None:
    """(count, quiet, address) from ``-c N [-W N] [-q] [-n] IP``; None if not simulated."""
    count, quiet, targets, i = None, False, [], 0
    while i < len(args):
        arg = args[i]
        if arg in ("-c", "-W"):
            if i + 1 >= len(args) or not args[i + 1].isdigit():
                return None
            value, i = args[i + 1], i + 2
        elif arg[:2] in ("-c", "-W") and arg[2:].isdigit():
            value, i = arg[2:], i + 1
        elif arg in ("-q", "-n"):
            quiet, i = quiet or arg == "-q", i + 1
            continue
        elif arg.startswith("-"):
            return None
        else:
            targets.append(arg)
            i += 1
            continue
        if arg.startswith("-c"):
            count = int(value)
    if count is None or not 1 <= count <= 100 or len(targets) != 1 or not oracle.is_ip(targets[0]):
        return None  # without -c ping never ends; names and odd forms are not simulated
    return count, quiet, targets[0]


def ping(ctx, args: list[str]) -> tuple[int, str] | None:
    """The sim_exec handler: ``(exit code, output)``, or None when not simulated."""
    parsed = _parse(args)
    if parsed is None:
        return None
    count, quiet, ip = parsed
    answered = echo_allowed(ctx.cluster, ctx.pod, ip)
    if answered is None:
        return None
    lines = [f"PING {ip} ({ip}) 56(84) bytes of data."]
    if answered and not quiet:
        ttl = _ttl(ctx.cluster, ctx.pod, ip)
        lines += [f"64 bytes from {ip}: icmp_seq={n} ttl={ttl} time={SIMULATED_RTT} ms" for n in range(1, count + 1)]
    received = count if answered else 0
    lines += ["", f"--- {ip} ping statistics ---",
              f"{count} packets transmitted, {received} received, {100 - 100 * received // count}% packet loss, "
              f"time {(count - 1) * 1000}ms"]
    lines.append(f"rtt min/avg/max/mdev = {SIMULATED_RTT}/{SIMULATED_RTT}/{SIMULATED_RTT}/0.000 ms" if answered else "")
    return (0 if answered else 1), "\n".join(lines) + "\n"
