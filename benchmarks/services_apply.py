"""Benchmark: how long a Service change takes to be in force on the docker backend, and what
labkit's rule step costs compared with plain ``nft -f`` (issue #4).

For labs holding 10, 100 and 500 Services (all sharing three backend pods, so every Service
has three endpoints), it measures, over several runs:

* ``lab.apply`` of one new Service, which returns once its rules are in the kernel and its
  name is in cluster DNS (apply-until-enforced), and the same followed by the first
  connection to the new name (which must succeed: no sleep in between);
* ``lab.delete`` of that Service;
* the rule step alone, with the lab's whole ruleset as it is in force:
  labkit's node agent (``engine.agent(..., "nft", {"ruleset": text})``, a ``docker exec``
  of ``python3 -m labkit.node nft``) against plain ``docker exec -i <node> nft -f -`` of
  the same text by hand, as a ratio; and, inside the node, the agent's own nft timing
  against a bare ``nft -f`` of the same file (no docker exec on either side).

Reported as medians (and p95 where there are enough runs); raw samples are kept in
``benchmarks/results/services_apply.json``. Goals (DESIGN §7, notes §9.7): a Service change
visible to the next new connection once apply returns (~50 ms of rule work for a typical
lab); labkit's rule step within a small factor of plain nft.

Usage: python benchmarks/services_apply.py [--sizes 10,100,500] [--runs 7] [--out PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import labkit  # noqa: E402
from labkit.dataplane import ruleset  # noqa: E402
from labkit.runtime.docker import engine  # noqa: E402

NS = "bench"
BACKENDS = 3


def pod(name: str, labels: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS, "labels": labels},
            "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 8080, "name": "http"}]}]}}


def service(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
            "spec": {"selector": {"app": "be"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "p95": pct(values, 0.95), "min": min(values), "max": max(values),
            "runs": len(values), "samples": [round(v, 2) for v in values]}


def counts(text: str) -> dict:
    chains = text.count("\n  chain ")
    rules = 0
    inside = False
    for line in text.splitlines():
        if line.startswith("  chain "):
            inside = True
        elif line == "  }":
            inside = False
        elif inside and line.startswith("    ") and not line.strip().startswith(("type ", "comment ")):
            rules += 1
    return {"chains": chains, "rules": rules, "bytes": len(text.encode())}


class Breakdown:
    """Attribute the Docker calls made during one apply: rules (the nft agent), DNS reload, other."""

    def __init__(self):
        self.totals: dict[str, float] = {}
        self._orig = None

    def __enter__(self):
        self.totals = {"rules_ms": 0.0, "dns_ms": 0.0, "other_exec_ms": 0.0}
        self._orig = engine.exec_raw

        def timed(client, container_id, argv, stdin=None, timeout=60.0):
            t = time.perf_counter()
            try:
                return self._orig(client, container_id, argv, stdin, timeout)
            finally:
                kind = ("rules_ms" if argv[-1:] == ["nft"] else
                        "dns_ms" if argv[:1] == ["sh"] and "dnsmasq" in " ".join(argv) else "other_exec_ms")
                self.totals[kind] += (time.perf_counter() - t) * 1000

        engine.exec_raw = timed
        return self

    def __exit__(self, *exc):
        engine.exec_raw = self._orig


def rule_step(lab: labkit.Lab, runs: int) -> dict:
    """labkit's nft step against plain nft, with the lab's own ruleset, in its node."""
    client = lab._backend.client
    node = lab._backend.nodes[0]
    text = ruleset.render(lab.cluster, node.index)
    agent_wall, agent_inner, plain_wall, bare_inner = [], [], [], []
    code, out, err = engine.exec_raw(client, node.id, ["sh", "-c", "cat > /tmp/bench.nft"], text.encode())
    assert code == 0, err
    timer = ("import subprocess,sys,time\nt=time.monotonic()\n"
             "p=subprocess.run(['nft','-f','/tmp/bench.nft'],capture_output=True)\n"
             "print(round((time.monotonic()-t)*1000,2) if p.returncode==0 else 'ERR '+p.stderr.decode())")
    for _ in range(runs):
        t = time.perf_counter()
        answer = engine.agent(client, node.id, "nft", {"ruleset": text})
        agent_wall.append((time.perf_counter() - t) * 1000)
        agent_inner.append(float(answer["ms"]))
        t = time.perf_counter()
        subprocess.run(["docker", "exec", "-i", node.container.name, "nft", "-f", "-"], input=text.encode(),
                       check=True, capture_output=True)
        plain_wall.append((time.perf_counter() - t) * 1000)
        code, out, err = engine.exec_raw(client, node.id, ["python3", "-c", timer])
        assert code == 0 and not out.startswith(b"ERR"), out + err
        bare_inner.append(float(out.decode().strip()))
    # leave the node exactly as labkit wants it (the same text, applied by labkit)
    engine.agent(client, node.id, "nft", {"ruleset": text})
    engine.exec_raw(client, node.id, ["rm", "-f", "/tmp/bench.nft"])
    out = {"labkit_agent_ms": summary(agent_wall), "plain_docker_exec_nft_ms": summary(plain_wall),
           "labkit_nft_inside_node_ms": summary(agent_inner), "bare_nft_inside_node_ms": summary(bare_inner),
           "ruleset": counts(text)}
    median = {k: v["median"] for k, v in out.items() if k != "ruleset"}
    out["ratio_agent_vs_plain_docker_exec"] = median["labkit_agent_ms"] / median["plain_docker_exec_nft_ms"]
    out["ratio_inside_node"] = median["labkit_nft_inside_node_ms"] / median["bare_nft_inside_node_ms"]
    return out


def measure(size: int, runs: int) -> dict:
    name = f"bsvc-{size}"
    with labkit.Lab(name, backend="docker") as lab:
        lab.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
                   pod("client", {"role": "client"})] + [pod(f"be{i}", {"app": "be"}) for i in range(BACKENDS)])
        t = time.perf_counter()
        lab.apply([service(f"svc-{k}") for k in range(size)])
        bulk = time.perf_counter() - t
        applies, with_probe, deletes, render = [], [], [], []
        parts: dict[str, list[float]] = {"rules_ms": [], "dns_ms": [], "other_exec_ms": []}
        first_ok = 0
        for r in range(runs):
            t = time.perf_counter()
            ruleset.render(lab.cluster, 1)
            render.append((time.perf_counter() - t) * 1000)
            with Breakdown() as spent:
                t = time.perf_counter()
                lab.apply(service(f"new-{r}"))
                applied = time.perf_counter()
            for key, value in spent.totals.items():
                parts[key].append(value)
            result = lab.probe("bench/client", f"new-{r}", 80, timeout=2)
            probed = time.perf_counter()
            first_ok += result.ok
            applies.append((applied - t) * 1000)
            with_probe.append((probed - t) * 1000)
            t = time.perf_counter()
            lab.delete("service", f"new-{r}", namespace=NS)
            deletes.append((time.perf_counter() - t) * 1000)
        step = rule_step(lab, runs)
    return {"services": size, "endpoints_per_service": BACKENDS, "bulk_apply_all_services_s": round(bulk, 3),
            "apply_one_service_ms": summary(applies), "apply_then_first_connection_ms": summary(with_probe),
            "first_connection_succeeded": f"{first_ok}/{runs}", "delete_one_service_ms": summary(deletes),
            "render_ruleset_ms": summary(render),
            "apply_breakdown_ms": {k: summary(v) for k, v in parts.items()}, "rule_step": step}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10,100,500")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "services_apply.json"))
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    results, load_before = [], os.getloadavg()
    for size in sizes:
        print(f"measuring a lab with {size} Services ({args.runs} runs) ...", flush=True)
        results.append(measure(size, args.runs))
    report = {"benchmark": "services_apply", "issue": 4, "runs": args.runs, "python": platform.python_version(),
              "machine": platform.machine(), "cpus": os.cpu_count(), "load_average_before": load_before,
              "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "goals": {"apply_until_enforced": "a Service change is in force (rules + DNS) when apply returns: the "
                                                "first connection right after it succeeds",
                        "rule_step": "labkit's nft step reported as a ratio against plain nft -f (DESIGN §7)"},
              "results": results}
    report["load_average_after"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print()
    print(f"{'services':>8}  {'chains':>6}  {'rules':>5}  {'apply (ms)':>10}  {'+1st conn':>9}  {'ok':>5}  "
          f"{'delete':>7}  {'agent':>7}  {'plain':>7}  {'ratio':>5}  {'nft in node: labkit/bare (ms)':>30}")
    for r in results:
        s = r["rule_step"]
        print(f"{r['services']:>8}  {s['ruleset']['chains']:>6}  {s['ruleset']['rules']:>5}  "
              f"{r['apply_one_service_ms']['median']:>10.1f}  {r['apply_then_first_connection_ms']['median']:>9.1f}  "
              f"{r['first_connection_succeeded']:>5}  {r['delete_one_service_ms']['median']:>7.1f}  "
              f"{s['labkit_agent_ms']['median']:>7.1f}  {s['plain_docker_exec_nft_ms']['median']:>7.1f}  "
              f"{s['ratio_agent_vs_plain_docker_exec']:>5.2f}  "
              f"{s['labkit_nft_inside_node_ms']['median']:>13.1f} / {s['bare_nft_inside_node_ms']['median']:<8.1f}")
    print("\nwhere one apply's time goes (medians, ms): nft agent call / DNS reload / other docker execs")
    for r in results:
        b = r["apply_breakdown_ms"]
        print(f"{r['services']:>8}  {b['rules_ms']['median']:>7.1f} / {b['dns_ms']['median']:>7.1f} / "
              f"{b['other_exec_ms']['median']:>7.1f}   (of {r['apply_one_service_ms']['median']:.1f})")
    print(f"load average before/after: {report['load_average_before']} / {report['load_average_after']} on "
          f"{os.cpu_count()} CPUs")
    print(f"\nmedians of {args.runs} runs; p95 and raw samples in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
