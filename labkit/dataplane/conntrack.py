"""Which tracked UDP flows a change makes stale, and the conntrack commands that clear them.

Owns kube-proxy's UDP rule: when an endpoint leaves a Service, conntrack entries that
DNAT the Service's VIP to it are deleted, so the next datagram of a long-lived UDP flow is
balanced again to an endpoint that still exists. TCP flows are left to end on their own.
"""
from __future__ import annotations

from labkit.model.cluster import Cluster
from labkit.semantics.services import service_port, used_endpoints


def stale_udp_flows(old: Cluster, new: Cluster) -> list[tuple[str, int, str]]:
    """``(vip, port, endpoint ip)`` for every UDP endpoint in ``old`` that ``new`` no longer has."""
    flows = []
    for ref in sorted(old.services):
        service, vip = old.services[ref], old.service_ips.get(ref)
        if vip is None:
            continue
        for sport in service.ports:
            if sport.protocol != "UDP":
                continue
            before = {e.ip for e in used_endpoints(old, service, sport)}
            after: set[str] = set()
            current = new.services.get(ref)
            if current is not None and new.service_ips.get(ref) == vip:
                now = service_port(current, sport.port, "UDP")
                after = {e.ip for e in used_endpoints(new, current, now)} if now else set()
            flows += [(vip, sport.port, ip) for ip in sorted(before - after)]
    return flows


def delete_script(flows: list[tuple[str, int, str]]) -> str:
    """A shell script deleting those flows; conntrack exits 1 when it found none, which is fine."""
    lines = [f"conntrack -D -p udp --orig-dst {vip} --orig-port-dst {port} --reply-src {ip} >/dev/null 2>&1; "
             "rc=$?; [ $rc -le 1 ] || exit $rc" for vip, port, ip in flows]
    return "\n".join(lines + ["exit 0"])
