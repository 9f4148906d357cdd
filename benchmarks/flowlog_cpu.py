"""Benchmark: what the live flow log costs the lab's machine, idle and under a 2 Hz live matrix.

A 9-pod lab on 2 nodes (3 namespaces; a policy makes some cells denied). Four phases of
``--seconds`` each: idle without a flow log, idle with one, a live matrix (``lab.matrix()`` twice
a second, each probe timing out after 0.4 s as the LabPanel's Live does) without and with one.
The flow log's cost is the CPU time (user + sys, ``/proc/<pid>/stat``) of its processes in every
node (the ``nft-watch`` agent and its ``nft monitor trace``: ``FlowLog.pids``; nodes share the
host's PID namespace) plus that of this process's ``labkit-flows-*`` threads (the readers and the
flusher, ``/proc/self/task/<tid>/stat``), in % of one core. For context it also reports the CPU
of the nodes' containerd shims (which copy every exec's output) and of dockerd in each phase:
their difference with and without the log is the engine's share of streaming the trace
(dockerd is shared with whatever else the engine runs, so that figure is noisy), and this whole
process's ``time.process_time()``. Goal: the flow log below 5 % of a core when idle. Writes
``benchmarks/results/flowlog_cpu.json``; uses labkit's public API, the docker CLI and /proc.

Usage: python benchmarks/flowlog_cpu.py [--seconds 10] [--out PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import labkit  # noqa: E402

LAB = "bench-flowlog"
TICK = os.sysconf("SC_CLK_TCK")
RATE_HZ = 2.0
PROBE_TIMEOUT = 0.4


def world() -> list[dict]:
    docs: list[dict] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in ("x", "y", "z")]
    docs += [{"apiVersion": "v1", "kind": "Pod",
              "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
              "spec": {"nodeName": f"node-{1 + (k % 2)}", "containers": [{"name": "app",
                                                                           "ports": [{"containerPort": 80}]}]}}
             for k, (ns, name) in enumerate((ns, name) for ns in ("x", "y", "z") for name in ("a", "b", "c"))]
    docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",  # x's pods: only from x
                 "metadata": {"name": "same-ns", "namespace": "x"},
                 "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [{"podSelector": {}}]}]}})
    return docs


def cpu_ticks(path: str) -> int:
    """utime + stime of one process or thread (its ``stat`` file), 0 when it is gone."""
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5), counted after "(comm)"


def flow_threads() -> list[int]:
    return [t.native_id for t in threading.enumerate() if t.name.startswith("labkit-flows-") and t.native_id]


def node_shims() -> list[int]:
    """The containerd shims of the lab's node containers (the parents of their first processes)."""
    ids = subprocess.run(["docker", "ps", "-q", "--filter", f"label=io.labkit.lab={LAB}",
                          "--filter", "label=io.labkit.role=node"], capture_output=True, text=True, check=True)
    shims = []
    for cid in ids.stdout.split():
        pid = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", cid], capture_output=True, text=True,
                             check=True).stdout.strip()
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        shims.append(int(stat[1]))
    return shims


def dockerd() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
            and (p / "comm").exists() and _comm(p) == "dockerd"]


def _comm(p: Path) -> str:
    try:
        return (p / "comm").read_text().strip()
    except OSError:
        return ""


class Meter:
    """CPU seconds of groups of processes/threads between ``start`` and ``stop``."""

    def __init__(self, groups: dict[str, list[str]]):
        self.groups = groups

    def read(self) -> dict[str, int]:
        return {name: sum(cpu_ticks(p) for p in paths) for name, paths in self.groups.items()}

    def measure(self, seconds: float, work=None) -> dict:
        before, process_before, wall = self.read(), time.process_time(), time.monotonic()
        rounds = work(seconds) if work else time.sleep(seconds)
        elapsed = time.monotonic() - wall
        after = self.read()
        out = {name: round((after[name] - before[name]) / TICK / elapsed * 100, 2) for name in self.groups}
        out["this_process_pct"] = round((time.process_time() - process_before) / elapsed * 100, 2)
        out["seconds"] = round(elapsed, 2)
        if rounds is not None:
            out["matrix_rounds"] = rounds
        return out


def live_matrix(lab: labkit.Lab):
    def run(seconds: float) -> int:
        end, rounds, period = time.monotonic() + seconds, 0, 1.0 / RATE_HZ
        while time.monotonic() < end:
            started = time.monotonic()
            lab.matrix(port=80, timeout=PROBE_TIMEOUT)
            rounds += 1
            time.sleep(max(0.0, period - (time.monotonic() - started)))
        return rounds
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "flowlog_cpu.json"))
    args = parser.parse_args()
    phases = {}
    with labkit.Lab(LAB, backend="docker", nodes=2) as lab:
        lab.apply(world())
        engine = {"node_shims_pct": [f"/proc/{p}/stat" for p in node_shims()],
                  "dockerd_pct": [f"/proc/{p}/stat" for p in dockerd()]}
        phases["idle_without_log"] = Meter(engine).measure(args.seconds)
        phases["matrix_2hz_without_log"] = Meter(engine).measure(args.seconds, live_matrix(lab))
        seen = []
        with lab.flow_log() as log:
            log.listeners.append(seen.append)
            pids = [p for ps in log.pids.values() for p in ps]
            groups = {"flowlog_node_processes_pct": [f"/proc/{p}/stat" for p in pids],
                      "flowlog_threads_pct": [f"/proc/self/task/{t}/stat" for t in flow_threads()], **engine}
            phases["idle_with_log"] = Meter(groups).measure(args.seconds)
            before = len(seen)
            phases["matrix_2hz_with_log"] = Meter(groups).measure(args.seconds, live_matrix(lab))
            phases["matrix_2hz_with_log"]["flow_events"] = len(seen) - before
            rows = log.events()
            denied = sum(e.count for e in rows if e.denied)
    for name in ("idle_with_log", "matrix_2hz_with_log"):
        p = phases[name]
        p["flowlog_total_pct"] = round(p["flowlog_node_processes_pct"] + p["flowlog_threads_pct"], 2)
    result = {"benchmark": "flowlog_cpu", "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
              "lab": {"nodes": 2, "pods": 9, "matrix_hz": RATE_HZ, "probe_timeout_s": PROBE_TIMEOUT},
              "goal": "flow log idle < 5 % of one core", "phases": phases,
              "rows_at_end": len(rows), "denied_attempts_logged": denied,
              "idle_goal_met": phases["idle_with_log"]["flowlog_total_pct"] < 5.0}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for name, p in phases.items():
        own = f"flow log {p['flowlog_total_pct']} % of a core, " if "flowlog_total_pct" in p else ""
        sys.stdout.write(f"{name:<24} {own}node shims {p['node_shims_pct']} %, dockerd {p['dockerd_pct']} %, "
                         f"this process {p['this_process_pct']} %" +
                         (f", {p['matrix_rounds']} matrix rounds" if "matrix_rounds" in p else "") +
                         (f", {p['flow_events']} flow events" if "flow_events" in p else "") + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
