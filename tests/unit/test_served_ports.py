"""A container with its own command serves nothing, whatever ports it declares (labkit's server
runs only in containers without a command): the oracle, the sim's curl and the docker backend
agree, so a 'sidecar' that only sleeps cannot pass for one that serves."""
from __future__ import annotations

import pytest

import labkit

POD = """
apiVersion: v1
kind: Pod
metadata: {name: pair, namespace: default}
spec:
  containers:
  - name: web
    ports: [{containerPort: 80}]
  - name: metrics
    command: ["sleep", "infinity"]
    ports: [{containerPort: 9100}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default}
spec: {containers: [{name: app, ports: [{containerPort: 80}]}]}
"""


def _observe(lab) -> tuple:
    served = lab.probe("default/client", "default/pair", port=80)
    sleeping = lab.probe("default/client", "default/pair", port=9100)
    local = lab.exec("default/pair", ["curl", "-s", "-m", "2", "http://localhost:9100/"], container="web")
    return served.ok, sleeping.ok, sleeping.error, local.exit_code


def test_on_sim_a_sleeping_container_serves_nothing():
    with labkit.Lab("served-sim", backend="sim") as lab:
        lab.apply(POD)
        assert _observe(lab) == (True, False, "connection refused", 7)
        assert "9100/TCP" in lab.explain("default/client", "default/pair", port=9100).reasons[-1]


@pytest.mark.docker
def test_docker_agrees():
    with labkit.Lab("served-docker", backend="docker") as lab:
        lab.apply(POD)
        assert _observe(lab) == (True, False, "connection refused", 7)
