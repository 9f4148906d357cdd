"""Cluster DNS as dnsmasq configuration, rendered from the model (the CoreDNS analogue).

Owns the records the ``kube-system/coredns`` pod serves: ``<svc>.<ns>.svc.cluster.local``
(the ClusterIP, or every ready endpoint's IP for a headless Service), SRV records for named
ports, ``a-b-c-d.<ns>.pod.cluster.local`` for every pod, and NXDOMAIN for everything else
(the lab has no upstream). Pure: the same model gives the same text.
"""
from __future__ import annotations

from labkit.model.addressing import CLUSTER_DOMAIN
from labkit.model.cluster import Cluster
from labkit.semantics.services import lookup

def render(cluster: Cluster) -> str:
    lines = ["# labkit cluster DNS: records rendered from the lab's model",
             "no-resolv", "no-hosts", "no-poll", "user=root", "log-queries", "log-facility=-",
             "# NXDOMAIN for every name without a record: the lab has no upstream DNS", "address=/#/"]
    for ref in sorted(cluster.services):
        service = cluster.services[ref]
        fqdn = f"{service.name}.{service.namespace}.svc.{CLUSTER_DOMAIN}"
        ips = lookup(cluster, fqdn) or []
        lines += [f"host-record={fqdn},{ip}" for ip in ips]
        for sport in service.ports:
            if sport.name and ips:
                lines.append(f"srv-host=_{sport.name}._{sport.protocol.lower()}.{fqdn},{fqdn},{sport.port}")
    for ref in sorted(cluster.pod_ips):
        ns = ref.split("/")[0]
        ip = cluster.pod_ips[ref]
        lines.append(f"host-record={ip.replace('.', '-')}.{ns}.pod.{CLUSTER_DOMAIN},{ip}")
    return "\n".join(lines) + "\n"
