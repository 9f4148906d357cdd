"""Benchmark: how long a Service change takes to be in force on the docker backend, and what
labkit's rule step costs compared with plain ``nft -f`` (issue #4).

For labs holding 10, 100 and 500 Services (all sharing three backend pods, so every Service
has three endpoints), it measures, over several runs:

* ``lab.apply`` of one new Service, which returns once its rules are in the kernel and its
  name is in cluster DNS (apply-until-enforced), and the same followed by the first
  connection to the new name (which must succeed: no sleep in between);
* ``lab.delete`` of that Service;
* the rule step, with the lab's whole ruleset: labkit's side is the wall time of a public call
  whose enforcement is the rule step alone, ``lab.label`` of backend pod ``be0`` off and back
  onto the Services' selector (every Service loses or regains an endpoint: the node's whole
  ruleset is re-sent; no pod, Service name or DNS record changes), against plain
  ``docker exec -i <node> nft -f -`` of the lab's ruleset by hand, as a ratio; and a bare
  ``nft -f`` of the same file timed inside the node (no docker exec).

The raw side uses ``benchmarks/rawdocker.py`` (the Engine API over its unix socket, standard
library only); the node container is found by labkit's documented labels (``io.labkit.lab``,
``io.labkit.owner``, ``io.labkit.role=node``, ``io.labkit.node=node-1``). No labkit internals
are called or wrapped, so two earlier breakdowns are dropped: the per-exec split of one apply
(rules / DNS reload / other), which wrapped labkit's engine calls, and the node agent's own nft
timing (labkit applies rulesets with ``nft -f -`` itself now). The rule-step row above stands
in for the first: a Service apply minus a rules-only change is roughly the DNS reload.

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
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import labkit  # noqa: E402
from labkit.dataplane import ruleset  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rawdocker  # noqa: E402

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


def rule_step(lab: labkit.Lab, runs: int) -> dict:
    """labkit's rule step (a public rules-only change) against plain nft, with the lab's own ruleset, in its node."""
    engine = rawdocker.Engine()
    node = engine.node_container(lab.name, lab.owner, "node-1")
    text = ruleset.render(lab.cluster, 1)  # what labkit has in force in node-1 (render is pure)
    labkit_wall, plain_wall, bare_inner = [], [], []
    code, out, err = engine.exec(node, ["sh", "-c", "cat > /tmp/bench.nft"], text.encode())
    assert code == 0, err
    timer = ("import subprocess,sys,time\nt=time.monotonic()\n"
             "p=subprocess.run(['nft','-f','/tmp/bench.nft'],capture_output=True)\n"
             "print(round((time.monotonic()-t)*1000,2) if p.returncode==0 else 'ERR '+p.stderr.decode())")
    try:
        for _ in range(runs):
            for value in (None, "be"):  # be0 leaves every Service's endpoints, then comes back
                t = time.perf_counter()
                lab.label("pod", f"{NS}/be0", {"app": value})
                labkit_wall.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            code, out, err = engine.exec(node, ["nft", "-f", "-"], text.encode())
            plain_wall.append((time.perf_counter() - t) * 1000)
            assert code == 0, out + err
            code, out, err = engine.exec(node, ["python3", "-c", timer])
            assert code == 0 and not out.startswith(b"ERR"), out + err
            bare_inner.append(float(out.decode().strip()))
        assert ruleset.render(lab.cluster, 1) == text, "the lab did not come back to the ruleset it started from"
    finally:
        # the kernel holds ``text`` again, the very ruleset labkit last applied there
        engine.exec(node, ["rm", "-f", "/tmp/bench.nft"])
        engine.close()
    out = {"labkit_rules_only_change_ms": summary(labkit_wall), "plain_docker_exec_nft_ms": summary(plain_wall),
           "bare_nft_inside_node_ms": summary(bare_inner), "ruleset": counts(text),
           "labkit_call": f"lab.label('pod', '{NS}/be0', ...) taking it out of / back into every Service"}
    labkit_ms, plain_ms = out["labkit_rules_only_change_ms"]["median"], out["plain_docker_exec_nft_ms"]["median"]
    out["ratio_labkit_vs_plain_docker_exec"] = labkit_ms / plain_ms
    out["ratio_plain_exec_vs_inside_node"] = plain_ms / out["bare_nft_inside_node_ms"]["median"]
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
        first_ok = 0
        for r in range(runs):
            t = time.perf_counter()
            ruleset.render(lab.cluster, 1)
            render.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            lab.apply(service(f"new-{r}"))
            applied = time.perf_counter()
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
            "render_ruleset_ms": summary(render), "rule_step": step}


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
              "raw_client": "benchmarks/rawdocker.py: Engine API over the unix socket, standard library only",
              "dropped": ["apply_breakdown_ms (rules / DNS reload / other execs within one apply): it wrapped labkit's "
                          "engine calls; see apply_one_service_ms against rule_step.labkit_rules_only_change_ms",
                          "rule_step.labkit_agent_ms and labkit_nft_inside_node_ms: the node agent's nft path, which "
                          "labkit no longer uses for rules; labkit's side is now a public rules-only change"],
              "results": results}
    report["load_average_after"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print()
    print(f"{'services':>8}  {'chains':>6}  {'rules':>5}  {'apply (ms)':>10}  {'+1st conn':>9}  {'ok':>5}  "
          f"{'delete':>7}  {'labkit':>7}  {'plain':>7}  {'ratio':>5}  {'bare nft in node (ms)':>21}")
    for r in results:
        s = r["rule_step"]
        print(f"{r['services']:>8}  {s['ruleset']['chains']:>6}  {s['ruleset']['rules']:>5}  "
              f"{r['apply_one_service_ms']['median']:>10.1f}  {r['apply_then_first_connection_ms']['median']:>9.1f}  "
              f"{r['first_connection_succeeded']:>5}  {r['delete_one_service_ms']['median']:>7.1f}  "
              f"{s['labkit_rules_only_change_ms']['median']:>7.1f}  {s['plain_docker_exec_nft_ms']['median']:>7.1f}  "
              f"{s['ratio_labkit_vs_plain_docker_exec']:>5.2f}  {s['bare_nft_inside_node_ms']['median']:>21.1f}")
    print("labkit: lab.label moving one endpoint in/out of every Service (its only enforcement is the rule step);"
          "\nplain: docker exec -i node-1 nft -f - of the lab's ruleset over the raw Engine API client.")
    print("\nwhere one apply's time goes, from outside (medians, ms): a rules-only change / the rest (DNS reload, "
          "model); the per-exec breakdown is no longer measured")
    for r in results:
        rules = r["rule_step"]["labkit_rules_only_change_ms"]["median"]
        whole = r["apply_one_service_ms"]["median"]
        print(f"{r['services']:>8}  {rules:>7.1f} / {whole - rules:>7.1f}   (of {whole:.1f})")
    print(f"load average before/after: {report['load_average_before']} / {report['load_average_after']} on "
          f"{os.cpu_count()} CPUs")
    print(f"\nmedians of {args.runs} runs; p95 and raw samples in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
