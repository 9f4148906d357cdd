"""Cluster DNS as dnsmasq configuration, rendered from the model (the CoreDNS analogue).

Owns how the records of ``labkit.semantics.cluster_dns.records`` become dnsmasq lines: A
records (``host-record``: Services' ClusterIPs, headless Services' endpoints and their
per-endpoint names, ``a-b-c-d.<ns>.pod``), SRV records (``srv-host``, one per endpoint of a
headless Service), ExternalName CNAMEs (``cname``: dnsmasq follows a target it holds itself;
for an outside name it answers the CNAME alone, as the lab has no upstream), PTRs
(``ptr-record``, which win over the ones ``host-record`` implies), and NXDOMAIN for every other
name. Pure: the same model gives the same text.
"""
from __future__ import annotations

from labkit.model.cluster import Cluster
from labkit.semantics.cluster_dns import records


def _reverse(ip: str) -> str:
    return ".".join(reversed(ip.split("."))) + ".in-addr.arpa"


def _dns_order(name: str) -> tuple[str, ...]:
    """Names grouped as DNS reads them, right to left: zone, namespace, Service, endpoint."""
    return tuple(reversed(name.split(".")))


def render(cluster: Cluster) -> str:
    recs = records(cluster)
    lines = ["# labkit cluster DNS: records rendered from the lab's model",
             "no-resolv", "no-hosts", "no-poll", "user=root", "log-queries", "log-facility=-",
             "# NXDOMAIN for every name without a record: the lab has no upstream DNS", "address=/#/"]
    for name in sorted(recs.a, key=_dns_order):
        lines += [f"host-record={name},{ip}" for ip in recs.a[name]]
    for name in sorted(recs.srv, key=_dns_order):
        lines += [f"srv-host={name},{target},{port},{priority},{weight}"
                  for priority, weight, port, target in recs.srv[name]]
    for alias in sorted(recs.cname, key=_dns_order):
        lines.append(f"cname={alias},{recs.cname[alias]}")
    for ip in sorted(recs.ptr, key=lambda a: tuple(map(int, a.split(".")))):
        lines.append(f"ptr-record={_reverse(ip)},{recs.ptr[ip]}")
    return "\n".join(lines) + "\n"
