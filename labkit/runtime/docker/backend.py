"""The docker backend: a Kubernetes node made of containers, with real kernel rules.

Owns the life of one lab on a Docker engine: nodes and fabric at start, pods following
the model on every change (created before anything is removed, so a failed change
leaves the running pods alone), one atomic ruleset per node, probes batched per node
(one ``docker exec`` each), and removal of every labelled container on close.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from labkit import __version__
from labkit.dataplane import conntrack, dns, names, nft_pol, ruleset
from labkit.errors import BackendError, BackendUnavailable, CommandError
from labkit.model import addressing as addr
from labkit.model.cluster import Cluster
from labkit.model.system import DNS_CONF_PATH, DNS_PID_PATH
from labkit.model.parse_workloads import LAB_IMAGE
from labkit.results import ExecResult, ProbeResult
from labkit.runtime.base import Backend, ProbeRequest
from labkit.runtime.docker import engine, image, nodes, pods, readiness

log = logging.getLogger(__name__)


def _chain_lines(text: str, chain: str) -> list[str]:
    """The rule lines of ``chain`` in ``nft list`` output."""
    lines, inside = [], False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("chain "):
            inside = stripped.split()[1] == chain
        elif inside and stripped == "}":
            inside = False
        elif inside and stripped:
            lines.append(stripped)
    return lines
POD_WORKERS = 6


class DockerBackend(Backend):
    name = "docker"
    simulated = False

    def __init__(self, seed: int = 0, **_: object):
        self.client = engine.connect()
        self.image = image.check(self.client)
        self.lab = ""
        self.nodes: list[nodes.Node] = []
        self.pods: dict[str, pods.PodHandle] = {}
        self.internet = None
        self._rules: dict[int, str] = {}
        self._dns = ""
        self._prober = readiness.Prober(self.client)
        self._info: dict | None = None

    # ------------------------------------------------------------ life cycle
    def start(self, lab: str, cluster: Cluster) -> None:
        leftovers = engine.labelled(self.client, lab)
        if leftovers:  # refused before self.lab is set, so closing this backend cannot touch that lab
            raise BackendError(f"a lab named {lab!r} already runs in this Docker engine ({len(leftovers)} "
                               f"containers): close it, or remove it with `labkit down --lab {lab}`")
        self.lab = lab
        try:
            self.nodes = nodes.start_nodes(self.client, lab, self.image, cluster.node_count, __version__)
            self.internet, internet_pid = nodes.start_internet(self.client, lab, self.image, __version__)
            nodes.wire_fabric(self.client, self.nodes, internet_pid)
            nodes.configure_internet(self.client, self.internet)
            self._create(cluster, sorted(cluster.pods))
            self._apply_rules(cluster)
            self._sync_dns(cluster)
        except BaseException:
            self.close()
            raise

    def attach(self, lab: str, cluster: Cluster) -> None:
        """Find a running lab's containers again (the CLI between two commands)."""
        self.lab = lab
        found = engine.labelled(self.client, lab)
        by_role: dict[str, list] = {}
        for c in found:
            by_role.setdefault(c.labels.get(names.ROLE, ""), []).append(c)
        node_by_name = {c.labels.get(names.NODE): c for c in by_role.get("node", [])}
        wanted = cluster.node_names
        if sorted(node_by_name) != sorted(wanted) or len(by_role.get("internet", [])) != 1:
            raise BackendError(f"lab {lab!r} is not running as recorded (nodes found: {sorted(node_by_name)}): "
                               f"remove it with `labkit down --lab {lab}` and start it again")
        self.nodes = [nodes.Node(i, node_by_name[n], engine.pid(node_by_name[n])) for i, n in
                      enumerate(wanted, start=1)]
        self.internet = by_role["internet"][0]
        apps: dict[str, dict[str, object]] = {}
        for c in by_role.get("app", []):
            apps.setdefault(c.labels[names.POD], {})[c.labels[names.CONTAINER]] = c
        for c in by_role.get("pause", []):
            ref = c.labels[names.POD]
            if ref not in cluster.pods:
                continue
            handle = pods.PodHandle(ref, cluster.pods[ref].spec, self._node(cluster, ref), c, engine.pid(c))
            handle.apps = apps.get(ref, {})
            handle.cni = pods.cni_args(self.lab, cluster, ref, handle.netns)
            self.pods[ref] = handle
        missing = sorted(set(cluster.pods) - set(self.pods))
        if missing:
            raise BackendError(f"lab {lab!r} is missing pods {', '.join(missing)}: remove it with "
                               f"`labkit down --lab {lab}` and start it again")

    def close(self) -> None:
        if self.lab:
            removed = engine.remove(self.client, engine.labelled(self.client, self.lab))
            log.info("lab %s: removed %d containers", self.lab, removed)
        self.pods, self.nodes, self.internet = {}, [], None

    # ------------------------------------------------------------ changes
    def sync(self, old: Cluster, new: Cluster) -> None:
        self._check_images(new)
        changed = [r for r in new.pods if r in old.pods and (
            old.pods[r].spec != new.pods[r].spec or old.pod_nodes[r] != new.pod_nodes[r]
            or old.pod_ips[r] != new.pod_ips[r])]
        added = sorted(r for r in new.pods if r not in old.pods)
        removed = sorted(r for r in old.pods if r not in new.pods)
        self._create(new, added)
        parked = [self.pods.pop(r) for r in changed if r in self.pods]
        for handle in parked:  # the old versions keep running until their replacements run
            pods.park(handle)
        try:
            self._create(new, changed)
        except BaseException:  # all or nothing: the old versions stay, the additions go
            for handle in parked:
                pods.unpark(handle)
                self.pods[handle.ref] = handle
            self._remove(added)
            raise
        self._remove_handles(parked)
        self._remove(removed)
        self._apply_rules(new)
        self._forget_udp_flows(conntrack.stale_udp_flows(old, new))
        self._sync_dns(new)

    def _check_images(self, cluster: Cluster) -> None:
        import docker.errors  # noqa: PLC0415
        wanted = {c.image for p in cluster.pods.values() for c in p.spec.containers if c.image != LAB_IMAGE}
        for name in sorted(wanted):
            try:
                self.client.images.get(name)
            except docker.errors.ImageNotFound:
                raise BackendUnavailable(f"image {name!r} is not in the Docker engine and labkit never pulls: "
                                         f"omit 'image' (or write 'image: labkit') to use the lab image") from None

    def _node(self, cluster: Cluster, ref: str) -> nodes.Node:
        return self.nodes[cluster.pod_nodes[ref] - 1]

    def _create(self, cluster: Cluster, refs: list[str]) -> None:
        if not refs:
            return
        made: list[pods.PodHandle] = []

        def one(ref: str) -> pods.PodHandle:
            handle = pods.create(self.client, self.lab, cluster, ref, self._node(cluster, ref), self.image, __version__)
            made.append(handle)
            return handle

        try:
            with ThreadPoolExecutor(max_workers=POD_WORKERS) as pool:
                for handle in pool.map(one, refs):
                    self.pods[handle.ref] = handle
        except BaseException:
            for handle in made:  # all or nothing: undo the pods this change created
                self.pods.pop(handle.ref, None)
                pods.remove(self.client, self.lab, handle)
            raise

    def _remove(self, refs: list[str]) -> None:
        self._remove_handles([self.pods.pop(r) for r in refs if r in self.pods])

    def _remove_handles(self, handles: list[pods.PodHandle]) -> None:
        with ThreadPoolExecutor(max_workers=POD_WORKERS) as pool:
            list(pool.map(lambda h: pods.remove(self.client, self.lab, h), handles))

    def _apply_rules(self, cluster: Cluster) -> None:
        def one(node: nodes.Node) -> None:
            text = ruleset.render(cluster, node.index)
            if self._rules.get(node.index) != text:
                # nft itself, straight from stdin: one transaction, no interpreter to start first
                code, out, err = engine.exec_raw(self.client, node.id, ["nft", "-f", "-"], text.encode(), timeout=60)
                if code != 0:
                    raise BackendError(f"{node.name} refused the ruleset (nothing changed): "
                                       f"{(out + err).decode(errors='replace')[-1500:]}")
                self._rules[node.index] = text

        with ThreadPoolExecutor(max_workers=max(1, len(self.nodes))) as pool:
            list(pool.map(one, self.nodes))

    def _forget_udp_flows(self, flows: list[tuple[str, int, str]]) -> None:
        """Like kube-proxy: UDP flows to an endpoint that left its Service are forgotten."""
        if not flows:
            return
        script = conntrack.delete_script(flows)
        for node in self.nodes:
            code, out, err = engine.exec_raw(self.client, node.id, ["sh", "-c", script], timeout=30)
            if code != 0:
                raise BackendError(f"clearing stale UDP flows in {node.name} failed: "
                                   f"{(out + err).decode(errors='replace')[-300:]}")

    def _sync_dns(self, cluster: Cluster) -> None:
        """Give the DNS pod the model's records; return once dnsmasq answers with them."""
        text = dns.render(cluster)
        if text == self._dns:
            return
        server = self.pods["kube-system/coredns"].apps["coredns"]
        script = (f"cat > {DNS_CONF_PATH}.new && mv {DNS_CONF_PATH}.new {DNS_CONF_PATH} && "
                  f"kill $(cat {DNS_PID_PATH}) 2>/dev/null; "
                  "for i in $(seq 100); do "
                  "dig +short +time=1 +tries=1 @127.0.0.1 kube-dns.kube-system.svc.cluster.local | grep -q . && exit 0; "
                  "sleep 0.02; done; echo 'dnsmasq did not come back' >&2; exit 1")
        code, out, err = engine.exec_raw(self.client, server.id, ["sh", "-c", script], text.encode(), timeout=30)
        if code != 0:
            raise BackendError(f"reloading cluster DNS failed: {(out + err).decode(errors='replace')[-500:]}")
        self._dns = text

    # ------------------------------------------------------------ looking
    def probe(self, cluster: Cluster, requests: list[ProbeRequest], timeout: float) -> list[ProbeResult]:
        groups: dict[int, list[tuple[int, ProbeRequest]]] = {}
        for k, r in enumerate(requests):  # group 0: the internet host
            groups.setdefault(0 if r.src == "internet" else cluster.pod_nodes[r.src], []).append((k, r))
        results: list[ProbeResult | None] = [None] * len(requests)

        def run(item: tuple[int, list[tuple[int, ProbeRequest]]]) -> None:
            index, batch = item
            payload = {"timeout": timeout, "probes": [
                {"id": str(k), "dst": r.dst, "port": r.port, "protocol": r.protocol} | (
                    {} if index == 0 else {"netns": self.pods[r.src].netns, "resolv_conf": self.pods[r.src].resolv_conf})
                for k, r in batch]}
            where = self.internet.id if index == 0 else self.nodes[index - 1].id
            answer = engine.agent(self.client, where, "probe", payload, timeout=timeout * 4 + 30)
            for res in answer["results"]:
                k = int(res["id"])
                r = requests[k]
                results[k] = ProbeResult(bool(res["ok"]), res.get("latency_ms"),
                                         res.get("answer") if res["ok"] else None,
                                         None if res["ok"] else res.get("error"), False, r.src, r.dst, r.port,
                                         r.protocol)

        with ThreadPoolExecutor(max_workers=max(1, len(groups))) as pool:
            list(pool.map(run, groups.items()))
        return [r for r in results if r is not None]

    def exec(self, cluster: Cluster, pod: str, argv: list[str], container: str | None = None) -> ExecResult:
        handle = self.pods[pod]
        name = container or cluster.pods[pod].spec.containers[0].name
        if name not in handle.apps:
            raise BackendError(f"pod {pod} has no container {name!r} (it has {', '.join(handle.apps)})")
        code, out, err = engine.exec_raw(self.client, handle.apps[name].id, argv, timeout=60)
        return ExecResult(code, (out + err).decode(errors="replace"))

    def logs(self, cluster: Cluster, pod: str, container: str | None = None) -> str:
        handle = self.pods[pod]
        name = container or cluster.pods[pod].spec.containers[0].name
        if name not in handle.apps:
            raise BackendError(f"pod {pod} has no container {name!r} (it has {', '.join(handle.apps)})")
        return handle.apps[name].logs().decode(errors="replace")

    def rules(self, cluster: Cluster) -> str:
        out = []
        for node in self.nodes:
            answer = engine.agent(self.client, node.id, "nft-list",
                                  {"tables": [f"{f} {t}" for f, t in ruleset.TABLES]})
            header = f"# {node.name}\n" if len(self.nodes) > 1 else ""
            out.append(header + answer.get("text", ""))
        return "\n".join(out)

    def deciding_rules(self, cluster: Cluster, decisions: list) -> list[str]:
        """For each policy decision, the nft chain and rule (with its counter) that made it."""
        out, listed = [], {}
        for d in decisions:
            if not d.isolating:
                out.append(f"{d.subject}: not isolated for {d.direction}, so no chain of inet {names.POL_TABLE} "
                           "judges it (accepted)")
                continue
            node = cluster.pod_nodes[d.subject]
            entry = nft_pol.pod_chain(d.direction, d.subject)
            if d.allowed and d.policy:
                chain = nft_pol.policy_chain(cluster.policies[d.policy], d.direction)
                marker = f"{d.policy} {d.direction}[{d.rule}]"
            else:
                chain, marker = entry, "no policy allows it"
            if (node, chain) not in listed:
                answer = engine.agent(self.client, self.nodes[node - 1].id, "nft-list",
                                      {"tables": [f"inet {names.POL_TABLE}"]})
                listed[(node, chain)] = _chain_lines(answer.get("text", ""), chain)
            rule = next((line for line in listed[(node, chain)] if marker in line), "(rule not found)")
            via = f"{entry} -> {chain}" if chain != entry else entry
            out.append(f"{addr.node_name(node)}: inet {names.POL_TABLE} {via}: {rule}")
        return out

    def not_ready(self, cluster: Cluster) -> set[str]:
        return self._prober.run(cluster, self.pods, self.nodes)

    def readiness_detail(self, ref: str) -> str:
        state = self._prober.states.get(ref)
        return state.last if state else ""

    def connect(self, cluster: Cluster, src: str, dst_ip: str, port: int, timeout: float):
        from labkit.runtime.docker.connection import DockerConnection  # noqa: PLC0415
        handle = self.pods[src]
        return DockerConnection(self.client, handle.node.id, handle.netns, src, dst_ip, port, timeout)

    def reset_connections(self) -> int:
        """Forget every tracked flow in every node (conntrack -F); returns how many nodes did it."""
        for node in self.nodes:
            code, out, err = engine.exec_raw(self.client, node.id, ["conntrack", "-F"], timeout=10)
            if code != 0:
                raise BackendError(f"conntrack -F in {node.name} failed: {(out + err).decode(errors='replace')}")
        return len(self.nodes)

    def info(self) -> dict:
        """What the lab image's kernel offers (SCTP sockets, tool versions)."""
        if self._info is None:
            try:
                self._info = engine.agent(self.client, self.nodes[0].id, "info")
            except CommandError as exc:
                raise BackendError(f"cannot read the node's capabilities: {exc}") from None
        return self._info

    def has_sctp(self) -> bool:
        return bool(self.info().get("sctp"))
