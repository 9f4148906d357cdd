"""A failed change leaves the engine as it was: a failure injected at every step of a change,
on a real engine, leaves the same containers, the same rules and the same DNS records.

The docker backend takes a ``step_hook`` (public, documented for exactly this): it is called
with each step's name before the step runs; raising there is a failure at that step. The
state is read independently of labkit where it can be: containers with the docker CLI, DNS
with dig in a pod; the rules with ``lab.rules()`` (counters removed: traffic moves them).
"""
from __future__ import annotations

import re
import subprocess

import pytest

import labkit
from labkit.errors import BackendError
from labkit.runtime import registry
from tests.integration.helpers import LAB_LABEL, pod_doc

pytestmark = pytest.mark.docker
LAB = "it-txn"
STEPS = ["create", "replace", "rules", "flows", "dns", "remove"]  # the order a change goes through


class Injected(Exception):
    """The failure the hook injects."""


class Hook:
    def __init__(self):
        self.fail_at: str | None = None
        self.seen: list[str] = []

    def __call__(self, step: str) -> None:
        self.seen.append(step)
        if step == self.fail_at:
            raise Injected(f"injected failure at {step}")


def containers() -> list[tuple[str, str, str]]:
    out = subprocess.run(["docker", "ps", "-a", "--filter", f"label={LAB_LABEL}={LAB}", "--format",
                          "{{.Names}} {{.ID}} {{.State}}"], capture_output=True, text=True, check=True).stdout
    return sorted(tuple(line.split()) for line in out.splitlines() if line.strip())


def resolve(lab, name: str) -> str:
    return lab.exec("default/a", ["dig", "+short", "+time=1", "+tries=2", name]).output.strip()


def state(lab):
    rules = re.sub(r"counter packets \d+ bytes \d+", "counter", lab.rules())
    return (containers(), rules, resolve(lab, "new-svc.default.svc.cluster.local"),
            resolve(lab, "web.default.svc.cluster.local"), list(lab.history), lab.pods)


WORLD = [pod_doc("a"), pod_doc("b", labels={"app": "web"}), pod_doc("gone"),
         {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
          "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}]
CHANGE = [pod_doc("d", labels={"app": "web"}),  # a new pod
          pod_doc("b", labels={"app": "web"}, ports=[(80, "TCP"), (81, "TCP")]),  # a changed pod (replaced)
          {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "new-svc"},  # new DNS records
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 8080, "targetPort": 80}]}},
          {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny-all"},
           "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}]  # new rules


@pytest.fixture
def hooked():
    hook = Hook()
    backend = registry.create("docker", step_hook=hook)
    lab = labkit.Lab(LAB, backend=backend, nodes=2)
    try:
        lab.apply(WORLD)
        yield lab, hook
    finally:
        lab.close()
        backend.close()


def test_a_change_goes_through_every_step_in_order(hooked):
    lab, hook = hooked
    hook.seen.clear()
    lab.apply(CHANGE)
    assert hook.seen == STEPS


@pytest.mark.parametrize("step", STEPS[:-1])
def test_a_failure_at_each_step_leaves_pods_rules_and_dns_as_before(hooked, step):
    lab, hook = hooked
    before = state(lab)
    assert before[2] == "" and before[3]  # new-svc does not resolve yet; web does
    hook.fail_at = step
    with pytest.raises(Injected):
        lab.apply(CHANGE)
    assert state(lab) == before, f"a failure at {step!r} changed the lab"
    assert lab.probe("default/a", "default/b").answered_by == "default/b"
    hook.fail_at = None  # the same change then goes through: nothing half-made is in its way
    lab.apply(CHANGE)
    assert "default/d" in lab.pods and resolve(lab, "new-svc.default.svc.cluster.local")
    assert not lab.probe("default/a", "default/b").ok  # deny-all is in force


def test_a_failure_while_removing_the_old_keeps_the_change_and_cleans_up_later(hooked):
    lab, hook = hooked
    hook.fail_at = "remove"
    lab.apply(CHANGE)  # the new state is in force before anything old is torn down
    assert "default/d" in lab.pods and resolve(lab, "new-svc.default.svc.cluster.local")
    parked = [name for name, _, _ in containers() if name.endswith("__old")]
    assert parked, "the replaced pod's old containers should still be there"
    hook.fail_at = None
    lab.delete("pod", "gone")  # the next change removes the leftovers first
    assert not [name for name, _, _ in containers() if name.endswith("__old")]
    assert "default/gone" not in lab.pods


def test_a_pod_that_cannot_start_changes_nothing(hooked):
    lab, _ = hooked
    before = state(lab)
    broken = pod_doc("broken", containers=[{"name": "app", "command": ["/no/such/program"]}])
    with pytest.raises(BackendError, match="default/broken"):
        lab.apply([pod_doc("fine"), broken])
    assert state(lab) == before


def test_a_killed_node_is_named_and_nothing_changes(hooked):
    lab, _ = hooked
    node2 = subprocess.run(["docker", "ps", "-q", "--filter", f"label={LAB_LABEL}={LAB}", "--filter",
                            "label=io.labkit.role=node", "--filter", "label=io.labkit.node=node-2"],
                           capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(["docker", "kill", node2], capture_output=True, check=True)
    before = containers()
    with pytest.raises(BackendError, match=r"node-2 of lab 'it-txn' is not running.*nothing was changed"):
        lab.apply(CHANGE)
    assert containers() == before
