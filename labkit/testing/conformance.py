"""Run the upstream-derived NetworkPolicy cases (``netpol-cases.yaml``) against any backend.

Owns: building the x/y/z world from the file, expanding ``{{podIP ...}}`` placeholders,
resetting policies and labels between cases in one long-lived lab, replaying each case's
steps, and comparing the observed matrix and the oracle with the file's expectations.
"""
from __future__ import annotations

import copy
import ipaddress
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Callable

import yaml

from labkit.lab import Lab

CASES_FILE = "netpol-cases.yaml"
_PLACEHOLDER = re.compile(r"\{\{\s*(podIP|podIPMasked)\s+([a-z0-9-]+/[a-z0-9-]+)(?:\s+(\d+))?\s*\}\}")


def load_cases() -> dict[str, Any]:
    text = resources.files("labkit.testing").joinpath(CASES_FILE).read_text(encoding="utf-8")
    return yaml.safe_load(text)


def world_manifests(world: dict[str, Any]) -> list[dict[str, Any]]:
    """Namespaces, pods (every container port of the world) and one Service per pod."""
    docs: list[dict[str, Any]] = []
    for ns, spec in world["namespaces"].items():
        docs.append({"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": ns, "labels": dict(spec.get("labels") or {})}})
    containers = [{"name": c["name"], "ports": [{"containerPort": c["containerPort"], "protocol": c["protocol"],
                                                  "name": c["portName"]}]}
                  for c in world["containers_per_pod"]]
    svc_ports = world["services"]["ports"]
    for ref, spec in world["pods"].items():
        ns, name = ref.split("/")
        docs.append({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": name, "namespace": ns, "labels": dict(spec["labels"])},
                     "spec": {"containers": copy.deepcopy(containers)}})
        docs.append({"apiVersion": "v1", "kind": "Service",
                     "metadata": {"name": f"s-{ns}-{name}", "namespace": ns},
                     "spec": {"selector": dict(spec["labels"]), "ports": copy.deepcopy(svc_ports)}})
    return docs


def expand(value: Any, pod_ip: Callable[[str], str]) -> Any:
    """Replace ``{{podIP ns/pod}}`` and ``{{podIPMasked ns/pod bits}}`` with real addresses."""
    if isinstance(value, dict):
        return {k: expand(v, pod_ip) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, pod_ip) for v in value]
    if isinstance(value, str):
        def sub(m: re.Match) -> str:
            ip = pod_ip(m.group(2))
            if m.group(1) == "podIP":
                return ip
            return str(ipaddress.ip_network(f"{ip}/{m.group(3)}", strict=False).network_address)
        return _PLACEHOLDER.sub(sub, value)
    return value


def expected_cells(probe: dict[str, Any], pods: list[str]) -> dict[tuple[str, str], bool]:
    default = probe["expect"]["default"] == "allow"
    cells = {(s, d): default for s in pods for d in pods if s != d}
    for e in probe["expect"].get("exceptions") or []:
        cells[(e["from"], e["to"])] = e["result"] == "allow"
    return cells


@dataclass
class ProbeCheck:
    step: int
    port: int
    protocol: str
    cells: int
    observed_mismatches: list[tuple[str, str, bool]] = field(default_factory=list)
    oracle_mismatches: list[tuple[str, str, bool]] = field(default_factory=list)
    note: str = ""
    walk_mismatches: list[str] = field(default_factory=list)  # packet walks that did not show the verdict
    walked: int = 0

    @property
    def ok(self) -> bool:
        return not self.observed_mismatches and not self.oracle_mismatches and not self.walk_mismatches


@dataclass
class CaseReport:
    name: str
    checks: list[ProbeCheck]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def failures(self) -> str:
        out = []
        for c in self.checks:
            for kind, cells in (("observed", c.observed_mismatches), ("oracle", c.oracle_mismatches)):
                for s, d, want in cells:
                    out.append(f"{self.name} step {c.step} {c.port}/{c.protocol}: {kind} {s} -> {d} "
                               f"should be {'allow' if want else 'deny'}")
            out += [f"{self.name} step {c.step} {c.port}/{c.protocol}: walk {w}" for w in c.walk_mismatches]
        return "\n".join(out)


class World:
    """One long-lived lab holding the x/y/z world; cases run one after another in it."""

    def __init__(self, lab: Lab, data: dict[str, Any] | None = None,
                 can_probe: Callable[[str], bool] = lambda protocol: True,
                 on_check: Callable[[ProbeCheck, dict, dict], None] | None = None):
        self.lab, self.data = lab, data or load_cases()
        self.can_probe = can_probe
        self.on_check = on_check  # called with (check, wanted cells, the cells wanted before this step)
        self._before: dict[tuple[int, str], dict] = {}
        self.pods = list(self.data["world"]["pods"])
        lab.apply(world_manifests(self.data["world"]))

    def reset(self) -> None:
        """Delete every policy and restore the world's pod and namespace labels."""
        world = self.data["world"]
        for ref in list(self.lab.cluster.policies):
            ns, name = ref.split("/")
            self.lab.delete("networkpolicy", name, ns)
        for ns, spec in world["namespaces"].items():
            current = self.lab.cluster.namespaces[ns].labels
            wanted = dict(spec.get("labels") or {})
            change = {k: None for k in current if k not in wanted} | wanted
            if any(current.get(k) != v for k, v in change.items()):
                self.lab.label("namespace", ns, change)
        for ref, spec in world["pods"].items():
            current = self.lab.cluster.pods[ref].labels
            wanted = dict(spec["labels"])
            if dict(current) != wanted:
                self.lab.label("pod", ref, {k: None for k in current if k not in wanted} | wanted)

    def _act(self, action: dict[str, Any]) -> None:
        (verb, arg), = action.items()
        if verb in ("create", "update"):
            self.lab.apply(expand(arg, self.lab.pod_ip))
        elif verb == "delete":
            self.lab.delete("networkpolicy", arg["metadata"]["name"], arg["metadata"].get("namespace", "default"))
        elif verb == "delete_all_policies":
            for ref in [r for r in self.lab.cluster.policies if r.split("/")[0] in arg["namespaces"]]:
                ns, name = ref.split("/")
                self.lab.delete("networkpolicy", name, ns)
        elif verb == "label_pod":
            self.lab.label("pod", arg["pod"], arg.get("add") or arg.get("labels"))
        elif verb == "label_namespace":
            self.lab.label("namespace", arg["namespace"], arg.get("add") or arg.get("labels"))
        else:
            raise ValueError(f"unknown action {verb!r} in the conformance file")

    def run(self, case: dict[str, Any]) -> CaseReport:
        self.reset()
        if "steps" in case:
            steps = case["steps"]
        else:
            steps = [{"actions": [{"create": p} for p in case.get("policies") or []], "probes": case["probes"]}]
        checks = []
        self._before = {}
        for number, step in enumerate(steps):
            for action in step.get("actions") or []:
                self._act(action)
            for probe in step.get("probes") or []:
                checks.append(self._check(number, probe))
        return CaseReport(case["name"], checks)

    def _check(self, step: int, probe: dict[str, Any]) -> ProbeCheck:
        port, protocol = probe["port"], probe["protocol"]
        want = expected_cells(probe, self.pods)
        check = ProbeCheck(step, port, protocol, len(want))
        oracle = self.lab.expected(port, protocol, pods=self.pods)
        check.oracle_mismatches = [(s, d, w) for (s, d), w in want.items() if oracle.allowed(s, d) != w]
        if not self.can_probe(protocol):
            check.note = f"{protocol} not probed: this kernel has no {protocol} sockets (checked by the oracle only)"
            return check
        observed = self.lab.matrix(port, protocol, pods=self.pods)
        check.observed_mismatches = [(s, d, w) for (s, d), w in want.items() if observed.allowed(s, d) != w]
        before = self._before.get((port, protocol)) or {cell: True for cell in want}  # no policy: all allowed
        self._before[(port, protocol)] = want
        if self.on_check is not None:
            self.on_check(check, want, before)
        return check


def walk_problems(walk, allowed: bool) -> list[str]:
    """Why a packet walk does not explain its verdict with the kernel's own evidence ([] if it does):
    it must reach the verdict the case expects, agree with the oracle, and show the deciding rule
    of ``inet labkit-pol`` (the drop of an isolated pod, or each direction's accept) as traced."""
    name = f"{walk.src} -> {walk.dst} {walk.port}/{walk.protocol}"
    problems = []
    if (walk.facts.outcome == "delivered") != allowed:
        problems.append(f"{name}: the kernel's walk says {walk.verdict!r}, the case says "
                        f"{'allow' if allowed else 'deny'}")
    problems += [f"{name}: {d}" for d in walk.differences]
    ruled = [h for h in walk.request if h.rule.startswith("inet labkit-pol ")
             and h.kind in ("policy", "drop")]
    if not allowed and not walk.facts.deciding_rule.startswith("inet labkit-pol "):
        problems.append(f"{name}: no traced policy rule dropped it ({walk.facts.deciding_rule or 'none'})")
    if allowed and len({d[0] for d in walk.facts.decisions}) < 2 or not ruled:
        problems.append(f"{name}: the trace does not show both directions' policy decisions")
    return problems


def summary_table(reports: list[CaseReport]) -> str:
    """``case  probes  observed == expected`` for every case, as a text table."""
    width = max(len(r.name) for r in reports)
    lines = [f"{'case'.ljust(width)}  probes  observed == expected"]
    for r in reports:
        cells = sum(c.cells for c in r.checks)
        notes = "; ".join(sorted({c.note for c in r.checks if c.note}))
        lines.append(f"{r.name.ljust(width)}  {cells:6d}  {'yes' if r.ok else 'NO'}" + (f"  ({notes})" if notes else ""))
    return "\n".join(lines)
