"""NodePort traffic on every path of a two-node lab agrees with the oracle, on real packets: from
the internet host, from a pod of either node, to either node's address, including the endpoint
itself and a pod on the endpoint's node connecting through the other node (node-1 must send the
connection back to node-2 through its fabric bridge, masqueraded to its own address: once this
timed out, because the fabric bridge handed the frame to the IP hooks as a bridged frame).
The address the server saw is compared too: the sim twin of the lab predicts it."""
from __future__ import annotations

import pytest

import labkit

pytestmark = pytest.mark.docker

WORLD = """
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: default, labels: {app: p}}
spec: {nodeName: node-2, containers: [{name: app, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: q, namespace: default, labels: {app: q}}
spec: {nodeName: node-2, containers: [{name: app, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: r, namespace: default, labels: {app: r}}
spec: {nodeName: node-1, containers: [{name: app, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: p, namespace: default}
spec:
  type: NodePort
  selector: {app: p}
  ports: [{port: 80, targetPort: 8080, nodePort: 30090}]
"""
PATHS = [(src, node) for src in ("internet", "default/p", "default/q", "default/r") for node in ("198.18.0.1", "198.18.0.2")]


def test_every_nodeport_path_answers_as_the_oracle_says():
    with labkit.Lab("it-nodeport", backend="docker", nodes=2) as real, \
            labkit.Lab("it-nodeport-sim", backend="sim", nodes=2) as twin:
        real.apply(WORLD)
        twin.apply(WORLD)
        seen = {}
        for src, node in PATHS:
            observed = real.sample(src, node, port=30090, count=3)
            expected = twin.probe(src, node, port=30090)
            seen[(src, node)] = [(r.ok, r.answered_by, r.client_ip) for r in observed]
            assert expected.ok, (src, node, expected)
            assert all((r.ok, r.answered_by, r.client_ip) == (True, "default/p", expected.client_ip)
                       for r in observed), (src, node, seen[(src, node)], expected)
