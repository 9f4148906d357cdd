"""What a check adds to and reads from the learner's lab besides probing: fresh pods, the
scenario's own policies, and notes on selectors that match nothing.

Owns the check's *visitors*: pods created at check time (in the exercise's namespaces and in
a new namespace, ``check-visitors-`` plus a random suffix, so no selector can name it), so a
design that fences in only the few pods it knows fails; they are always removed again, also
when judging fails. It also owns the integrity of the scenario (the policies it provided, and
for policy-only tasks its pods and Services: removed or changed, the check fails and says
which) and the notes on the learner's own policies whose selectors match no pod or namespace.
"""
from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from labkit.errors import LabkitError
from labkit.exercises.expect import ExpectationResult
from labkit.model.manifests import parse
from labkit.model.objects import LabelSelector, NetworkPolicy, Pod, Service
from labkit.semantics import policy as pol

NEW = ""  # Visitor.namespace for "a namespace created for the check"
VISITOR_NAMESPACE = "check-visitors"  # the new namespace is this plus a random suffix, new at every check
VISITOR_PREFIX = "check-"
_SAFE = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' alphabet for generated names
# Every visitor serves the ports the course's tasks talk about, so a too-wide rule shows.
VISITOR_PORTS = ({"containerPort": 80, "name": "http"}, {"containerPort": 443, "name": "https"},
                 {"containerPort": 8080, "name": "http-api"}, {"containerPort": 5432, "name": "postgres"},
                 {"containerPort": 53, "protocol": "UDP", "name": "dns"})


@dataclass(frozen=True)
class Visitor:
    """A fresh pod the check creates: ``@name`` in ``namespace`` (``NEW``: a new namespace) with ``labels``."""

    name: str
    namespace: str
    labels: tuple[tuple[str, str], ...] = (("app", "visitor"),)

    @property
    def pod_name(self) -> str:
        return VISITOR_PREFIX + self.name.lstrip("@")

    def ref(self, new_namespace: str) -> str:
        return f"{self.namespace or new_namespace}/{self.pod_name}"


def is_visitor_namespace(name: str) -> bool:
    return name.startswith(VISITOR_NAMESPACE + "-")


@contextmanager
def visiting(lab: Any, visitors: tuple[Visitor, ...],
             namespace_labels: dict[str, str]) -> Iterator[tuple[dict[str, str], ExpectationResult | None]]:
    """Create ``visitors`` (skipping those whose namespace the lab lacks), yield ``@name`` -> pod ref
    and, when they could not be made, a failed outcome saying why; remove them again whatever happens."""
    if not visitors:
        yield {}, None
        return
    try:
        _remove(lab, visitors)  # what an interrupted earlier check left
    except LabkitError as exc:
        yield {}, ExpectationResult("the check's own fresh pods could be created", False, f"could not test it: {exc}")
        return
    present = [v for v in visitors if v.namespace == NEW or v.namespace in lab.cluster.namespaces]
    # a new name every time: a policy cannot single out the check's namespace by its name
    new_namespace = f"{VISITOR_NAMESPACE}-{''.join(random.choice(_SAFE) for _ in range(5))}"
    docs: list[dict] = []
    if any(v.namespace == NEW for v in present):
        docs.append({"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": new_namespace, "labels": dict(namespace_labels)}})
    for v in present:
        docs.append({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": v.pod_name, "namespace": v.namespace or new_namespace,
                                  "labels": dict(v.labels)},
                     "spec": {"containers": [{"name": "app", "ports": [dict(p) for p in VISITOR_PORTS]}]}})
    try:
        try:
            if docs:
                lab.apply(docs)
        except LabkitError as exc:
            yield {}, ExpectationResult("the check's own fresh pods could be created", False,
                                        f"{exc}\n  (the check adds {len(present)} pods for a moment: make room, "
                                        "e.g. delete pods you no longer need)")
            return
        yield {v.name: v.ref(new_namespace) for v in present}, None
    finally:
        _remove(lab, visitors)


def _remove(lab: Any, visitors: tuple[Visitor, ...]) -> None:
    """Delete the check's namespaces and, in the exercise's namespaces, exactly the check's pods; every
    one is tried even when one fails, and then the first failure is raised (nothing is left silently)."""
    steps = [("namespace", n, "") for n in lab.cluster.namespaces if is_visitor_namespace(n)]
    steps += [("pod", v.pod_name, v.namespace) for v in visitors if v.namespace
              and (pod := lab.cluster.pods.get(f"{v.namespace}/{v.pod_name}")) is not None and pod.owner is None]
    failed: list[LabkitError] = []
    for kind, name, namespace in steps:
        try:
            lab.delete(kind, name, namespace)
        except LabkitError as exc:
            failed.append(exc)
    if failed:
        raise failed[0]


def provided_policies(text: str) -> dict[str, NetworkPolicy]:
    """The NetworkPolicies of a scenario's YAML, by ref."""
    return {o.ref: o for o in parse(text) if isinstance(o, NetworkPolicy)} if text else {}


def scenario_intact(lab: Any, provided: dict[str, NetworkPolicy]) -> ExpectationResult | None:
    """One outcome: the scenario's policies are all still there, unchanged (None when it has none)."""
    if not provided:
        return None
    text = "the policies the scenario gave are still in place, unchanged (add new policies instead)"
    gone = [ref for ref in provided if ref not in lab.cluster.policies]
    changed = [ref for ref, p in provided.items() if ref in lab.cluster.policies and not _same(lab.cluster.policies[ref], p)]
    if not gone and not changed:
        return ExpectationResult(text, True, ", ".join(provided))
    lines = [f"{ref} was deleted: apply it again (it is in the notebook's earlier cells)" for ref in gone]
    lines += [f"{ref} was changed: apply the notebook's version again and put your rules in a policy of your own"
              for ref in changed]
    return ExpectationResult(text, False, "\n".join(lines))


def world_intact(lab: Any, world: str) -> ExpectationResult:
    """One outcome: the world's pods (name, labels, ports) and Services (selector, ports) are as it made them."""
    text = "the scenario's pods and Services are as the notebook made them (the task is policies only)"
    problems = []
    for obj in parse(world):
        if isinstance(obj, Pod):
            live = lab.cluster.pods.get(obj.ref)
            if live is None:
                problems.append(f"pod {obj.ref} is gone: run the notebook's cell that creates it again")
            elif (live.labels, live.spec.containers) != (obj.labels, obj.spec.containers):
                problems.append(f"pod {obj.ref} was relabelled or changed: apply the notebook's version again")
        elif isinstance(obj, Service):
            live = lab.cluster.services.get(obj.ref)
            if live is None or (live.selector, live.ports) != (obj.selector, obj.ports):
                problems.append(f"Service {obj.ref} was deleted or changed: apply the notebook's version again")
    return ExpectationResult(text, not problems, "\n".join(problems) or "unchanged")


def _same(live: NetworkPolicy, given: NetworkPolicy) -> bool:
    return (live.pod_selector, live.policy_types, live.ingress, live.egress) == (
        given.pod_selector, given.policy_types, given.ingress, given.egress)


def selector_notes(lab: Any, skip: set[str]) -> list[str]:
    """Sentences about the learner's policies (all but ``skip``) whose selectors match nothing."""
    cluster = lab.cluster
    notes = []
    for ref, policy in sorted(cluster.policies.items()):
        if ref in skip or policy.namespace == "kube-system":
            continue
        own = [p for p in cluster.pods.values() if p.namespace == policy.namespace and not _visitor(p.name)]
        if not any(policy.pod_selector.matches(p.labels) for p in own):
            notes.append(f"{ref}: its podSelector {_shown(policy.pod_selector)} matches no pod in namespace "
                         f"{policy.namespace}, so it changes nothing (a typo in a label? the wrong namespace?)")
        for direction, rules in (("ingress", policy.ingress), ("egress", policy.egress)):
            for i, rule in enumerate(rules):
                for j, peer in enumerate(rule.peers):
                    if _matches_nothing(cluster, policy, peer):
                        word = "from" if direction == "ingress" else "to"
                        notes.append(f"{ref}: {direction}[{i}].{word}[{j}] matches no pod "
                                     f"({_describe(peer)}): a typo in a label?")
    return notes


def _visitor(name: str) -> bool:
    return name.startswith(VISITOR_PREFIX)


def _shown(selector: LabelSelector) -> str:
    return "{}" if selector.empty else "{" + str(selector) + "}"


def _describe(peer: Any) -> str:
    parts = []
    if peer.namespace_selector is not None:
        parts.append(f"namespaceSelector {_shown(peer.namespace_selector)}")
    if peer.pod_selector is not None:
        parts.append(f"podSelector {_shown(peer.pod_selector)}")
    return ", ".join(parts)


def _matches_nothing(cluster: Any, policy: NetworkPolicy, peer: Any) -> bool:
    """No pod of the lab (the check's own left out) matches ``peer``; an ipBlock always may match."""
    if peer.ip_block is not None:
        return False
    return not any(pol.peer_matches(cluster, policy, peer, p, cluster.pod_ips.get(p.ref, ""))
                   for p in cluster.pods.values() if not _visitor(p.name) and not is_visitor_namespace(p.namespace))
