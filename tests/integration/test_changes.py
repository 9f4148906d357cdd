"""Changes to a running lab on a real engine: labels re-evaluate rules without touching
containers, and a change that fails leaves the lab exactly as it was (DESIGN §8)."""
from __future__ import annotations

import re

import pytest

import labkit
from labkit.errors import LabkitError, ModelError
from tests.integration.helpers import lab_containers, pod_containers, pod_doc

pytestmark = pytest.mark.docker

ONLY_DB = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny-db"},
           "spec": {"podSelector": {"matchLabels": {"role": "db"}}, "policyTypes": ["Ingress"]}}
BAD_COMMAND = ["/nonexistent-binary"]


def _snapshot(lab: labkit.Lab, name: str) -> tuple:
    # The rules without their counters: traffic (e.g. a node packet the fence rejects) may
    # move a counter between two snapshots without any rule having changed.
    rules = re.sub(r"counter packets \d+ bytes \d+", "counter", lab.rules())
    return (sorted((c.name, c.id, c.status) for c in lab_containers(name)), rules, sorted(lab.pods),
            dict(lab.cluster.pod_ips))


def test_labels_change_rules_not_containers():
    name = "it-chg-label"
    with labkit.Lab(name, backend="docker") as lab:
        lab.apply([pod_doc("a"), pod_doc("b"), ONLY_DB])
        ids = {c.id for c in pod_containers(name, "default/b")}
        assert lab.probe("a", "default/b").ok
        lab.label("pod", "b", {"role": "db"})
        denied = lab.probe("a", "default/b", timeout=0.3)
        assert not denied.ok
        assert 250 <= denied.latency_ms < 1000, denied  # the probe's timeout is honoured
        assert {c.id for c in pod_containers(name, "default/b")} == ids
        lab.label("pod", "b", {"role": None})
        assert lab.probe("a", "default/b").answered_by == "default/b"
        assert {c.id for c in pod_containers(name, "default/b")} == ids


def test_invalid_manifest_leaves_the_lab_as_it_was():
    name = "it-chg-invalid"
    with labkit.Lab(name, backend="docker") as lab:
        lab.apply([pod_doc("a"), ONLY_DB])
        before = _snapshot(lab, name)
        broken = pod_doc("b", ports=[(70000, "TCP")])
        with pytest.raises(ModelError, match="containerPort"):
            lab.apply([pod_doc("c"), broken])
        assert _snapshot(lab, name) == before
        assert lab.probe("a", "default/a").ok


def test_missing_image_is_refused_without_pulling():
    name = "it-chg-image"
    with labkit.Lab(name, backend="docker") as lab:
        lab.apply(pod_doc("a"))
        before = _snapshot(lab, name)
        with pytest.raises(LabkitError, match="never pulls"):
            lab.apply(pod_doc("b", containers=[{"name": "app", "image": "labkit-it/does-not-exist:0"}]))
        assert _snapshot(lab, name) == before


def test_a_pod_that_cannot_start_is_not_created():
    name = "it-chg-start"
    with labkit.Lab(name, backend="docker") as lab:
        lab.apply(pod_doc("a"))
        with pytest.raises(LabkitError, match="nonexistent-binary"):
            lab.apply(pod_doc("bad", containers=[{"name": "app", "command": BAD_COMMAND}]))
        assert "default/bad" not in lab.pods
        assert [c.name for c in pod_containers(name, "default/bad") if c.status == "running"] == []
        assert lab.probe("a", "default/a").ok


def test_a_pod_that_failed_to_start_can_be_fixed():
    name = "it-chg-fix"
    with labkit.Lab(name, backend="docker") as lab:
        with pytest.raises(LabkitError):
            lab.apply(pod_doc("web", containers=[{"name": "app", "command": BAD_COMMAND}]))
        assert pod_containers(name, "default/web") == []
        lab.apply(pod_doc("web"))
        assert lab.probe("web", "default/web").answered_by == "default/web"


def test_failed_replacement_leaves_the_old_pod_running():
    name = "it-chg-repl"
    with labkit.Lab(name, backend="docker") as lab:
        lab.apply([pod_doc("client"), pod_doc("srv")])
        before = _snapshot(lab, name)
        with pytest.raises(LabkitError):
            lab.apply(pod_doc("srv", containers=[{"name": "app", "command": BAD_COMMAND,
                                                  "ports": [{"containerPort": 80}]}]))
        assert lab.probe("client", "default/srv").answered_by == "default/srv"
        assert _snapshot(lab, name)[0] == before[0]
