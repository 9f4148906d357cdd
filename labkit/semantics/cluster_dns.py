"""Cluster DNS as CoreDNS's ``kubernetes`` plugin and the kubelet define it, computed from the model.

Owns every record cluster DNS serves (zone ``cluster.local``): ``<svc>.<ns>.svc`` (the ClusterIP,
or a headless Service's used endpoint IPs), a headless Service's per-endpoint names
(``<hostname or a-b-c-d>.<svc>.<ns>.svc``) and SRV records, the ClusterIP Services' SRV records,
ExternalName CNAMEs, ``a-b-c-d.<ns>.pod`` and PTRs; how a name is looked up (CNAMEs followed);
a pod's resolver as the kubelet writes it (``dnsPolicy`` ClusterFirst / Default / None merged with
``dnsConfig``), who answers it (only kube-dns and the coredns pod), and the texts of a pod's
``/etc/resolv.conf`` and ``/etc/hosts``. Pure: no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass

from labkit.model import addressing as addr
from labkit.model.cluster import Cluster
from labkit.model.objects import Pod, Service
from labkit.semantics import services as svc

ZONE = addr.CLUSTER_DOMAIN
KUBE_DNS = addr.DNS_SERVICE_IP
DNS_POD = "kube-system/coredns"
MAX_NAMESERVERS = 3  # the kubelet keeps the first three (glibc reads no more)
MAX_SEARCHES = 32
GLIBC_NDOTS = 1
SRV_WEIGHT = 100  # CoreDNS: 100 split evenly over a name's records


@dataclass(frozen=True)
class Records:
    """Everything cluster DNS serves; names are fully qualified, without the trailing dot."""

    a: dict[str, tuple[str, ...]]
    srv: dict[str, tuple[tuple[int, int, int, str], ...]]  # _p._proto.fqdn -> (priority, weight, port, target)
    cname: dict[str, str]
    ptr: dict[str, str]  # IP -> name: ClusterIPs, Services' endpoints (as CoreDNS), then pods' own names


def service_fqdn(service: Service) -> str:
    return f"{service.name}.{service.namespace}.svc.{ZONE}"


def endpoint_name(endpoint: svc.Endpoint) -> str:
    """The first label of an endpoint's own name: its hostname, else its IP dashed."""
    return endpoint.hostname or endpoint.ip.replace(".", "-")


def pod_record(namespace: str, ip: str) -> str:
    return f"{ip.replace('.', '-')}.{namespace}.pod.{ZONE}"


def _ip_key(ip: str) -> tuple[int, ...]:
    return tuple(int(x) for x in ip.split("."))


def records(cluster: Cluster) -> Records:
    """Every record cluster DNS serves for ``cluster``, as CoreDNS's kubernetes plugin serves them."""
    a: dict[str, set[str]] = {}
    srv: dict[str, tuple] = {}
    cname: dict[str, str] = {}
    ptr: dict[str, str] = {}
    for ref in sorted(cluster.services):  # ClusterIPs first: their PTRs win
        service = cluster.services[ref]
        ip = cluster.service_ips.get(ref)
        if ip and not service.external:
            a[service_fqdn(service)] = {ip}
            ptr.setdefault(ip, service_fqdn(service))
    for ref in sorted(cluster.services):
        service = cluster.services[ref]
        fqdn = service_fqdn(service)
        if service.external:
            cname[fqdn] = (service.external_name or "").lower().rstrip(".")
            continue
        # A records do not depend on ports (CoreDNS matches any port for them): every used endpoint has
        # its own name, <hostname or dashed IP>.<svc>.<ns>.svc, for any Service; a headless Service's own
        # name lists them all
        for e in svc.portless_endpoints(cluster, service):
            name = f"{endpoint_name(e)}.{fqdn}"
            a.setdefault(name, set()).add(e.ip)
            ptr.setdefault(e.ip, name)
            if service.headless:
                a.setdefault(fqdn, set()).add(e.ip)
        for p in service.ports:
            if not p.name:
                continue
            key = f"_{p.name}._{p.protocol.lower()}.{fqdn}"
            if not service.headless:
                if fqdn in a:
                    srv[key] = ((0, SRV_WEIGHT, p.port, fqdn),)
                continue
            eps = svc.used_endpoints(cluster, service, p)
            if eps:  # one per endpoint, with the endpoint's own port and name
                weight = max(1, SRV_WEIGHT // len(eps))
                srv[key] = tuple(sorted((0, weight, e.port, f"{endpoint_name(e)}.{fqdn}") for e in eps))
    for ref, ip in sorted(cluster.pod_ips.items()):
        a.setdefault(pod_record(ref.split("/")[0], ip), set()).add(ip)
        # CoreDNS has no PTR for a pod that backs no Service; dnsmasq's host-record implies one, so
        # labkit answers it on both backends (a known, harmless difference)
        ptr.setdefault(ip, pod_record(ref.split("/")[0], ip))
    return Records({k: tuple(sorted(v, key=_ip_key)) for k, v in a.items()}, srv, _without_loops(cname), ptr)


def _without_loops(cname: dict[str, str]) -> dict[str, str]:
    """ExternalName aliases minus those in a loop (s -> s, or a -> b -> a). The API server accepts each
    Service; CoreDNS answers such a name with nothing, and dnsmasq would refuse its whole configuration."""
    looped: set[str] = set()
    for start in cname:
        seen, name = [], start
        while name in cname and name not in seen:
            seen.append(name)
            name = cname[name]
        if name in seen:
            looped.update(seen[seen.index(name):])
    return {k: v for k, v in cname.items() if k not in looped}


@dataclass(frozen=True)
class Answer:
    """What an A query for ``name`` gets: the CNAMEs followed (alias -> target, in order) and the
    addresses at the end (empty: the last name has no address, NXDOMAIN outside the cluster)."""

    name: str
    cnames: tuple[tuple[str, str], ...]
    ips: tuple[str, ...]

    @property
    def canonical(self) -> str:
        return self.cnames[-1][1] if self.cnames else self.name


def answer(cluster: Cluster, fqdn: str, recs: Records | None = None) -> Answer | None:
    """The answer to an A query for ``fqdn``, or None when the name has neither an A record nor a CNAME."""
    recs = recs or records(cluster)
    name = fqdn.lower().rstrip(".")
    if name not in recs.a and name not in recs.cname:
        return None
    chain: list[tuple[str, str]] = []
    while name in recs.cname and len(chain) < 8:  # a loop of aliases ends like CoreDNS's: no address
        chain.append((name, recs.cname[name]))
        name = recs.cname[name]
    return Answer(fqdn.lower().rstrip("."), tuple(chain), recs.a.get(name, ()))


def lookup(cluster: Cluster, fqdn: str) -> list[str] | None:
    """A records for ``fqdn`` as cluster DNS answers them, CNAMEs followed; None means no address."""
    found = answer(cluster, fqdn)
    return list(found.ips) if found is not None and found.ips else None


# ------------------------------------------------------------------ a pod's resolver
@dataclass(frozen=True)
class ResolverConfig:
    nameservers: tuple[str, ...]
    searches: tuple[str, ...]
    options: tuple[tuple[str, str | None], ...]
    ndots: int


def _pod(cluster: Cluster, pod: Pod | str) -> Pod:
    return pod if isinstance(pod, Pod) else cluster.pod(pod)


def _dedup(items) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def resolver(cluster: Cluster, pod: Pod | str) -> ResolverConfig:
    """The pod's resolver as the kubelet writes it: its dnsPolicy's base, then dnsConfig merged
    (nameservers and searches appended without duplicates, options replaced by name)."""
    pod = _pod(cluster, pod)
    policy, extra = pod.spec.dns_policy, pod.spec.dns_config
    if policy == "None":
        servers, searches, options = (), (), {}
    elif policy == "Default":  # the node's resolver: a lab node has no DNS server of its own
        servers, searches, options = (), (), {}
    else:
        servers, searches, options = (KUBE_DNS,), tuple(svc.search_path(pod.namespace)), {"ndots": "5"}
    if extra is not None:
        servers = servers + tuple(extra.nameservers)
        searches = searches + tuple(s.lower().rstrip(".") for s in extra.searches)
        for name, value in extra.options:
            options[name] = value or None
    ndots_text = options.get("ndots")
    ndots = min(15, int(ndots_text)) if ndots_text and ndots_text.isdigit() else GLIBC_NDOTS
    return ResolverConfig(_dedup(servers)[:MAX_NAMESERVERS], _dedup(searches)[:MAX_SEARCHES],
                          tuple(options.items()), ndots)


def resolv_conf(cluster: Cluster, pod: Pod | str) -> str:
    """The pod's ``/etc/resolv.conf``, as the container runtime writes it (search, nameservers, options)."""
    cfg = resolver(cluster, pod)
    lines = [f"search {' '.join(cfg.searches)}"] if cfg.searches else []
    lines += [f"nameserver {s}" for s in cfg.nameservers]
    if cfg.options:
        lines.append("options " + " ".join(n if v is None else f"{n}:{v}" for n, v in cfg.options))
    return "".join(f"{line}\n" for line in lines)


def answering(cluster: Cluster) -> tuple[str, ...]:
    """The addresses where a DNS server answers: the coredns pod, and every ClusterIP whose 53/UDP port
    sends to it (kube-dns, or a learner's own Service selecting ``k8s-app: kube-dns``)."""
    dns_ip = cluster.pod_ips.get(DNS_POD)
    fronts = []
    for ref in sorted(cluster.services):
        service, vip = cluster.services[ref], cluster.service_ips.get(ref)
        port = next((p for p in service.ports if (p.port, p.protocol) == (53, "UDP")), None)
        if vip and port is not None and any(e.ip == dns_ip and e.port == 53
                                            for e in svc.used_endpoints(cluster, service, port)):
            fronts.append(vip)
    return tuple(dict.fromkeys([KUBE_DNS] + fronts + ([dns_ip] if dns_ip else [])))


def nameserver_for(cluster: Cluster, cfg: ResolverConfig) -> tuple[str | None, str | None]:
    """The first of the pod's nameservers that answers (glibc tries them in order), and why none does."""
    live = answering(cluster)
    server = next((s for s in cfg.nameservers if s in live), None)
    if server is not None:
        return server, None
    if not cfg.nameservers:
        return None, ("its /etc/resolv.conf lists no nameserver (a lab node has no DNS server of its own, "
                      "and dnsPolicy Default gives the pod the node's resolver), so the resolver asks 127.0.0.1 "
                      "inside the pod, where nothing listens")
    listed = ", ".join(cfg.nameservers)
    return None, (f"its nameserver{'s' if len(cfg.nameservers) > 1 else ''} ({listed}) never answer"
                  f"{'' if len(cfg.nameservers) > 1 else 's'}: in the lab only cluster DNS answers queries "
                  f"(kube-dns {KUBE_DNS}, or the coredns pod)")


@dataclass(frozen=True)
class Resolution:
    """How a pod's resolver fared with ``name``. ``fqdn`` is the name that answered (None: none did),
    ``cnames`` the aliases followed from it, ``nameserver`` the server that answered (None: no server
    answered at all, ``why`` says why)."""

    name: str
    fqdn: str | None
    ips: tuple[str, ...]
    tried: tuple[str, ...]
    why: str | None = None
    cnames: tuple[tuple[str, str], ...] = ()
    nameserver: str | None = KUBE_DNS

    @property
    def timed_out(self) -> bool:
        return self.nameserver is None


def _resolve(cluster: Cluster, name: str, cfg: ResolverConfig) -> Resolution:
    server, why = nameserver_for(cluster, cfg)
    tried = svc.expand(name, cfg.searches, cfg.ndots)
    if server is None:
        return Resolution(name, None, (), tuple(tried), why, (), None)
    recs, asked, dangling = records(cluster), [], ()
    for fqdn in tried:
        asked.append(fqdn)
        found = answer(cluster, fqdn, recs)
        if found is not None and found.ips:
            return Resolution(name, fqdn, found.ips, tuple(asked), None, found.cnames, server)
        if found is not None and not dangling:  # a CNAME to a name without address: NXDOMAIN, search goes on
            dangling = found.cnames
    if dangling:
        why = (f"{dangling[0][0]} is a CNAME to {dangling[-1][1]}, and the lab has no upstream DNS server: "
               f"{dangling[-1][1]} does not resolve (NXDOMAIN)")
    else:
        why = f"the name {name!r} does not exist in cluster DNS (tried {', '.join(asked)}): NXDOMAIN"
    return Resolution(name, None, (), tuple(asked), why, dangling, server)


def cluster_first(namespace: str) -> ResolverConfig:
    return ResolverConfig((KUBE_DNS,), tuple(svc.search_path(namespace)), (("ndots", "5"),), svc.NDOTS)


def resolve(cluster: Cluster, namespace: str, name: str) -> Resolution:
    """Resolve ``name`` as a ClusterFirst pod in ``namespace`` would (its search path, ndots:5)."""
    return _resolve(cluster, name, cluster_first(namespace))


def resolve_for(cluster: Cluster, pod: Pod | str, name: str) -> Resolution:
    """Resolve ``name`` with the pod's own resolver (dnsPolicy, dnsConfig): no answer and ``why`` when
    none of its nameservers answers."""
    return _resolve(cluster, name, resolver(cluster, _pod(cluster, pod)))


def resolve_from(cluster: Cluster, src: str, name: str) -> Resolution:
    """As ``src`` would resolve ``name``: a pod with its own resolver; anything else (the lab's internet
    host, which has no cluster DNS of its own) as a ClusterFirst pod of ``default``."""
    return resolve_for(cluster, src, name) if src in cluster.pods else resolve(cluster, "default", name)


# ------------------------------------------------------------------ the pod's own name
def pod_hostname(pod: Pod) -> str:
    """The pod's hostname: ``spec.hostname``, else its name cut to 63 characters (as the kubelet, without
    a trailing '-' or '.')."""
    if pod.spec.hostname:
        return pod.spec.hostname
    return pod.name[:63].rstrip("-.") if len(pod.name) > 63 else pod.name


def pod_fqdn(pod: Pod) -> str | None:
    """``<hostname>.<subdomain>.<ns>.svc.cluster.local`` when the pod sets a subdomain, else None."""
    if not pod.spec.subdomain:
        return None
    return f"{pod_hostname(pod)}.{pod.spec.subdomain}.{pod.namespace}.svc.{ZONE}"


IP6_LINES = ("::1\tlocalhost ip6-localhost ip6-loopback", "fe00::0\tip6-localnet", "fe00::0\tip6-mcastprefix",
             "fe00::1\tip6-allnodes", "fe00::2\tip6-allrouters")


def hosts_entries(cluster: Cluster, pod: Pod | str) -> list[tuple[str, tuple[str, ...]]]:
    """The pod's ``/etc/hosts`` as (address, names) pairs, in file order."""
    pod = _pod(cluster, pod)
    out = [("127.0.0.1", ("localhost",))] + [(ip, tuple(names.split())) for ip, names in
                                             (line.split("\t", 1) for line in IP6_LINES)]
    ip, fqdn = cluster.pod_ips.get(pod.ref), pod_fqdn(pod)
    if ip is not None:
        out.append((ip, (fqdn, pod_hostname(pod)) if fqdn else (pod_hostname(pod),)))
    return out


def etc_hosts(cluster: Cluster, pod: Pod | str) -> str:
    """The pod's ``/etc/hosts`` as the kubelet writes it."""
    lines = ["# Kubernetes-managed hosts file."]
    lines += [f"{ip}\t" + "\t".join(names) if ":" not in ip else f"{ip}\t{' '.join(names)}"
              for ip, names in hosts_entries(cluster, pod)]
    return "".join(f"{line}\n" for line in lines)
