"""Name commands "run" in a pod of a simulated lab, answered from cluster DNS and the pod's resolver.

Owns what ``sim_exec`` prints for ``hostname [-i|-f]``, ``cat /etc/resolv.conf|/etc/hosts|/etc/hostname``,
``getent hosts NAME`` (the hosts file first, then DNS, as glibc's ``files dns``), ``nslookup
[-timeout=N] [-retry=N] [-type=A|SRV] NAME|IP`` (CNAMEs shown as ``canonical name = ...``, PTRs of
ClusterIPs and headless endpoints) and ``dig +short [+search] [+time=N] [+tries=N] [A|SRV] NAME``
(a CNAME line before the addresses). Every query goes through the pod's own ``/etc/resolv.conf``
(``labkit.semantics.cluster_dns``): only kube-dns and the coredns pod answer, and the query obeys the
pod's egress policy and the DNS pod's ingress policy, as in the oracle. The texts are bind9's and
glibc's as the docker backend's image prints them.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from labkit.runtime import sim_pods
from labkit.semantics import cluster_dns as dns
from labkit.semantics import oracle, services

# bind9's nslookup: 3 tries of 5 s by default; dig: 3 tries of 5 s.
NSLOOKUP_RETRY = 2
DIG_TRIES = 3


@dataclass(frozen=True)
class Asked:
    """Which server answers the pod's queries (None: none does); ``silent``: the server shown timing out
    (None with ``server`` None: the pod lists no nameserver, so its tools ask ::1 and 127.0.0.1)."""

    server: str | None
    silent: str | None = None


def ask(ctx) -> Asked:
    cfg = dns.resolver(ctx.cluster, ctx.pod)
    server, _ = dns.nameserver_for(ctx.cluster, cfg)
    if ctx.pod.ref == oracle.DNS_POD:
        return Asked(server or dns.KUBE_DNS)
    if server is None:
        return Asked(None, cfg.nameservers[0] if cfg.nameservers else None)
    if not oracle.dns_outcome(ctx.cluster, ctx.pod).allowed:
        return Asked(None, server)
    return Asked(server)


def unanswered(asked: Asked, name: str, tries: int) -> str:
    """bind9's lines when no server answers (a pod has no IPv6: ::1 cannot even be asked)."""
    if asked.silent is None:
        v6 = f";; UDP setup with ::1#53(::1) for {name.rstrip('.')} failed: address not available.\n"
        return ((v6 + ";; no servers could be reached\n") * 2 + v6
                + ";; communications error to 127.0.0.1#53: connection refused\n;; no servers could be reached\n")
    return f";; communications error to {asked.silent}#53: timed out\n" * max(1, tries) + \
        ";; no servers could be reached\n"


def _value(arg: str, prefix: str) -> int | None:
    """``-timeout=3`` with prefix ``-timeout=`` -> 3; None if malformed."""
    value = arg[len(prefix):]
    return int(value) if value.isdigit() else None


def _srv_lines(recs: dns.Records, fqdn: str) -> list[str]:
    return [f"{p} {w} {port} {target}." for p, w, port, target in recs.srv.get(fqdn, ())]


# ---------------------------------------------------------------- hostname and files
def hostname(ctx, args: list[str]) -> tuple[int, str] | None:
    name = dns.pod_hostname(ctx.pod)
    if not args:
        return 0, f"{name}\n"
    if args in (["-i"], ["--ip-address"]):
        return 0, f"{ctx.cluster.pod_ips[ctx.pod.ref]}\n"
    if args in (["-f"], ["--fqdn"], ["--long"]):
        return 0, f"{dns.pod_fqdn(ctx.pod) or name}\n"
    return None


def cat(ctx, args: list[str]) -> tuple[int, str] | None:
    texts = {"/etc/resolv.conf": lambda: dns.resolv_conf(ctx.cluster, ctx.pod),
             "/etc/hosts": lambda: dns.etc_hosts(ctx.cluster, ctx.pod),
             "/etc/hostname": lambda: f"{dns.pod_hostname(ctx.pod)}\n"}
    if len(args) != 1 or args[0] not in texts or args[0] not in ctx.files:
        return sim_pods.cat(ctx, args)
    return 0, texts[args[0]]()


def from_hosts_file(ctx, name: str) -> list[tuple[str, tuple[str, ...]]]:
    """getent's files lookup: IPv6 lines first (it asks for AF_INET6 first), the first family that matches."""
    entries = dns.hosts_entries(ctx.cluster, ctx.pod)
    wanted = name.lower().rstrip(".")
    for v6 in (True, False):
        found = [(ip, names) for ip, names in entries
                 if (":" in ip) == v6 and wanted in (n.lower() for n in names)]
        if found:
            return [(str(ipaddress.ip_address(ip)), found[0][1]) for ip, _ in found]
    return []


def getent(ctx, args: list[str]) -> tuple[int, str] | None:
    if len(args) != 2 or args[0] != "hosts":
        return None
    name = args[1]
    files = from_hosts_file(ctx, name)
    if files:
        return 0, "".join(f"{ip:<15} {' '.join(names)}\n" for ip, names in files)
    if ask(ctx).server is None:
        return 2, ""
    res = dns.resolve_for(ctx.cluster, ctx.pod, name)
    if not res.ips:
        return 2, ""
    canonical = res.cnames[-1][1] if res.cnames else res.fqdn
    aliases = "".join(f" {alias}" for alias, _ in res.cnames)
    return 0, "".join(f"{ip:<15} {canonical}{aliases}\n" for ip in res.ips)


# ---------------------------------------------------------------- nslookup
def nslookup(ctx, args: list[str]) -> tuple[int, str] | None:
    retry, kind, names = NSLOOKUP_RETRY, "A", []
    for arg in args:
        if arg.startswith("-retry="):
            retry = _value(arg, "-retry=")
        elif arg.startswith("-timeout="):
            if _value(arg, "-timeout=") is None:
                return None
        elif arg.startswith(("-type=", "-query=", "-q=")):
            kind = arg.split("=", 1)[1].upper()
            if kind not in ("A", "SRV"):
                return None
        elif arg.startswith("-"):
            return None
        else:
            names.append(arg)
    if retry is None or len(names) != 1:
        return None
    name = names[0]
    asked = ask(ctx)
    if asked.server is None:
        return 1, unanswered(asked, name, retry + 1) + "\n"
    recs = dns.records(ctx.cluster)
    if oracle.is_ip(name):  # a reverse lookup: bind9's nslookup prints no server header for it
        reverse = ".".join(reversed(name.split("."))) + ".in-addr.arpa"
        if name in recs.ptr:
            return 0, f"{reverse}\tname = {recs.ptr[name]}.\n\n"
        return 1, f"** server can't find {reverse}: NXDOMAIN\n\n"
    head = f"Server:\t\t{asked.server}\nAddress:\t{asked.server}#53\n\n"
    missing = head + f"** server can't find {name.rstrip('.')}: NXDOMAIN\n\n"
    if kind == "SRV":
        cfg = dns.resolver(ctx.cluster, ctx.pod)
        fqdn = next((f for f in services.expand(name, cfg.searches, cfg.ndots) if f in recs.srv), None)
        if fqdn is None:
            return 1, missing
        return 0, head + "".join(f"{fqdn}\tservice = {line}\n" for line in _srv_lines(recs, fqdn)) + "\n"
    res = dns.resolve_for(ctx.cluster, ctx.pod, name)
    if not res.ips:
        return 1, missing
    aliases = "".join(f"{alias}\tcanonical name = {target}.\n" for alias, target in res.cnames)
    canonical = res.cnames[-1][1] if res.cnames else res.fqdn
    return 0, head + aliases + "".join(f"Name:\t{canonical}\nAddress: {ip}\n" for ip in res.ips) + "\n"


# ---------------------------------------------------------------- dig
def dig(ctx, args: list[str]) -> tuple[int, str] | None:
    short, search, tries, kind, names = False, False, DIG_TRIES, "A", []
    for arg in args:
        if arg == "+short":
            short = True
        elif arg == "+search":
            search = True
        elif arg.startswith("+tries="):
            tries = _value(arg, "+tries=")
        elif arg.startswith("+time="):
            if _value(arg, "+time=") is None:
                return None
        elif arg.upper() in ("A", "SRV") and not names:
            kind = arg.upper()
        elif arg.startswith(("+", "-", "@")):
            return None
        else:
            names.append(arg)
    if not short or tries is None or len(names) != 1:
        return None  # dig's full answer (with its header, timings and date) is not simulated
    name = names[0]
    asked = ask(ctx)
    if asked.server is None:
        return 9, unanswered(asked, name, tries)
    cfg = dns.resolver(ctx.cluster, ctx.pod)
    # dig does not use the search path unless asked: "web" is the name "web."
    tried = services.expand(name, cfg.searches, cfg.ndots) if search else [name.lower().rstrip(".")]
    recs = dns.records(ctx.cluster)
    if kind == "SRV":
        fqdn = next((f for f in tried if f in recs.srv), None)
        return 0, "".join(f"{line}\n" for line in _srv_lines(recs, fqdn)) if fqdn else ""
    answers = [a for a in (dns.answer(ctx.cluster, f, recs) for f in tried) if a is not None]
    found = next((a for a in answers if a.ips), None if search else (answers[0] if answers else None))
    if found is None:
        return 0, ""
    return 0, "".join(f"{target}.\n" for _, target in found.cnames) + "".join(f"{ip}\n" for ip in found.ips)
