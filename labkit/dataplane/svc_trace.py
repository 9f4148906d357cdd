"""One connection through labkit's kube-proxy rules: the relevant lines of ``ip labkit-svc`` only.

Owns the reading of a node's Service table (as ``lab.rules()`` shows it: the kernel's own
listing on docker, the rendered text on sim) for one connection to a ClusterIP or a
NodePort: the dispatch map entry, the Service port's chain with its random choice of
endpoint, the chosen endpoint's chain with its DNAT, and the masquerade when it applies
(hairpin, NodePort), each step with one sentence saying which chains of the real
kube-proxy do the same, in its nftables mode (``pkg/proxy/nftables``: table
``ip kube-proxy``, map ``service-ips``, chains ``service-…``, ``endpoint-…``,
``external-…``, ``mark-for-masquerade``, ``masquerading``) and its iptables mode
(``KUBE-SERVICES``, ``KUBE-SVC-…``, ``KUBE-SEP-…``, ``KUBE-NODEPORTS``/``KUBE-EXT-…``,
``KUBE-MARK-MASQ``, ``KUBE-POSTROUTING``). Pure: text and model in, a value out.
"""
from __future__ import annotations

import html
import re
import textwrap
from dataclasses import dataclass

from labkit.dataplane.names import SVC_TABLE
from labkit.errors import ModelError
from labkit.model import addressing as addr
from labkit.model.cluster import Cluster
from labkit.results import ProbeResult
from labkit.semantics import cluster_dns, services

_PROTO = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
_BLOCK = re.compile(r"^\s*(chain|map) (\S+) \{\s*$")
NOTE_WIDTH = 100  # titles, kube-proxy notes and the result wrap at this many columns (rule lines do not)

KP_DISPATCH = ("kube-proxy (nftables mode) does this in chain 'services': 'ip daddr . meta l4proto . th dport "
               "vmap @service-ips', whose element for this ClusterIP is 'goto service-<hash>-<ns>/<name>/<proto>/"
               "<port>'; in iptables mode it is a rule of KUBE-SERVICES: '-d <ClusterIP> -p tcp --dport <port> "
               "-j KUBE-SVC-<hash>'")
KP_NODEPORT = ("kube-proxy (nftables mode) looks NodePorts up in map 'service-nodeports' and goes to chain "
               "'external-<hash>-<ns>/<name>/<proto>/<port>', which jumps to 'mark-for-masquerade' and then to the "
               "Service chain; in iptables mode: KUBE-NODEPORTS -> KUBE-EXT-<hash> -> KUBE-MARK-MASQ and KUBE-SVC-<hash>")
KP_CHOICE = ("kube-proxy (nftables mode) chooses in chain 'service-<hash>-<ns>/<name>/<proto>/<port>' with the same "
             "'numgen random mod N vmap { 0 : goto endpoint-…, … }'; in iptables mode KUBE-SVC-<hash> has one rule "
             "per endpoint, '-m statistic --mode random --probability 1/N' (then 1/(N-1), …) -j KUBE-SEP-<hash>")
KP_DNAT = ("kube-proxy (nftables mode) has one chain per endpoint, 'endpoint-<hash>-<ns>/<name>/<proto>/<port>__<ip>/"
           "<port>': 'ip saddr <ip> jump mark-for-masquerade' (hairpin) and 'meta l4proto tcp dnat to <ip>:<port>'; "
           "in iptables mode KUBE-SEP-<hash>: '-s <ip> -j KUBE-MARK-MASQ' and '-j DNAT --to-destination <ip>:<port>'")
KP_MASQ = ("kube-proxy marks such packets in chain 'mark-for-masquerade' ('mark set mark or 0x4000') and its chain "
           "'masquerading', on the postrouting hook, masquerades marked packets ('masquerade fully-random'); in "
           "iptables mode KUBE-MARK-MASQ sets the mark and KUBE-POSTROUTING does '-j MASQUERADE --random-fully'")
KP_NODEPORT_LOCAL = ("with externalTrafficPolicy Local kube-proxy's chain 'external-<hash>-…' sends pod traffic "
                     "('ip saddr <cluster CIDR>') to the Service chain, masqueraded, and the rest to chain 'local-…', "
                     "unmasqueraded; in iptables mode KUBE-EXT-<hash> does the same with KUBE-SVC-<hash> and "
                     "KUBE-SVL-<hash>")
KP_LOCAL = ("kube-proxy (nftables mode) sends Local traffic to chain 'local-<hash>-<ns>/<name>/<proto>/<port>', which "
            "chooses among the endpoints on its own node only; in iptables mode KUBE-SVL-<hash>")
KP_NOLOCAL = ("kube-proxy (nftables mode) drops it in chain 'filter-prerouting' / 'filter-output' through map "
              "'no-endpoint-services' ('... comment \"<ns>/<name>:<port> has no local endpoints\" : drop'); in "
              "iptables mode a KUBE-SVL-<hash> or KUBE-EXT-<hash> chain without endpoints has a '-j DROP' rule")
KP_EMPTY = ("kube-proxy (nftables mode) keeps such Services in map 'no-endpoint-services' and rejects new connections "
            "in chain 'endpoints-check'; in iptables mode KUBE-SERVICES' filter rules '-j REJECT' them")


@dataclass(frozen=True)
class TraceStep:
    """One step of the walk: what happens, the rule lines that do it, and kube-proxy's equivalent."""

    title: str
    lines: tuple[str, ...]
    kube_proxy: str


@dataclass(frozen=True)
class ServiceTrace:
    """One connection from ``src`` to ``ip:port`` traced through the Service rules of ``node``."""

    src: str
    ip: str
    port: int
    protocol: str
    node: str
    service: str
    result: ProbeResult
    steps: tuple[TraceStep, ...]

    @property
    def lines(self) -> list[str]:
        """Every rule line shown, in order."""
        return [line for step in self.steps for line in step.lines]

    def __repr__(self) -> str:
        head = (f"{self.src} -> {self.ip}:{self.port}/{self.protocol} (Service {self.service}), "
                f"rules of table ip {SVC_TABLE} in {self.node}:")
        out = [head]
        for i, step in enumerate(self.steps, start=1):
            out += _wrap(f"{i}. {step.title}", "", "   ")
            out += [f"     {line}" for line in step.lines]
            out += _wrap(f"{step.kube_proxy}.", "   ~ ", "     ")
        out += _wrap(f"Result: {self.result!r}", "", "   ")
        return "\n".join(out)

    def _repr_html_(self) -> str:  # pre-wrap: a long rule line wraps instead of scrolling sideways
        return f'<pre style="white-space: pre-wrap">{html.escape(repr(self))}</pre>'


def _wrap(text: str, first: str, rest: str) -> list[str]:
    """``text`` wrapped to ``NOTE_WIDTH`` columns (words and rule fragments are never split)."""
    return textwrap.wrap(text, width=NOTE_WIDTH, initial_indent=first, subsequent_indent=rest,
                         break_on_hyphens=False, break_long_words=False)


def _blocks(text: str) -> dict[str, list[str]]:
    """Every chain and map of a listing, by name, as its stripped lines (either nft formatting)."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        match = _BLOCK.match(raw)
        if match:
            current = found.setdefault(match.group(2), [])
        elif current is not None:
            if line == "}":
                current = None
            elif line:
                current.append(line)
    return found


def node_section(rules: str, node: str) -> str:
    """The part of ``lab.rules()`` for one node (the whole text when the lab has one node)."""
    parts = re.split(r"^# (node-\d+)\n", rules, flags=re.M)
    sections = dict(zip(parts[1::2], parts[2::2]))
    return sections.get(node, rules if not sections else "")


def _element(block: list[str], key: str) -> str | None:
    """The verdict target of ``key`` in a map's elements (``key : goto X``)."""
    match = re.search(r"(?<![\d.])" + re.escape(key) + r" : goto ([^\s,}]+)", " ".join(block))
    return match.group(1) if match else None


def _first(block: list[str], needle: str) -> str:
    return next((line for line in block if needle in line), "")


def _show(chain: str, lines: list[str]) -> list[str]:
    return [f"{chain}: {line}" for line in lines]


def destination(cluster: Cluster, src: str, dst: str) -> str:
    """The address a connection to ``dst`` goes to: a ClusterIP (by IP, ``ns/name`` or a DNS
    name, resolved in ``src``'s namespace) or a node address (NodePorts)."""
    if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", dst):
        return dst
    if "/" in dst and dst in cluster.services:
        ip = cluster.service_ips.get(dst)
    else:
        ips = cluster_dns.resolve_from(cluster, src, dst).ips
        ip = ips[0] if ips else None
    if ip is None:
        raise ModelError(f"{dst!r} is not a Service with a ClusterIP: give its DNS name, 'namespace/name', its "
                         "ClusterIP or a node address (for a NodePort)", path="dst")
    return ip


def trace(cluster: Cluster, rules: str, src: str, ip: str, port: int, protocol: str,
          result: ProbeResult) -> ServiceTrace:
    """The rule lines one connection (``result``, already made) went through in its translating node."""
    proto = _PROTO[protocol]
    node_ips = {addr.node_ip(i): i for i in range(1, cluster.node_count + 1)}
    if ip in node_ips:  # a NodePort: the node addressed translates
        index, service_ref = node_ips[ip], _nodeport_service(cluster, port, protocol)
    else:
        svc = services.service_by_ip(cluster, ip)
        if svc is None or src not in cluster.pods:
            raise ModelError(f"{ip} is not a ClusterIP of this lab, nor a node address: nothing of table ip "
                             f"{SVC_TABLE} applies to it", path="dst")
        index, service_ref = cluster.pod_nodes[src], svc.ref
    node = addr.node_name(index)
    blocks = _blocks(node_section(rules, node))
    steps: list[TraceStep] = []
    nodeport = ip in node_ips
    if nodeport:
        entry = _element(blocks.get("nodeport-dispatch", []), f"{proto} . {port}")
        lookup = _first(blocks.get("dnat-in", []), "@nodeport-dispatch")
        if entry is None:
            return _unserved(src, ip, port, protocol, node, service_ref, result, blocks,
                             f"{proto} . {port}", lookup)
        ext_lines = blocks.get(entry, [])
        steps.append(TraceStep(f"dispatch: NodePort {port}/{protocol} on {node}'s address {ip}",
                               tuple(_show("dnat-in", [lookup]) + [f"nodeport-dispatch: {proto} . {port} : goto {entry}"]
                                     + _show(entry, ext_lines)),
                               KP_NODEPORT_LOCAL if _is_local(ext_lines) else KP_NODEPORT))
        svc_chain = _nodeport_target(ext_lines, src in cluster.pods)
        if svc_chain is None:  # externalTrafficPolicy Local and no endpoint on this node
            return _unserved(src, ip, port, protocol, node, service_ref, result, blocks,
                             f"{ip} . {proto} . {port}", lookup)
    else:
        key = f"{ip} . {proto} . {port}"
        lookup = _first(blocks.get("dnat-in", []), "@svc-dispatch")
        svc_chain = _element(blocks.get("svc-dispatch", []), key)
        if svc_chain is None:
            return _unserved(src, ip, port, protocol, node, service_ref, result, blocks, key, lookup)
        steps.append(TraceStep(f"dispatch: the ClusterIP {ip} port {port}/{protocol} is Service {service_ref}",
                               tuple(_show("dnat-in", [lookup]) + [f"svc-dispatch: {key} : goto {svc_chain}"]),
                               KP_DISPATCH))
    svc_lines = blocks.get(svc_chain, [])
    targets = re.findall(r"goto (ep_[^\s,}]+)", " ".join(svc_lines))
    local = svc_chain.startswith("local_")
    where = f" on {node} (traffic policy Local)" if local else ""
    steps.append(TraceStep(f"endpoint choice: one of {len(targets)} endpoint(s){where}, at random",
                           tuple(_show(svc_chain, svc_lines)), KP_LOCAL if local else KP_CHOICE))
    chosen = next((t for t in targets if result.answered_by
                   and f"endpoint {result.answered_by} " in " ".join(blocks.get(t, []))), None)
    if chosen is not None:
        steps.append(TraceStep(f"DNAT: this connection got {result.answered_by}",
                               tuple(_show(chosen, blocks.get(chosen, []))), KP_DNAT))
    hairpin = result.answered_by == src
    if nodeport and local:  # externalTrafficPolicy Local from outside the pods: the client's address is kept
        pass
    elif nodeport or hairpin:
        why = "NodePort traffic" if nodeport else f"hairpin: {src} reached itself through its own Service"
        seen = f"; the server saw {result.client_ip}" if result.client_ip else ""
        steps.append(TraceStep(f"masquerade ({why}): the source becomes {node}'s address{seen}",
                               tuple(_show("want-masq", blocks.get("want-masq", []))
                                     + _show("snat-out", [_first(blocks.get("snat-out", []), "mark")])),
                               KP_MASQ))
    return ServiceTrace(src, ip, port, protocol, node, service_ref, result, tuple(steps))


def _is_local(ext_lines: list[str]) -> bool:
    return any(line.startswith(f"ip saddr {addr.POD_CIDR} goto ") for line in ext_lines)


def _nodeport_target(ext_lines: list[str], from_pod: bool) -> str | None:
    """The chain a NodePort's ``ext_`` chain sends this client to: with externalTrafficPolicy Local,
    pods go cluster-wide (``ip saddr <pod CIDR> goto``) and others to this node's endpoints (None: none)."""
    pod_rule = f"ip saddr {addr.POD_CIDR} goto "
    for line in ext_lines:
        if line.startswith(pod_rule) and from_pod:
            return line.split("goto ", 1)[1]
        if line.startswith("goto "):
            return line.split("goto ", 1)[1]
    return None


def _nodeport_service(cluster: Cluster, port: int, protocol: str) -> str:
    for ref, svc in sorted(cluster.services.items()):
        if any(p.node_port == port and p.protocol == protocol for p in svc.ports):
            return ref
    raise ModelError(f"no Service has NodePort {port}/{protocol}", path="port")


def _unserved(src: str, ip: str, port: int, protocol: str, node: str, service: str, result: ProbeResult,
              blocks: dict[str, list[str]], key: str, lookup: str) -> ServiceTrace:
    """A Service port without ready endpoints: the svc-empty entry and the refusal."""
    target = _element(blocks.get("svc-empty", []), key)
    lines = [f"svc-empty: {key} : goto {target}"] + _show(target, blocks.get(target, [])) if target else []
    guard = _first(blocks.get("svc-guard-in", []), "@svc-empty")
    if target and target.startswith("nolocal_"):
        title, note = f"no endpoint on {node} (traffic policy Local): the connection is dropped", KP_NOLOCAL
    else:
        title, note = "no ready endpoint: the connection is refused at once", KP_EMPTY
    step = TraceStep(title, tuple(_show("dnat-in", [lookup]) + _show("svc-guard-in", [guard]) + lines), note)
    return ServiceTrace(src, ip, port, protocol, node, service, result, (step,))
