"""Benchmark: a class of N learners bringing up notebook 04's world at the same moment, through
the lab server, against the same work in one process on the local docker backend.

For each N (default 1, 5, 10) and each way (``server``: one ``labkit serve`` process, each
learner a throw-away Unix user in a process of their own, as in a classroom; ``local``: N
threads of one process on the docker backend, owners told apart by name), every learner
starts a lab, applies notebook 04's world (taken from the notebook), and probes until it
answers; once every lab answers, each learner does ``--rounds`` rounds of one probe and one
NetworkPolicy apply (and its delete) while all the others do the same. Reported per N and
way: the time until every lab answered, the host memory per learner (``MemAvailable`` before,
and with every lab up), the serving process's CPU seconds and peak RSS (the lab server, or
the one local process), and the median and p95 of a probe and of a policy apply. Writes
``benchmarks/results/classroom.json``. Needs root (it creates and removes Unix users) and
the lab image. Nothing is asserted: it reports.

Each figure is the median over ``--runs`` runs.

Usage: python benchmarks/classroom.py [--learners 1 5 10] [--rounds 10] [--runs 3] [--out PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import labkit  # noqa: E402
from tests.integration.learners import as_user, throwaway_users  # noqa: E402

POLICY = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bench-deny, namespace: shop}
spec: {podSelector: {}, policyTypes: [Ingress]}
"""


def notebook_world() -> str:
    """The manifests notebook 04 applies first (its world of namespaces, pods and Services)."""
    cells = json.loads((ROOT / "notebooks" / "04-network-policies-1.ipynb").read_text())["cells"]
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and "kind: Namespace" in source:
            return re.search(r'lab\.apply\("""(.*?)"""\)', source, re.S).group(1)
    raise RuntimeError("notebook 04 has no cell that applies its world")


def meminfo_available_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def learner(world: str, rounds: int, barrier_dir: str, index: int, backend: str | None = None,
            owner: str | None = None) -> dict:
    """One learner's session; ``barrier_dir``: where it says it is up and waits to go on."""
    started = time.monotonic()
    options = {"backend": backend} if backend else {}
    lab = labkit.Lab("bench04", owner=owner, **options) if owner else labkit.Lab("bench04", **options)
    try:
        lab.apply(world)
        while not lab.probe("monitoring/grafana", "shop/web", port=80).ok:
            time.sleep(0.2)
        up = time.monotonic() - started
        Path(barrier_dir, f"up-{index}").touch()
        while not Path(barrier_dir, "go").exists():
            time.sleep(0.1)
        probes, applies = [], []
        for _ in range(rounds):
            t = time.monotonic()
            lab.probe("monitoring/grafana", "shop/web", port=80)
            probes.append(time.monotonic() - t)
            t = time.monotonic()
            lab.apply(POLICY)
            applies.append(time.monotonic() - t)
            lab.delete("NetworkPolicy", "bench-deny", "shop")
        return {"up_s": up, "probe_s": probes, "apply_s": applies}
    finally:
        lab.close()


def guarded(*args, **kwargs) -> dict:
    """``learner``, with any failure as its result (a child process must not die of it unseen)."""
    try:
        return learner(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - reported as this learner's failure
        return {"error": f"{type(exc).__name__}: {exc}"}


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def measure(n: int, one, serving_pid: int) -> dict:
    """Start ``n`` learners at once (``one(barrier_dir, index)`` -> its result, each in a thread),
    release them when every lab answers, and watch the serving process and the host meanwhile."""
    barrier = tempfile.mkdtemp(prefix="labkit-bench-")
    os.chmod(barrier, 0o777)
    mem_before, cpu_before, peak = meminfo_available_kib(), cpu_seconds(serving_pid), [0]
    started = time.monotonic()
    results: list[dict] = []
    def run_all() -> None:
        with ThreadPoolExecutor(max_workers=n) as pool:
            results.extend(pool.map(lambda i: one(barrier, i), range(n)))
    worker = threading.Thread(target=run_all)
    worker.start()
    while len([f for f in os.listdir(barrier) if f.startswith("up-")]) < n and worker.is_alive():
        peak[0] = max(peak[0], rss_kib(serving_pid))
        time.sleep(0.2)
    all_up = time.monotonic() - started
    mem_up = meminfo_available_kib()
    Path(barrier, "go").touch()
    while worker.is_alive():
        peak[0] = max(peak[0], rss_kib(serving_pid))
        time.sleep(0.2)
    worker.join()
    for f in os.listdir(barrier):
        os.unlink(os.path.join(barrier, f))
    os.rmdir(barrier)
    errors = [r for r in results if "error" in r]
    if errors or len(results) != n:
        raise RuntimeError(f"{len(errors)} learner(s) failed: {errors[:2]}")
    probes = [x for r in results for x in r["probe_s"]]
    applies = [x for r in results for x in r["apply_s"]]
    return {"learners": n, "all_labs_answer_s": round(all_up, 2),
            "slowest_learner_up_s": round(max(r["up_s"] for r in results), 2),
            "memory_per_learner_mib": round((mem_before - mem_up) / 1024 / n, 1),
            "serving_cpu_s": round(cpu_seconds(serving_pid) - cpu_before, 2),
            "serving_peak_rss_mib": round(peak[0] / 1024, 1),
            "probe_median_ms": round(statistics.median(probes) * 1000, 1), "probe_p95_ms": round(p95(probes) * 1000, 1),
            "apply_median_ms": round(statistics.median(applies) * 1000, 1),
            "apply_p95_ms": round(p95(applies) * 1000, 1)}


def through_server(n: int, rounds: int, world: str, users: list[str]) -> dict:
    folder = tempfile.mkdtemp(prefix="labkit-bench-server-")
    os.chmod(folder, 0o755)
    sock = os.path.join(folder, "labkit.sock")
    server = subprocess.Popen([sys.executable, "-m", "labkit", "serve", "--socket", sock, "--name",
                               f"bench-{os.getpid()}", "--pods-per-lab", "40", "--memory-per-learner", "16G",
                               "--idle-lab-minutes", "0"], cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.2)

        def one(barrier: str, i: int) -> dict:
            answer = as_user(users[i], lambda: guarded(world, rounds, barrier, i), {"LABKIT_SERVER": f"unix://{sock}"})
            return answer.get("value") or {"error": answer}
        return measure(n, one, server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=300)
        shutil.rmtree(folder, ignore_errors=True)


def in_one_process(n: int, rounds: int, world: str) -> dict:
    return measure(n, lambda barrier, i: guarded(world, rounds, barrier, i, backend="docker", owner=f"bench{i}"),
                   os.getpid())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learners", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3, help="runs per N and way; medians are reported")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "classroom.json"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark creates throw-away Unix users for the learners")
    world = notebook_world()
    rows = []
    names = [f"lkbench{i}" for i in range(max(args.learners))]
    with throwaway_users(names):
        for n in args.learners:
            for way, run in (("server", lambda: through_server(n, args.rounds, world, names)),
                             ("local", lambda: in_one_process(n, args.rounds, world))):
                runs = [run() for _ in range(args.runs)]
                row = {"way": way, "runs": args.runs, **{k: statistics.median(r[k] for r in runs) for k in runs[0]}}
                rows.append(row)
                print(json.dumps(row), flush=True)  # noqa: T201 - a benchmark script reports
    out = {"machine": {"cpus": os.cpu_count(), "memory_gib": round(os.sysconf("SC_PAGE_SIZE") *
                                                                    os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
                       "python": platform.python_version(), "kernel": platform.release()},
           "rounds": args.rounds, "runs": args.runs, "world": "notebook 04 (3 namespaces, 6 pods)", "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
