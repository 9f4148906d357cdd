"""The sim backend's ``lab.exec`` answers match what the real tools print on the docker backend.

Same world, same commands on both backends; the outputs must be equal once the simulated
header is dropped and what varies by nature (veth interface numbers, elapsed milliseconds,
how fresh an ARP entry is) is masked; MACs follow from addresses, so they must match too.
Needs a Docker engine and the lab image (marked docker).
"""
from __future__ import annotations

import re

import pytest

import labkit
from labkit.runtime.sim_exec import HEADER

WORLD = """
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec:
  containers:
  - name: app
    ports: [{containerPort: 80}]
  - name: side
    command: ["sleep", "infinity"]
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: b}}
spec: {containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: x, labels: {app: c}}
spec: {containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: x}
spec:
  selector: {app: b}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: hl, namespace: x}
spec:
  clusterIP: None
  selector: {app: b}
  ports: [{port: 80}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: c-no-egress, namespace: x}
spec:
  podSelector: {matchLabels: {app: c}}
  policyTypes: [Egress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-only-from-a, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}]
"""
B_IP = "{b}"
COMMANDS = [
    ("x/a", None, ["ip", "addr"]), ("x/a", "side", ["ip", "addr"]), ("x/a", None, ["ip", "-4", "addr"]),
    ("x/a", None, ["ip", "addr", "show", "eth0"]), ("x/a", None, ["ip", "addr", "show", "eth1"]),
    ("x/a", None, ["ip", "address", "eth0"]), ("x/a", None, ["ip", "link"]), ("x/a", None, ["ip", "route"]),
    ("x/a", None, ["hostname"]), ("x/a", "side", ["hostname"]), ("x/a", None, ["cat", "/etc/resolv.conf"]),
    ("x/a", None, ["nslookup", "web"]), ("x/a", None, ["nslookup", "web.x"]), ("x/a", None, ["nslookup", "nope"]),
    ("x/a", None, ["nslookup", "hl"]), ("x/a", None, ["nslookup", "web.x.svc.cluster.local."]),
    ("x/a", None, ["nslookup", "kube-dns.kube-system"]), ("x/a", None, ["nslookup", "203.0.113.10"]),
    ("x/a", None, ["dig", "+short", "web"]), ("x/a", None, ["dig", "+short", "+search", "web"]),
    ("x/a", None, ["dig", "+short", "web.x.svc.cluster.local"]), ("x/a", None, ["dig", "+short", "nope.x"]),
    ("x/a", None, ["curl", "-s", "http://web/"]), ("x/a", None, ["curl", "-sS", "http://web:81/"]),
    ("x/a", None, ["curl", "-s", "http://web:81/"]), ("x/a", None, ["curl", "-sS", "http://nope/"]),
    ("x/a", None, ["curl", "-s", "http://nope/"]), ("x/a", None, ["curl", "-s", "http://hl/"]),
    ("x/a", None, ["curl", "-s", f"http://{B_IP}/"]), ("x/a", None, ["curl", "-s", "http://203.0.113.10/"]),
    ("x/a", None, ["curl", "-sS", "http://203.0.113.10:8080/"]),
    ("x/a", "side", ["curl", "-s", "http://localhost/"]), ("x/a", None, ["curl", "-sS", "http://localhost:81/"]),
    ("x/b", None, ["curl", "-s", "http://127.0.0.1:80/"]),
    ("x/c", None, ["nslookup", "-timeout=1", "-retry=0", "web"]),
    ("x/c", None, ["dig", "+short", "+time=1", "+tries=1", "web.x.svc.cluster.local"]),
    ("x/c", None, ["curl", "-sS", "-m", "1", "http://web/"]),
    ("x/c", None, ["curl", "-sS", "-m", "1", f"http://{B_IP}/"]),
    ("x/c", None, ["curl", "-sS", "--connect-timeout", "1", f"http://{B_IP}/"]),
    ("x/a", None, ["ip", "neigh"]), ("x/c", None, ["ip", "neigh", "show"]),
]


def normalise(text: str) -> str:
    text = text[len(HEADER) + 1:] if text.startswith(HEADER + "\n") else text
    text = re.sub(r"@if\d+", "@if<N>", text)  # MACs are not masked: they follow from the addresses
    text = re.sub(r" (REACHABLE|STALE|DELAY|PROBE) $", " <NUD> ", text, flags=re.M)  # how fresh: timing
    return re.sub(r"after \d+ (ms|milliseconds)", r"after <T> \1", text)


def run_all(backend: str, lab_name: str) -> list[tuple[int, str]]:
    with labkit.Lab(lab_name, backend=backend) as lab:
        lab.apply(WORLD)
        out = []
        for pod, container, argv in COMMANDS:
            argv = [a.replace(B_IP, lab.pod_ip("x/b")) for a in argv]
            result = lab.exec(pod, argv, container=container)
            out.append((result.exit_code, normalise(result.output)))
        return out


@pytest.mark.docker
def test_sim_exec_prints_what_the_real_tools_print():
    real = run_all("docker", "simexec-real")
    simulated = run_all("sim", "simexec-sim")
    mismatches = [f"{COMMANDS[i][0]} {COMMANDS[i][2]}:\n  docker {r!r}\n  sim    {s!r}"
                  for i, (r, s) in enumerate(zip(real, simulated)) if r != s]
    assert not mismatches, "sim exec differs from docker:\n" + "\n".join(mismatches)
