"""Benchmark: how long one packet walk (``lab.trace``) takes on the docker backend (issue 14).

A 9-pod lab (three namespaces x, y, z with pods a, b, c each, one Service in front of y's pods, one
NetworkPolicy isolating z/c), on one node and on two nodes. Over several runs it measures:

* ``lab.trace`` of an allowed connection through the Service (arm the trace in every node, make the
  connection, disarm, read the trace) — the goal is < 300 ms on the one-node lab;
* ``lab.trace`` of a denied connection with ``timeout=0.3`` (dominated by the probe's timeout);
* ``lab.probe`` of the same allowed connection (the floor: one connection without tracing);
* ``lab.trace_many`` of all 72 pod pairs at once (one trace of the kernel for all of them).

Reported as medians and p95 in ``benchmarks/results/trace_walk.json``, with the ratio of a walk to a
plain probe.

Usage: python benchmarks/trace_walk.py [--runs 15] [--out PATH]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import labkit  # noqa: E402

PODS = [f"{ns}/{p}" for ns in ("x", "y", "z") for p in ("a", "b", "c")]


def world(nodes: int) -> list[dict]:
    docs: list[dict] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in "xyz"]
    for k, ref in enumerate(PODS):
        ns, name = ref.split("/")
        docs.append({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": name, "namespace": ns, "labels": {"pod": name}},
                     "spec": {"nodeName": f"node-{k % nodes + 1}",
                              "containers": [{"name": "app", "ports": [{"containerPort": 80}]}]}})
    docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "y"},
                 "spec": {"selector": {"pod": "b"}, "ports": [{"port": 80}]}})
    docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                 "metadata": {"name": "deny-c", "namespace": "z"},
                 "spec": {"podSelector": {"matchLabels": {"pod": "c"}}, "policyTypes": ["Ingress"]}})
    return docs


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000.0)
    return out


def summary(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"median_ms": round(statistics.median(ordered), 1),
            "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1),
            "runs": len(ordered), "samples_ms": [round(s, 1) for s in samples]}


def run(nodes: int, runs: int) -> dict:
    with labkit.Lab(f"bench-trace-{nodes}", backend="docker", nodes=nodes) as lab:
        lab.apply(world(nodes))
        walk = lab.trace("x/a", "web.y", 80)
        assert walk.agrees and walk.facts.outcome == "delivered", str(walk)
        allowed = timed(lambda: lab.trace("x/a", "web.y", 80), runs)
        denied = timed(lambda: lab.trace("x/a", "z/c", 80, timeout=0.3), max(3, runs // 3))
        probe = timed(lambda: lab.probe("x/a", "web.y", 80), runs)
        pairs = [(s, d, 80, "TCP") for s in PODS for d in PODS if s != d]
        many = timed(lambda: lab.trace_many(pairs, timeout=0.3), max(3, runs // 5))
        walks = lab.trace_many(pairs, timeout=0.3)
        assert all(w.agrees for w in walks), [str(w) for w in walks if not w.agrees]
    out = {"trace_allowed": summary(allowed), "trace_denied_timeout_0.3s": summary(denied),
           "probe_allowed": summary(probe), "trace_many_72_pairs": summary(many)}
    out["ratio_trace_to_probe"] = round(out["trace_allowed"]["median_ms"] / out["probe_allowed"]["median_ms"], 2)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "trace_walk.json"))
    args = parser.parse_args()
    results = {"machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count(),
                           "kernel": platform.release()},
               "goal": "lab.trace < 300 ms (median) on a 9-pod lab with one node",
               "labs": {f"{n}-node": run(n, args.runs) for n in (1, 2)}}
    one = results["labs"]["1-node"]["trace_allowed"]["median_ms"]
    results["goal_met"] = one < 300
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    for name, lab in results["labs"].items():
        rows = {k: v["median_ms"] for k, v in lab.items() if isinstance(v, dict)}
        sys.stdout.write(f"{name}: {rows}, trace/probe = {lab['ratio_trace_to_probe']}\n")
    sys.stdout.write(f"goal met: {results['goal_met']} ({one} ms)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
