"""Benchmark: the oracle's full reachability matrix for 100 and 1,000 pods, 10 and 100 policies.

Goal (issue #2): 1,000 pods x 100 policies in under 2 s on one core. Reports the median
of several runs per size and writes ``benchmarks/results/oracle_matrix.json``.

Usage: python benchmarks/oracle_matrix.py [--runs 5] [--out PATH]
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labkit.model.cluster import Cluster  # noqa: E402
from labkit.model.manifests import parse  # noqa: E402
from labkit.semantics.reach import matrix_rows  # noqa: E402

NAMESPACES = 10
APPS = ["web", "api", "db", "cache", "queue", "auth"]


def world(pods: int, policies: int, seed: int = 1) -> Cluster:
    """A synthetic cluster: pods spread over 10 namespaces with app/tier labels, and a mix of
    realistic policies (default deny, app-to-app, namespace selectors, named ports, endPort, ipBlock)."""
    rnd = random.Random(seed)
    docs = [{"apiVersion": "v1", "kind": "Namespace",
             "metadata": {"name": f"ns{i}", "labels": {"team": f"t{i % 3}", "env": rnd.choice(["prod", "dev"])}}}
            for i in range(NAMESPACES)]
    for i in range(pods):
        docs.append({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": f"p{i}", "namespace": f"ns{i % NAMESPACES}",
                                  "labels": {"app": rnd.choice(APPS), "tier": rnd.choice(["fe", "be"])}},
                     "spec": {"containers": [{"name": "c", "ports": [
                         {"containerPort": 80, "name": "http"}, {"containerPort": 81, "protocol": "UDP"}]}]}})
    for k in range(policies):
        ns = f"ns{k % NAMESPACES}"
        app = rnd.choice(APPS)
        shape = k % 5
        if shape == 0:
            spec = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        elif shape == 1:
            spec = {"podSelector": {"matchLabels": {"app": app}},
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": rnd.choice(APPS)}}}],
                                 "ports": [{"port": "http"}]}]}
        elif shape == 2:
            spec = {"podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["be"]}]},
                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": f"t{k % 3}"}},
                                           "podSelector": {"matchLabels": {"tier": "fe"}}}],
                                 "ports": [{"port": 80, "endPort": 90}]}]}
        elif shape == 3:
            spec = {"podSelector": {"matchLabels": {"app": app}}, "policyTypes": ["Egress"],
                    "egress": [{"to": [{"namespaceSelector": {"matchExpressions": [
                        {"key": "env", "operator": "NotIn", "values": ["dev"]}]}}]},
                               {"to": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.1.0/28"]}}],
                                "ports": [{"protocol": "UDP", "port": 81}]}]}
        else:
            spec = {"podSelector": {"matchLabels": {"tier": "fe"}},
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": app}}},
                                          {"namespaceSelector": {}}], "ports": [{"port": 80}]}]}
        docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                     "metadata": {"name": f"pol{k}", "namespace": ns}, "spec": spec})
    cluster, _ = Cluster.new(nodes=4).applied(parse(docs))
    return cluster


def measure(pods: int, policies: int, runs: int) -> dict:
    cluster = world(pods, policies)
    refs = cluster.user_pods()
    times, allowed = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        rows = matrix_rows(cluster, refs, 80, "TCP")
        times.append(time.perf_counter() - start)
        allowed = sum(bin(r).count("1") for r in rows)
    return {"pods": pods, "policies": policies, "pairs": len(refs) ** 2, "allowed_pairs": allowed,
            "runs": runs, "median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4),
            "max_s": round(max(times), 4)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "oracle_matrix.json"))
    args = ap.parse_args()
    rows = [measure(p, k, args.runs) for p in (100, 1000) for k in (10, 100)]
    report = {"benchmark": "oracle full matrix (semantics.reach.matrix_rows), 80/TCP",
              "goal": "1000 pods x 100 policies < 2 s on one core",
              "python": platform.python_version(), "machine": platform.machine(),
              "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for r in rows:
        sys.stdout.write(f"{r['pods']:5d} pods x {r['policies']:3d} policies: median {r['median_s']:.3f} s "
                         f"({r['allowed_pairs']}/{r['pairs']} pairs allowed)\n")
    sys.stdout.write(f"written to {args.out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
