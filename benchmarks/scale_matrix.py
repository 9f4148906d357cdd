"""Benchmark: a full matrix at 50, 100 and 200 pods on 4 nodes, what it costs the host, and
how many neighbour (ARP) entries each pod needs.

Reports, per size, the median over ``--runs`` matrices of the time of ``lab.matrix()`` (every
ordered pod pair, real TCP connections), the time to bring the pods up, the host's memory
as the kernel sees it (``MemAvailable`` before the lab and with it running: this counts what
``docker stats`` misses, such as the kernel's memory for namespaces, veths and conntrack),
and the machine's neighbour entries (``/proc/net/stat/arp_cache``) per pod. Writes
``benchmarks/results/scale_matrix.json``. Uses only labkit's public API and /proc.

Usage: python benchmarks/scale_matrix.py [--sizes 50 100 200] [--runs 3] [--out PATH]
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

NODES = 4


def meminfo_available_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def neighbour_entries() -> int | None:
    try:
        lines = Path("/proc/net/stat/arp_cache").read_text().splitlines()
    except OSError:
        return None
    return int(lines[1].split()[lines[0].split().index("entries")], 16)


def world(pods: int) -> list[dict]:
    docs: list[dict] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns{i}"}} for i in range(4)]
    docs += [{"apiVersion": "v1", "kind": "Pod",
              "metadata": {"name": f"p{k}", "namespace": f"ns{k % 4}", "labels": {"app": f"a{k % 3}"}},
              "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 80}]}]}} for k in range(pods)]
    docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                 "metadata": {"name": "same-ns", "namespace": "ns0"},
                 "spec": {"podSelector": {"matchLabels": {"app": "a0"}}, "policyTypes": ["Ingress"],
                          "ingress": [{"from": [{"podSelector": {}}]}]}})
    return docs


def one_size(pods: int, runs: int) -> dict:
    mem_before, neigh_before = meminfo_available_kib(), neighbour_entries()
    started = time.monotonic()
    with labkit.Lab(f"bench-scale-{pods}", backend="docker", nodes=NODES) as lab:
        lab.apply(world(pods))
        up_s = time.monotonic() - started
        times, differences = [], 0
        for _ in range(runs):
            t = time.monotonic()
            m = lab.matrix(port=80, timeout=2.0)
            times.append(time.monotonic() - t)
            differences += len(m.differences())
        mem_with = meminfo_available_kib()
        neigh_with = neighbour_entries()
    return {
        "pods": pods, "nodes": NODES, "cells": pods * pods, "runs": runs,
        "up_s": round(up_s, 2),
        "matrix_s_median": round(statistics.median(times), 2), "matrix_s_all": [round(t, 2) for t in times],
        "cells_per_s": round(pods * pods / statistics.median(times)),
        "differences_from_oracle": differences,
        "host_memory_mib": round((mem_before - mem_with) / 1024, 1),
        "host_memory_mib_per_pod": round((mem_before - mem_with) / 1024 / pods, 2),
        "neighbour_entries_added": None if neigh_before is None else neigh_with - neigh_before,
        "neighbour_entries_per_pod": None if neigh_before is None else round((neigh_with - neigh_before) / pods, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "scale_matrix.json"))
    args = parser.parse_args()
    rows = [one_size(n, args.runs) for n in args.sizes]
    result = {"benchmark": "scale_matrix", "machine": {"cpus": __import__("os").cpu_count(),
                                                        "python": platform.python_version()},
              "neighbour_limit_gc_thresh3": int(Path("/proc/sys/net/ipv4/neigh/default/gc_thresh3").read_text()),
              "sizes": rows}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for r in rows:
        sys.stdout.write(f"{r['pods']:>4} pods: up {r['up_s']} s, matrix {r['matrix_s_median']} s "
                         f"({r['cells_per_s']} cells/s, {r['differences_from_oracle']} differences), host memory "
                         f"{r['host_memory_mib']} MiB ({r['host_memory_mib_per_pod']} per pod), neighbour entries "
                         f"per pod {r['neighbour_entries_per_pod']}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
