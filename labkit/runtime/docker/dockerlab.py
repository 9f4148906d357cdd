"""One running lab on a Docker engine: the ``LabRuntime`` of the docker backend.

Owns the life of one lab after it started: its model (rebuilt from operations by the
contract's ``change``), its pods following that model, one atomic ruleset per node, cluster
DNS, probes batched per node (one ``docker exec`` each), and all of its per-lab state
(pod handles, CNI bookkeeping, rule and DNS caches, readiness states).

A change is a transaction: everything new is put in place first (new pods, replaced pods
beside their parked old versions, the new rules, the new DNS records); a failure at any of
those steps undoes the steps done so far, in reverse, so containers, rules and DNS are
as before. Only then is the old torn down (parked and removed pods); a failure there does
not undo the change: the leftovers are retried at the next change and removed at close.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Callable

from labkit import __version__
from labkit.dataplane import conntrack, dns, names, nft_guard, nft_pol, ruleset
from labkit.errors import BackendError, BackendUnavailable, ModelError
from labkit.model import addressing as addr
from labkit.model.cluster import Cluster
from labkit.model.parse_workloads import LAB_IMAGE
from labkit.model.system import DNS_CONF_PATH, DNS_PID_PATH
from labkit.results import ExecResult, ProbeResult
from labkit.runtime.base import LabRuntime, PodLimits, ProbeRequest, Readiness, StepHook
from labkit.runtime import capturing, neighbours, node_views
from labkit.runtime.docker import engine, nodes, pods, readiness, tracing
from labkit.runtime.docker import flows as flow_log
from labkit.runtime.docker import labels as lk
from labkit.semantics import oracle

log = logging.getLogger(__name__)
POD_WORKERS = 6
STEPS = ("create", "replace", "rules", "flows", "dns", "remove")


class DockerLab(LabRuntime):
    simulated = False

    def __init__(self, client, image: str, name: str, owner: str, cluster: Cluster,
                 step_hook: StepHook | None = None, served_by: str | None = None,
                 pod_limits: PodLimits | None = None):
        super().__init__(name, owner, cluster)
        self.client, self.image = client, image
        # what every container of this lab is labelled with beside its lab, owner and role
        self.stamp = {"version": __version__} | ({"server": served_by} if served_by else {})
        self.pod_limits = pod_limits
        self._local = engine.is_local(client)  # the engine's kernel is this machine's
        self.nodes: list[nodes.NodeContainer] = []
        self.pods: dict[str, pods.PodHandle] = {}
        self.internet = None
        self._cni = pods.CniState()
        self._rules: dict[int, str] = {}
        self._dns = ""
        self._prober = readiness.Prober(client)
        self._leftovers: list[pods.PodHandle] = []
        self._step_hook = step_hook
        self._closed = False
        self.captures = capturing.Running()  # running packet captures: stopped at close

    # ------------------------------------------------------------ life cycle
    def boot(self) -> None:
        """Nodes, fabric, internet host, system pods, rules and DNS of a new lab (called once)."""
        self.nodes = nodes.start_nodes(self.client, self.name, self.owner, self.image, self.cluster.node_count,
                                       self.stamp)
        self.internet, internet_pid = nodes.start_internet(self.client, self.name, self.owner, self.image,
                                                           self.stamp)
        nodes.wire_fabric(self.client, self.nodes, internet_pid)
        nodes.configure_internet(self.client, self.internet)
        self._create(self.cluster, sorted(self.cluster.pods))
        self._apply_rules(self.cluster)
        self._sync_dns(self.cluster)

    def adopt(self, found: list) -> None:
        """Take over the containers of this lab that are already running (another process started it)."""
        by_role: dict[str, list] = {}
        for c in found:
            by_role.setdefault(c.labels.get(lk.ROLE, ""), []).append(c)
        node_by_name = {c.labels.get(lk.NODE): c for c in by_role.get("node", [])}
        wanted = self.cluster.node_names
        if sorted(node_by_name) != sorted(wanted) or len(by_role.get("internet", [])) != 1:
            raise BackendError(f"lab {self.name!r} is not running as recorded (nodes found: {sorted(node_by_name)}): "
                               f"remove it with `labkit down --lab {self.name}` and start it again")
        self.nodes = [nodes.NodeContainer(i, node_by_name[n], engine.pid(node_by_name[n]), self.name)
                      for i, n in enumerate(wanted, start=1)]
        hosting = {c.labels.get(lk.NODE) for c in by_role.get("pause", [])}  # cni0 exists where a pod was plugged
        self._cni.bridged.update(n.id for n in self.nodes if n.name in hosting)
        self.internet = by_role["internet"][0]
        apps: dict[str, dict[str, object]] = {}
        for c in by_role.get("app", []):
            apps.setdefault(c.labels[lk.POD], {})[c.labels[lk.CONTAINER]] = c
        for c in by_role.get("pause", []):
            ref = c.labels[lk.POD]
            if ref not in self.cluster.pods:
                continue
            handle = pods.PodHandle(ref, self.cluster.pods[ref].spec, self._node(self.cluster, ref), c, engine.pid(c))
            handle.apps = apps.get(ref, {})
            handle.cni = pods.cni_args(self.name, self.cluster, ref, handle.netns)
            self.pods[ref] = handle
        missing = sorted(set(self.cluster.pods) - set(self.pods))
        if missing:
            raise BackendError(f"lab {self.name!r} is missing pods {', '.join(missing)}: remove it with "
                               f"`labkit down --lab {self.name}` and start it again")
        self._rules = {n.index: ruleset.render(self.cluster, n.index) for n in self.nodes}
        self._dns = dns.render(self.cluster)

    def close(self) -> None:
        self.captures.stop_all()  # each agent kills its tcpdump before the containers go
        flow_log.stop_all(self)  # and each flow log's agent disarms its node
        if not self._closed:
            removed = engine.remove(self.client, engine.labelled(self.client, self.name, self.owner))
            self._closed = True  # only now: a close that failed may be tried again
            log.info("lab %s of %s: removed %d containers", self.name, self.owner, removed)
        self.pods, self.nodes, self.internet = {}, [], None

    def check_alive(self) -> None:
        """Every node of the lab runs, else an error that names it and says what to do."""
        for node in self.nodes:
            current = engine.state(node.container)
            if not current.get("Running"):
                raise BackendError(f"{node.what} is not running ({current.get('Status')}): nothing was changed; "
                                   "close the lab and start it again")

    def check_pods(self, refs: set[str]) -> None:
        """The pods' containers all run, else an error naming the first that does not."""
        self.check_alive()
        jobs = [(ref, what, container) for ref in sorted(r for r in refs if r in self.pods)
                for what, container in [("pause container", self.pods[ref].pause),
                                        *((f"container {n!r}", c) for n, c in self.pods[ref].apps.items())]]
        with ThreadPoolExecutor(max_workers=8) as pool:
            states = list(pool.map(lambda job: engine.state(job[2]), jobs))
        for (ref, what, _), current in zip(jobs, states):
            if not current.get("Running"):
                raise BackendError(
                    f"pod {ref} of lab {self.name!r} is not running: its {what} is {current.get('Status')} "
                    f"(exit code {current.get('ExitCode')}; stopped or killed outside labkit?). Its failed "
                    "connections say nothing about policies: delete the pod and apply it again, or close the lab")

    # ------------------------------------------------------------ changes
    def _step(self, name: str) -> None:
        if self._step_hook is not None:
            self._step_hook(name)

    def _enforce(self, old: Cluster, new: Cluster) -> None:
        self._check_images(new)
        self.check_alive()
        try:
            self._retry_leftovers()
        except Exception as exc:  # an old container that will not go must not block every change
            log.warning("lab %s: old pods still could not be removed (%s); retried at the next change", self.name, exc)
        changed = [r for r in new.pods if r in old.pods and (
            old.pods[r].spec != new.pods[r].spec or old.pod_nodes[r] != new.pod_nodes[r]
            or old.pod_ips[r] != new.pod_ips[r])]
        added = sorted(r for r in new.pods if r not in old.pods)
        removed = sorted(r for r in old.pods if r not in new.pods)
        undo: list[tuple[str, Callable[[], None]]] = []
        parked: list[pods.PodHandle] = []
        try:
            self._step("create")
            self._create(new, added)
            undo.append(("remove the new pods", lambda: self._remove(added)))
            self._step("replace")
            for ref in [r for r in changed if r in self.pods]:  # old versions run until their replacements do
                handle = self.pods.pop(ref)
                parked.append(handle)
                undo.append((f"give {handle.ref} its names back", lambda h=handle: self._unpark(h)))
                pods.park(handle)  # the undo is in place first: a rename that fails half-way is put right
            self._create(new, changed)
            undo.append(("remove the replacements", lambda: self._remove(changed)))
            self._step("rules")
            undo.append(("restore the rules", lambda: self._apply_rules(old)))
            self._apply_rules(new)
            self._step("flows")
            self._forget_udp_flows(conntrack.stale_udp_flows(old, new))
            self._step("dns")
            undo.append(("restore the DNS records", lambda: self._sync_dns(old)))
            self._sync_dns(new)
        except BaseException as exc:
            failed = self._undo(undo)
            if failed and isinstance(exc, Exception):
                raise BackendError(f"{exc}; undoing it also failed ({'; '.join(failed)}): close the lab and "
                                   "start it again") from exc
            raise
        # Everything new is in force: now the old goes. Failures here do not undo the change.
        for handle in [*parked, *(self.pods.pop(r) for r in removed if r in self.pods)]:
            self._leftovers.append(handle)
        try:
            self._step("remove")
            self._retry_leftovers()
        except Exception as exc:  # kept: retried at the next change, removed at close
            log.warning("lab %s: removing old pods failed (%s); retried at the next change", self.name, exc)

    def _undo(self, undo: list[tuple[str, Callable[[], None]]]) -> list[str]:
        failed = []
        for what, action in reversed(undo):
            try:
                action()
            except Exception as exc:  # keep undoing the rest; say which part could not be undone
                log.error("lab %s: could not %s: %s", self.name, what, exc)
                failed.append(f"could not {what}: {exc}")
        return failed

    def _unpark(self, handle: pods.PodHandle) -> None:
        pods.unpark(handle)
        self.pods[handle.ref] = handle

    def _retry_leftovers(self) -> None:
        pending, self._leftovers = self._leftovers, []
        try:
            self._remove_handles(pending)
        except BaseException:
            self._leftovers = pending
            raise

    def _check_images(self, cluster: Cluster) -> None:
        wanted = {c.image for p in cluster.pods.values() for c in p.spec.containers if c.image != LAB_IMAGE}
        for name in sorted(wanted):
            if not engine.has_image(self.client, name):
                raise BackendUnavailable(f"image {name!r} is not in the Docker engine and labkit never pulls: "
                                         f"omit 'image' (or write 'image: labkit') to use the lab image")

    def _node(self, cluster: Cluster, ref: str) -> nodes.NodeContainer:
        return self.nodes[cluster.pod_nodes[ref] - 1]

    def _create(self, cluster: Cluster, refs: list[str]) -> None:
        if not refs:
            return
        made: list[pods.PodHandle] = []

        def one(ref: str) -> pods.PodHandle:
            handle = pods.create(self.client, self.name, self.owner, self._cni, cluster, ref, self._node(cluster, ref),
                                 self.image, self.stamp, self.pod_limits)
            made.append(handle)
            return handle

        try:
            with ThreadPoolExecutor(max_workers=POD_WORKERS) as pool:
                for handle in pool.map(one, refs):
                    self.pods[handle.ref] = handle
        except BaseException:
            for handle in made:  # all or nothing: undo the pods this step created
                if self.pods.get(handle.ref) is handle:
                    del self.pods[handle.ref]
                pods.remove(self.client, handle)
            raise

    def _remove(self, refs: list[str]) -> None:
        self._remove_handles([self.pods.pop(r) for r in refs if r in self.pods])

    def _remove_handles(self, handles: list[pods.PodHandle]) -> None:
        with ThreadPoolExecutor(max_workers=POD_WORKERS) as pool:
            list(pool.map(lambda h: pods.remove(self.client, h), handles))

    def _apply_rules(self, cluster: Cluster) -> None:
        def one(node: nodes.NodeContainer) -> None:
            text = ruleset.render(cluster, node.index)
            if self._rules.get(node.index) != text:
                self._rules.pop(node.index, None)  # unknown until nft says yes: an undo then always re-applies
                # nft itself, straight from stdin: one transaction, no interpreter to start first
                code, out, err = engine.exec_raw(self.client, node.id, ["nft", "-f", "-"], text.encode(), timeout=60,
                                                 what=node.what)
                if code != 0:
                    raise BackendError(f"{node.what} refused the ruleset (nothing changed there): "
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
            code, out, err = engine.exec_raw(self.client, node.id, ["sh", "-c", script], timeout=30, what=node.what)
            if code != 0:
                raise BackendError(f"clearing stale UDP flows in {node.what} failed: "
                                   f"{(out + err).decode(errors='replace')[-300:]}")

    def _sync_dns(self, cluster: Cluster) -> None:
        """Give the DNS pod the model's records; return once dnsmasq answers with them."""
        text = dns.render(cluster)
        if text == self._dns:
            return
        server = self.pods["kube-system/coredns"].apps["coredns"]
        self._dns = ""  # unknown until dnsmasq answers: an undo then always re-writes the records
        script = (f"cat > {DNS_CONF_PATH}.new && mv {DNS_CONF_PATH}.new {DNS_CONF_PATH} && "
                  f"kill $(cat {DNS_PID_PATH}) 2>/dev/null; "
                  "for i in $(seq 100); do "
                  "dig +short +time=1 +tries=1 @127.0.0.1 kube-dns.kube-system.svc.cluster.local | grep -q . && exit 0; "
                  "sleep 0.02; done; echo 'dnsmasq did not come back' >&2; exit 1")
        code, out, err = engine.exec_raw(self.client, server.id, ["sh", "-c", script], text.encode(), timeout=30,
                                         what=f"the DNS pod of lab {self.name!r}")
        if code != 0:
            raise BackendError(f"reloading cluster DNS failed: {(out + err).decode(errors='replace')[-500:]}")
        self._dns = text

    def refresh_readiness(self) -> Readiness:
        if not any(c.readiness_probe for p in self.cluster.pods.values() for c in p.spec.containers):
            return Readiness(frozenset(self.cluster.not_ready))
        not_ready = self._prober.run(self.cluster, self.pods, self.nodes)
        if not_ready == set(self.cluster.not_ready):
            return Readiness(frozenset(not_ready))
        new = self.cluster.with_readiness(not_ready)
        self._enforce(self.cluster, new)
        events = []
        for ref in sorted(set(self.cluster.not_ready) ^ not_ready):
            state = self._prober.states.get(ref)
            detail = state.last if state else ""
            events.append(f"pod {ref} is {'not ready' if ref in not_ready else 'ready'}" + (f" ({detail})" if detail else ""))
        self.cluster = new
        return Readiness(frozenset(not_ready), tuple(events))

    def readiness_detail(self, pod: str) -> str:
        state = self._prober.states.get(self.cluster.pod(pod).ref)
        return state.last if state else ""

    # ------------------------------------------------------------ looking
    def _src(self, src: str) -> str:
        return src if src == oracle.INTERNET else self.cluster.pod(src).ref

    def probe(self, requests: list[ProbeRequest], timeout: float) -> list[ProbeResult]:
        groups: dict[int, list[tuple[int, ProbeRequest, str]]] = {}
        for k, r in enumerate(requests):  # group 0: the internet host
            src = self._src(r.src)
            groups.setdefault(0 if src == oracle.INTERNET else self.cluster.pod_nodes[src], []).append(
                (k, replace(r, src=src), self._dst_ip(r.dst)))
        results: list[ProbeResult | None] = [None] * len(requests)

        def run(item: tuple[int, list[tuple[int, ProbeRequest, str]]]) -> None:
            index, batch = item
            payload = {"timeout": timeout, "probes": [self.probe_spec(k, r) for k, r, _ in batch]}
            where = self.internet.id if index == 0 else self.nodes[index - 1].id
            what = f"the internet host of lab {self.name!r}" if index == 0 else self.nodes[index - 1].what
            answer = engine.agent(self.client, where, "probe", payload, timeout=timeout * 4 + 30, what=what)
            for res in answer["results"]:
                results[int(res["id"])] = self.probe_result(res, requests[int(res["id"])])

        before = neighbours.read(self._local)
        with ThreadPoolExecutor(max_workers=max(1, len(groups))) as pool:
            list(pool.map(run, groups.items()))
        done = [r for r in results if r is not None]
        self.judge_failures(done, before)
        return done

    def probe_spec(self, k: int, r: ProbeRequest) -> dict:
        """The node agent's spec of one probe (``r.src`` already a pod ref or the internet host)."""
        return {"id": str(k), "dst": self._dst_ip(r.dst), "port": r.port, "protocol": r.protocol} | (
            {"sport": r.sport} if r.sport else {}) | ({} if r.src == oracle.INTERNET else {
                "netns": self.pods[r.src].netns, "resolv_conf": self.pods[r.src].resolv_conf})

    def probe_result(self, res: dict, r: ProbeRequest) -> ProbeResult:
        ok = bool(res["ok"])
        return ProbeResult(ok, res.get("latency_ms"), res.get("answer") if ok else None,
                           None if ok else res.get("error"), False, self._src(r.src), r.dst, r.port, r.protocol,
                           client_ip=res.get("client_ip") if ok else None)

    def neighbour_snapshot(self):
        """The kernel's neighbour-table use now (to tell a full table from a denial afterwards)."""
        return neighbours.read(self._local)

    def judge_failures(self, done: list[ProbeResult], before) -> None:
        """A failure must be a verdict of the rules, never a broken lab or a full kernel table."""
        failed = [r for r in done if not r.ok]
        if failed:
            note = neighbours.overflow_note(before, neighbours.read(self._local))
            if note:
                raise BackendError(note)
            by_ip = self.cluster.pod_by_ip()
            self.check_pods({r.src for r in failed} | {by_ip.get(self._dst_ip(r.dst), "") for r in failed})

    def _app(self, pod: str, container: str | None):
        ref = self.cluster.pod(pod).ref
        handle = self.pods.get(ref)  # one lookup: exec runs beside changes, without the lab's lock
        if handle is None:
            raise BackendError(f"pod {ref} of lab {self.name!r} is being replaced or removed right now: try again")
        name = container or self.cluster.pods[ref].spec.containers[0].name
        if name not in handle.apps:
            raise ModelError(f"pod {ref} has no container {name!r} (it has {', '.join(handle.apps)})",
                             path="container")
        return handle.apps[name]

    def exec(self, pod: str, argv: list[str], container: str | None = None) -> ExecResult:
        if not argv or not all(isinstance(a, str) for a in argv):
            raise ModelError("must be a non-empty list of strings", path="argv")
        code, out, err = engine.exec_raw(self.client, self._app(pod, container).id, list(argv), timeout=60,
                                         what=f"pod {self.cluster.pod(pod).ref} of lab {self.name!r}")
        return ExecResult(code, (out + err).decode(errors="replace"))

    def walk(self, requests: list[ProbeRequest], timeout: float) -> tuple[list[ProbeResult], list]:
        return tracing.walk(self, requests, timeout)

    def flows(self, on_event):
        return flow_log.subscribe(self, on_event)

    def exec_node(self, node: str, argv: list[str]) -> ExecResult:
        """One read-only view of a node (the allow-list of ``node_views``), run in the node's container."""
        index, view = node_views.check(node, argv, self.cluster)
        target = self.nodes[index - 1]
        code, out, err = engine.exec_raw(self.client, target.id, list(view), timeout=30, what=target.what)
        return ExecResult(code, (out + err).decode(errors="replace"))

    def logs(self, pod: str, container: str | None = None) -> str:
        return engine.logs(self._app(pod, container))

    def _listing(self, node: nodes.NodeContainer, tables: list[str]) -> str:
        return engine.agent(self.client, node.id, "nft-list", {"tables": tables}, what=node.what).get("text", "")

    def rules(self) -> str:
        out = []
        for node in self.nodes:
            header = f"# {node.name}\n" if len(self.nodes) > 1 else ""
            out.append(header + self._listing(node, [f"{f} {t}" for f, t in ruleset.TABLES]))
        return "\n".join(out)

    def deciding_rules(self, src: str, dst: str, port: int, protocol: str) -> list[str]:
        """For each policy decision, the nft chain and rule (with its counter) that made it."""
        explanation = oracle.explain(self.cluster, src, oracle.resolve_destination(self.cluster, dst), port, protocol)
        out, listed = [], {}
        for d in (d for o in explanation.outcomes for d in o.decisions):
            if not d.isolating:
                out.append(f"{d.subject}: not isolated for {d.direction}, so no chain of inet {names.POL_TABLE} "
                           "judges it (accepted)")
                continue
            node = self.cluster.pod_nodes[d.subject]
            entry = nft_pol.pod_chain(d.direction, d.subject)
            allowed_by = d.policy if d.allowed and d.policy else None
            chain = nft_pol.policy_chain(self.cluster.policies[allowed_by], d.direction) if allowed_by else entry
            marker = nft_pol.decision_rule(d.direction, allowed_by, d.rule if allowed_by else None)
            if node not in listed:
                listed[node] = self._listing(self.nodes[node - 1], [f"inet {names.POL_TABLE}"])
            rule = nft_pol.find_rule(listed[node], chain, marker)
            if rule is None:  # the kernel and the model disagree: never hide it
                log.error("lab %s: no rule %r in chain %s of %s", self.name, marker, chain, addr.node_name(node))
                rule = (f"MISSING: no rule marked {marker!r} in this chain: the kernel's rules differ from the "
                        "model (a labkit bug: please report it with lab.rules())")
            via = f"{entry} -> {chain}" if chain != entry else entry
            out.append(f"{addr.node_name(node)}: inet {names.POL_TABLE} {via}: {rule}")
        if explanation.src in self.cluster.pods:  # has this pod tried to send as another? (anti-spoofing)
            node = self.cluster.pod_nodes[explanation.src]
            chain = nft_guard.guard_chain(explanation.src)
            listing = self._listing(self.nodes[node - 1], [f"bridge {names.GUARD_TABLE}"])
            rule = nft_guard.find_rule(listing, chain, nft_guard.SPOOFED_SOURCE)
            if rule and " packets 0 " not in rule:  # shown once it has dropped something
                out.append(f"{addr.node_name(node)}: bridge {names.GUARD_TABLE} {chain}: {rule}")
        return out

    def connect(self, src: str, dst: str, port: int, timeout: float):
        from labkit.runtime.docker.connection import DockerConnection  # noqa: PLC0415
        ref = self.cluster.pod(src).ref
        handle = self.pods[ref]
        return DockerConnection(self.client, handle.node.id, handle.netns, ref, self._dst_ip(dst), port, timeout)

    def capture(self, target: str, spec: dict):
        """tcpdump on a pod's eth0 (in its namespace), a node or the internet host (``docker.capture``)."""
        from labkit.runtime.docker import capture  # noqa: PLC0415
        return self.captures.add(capture.start(self, target, spec))

    def reset_connections(self) -> int:
        """Forget every tracked flow in every node (conntrack -F); returns how many nodes did it."""
        for node in self.nodes:
            code, out, err = engine.exec_raw(self.client, node.id, ["conntrack", "-F"], timeout=10, what=node.what)
            if code != 0:
                raise BackendError(f"conntrack -F in {node.what} failed: {(out + err).decode(errors='replace')}")
        return len(self.nodes)
