"""Replica names, as a ReplicaSet gives them: ``<deployment>-<pod-template-hash>-<5 random chars>``,
and a name once used in a lab is never given to a new pod again (scale down, up, delete, re-create)."""
from __future__ import annotations

import re

import labkit

SAFE = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' rand.SafeEncodeString alphabet
NAME = re.compile(rf"^x/web-[{SAFE}]{{10}}-[{SAFE}]{{5}}$")


def deployment(replicas, image="labkit"):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "x"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "app", "image": image,
                                                           "ports": [{"containerPort": 80}]}]}}}}


NS = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}


def test_scaling_down_then_up_gives_fresh_names_never_the_old_ones():
    with labkit.Lab("h2-names", backend="sim") as lab:
        lab.apply([NS, deployment(3)])
        first = set(lab.pods)
        lab.apply(deployment(1))
        (kept,) = lab.pods
        assert kept in first
        lab.apply(deployment(3))
        now = set(lab.pods)
        assert len(now) == 3 and kept in now
        fresh = now - {kept}
        assert not fresh & first, "a scaled-down replica's name was given to a new pod"
        assert all(NAME.match(ref) for ref in now), now


def test_a_deleted_and_recreated_deployment_does_not_reuse_names():
    with labkit.Lab("h2-names", backend="sim") as lab:
        lab.apply([NS, deployment(2)])
        before = set(lab.pods)
        lab.delete("deployment", "web", namespace="x")
        assert lab.pods == []
        lab.apply(deployment(2))
        assert len(lab.pods) == 2 and not set(lab.pods) & before


def test_names_are_reproducible_for_the_same_operations():
    def names():
        with labkit.Lab("h2-names", backend="sim") as lab:
            lab.apply([NS, deployment(3)])
            lab.apply(deployment(0))
            lab.apply(deployment(2))
            return lab.pods

    assert names() == names()


def test_pod_ips_are_still_allocated_in_order():
    """Names changed, addresses did not: host-local style, the next free one after the last given."""
    with labkit.Lab("h2-names", backend="sim") as lab:
        lab.apply([NS, deployment(2)])
        ips = sorted(lab.pod_ip(p) for p in lab.pods)
        assert ips == ["10.244.1.3", "10.244.1.4"]
        lab.apply(deployment(1))
        lab.apply(deployment(2))
        assert sorted(lab.pod_ip(p) for p in lab.pods)[-1] == "10.244.1.5"
