"""Looking at the lab's packets: one connection's walk through the kernel's rules, captures, the
flow log, and the read-only views of a node.

Owns ``Observing``, a mixin of ``Lab`` (which sets ``cluster``, ``_runtime``, ``_lock`` and the
methods ``_check_open``, ``probe``, ``rules``): every method here reads the lab, none changes
its objects. The work is done by ``labkit.probe.walk`` (the packet walk), ``labkit.probe.pcap``
(captures) and ``labkit.probe.flowlog`` (the live flow log) and by the runtime.
"""
from __future__ import annotations

import random
from dataclasses import replace

from labkit.dataplane import names, nft_trace, svc_trace
from labkit.errors import ModelError
from labkit.model import fields
from labkit.probe import pcap
from labkit.probe import walk as packet_walk
from labkit.probe.capture import Capture, reserve_path
from labkit.results import ExecResult
from labkit.runtime import capturing
from labkit.runtime.base import ProbeRequest
from labkit.semantics import cluster_dns, oracle


class Observing:
    """The observation side of ``Lab``."""

    def exec_node(self, node: str, argv: list[str]) -> ExecResult:
        """A read-only view of ``node`` ("node-1"): ``["ip", "route"]``, ``["ip", "addr", "show", "cni0"]``,
        ``["ip", "link", "show", "master", "cni0"]`` or ``["bridge", "link"]`` (nothing else runs in a node)."""
        self._check_open()
        return self._runtime.exec_node(node, list(argv))

    def trace_service(self, src: str, dst: str, port: int = 80, protocol: str = "TCP") -> svc_trace.ServiceTrace:
        """Make one connection from ``src`` (a pod, or ``"internet"``) to a Service (its DNS name, ``ns/name``,
        ClusterIP, or a node address for a NodePort) and show the kube-proxy rules it went through, from the
        ruleset in force (``lab.rules()``): dispatch, endpoint choice, DNAT, and masquerade when it applies."""
        self._check_open()
        protocol = fields.protocol(protocol, "protocol")
        fields.port_number(port, "port")
        src = src if src == oracle.INTERNET else self.cluster.pod(src).ref
        ip = svc_trace.destination(self.cluster, src, dst)
        result = self.probe(src, ip, port, protocol)
        with self._lock:
            return svc_trace.trace(self.cluster, self.rules(), src, ip, port, protocol, result)

    def trace(self, src: str, dst: str, port: int = 80, protocol: str = "TCP",
              timeout: float = 1.0) -> packet_walk.Walk:
        """Make one connection from ``src`` (a pod, or ``"internet"``) to ``dst`` (a pod ref, an IP, or a
        Service's DNS name) and show what the kernel did with it, hop by hop on every node it crossed:
        each rule that matched (anti-spoofing, Service dispatch, the endpoint chosen, DNAT, the policy
        chains, masquerade) and the answer's way back, next to ``explain``. Only this connection is
        traced, and tracing is off again afterwards. On sim: the oracle's hops, labelled simulated."""
        return self.trace_many([(src, dst, port, protocol)], timeout)[0]

    def trace_many(self, probes: list[tuple[str, str, int, str]], timeout: float = 1.0) -> list[packet_walk.Walk]:
        """Several walks at once, ``(src, dst, port, protocol)`` each (as ``trace`` takes them): one trace
        of the kernel for all of them, so blocked connections wait for one timeout together."""
        self._check_open()
        if not isinstance(probes, (list, tuple)) or not 1 <= len(probes) <= 1000:
            raise ModelError("give a list of 1 to 1000 connections, each (src, dst, port, protocol)", path="probes")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 30:
            raise ModelError(f"timeout={timeout!r}: a number of seconds, more than 0 and at most 30", path="timeout")
        wanted = []
        for k, probe in enumerate(probes):
            if not isinstance(probe, (list, tuple)) or len(probe) != 4 or not all(
                    isinstance(v, str) for v in (probe[0], probe[1], probe[3])):
                raise ModelError(f"{probe!r}: each connection is (src, dst, port, protocol), e.g. "
                                 "('x/a', 'web.y', 80, 'TCP')", path=f"probes[{k}]")
            src, dst, port, protocol = probe
            fields.port_number(port, f"probes[{k}].port")
            protocol = fields.protocol(protocol, f"probes[{k}].protocol")
            src = src if src == oracle.INTERNET else self.cluster.pod(src).ref
            wanted.append((src, dst, self._address_of(src, dst), port, protocol))
        requests = [ProbeRequest(src, ip, port, protocol) for src, _, ip, port, protocol in wanted]
        with self._lock:
            cluster = self.cluster
            if self._runtime.simulated:
                results = self._runtime.probe(requests, timeout)
                walks = [packet_walk.simulated(cluster, src, dst, ip, port, protocol, res)
                         for (src, dst, ip, port, protocol), res in zip(wanted, results)]
            else:
                walks = self._walk(cluster, wanted, requests, timeout)
        for (src, dst, ip, _, _), found in zip(wanted, walks):
            if ip != dst and not oracle.is_ip(dst) and "/" not in dst:
                found.request.insert(0, packet_walk.Hop("", "dns", f"{dst!r} resolves to {ip} (cluster DNS; the "
                                                                   "lookup itself is not part of this walk)"))
        return walks

    def _walk(self, cluster, wanted: list[tuple], requests: list[ProbeRequest], timeout: float) -> list:
        """Kernel walks, each connection with a source port of its own; one whose trace lines were lost (the monitor's socket overran while many
        walks ran at once) is walked again, in smaller groups, up to three times."""
        walks: list = [None] * len(wanted)
        todo, size = list(range(len(wanted))), len(wanted)
        for _ in range(4):
            for start in range(0, len(todo), size):
                group = todo[start:start + size]
                sports = _free_ports(cluster, len(group))
                batch = [replace(requests[k], sport=p) for k, p in zip(group, sports)]
                results, events = self._runtime.walk(batch, timeout)
                marked = {(e.node, e.trace_id) for e in events if names.is_trace_table(e.table) and e.kind == "rule"}
                unrelated = sum(1 for e in events if e.kind == "packet" and (e.node, e.trace_id) in marked
                                and not {e.packet.get("sport"), e.packet.get("dport")} & set(sports))
                for k, res, r in zip(group, results, batch):
                    src, dst, ip, port, protocol = wanted[k]
                    walks[k] = packet_walk.observed(cluster, src, dst, ip, port, protocol, res, events, r.sport)
                    walks[k].unrelated_packets = unrelated
            todo = [k for k in todo if not walks[k].complete]
            if not todo:
                break
            size = max(1, size // 4)
        return walks

    def _address_of(self, src: str, dst: str) -> str:
        """The address a connection to ``dst`` goes to: a pod's IP, an IP, or what a name resolves to."""
        if oracle.is_ip(dst):
            return dst
        if "/" in dst:
            ref = oracle.resolve_destination(self.cluster, dst)
            if ref in self.cluster.services and self.cluster.service_ips.get(ref):
                return self.cluster.service_ips[ref]
            return self.cluster.pod_ips[self.cluster.pod(ref).ref]
        found = cluster_dns.resolve_from(self.cluster, src, dst)
        ips = found.ips
        if not ips:
            why = f" ({found.why})" if found.why else ""
            raise ModelError(f"dst={dst!r} does not resolve from {src}{why}: give a pod "
                             "ref 'namespace/name', an IP, or a Service's DNS name", path="dst")
        return ips[0]

    def capture(self, target: str, filter: str | None = None, seconds: float = 5.0, count: int = 1000,
                max_bytes: int = 4_000_000, path: str | None = None) -> Capture:
        """Capture packets with tcpdump on ``target``: a pod (``"ns/name"``, on its ``eth0``, in its network
        namespace), a node (``"node-1"``, every interface) or ``"internet"`` (the lab's internet host).

        ``filter`` is a tcpdump filter (``"tcp port 80"``, ``"udp port 53"``). Returns once tcpdump listens;
        the capture runs in the background until ``seconds`` passed, ``count`` packets were captured or
        its file would pass ``max_bytes``, or ``stop()``; as ``with lab.capture(...) as cap:`` it captures
        while the block runs. ``cap.rows`` reads the packets, ``cap.path`` is the pcap file (for Wireshark;
        default ``captures/<lab>-<target>-<time>.pcap`` beside the notebook)."""
        self._check_open()
        spec = capturing.check_spec(filter, seconds, count, max_bytes)
        kind, what = capturing.resolve_target(self.cluster, target)
        name = what if kind == "pod" else target
        file, chosen = reserve_path(path, self.name, name)
        try:
            with self._lock:
                self._check_open()
                handle = self._runtime.capture(name, spec)
        except BaseException:
            if chosen:  # nothing was captured: the empty file reserved for it goes
                file.unlink(missing_ok=True)
            raise
        return Capture(handle, self.name, file, pcap.address_names(self.cluster))

    def flow_log(self, seconds: float | None = None) -> "FlowLog":  # noqa: F821
        """Start a live log of every connection attempt in the lab, as it happens: source, destination,
        port, verdict and the NetworkPolicy rule or Service that decided, observed by the kernel (its trace
        of each new connection's first packet, on every node) — or, on sim, each probe as the oracle
        answered it, marked simulated. Runs in the background until ``seconds`` passed or ``stop()`` (also
        ``with lab.flow_log() as log:``, and when the lab closes). ``log.events(pod=, namespace=,
        verdict=)`` filters the rows; the LabPanel's Flows tab shows them live."""
        from labkit.probe.flowlog import FlowLog  # noqa: PLC0415

        self._check_open()
        with self._lock:
            self._check_open()
            return FlowLog(self, self._runtime.flows, seconds)


def _free_ports(cluster, n: int) -> list[int]:
    """``n`` source ports for walks from labkit's walk range, none of which the lab's pods or Services use
    (a walk marks its ports in both directions: a server on one would be traced, or the bind would fail)."""
    used = {p.container_port for pod in cluster.pods.values() for c in pod.spec.containers for p in c.ports}
    used |= {v for svc in cluster.services.values() for p in svc.ports
             for v in (p.port, p.node_port, p.target_port) if isinstance(v, int)}
    low, high = nft_trace.WALK_SPORTS
    return random.sample([p for p in range(low, high + 1) if p not in used], n)

