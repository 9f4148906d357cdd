"""Benchmark: NetworkPolicy changes on the docker backend (issue #5).

1. Apply-to-enforced latency, p50/p95 over several runs, in a lab of 9 pods (x/y/z x a/b/c)
   holding 10 policies: ``lab.apply`` of a policy that allows y/b -> x/a (x/a is isolated), alone
   and followed by the first verifying connection (which must succeed: no sleep); then
   ``lab.delete`` of it, alone and with a verifying connection that must now fail (that
   probe waits for its 0.3 s timeout, since a denied SYN is dropped, so it is reported apart).
2. Rule size and cost at scale: 100 pods (one node) and 500 pods (two nodes: a node's pod
   range is a /24) with 50 policies, modelled with a sim Lab; node-1's ruleset is rendered
   with ``labkit.dataplane.ruleset.render`` and applied INSIDE THE REAL node-1 container of
   the small docker lab of part 1, which then gets its own ruleset back. The node container is
   found by labkit's documented labels (``io.labkit.lab``/``owner``/``role=node``/``node``), and
   reached with ``benchmarks/rawdocker.py`` (the Engine API over its socket, standard library
   only, no labkit internals). Applied two ways: ``docker exec -i <node> nft -f -`` (the very
   command labkit's rule step runs, here over the raw client) and a bare ``nft -f`` timed
   inside the node (no docker exec). Reported: chains, rules, set elements, render ms, apply ms.
   Dropped: the node agent's own apply path and its inner timing (labkit applies rulesets with
   ``nft -f -`` itself now, and calling it needed labkit's internals).
3. The wall time of the whole NetworkPolicy conformance file on docker: a fresh lab, then
   ``labkit.testing.conformance.World`` over every case once (goal: < 180 s).

Results (medians/percentiles and raw samples) go to ``benchmarks/results/policy_apply.json``.

Usage: python benchmarks/policy_apply.py [--runs 15] [--scale-runs 5] [--skip-conformance | --only-conformance]
       [--out PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import labkit  # noqa: E402
from labkit.dataplane import ruleset  # noqa: E402
from labkit.testing import conformance  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rawdocker  # noqa: E402

CONFORMANCE_GOAL_S = 180.0
DELETE_PROBE = "delete_then_first_probe_ms (includes the 0.3 s probe timeout)"
EXEC_APPLY = "exec_nft_apply_ms (docker exec -i node nft -f -, raw client)"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary(values: list[float]) -> dict:
    return {"p50": statistics.median(values), "p95": pct(values, 0.95), "min": min(values), "max": max(values),
            "runs": len(values), "samples": [round(v, 2) for v in values]}


def policy(ns: str, name: str, spec: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def sel(**labels) -> dict:
    return {"matchLabels": labels}


# ------------------------------------------------------------------ part 1: 9 pods, 10 policies
def world_docs() -> list[dict]:
    docs = []
    for ns in ("x", "y", "z"):
        docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"ns": ns}}})
        for p in ("a", "b", "c"):
            docs.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": p, "namespace": ns,
                                                                         "labels": {"pod": p}},
                         "spec": {"containers": [{"name": "app", "ports": [
                             {"containerPort": 80, "name": "http"}, {"containerPort": 81, "protocol": "UDP"}]}]}})
    return docs


BASE_POLICIES = [
    policy("x", "deny-a", {"podSelector": sel(pod="a"), "policyTypes": ["Ingress"]}),
    policy("x", "b-from-x", {"podSelector": sel(pod="b"), "ingress": [{"from": [{"podSelector": {}}]}]}),
    policy("x", "c-http", {"podSelector": sel(pod="c"), "ingress": [{"ports": [{"port": "http"}]}]}),
    policy("y", "a-from-z", {"podSelector": sel(pod="a"),
                             "ingress": [{"from": [{"namespaceSelector": sel(ns="z")}]}]}),
    policy("y", "c-egress-dns", {"podSelector": sel(pod="c"), "policyTypes": ["Egress"],
                                 "egress": [{"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53}]},
                                            {"to": [{"namespaceSelector": {}}], "ports": [{"port": 80}]}]}),
    policy("z", "deny-all", {"podSelector": {}, "policyTypes": ["Ingress"]}),
    policy("z", "from-x", {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": sel(ns="x")}],
                                                          "ports": [{"port": 80, "endPort": 81}]}]}),
    policy("z", "b-from-y-b", {"podSelector": sel(pod="b"), "ingress": [
        {"from": [{"namespaceSelector": sel(ns="y"), "podSelector": sel(pod="b")}]}]}),
    policy("z", "c-ipblock", {"podSelector": sel(pod="c"), "ingress": [
        {"from": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.1.0/30"]}}]}]}),
    policy("y", "b-egress-x", {"podSelector": sel(pod="b"), "policyTypes": ["Egress"],
                               "egress": [{"to": [{"namespaceSelector": sel(ns="x")}]},
                                          {"ports": [{"port": 53, "protocol": "UDP"}]}]}),
]
ALLOW = policy("x", "allow-yb", {"podSelector": sel(pod="a"), "ingress": [{
    "from": [{"namespaceSelector": sel(ns="y"), "podSelector": sel(pod="b")}], "ports": [{"port": 80}]}]})


def latency(lab: labkit.Lab, runs: int) -> dict:
    lab.apply(BASE_POLICIES)
    assert len(lab.cluster.policies) == 10
    assert not lab.explain("y/b", "x/a", 80).allowed and not lab.probe("y/b", "x/a", 80, timeout=0.3).ok
    applies, apply_probe, deletes, delete_probe = [], [], [], []
    agree_allow = agree_deny = 0
    for _ in range(runs):
        t = time.perf_counter()
        lab.apply(ALLOW)
        done = time.perf_counter()
        ok = lab.probe("y/b", "x/a", 80, timeout=1.0).ok
        probed = time.perf_counter()
        applies.append((done - t) * 1000)
        apply_probe.append((probed - t) * 1000)
        agree_allow += ok
        t = time.perf_counter()
        lab.delete("networkpolicy", "allow-yb", namespace="x")
        done = time.perf_counter()
        denied = not lab.probe("y/b", "x/a", 80, timeout=0.3).ok
        probed = time.perf_counter()
        deletes.append((done - t) * 1000)
        delete_probe.append((probed - t) * 1000)
        agree_deny += denied
    return {"pods": 9, "policies": 10,
            "apply_allow_ms": summary(applies), "apply_allow_then_first_probe_ms": summary(apply_probe),
            "first_probe_after_apply_allowed": f"{agree_allow}/{runs}",
            "delete_ms": summary(deletes), DELETE_PROBE: summary(delete_probe),
            "first_probe_after_delete_denied": f"{agree_deny}/{runs}"}


# ------------------------------------------------------------------ part 2: 100 / 500 pods, 50 policies
APPS = ["web", "api", "db", "cache", "queue"]


def scale_docs(pods: int, policies: int, seed: int = 5) -> list[dict]:
    rnd = random.Random(seed)
    namespaces = [f"ns{i}" for i in range(10)]
    docs = [{"apiVersion": "v1", "kind": "Namespace",
             "metadata": {"name": n, "labels": {"team": f"t{i % 3}", "env": rnd.choice(["prod", "dev"])}}}
            for i, n in enumerate(namespaces)]
    for i in range(pods):
        docs.append({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": f"p{i}", "namespace": namespaces[i % 10],
                                  "labels": {"app": rnd.choice(APPS), "tier": rnd.choice(["fe", "be"])}},
                     "spec": {"containers": [{"name": "c", "ports": [
                         {"containerPort": rnd.choice([80, 8080]), "name": "http"},
                         {"containerPort": 53, "protocol": "UDP", "name": "dns"}]}]}})
    for k in range(policies):
        ns, app, shape = namespaces[k % 10], rnd.choice(APPS), k % 5
        if shape == 0:
            spec = {"podSelector": {}, "policyTypes": ["Ingress"]}
        elif shape == 1:
            spec = {"podSelector": sel(app=app), "ingress": [{"from": [{"podSelector": sel(app=rnd.choice(APPS))}],
                                                              "ports": [{"port": "http"}]}]}
        elif shape == 2:
            spec = {"podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["be"]}]},
                    "ingress": [{"from": [{"namespaceSelector": sel(team=f"t{k % 3}"), "podSelector": sel(tier="fe")}],
                                 "ports": [{"port": 8000, "endPort": 8100}, {"port": 80}]}]}
        elif shape == 3:
            spec = {"podSelector": sel(app=app), "policyTypes": ["Egress"],
                    "egress": [{"to": [{"namespaceSelector": {"matchExpressions": [
                        {"key": "env", "operator": "NotIn", "values": ["dev"]}]}}], "ports": [{"port": "http"}]},
                               {"to": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.1.0/28"]}}],
                                "ports": [{"protocol": "UDP", "port": "dns"}]}]}
        else:
            spec = {"podSelector": sel(tier="fe"), "ingress": [{"from": [{"podSelector": sel(app=app)},
                                                                        {"namespaceSelector": {}}],
                                                               "ports": [{"port": 80}]}]}
        docs.append(policy(ns, f"pol{k}", spec))
    return docs


def ruleset_counts(text: str) -> dict:
    chains = rules = elements = 0
    kind = None
    for line in text.splitlines():
        if line.startswith("  chain "):
            kind, chains = "chain", chains + 1
        elif line.startswith(("  map ", "  set ")):
            kind = "set"
        elif line == "  }":
            kind = None
        elif kind == "chain" and line.startswith("    ") and not line.strip().startswith(("type ", "comment ")):
            rules += 1
        elif kind == "set" and "elements = {" in line or (kind == "set" and line.startswith("                 ")):
            elements += line.count(",") + (1 if "elements = {" in line else 0)
    return {"chains": chains, "rules": rules, "map_and_set_elements": elements, "bytes": len(text.encode())}


def scale(lab: labkit.Lab, sizes: list[tuple[int, int]], runs: int) -> list[dict]:
    engine = rawdocker.Engine()
    node = engine.node_container(lab.name, lab.owner, "node-1")
    timer = ("import subprocess,time\nt=time.monotonic()\n"
             "p=subprocess.run(['nft','-f','/tmp/bench.nft'],capture_output=True)\n"
             "print(round((time.monotonic()-t)*1000,2) if p.returncode==0 else 'ERR '+p.stderr.decode())")
    out = []
    try:
        for pods, nodes in sizes:
            with labkit.Lab(f"bpol-sim-{pods}", backend="sim", nodes=nodes) as sim:
                sim.apply(scale_docs(pods, 50))
                cluster = sim.cluster
            renders, exec_wall, bare_ms = [], [], []
            text = ""
            for _ in range(runs):
                t = time.perf_counter()
                text = ruleset.render(cluster, 1)
                renders.append((time.perf_counter() - t) * 1000)
            code, _, err = engine.exec(node, ["sh", "-c", "cat > /tmp/bench.nft"], text.encode())
            assert code == 0, err
            for _ in range(runs):
                t = time.perf_counter()
                code, res, err = engine.exec(node, ["nft", "-f", "-"], text.encode(), timeout=300)
                exec_wall.append((time.perf_counter() - t) * 1000)
                assert code == 0, res + err
                code, res, err = engine.exec(node, ["python3", "-c", timer], timeout=300)
                assert code == 0 and not res.startswith(b"ERR"), res + err
                bare_ms.append(float(res.decode().strip()))
            local = sum(1 for r, i in cluster.pod_nodes.items() if i == 1 and not r.startswith("kube-system/"))
            isolated = ruleset_counts(text)
            out.append({"pods": pods, "nodes": nodes, "pods_on_node_1": local, "policies": len(cluster.policies),
                        "services": len(cluster.services), "ruleset_node_1": isolated,
                        "render_ms": summary(renders), EXEC_APPLY: summary(exec_wall),
                        "bare_nft_inside_node_ms": summary(bare_ms),
                        "applied_where": f"inside node-1 of the docker lab {lab.name!r} (its rules restored "
                                         "afterwards)"})
    finally:  # give the node its own ruleset back: the very text labkit last applied there (render is pure)
        code, res, err = engine.exec(node, ["nft", "-f", "-"], ruleset.render(lab.cluster, 1).encode())
        engine.exec(node, ["rm", "-f", "/tmp/bench.nft"])
        engine.close()
        assert code == 0, res + err
    return out


# ------------------------------------------------------------------ part 3: the conformance file
def conformance_wall_time() -> dict:
    data = conformance.load_cases()
    started = time.perf_counter()
    reports = []
    with labkit.Lab("bpol-conf", backend="docker") as lab:
        up = time.perf_counter()
        world = conformance.World(lab, data, can_probe=lambda p: p in lab.capabilities.protocols)
        ready = time.perf_counter()
        for case in data["cases"]:
            reports.append(world.run(case))
        ran = time.perf_counter()
    closed = time.perf_counter()
    total = closed - started
    return {"cases": len(reports), "cases_ok": sum(r.ok for r in reports),
            "failures": [r.failures() for r in reports if not r.ok],
            "lab_start_s": round(up - started, 2), "world_setup_s": round(ready - up, 2),
            "cases_s": round(ran - ready, 2), "close_s": round(closed - ran, 2), "total_s": round(total, 2),
            "goal_s": CONFORMANCE_GOAL_S, "meets_goal": total < CONFORMANCE_GOAL_S,
            "sctp_probed": bool(reports) and not any("SCTP not probed" in c.note for r in reports for c in r.checks)}


def save(report: dict, out: str) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--scale-runs", type=int, default=5)
    ap.add_argument("--skip-conformance", action="store_true")
    ap.add_argument("--only-conformance", action="store_true", help="run part 3 alone and merge it into --out")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "policy_apply.json"))
    args = ap.parse_args(argv)
    report = {"benchmark": "policy_apply", "issue": 5, "python": platform.python_version(),
              "machine": platform.machine(), "cpus": os.cpu_count(), "load_average_before": os.getloadavg(),
              "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "goals": {"apply_to_enforced": "the first connection after apply/delete returns already sees the "
                                             "new verdict (notes §9.7: ~50 ms per change on the reference VM)",
                        "conformance_file_s": CONFORMANCE_GOAL_S},
              "dropped": ["scale.*.labkit_agent_apply_ms and labkit_nft_inside_node_ms: the node agent's nft path "
                          "(labkit no longer applies rulesets through it; calling it needed labkit internals); "
                          "the rule step's command, docker exec nft -f -, is timed instead over a raw client"]}
    if args.only_conformance and Path(args.out).exists():
        report = json.loads(Path(args.out).read_text(encoding="utf-8"))
    if not args.only_conformance:
        print(f"part 1: apply-to-enforced latency, 9 pods / 10 policies, {args.runs} runs ...", flush=True)
        with labkit.Lab("bpol", backend="docker") as lab:
            lab.apply(world_docs())
            report["latency"] = latency(lab, args.runs)
            save(report, args.out)
            print("part 2: 100 and 500 pods with 50 policies, rendered and applied in a real node ...", flush=True)
            report["scale"] = scale(lab, [(100, 1), (500, 2)], args.scale_runs)
            save(report, args.out)
    if not args.skip_conformance:
        print("part 3: the whole conformance file on docker ...", flush=True)
        try:
            report["conformance"] = conformance_wall_time()
        except Exception as exc:  # a failed run is a result too: keep parts 1 and 2
            report["conformance"] = {"error": f"{type(exc).__name__}: {exc}", "goal_s": CONFORMANCE_GOAL_S}
    report["load_average_after"] = os.getloadavg()
    save(report, args.out)

    if "latency" in report:
        lat = report["latency"]
        print("\napply-to-enforced, 9 pods / 10 policies (ms)        p50      p95")
        for key, label in (("apply_allow_ms", "apply (allow y/b -> x/a)"),
                           ("apply_allow_then_first_probe_ms", "apply + first probe (succeeds)"),
                           ("delete_ms", "delete (deny again)"),
                           (DELETE_PROBE, "delete + first probe (0.3 s timeout)")):
            print(f"  {label:<48} {lat[key]['p50']:>7.1f}  {lat[key]['p95']:>7.1f}")
        print(f"  first probe saw the new verdict: allow {lat['first_probe_after_apply_allowed']}, "
              f"deny {lat['first_probe_after_delete_denied']}")
    if "scale" in report:
        print("\nscale (node-1's ruleset; 50 policies)   pods@n1  chains  rules  elems  render  exec nft -f -  "
              "bare-nft")
        for s in report["scale"]:
            c = s["ruleset_node_1"]
            print(f"  {s['pods']:>4} pods on {s['nodes']} node(s)            {s['pods_on_node_1']:>7}  "
                  f"{c['chains']:>6}  {c['rules']:>5}  {c['map_and_set_elements']:>5}  {s['render_ms']['p50']:>6.1f}  "
                  f"{s[EXEC_APPLY]['p50']:>13.1f}  {s['bare_nft_inside_node_ms']['p50']:>8.1f}   (ms, p50)")
    c = report.get("conformance")
    if c and "error" in c:
        print(f"\nconformance file on docker: FAILED: {c['error']}")
    elif c:
        print(f"\nconformance file on docker: {c['cases_ok']}/{c['cases']} cases ok in {c['total_s']:.1f} s "
              f"(lab start {c['lab_start_s']} s, world {c['world_setup_s']} s, cases {c['cases_s']} s); "
              f"goal < {CONFORMANCE_GOAL_S:.0f} s: {'met' if c['meets_goal'] else 'NOT met'}")
    print(f"\nload average before/after: {report['load_average_before']} / {report['load_average_after']} "
          f"on {os.cpu_count()} CPUs; raw samples in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
