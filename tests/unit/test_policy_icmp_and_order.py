"""Two things a learner sees at a policy's edge, the same on both backends.

* Policy before listener: a connection that a policy denies is dropped (the client times
  out) even when nothing listens on the port; "connection refused" needs the policies to
  let the packet reach the pod.
* ICMP: the NetworkPolicy API has no ICMP, so its handling is implementation-defined.
  labkit lets ICMP through a rule whose peers match only when the rule lists no ports; the
  sim's ``ping`` says what the docker backend's real ``ping`` prints.
"""
from __future__ import annotations

import re

import pytest

import labkit
from labkit.runtime.sim_exec import HEADER

WORLD = """
apiVersion: v1
kind: Namespace
metadata: {name: a}
---
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: a, labels: {app: p}}
spec: {nodeName: node-1, containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: q, namespace: a, labels: {app: q}}
spec: {nodeName: node-1, containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: r, namespace: a, labels: {app: r}}
spec: {nodeName: node-2, containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: open, namespace: a, labels: {app: open}}
spec: {nodeName: node-1, containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: q-from-p, namespace: a}
spec:
  podSelector: {matchLabels: {app: q}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {app: p}}}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: r-from-p-on-80, namespace: a}
spec:
  podSelector: {matchLabels: {app: r}}
  policyTypes: [Ingress, Egress]
  ingress: [{from: [{podSelector: {matchLabels: {app: p}}}], ports: [{port: 80}]}]
  egress: [{to: [{ipBlock: {cidr: 203.0.113.0/24}}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p-to-internet-443, namespace: a}
spec:
  podSelector: {matchLabels: {app: p}}
  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: 203.0.113.0/24}}]
    ports: [{port: 443}]
  - to: [{podSelector: {}}]
"""
# (source, destination, port): what a client sees
ORDER = [
    ("a/r", "a/q", 81, "timed out"),        # q isolated, no rule for r, nothing on 81: dropped first
    ("a/open", "a/q", 81, "timed out"),
    ("a/p", "a/q", 81, "connection refused"),  # allowed by q-from-p: the pod's kernel refuses
    ("a/p", "a/open", 81, "connection refused"),  # nobody isolated
    ("a/q", "a/q", 81, "connection refused"),  # a pod reaching itself: no policy on the way
    ("a/r", "a/open", 81, "timed out"),     # r's egress allows only the internet range
]
# (source, destination, answered?)
PINGS = [
    ("a/p", "a/q", True),           # a rule without ports whose peer matches: ICMP too
    ("a/open", "a/q", False),       # isolated, no rule for open
    ("a/p", "a/r", False),          # a rule WITH ports matches only TCP 80: no ICMP
    ("a/q", "a/q", True),           # itself
    ("a/open", "a/p", True),        # nobody isolated on the way; p on node-1, r on node-2
    ("a/q", "a/r", False),
    ("a/r", "203.0.113.10", True),  # r's egress rule to the internet range has no ports
    ("a/p", "203.0.113.10", False),  # p's rule to the internet lists port 443: no ICMP
    ("a/r", "a/open", False),       # r's egress: only the internet range
]


def _ip(lab, dst: str) -> str:
    return lab.pod_ip(dst) if "/" in dst else dst


def _run(backend: str, name: str) -> tuple[list[str], list[tuple[int, str]]]:
    with labkit.Lab(name, backend=backend, nodes=2) as lab:
        lab.apply(WORLD)
        errors = [lab.probe(src, dst, port=port).error for src, dst, port, _ in ORDER]
        pings = []
        for src, dst, _ in PINGS:
            result = lab.exec(src, ["ping", "-c", "2", "-W", "1", _ip(lab, dst)])
            pings.append((result.exit_code, _normalise(result.output)))
        quiet = lab.exec("a/p", ["ping", "-c1", "-q", _ip(lab, "a/q")])
        pings.append((quiet.exit_code, _normalise(quiet.output)))
        return errors, pings


def _normalise(text: str) -> str:
    text = text[len(HEADER) + 1:] if text.startswith(HEADER + "\n") else text
    text = re.sub(r"time=\d+(\.\d+)? ms", "time=<T> ms", text)
    text = re.sub(r"time \d+ms", "time <T>ms", text)
    return re.sub(r"rtt min/avg/max/mdev = \S+ ms", "rtt <T>", text)


@pytest.fixture(scope="module")
def sim():
    with labkit.Lab("h3-edges", backend="sim", nodes=2) as lab:
        lab.apply(WORLD)
        yield lab


@pytest.mark.parametrize("src, dst, port, error", ORDER)
def test_a_policy_drops_before_a_missing_listener_could_refuse(sim, src, dst, port, error):
    assert sim.probe(src, dst, port=port).error == error


def test_explain_names_the_policy_and_the_missing_listener(sim):
    text = str(sim.explain("a/r", "a/q", port=81))
    assert "a/q is isolated for ingress by a/q-from-p, and no rule of that policy allows" in text
    assert "nothing in a/q listens on 81/TCP either" in text
    refused = str(sim.explain("a/p", "a/q", port=81))
    assert "ingress rule 0 of a/q-from-p" in refused and "so the connection is refused" in refused


@pytest.mark.parametrize("src, dst, answered", PINGS)
def test_ping_follows_labkits_icmp_rule(sim, src, dst, answered):
    result = sim.exec(src, ["ping", "-c1", "-W1", _ip(sim, dst)])
    assert result.output.startswith(HEADER)
    assert result.exit_code == (0 if answered else 1)
    assert ("1 received" in result.output) is answered


def test_ping_prints_like_iputils(sim):
    q = sim.pod_ip("a/q")
    ok = sim.exec("a/p", ["ping", "-c", "2", q]).output
    assert f"64 bytes from {q}: icmp_seq=2 ttl=63 time=" in ok
    assert "2 packets transmitted, 2 received, 0% packet loss" in ok
    other_node = sim.exec("a/open", ["ping", "-c1", sim.pod_ip("a/r")])
    assert other_node.exit_code == 1  # r isolated: no rule for open
    assert "ttl=62" in sim.exec("a/r", ["ping", "-c1", "203.0.113.10"]).output  # node-2 -> node-1 -> internet


@pytest.mark.parametrize("argv", [["ping", "10.244.1.2"], ["ping", "-c1", "web"], ["ping", "-c1", "10.96.0.10"],
                                  ["ping", "-c1", "-i", "0.2", "203.0.113.10"], ["ping", "-c", "x", "203.0.113.10"]])
def test_other_pings_are_not_simulated(sim, argv):
    result = sim.exec("a/p", argv)
    assert result.exit_code == 127 and "ping -c N IP" in result.output


@pytest.mark.docker
def test_docker_and_sim_agree():
    real = _run("docker", "h3-edges-d")
    simulated = _run("sim", "h3-edges-s")
    assert real[0] == simulated[0] == [error for *_, error in ORDER]
    mismatches = [f"{PINGS[i] if i < len(PINGS) else 'quiet'}:\n  docker {r!r}\n  sim    {s!r}"
                  for i, (r, s) in enumerate(zip(real[1], simulated[1])) if r != s]
    assert not mismatches, "ping differs:\n" + "\n".join(mismatches)
