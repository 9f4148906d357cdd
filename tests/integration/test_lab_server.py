"""The lab server on one machine, with real Unix users: each learner's labs run on the
server's engine, owned by the Unix user the kernel says is calling (peer credentials), and
nobody but the server can talk to the engine.

The test creates two throw-away users and removes them again. Each learner is a child of
this process that has dropped to that user (fork, then setgid/setuid): it already has labkit
imported, so it needs no access to this checkout or its Python.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Callable

import dpkt  # noqa: F401 - loaded before a learner's fork (a capture's rows are read with it)
import pytest

import labkit
import labkit.probe.flowlog  # noqa: F401 - likewise (lab.flow_log loads it when first called)
from labkit.errors import LabkitError
from tests.integration import learners
from tests.integration.helpers import LAB_LABEL, pod_doc, python_env, wait_until

pytestmark = pytest.mark.docker
if not hasattr(os, "fork") or os.geteuid() != 0:
    pytestmark = [pytestmark, pytest.mark.skip(reason="needs root to create Unix users and drop to them")]

PRIVILEGED = pod_doc("root-me", containers=[{"name": "app", "securityContext": {"privileged": True}}])
FOREIGN = pod_doc("foreign", containers=[{"name": "app", "image": "busybox"}])


def containers(lab: str, owner: str) -> list[str]:
    out = subprocess.run(["docker", "ps", "-a", "--filter", f"label={LAB_LABEL}={lab}", "--filter",
                          f"label=io.labkit.owner={owner}", "--format", "{{.Names}}"],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


@pytest.fixture(scope="module")
def users():
    names = [f"lkt{os.getpid() % 100000}{who}" for who in ("a", "b")]
    with learners.throwaway_users(names):
        yield names


SERVER_FLAGS = ["--labs-per-owner", "2", "--pods-per-lab", "4", "--memory-per-pod", "64M", "--pids-per-pod", "48",
                "--cpus-per-pod", "0.5",
                "--memory-per-learner", "384M"]  # 6 pods of 64 MiB: two labs of a DNS pod and 2 pods each


def start_server(sock: str, *flags: str) -> subprocess.Popen:
    if os.path.exists(sock):
        os.unlink(sock)
    proc = subprocess.Popen([sys.executable, "-m", "labkit", "serve", "--socket", sock, "--name",
                             f"test-{os.getpid()}", *flags], env=python_env(), stderr=subprocess.PIPE, text=True)
    assert wait_until(lambda: os.path.exists(sock) or proc.poll() is not None, 60) and proc.poll() is None, \
        proc.stderr.read() if proc.poll() is not None else "no socket after 60 s"
    return proc


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)


@pytest.fixture(scope="module")
def server(users):
    folder = tempfile.mkdtemp(prefix="labkit-server-")  # pytest's own tmp is 0700: learners must reach in
    os.chmod(folder, 0o755)
    sock = os.path.join(folder, "labkit.sock")
    proc = start_server(sock, *SERVER_FLAGS)
    try:
        yield sock, proc
    finally:
        stop_server(proc)
        shutil.rmtree(folder, ignore_errors=True)


def as_user(user: str, sock: str, job: Callable[[], object]) -> dict:
    """Run ``job`` as ``user`` with this test's lab server; what it returned, or fail."""
    answer = learners.as_user(user, job, {"LABKIT_SERVER": f"unix://{sock}", "LABKIT_OWNER": user})
    assert "value" in answer, f"as {user}: {answer}"
    return answer


def test_a_learner_gets_real_packets_as_themselves_and_never_the_engine(server, users):
    sock, _ = server
    alice, bob = users

    def alice_works():
        lab = labkit.Lab("mine", nodes=2)  # backend="auto": LABKIT_SERVER makes it the lab server
        lab.detach()  # kept running for the checks below
        lab = labkit.Lab.attach("mine", [])
        lab.apply([pod_doc("a"), pod_doc("b")])
        probe = lab.probe("a", "default/b")
        walk = lab.trace("a", "default/b")  # the kernel's trace, read through the server
        os.environ["LABKIT_CAPTURE_DIR"] = tempfile.mkdtemp()  # the notebook's folder in a classroom
        with lab.capture("b", filter="tcp port 80", seconds=30) as cap:  # tcpdump on the server's engine
            lab.probe("a", "default/b")
        log, arrived = lab.flow_log(), {}
        log.listeners.append(lambda e: arrived.setdefault((e.src, e.dst, e.port), time.time()))
        before = time.time()
        lab.probe("a", "default/b")
        flow = log.wait_for(lambda e: (e.src, e.dst, e.port) == ("default/a", "default/b", 80), timeout=3)
        log.stop()
        out = {"backend": lab.backend_name, "owner": lab.owner, "probe": probe.to_dict(), "simulated": lab.simulated,
               "walk": [walk.agrees, walk.verdict, walk.simulated, [h.kind for h in walk.request]],
               "capture": [cap.reason, cap.simulated, [(r.summary, r.who) for r in cap.rows], cap.path.is_file()
                           and cap.path.read_bytes() == cap.pcap, cap.file_error],
               "flow": [flow and flow.to_dict(), arrived.get(("default/a", "default/b", 80), before + 99) - before,
                        log.errors, log.running],
               "caps": lab.capabilities.to_dict(), "history": lab.history}
        lab.detach()  # a Lab object that goes closes its lab: this one stays for the checks below
        return out

    got = as_user(alice, sock, alice_works)["value"]
    doctor = as_user(alice, sock, lambda: [c.detail for c in __import__("labkit.doctor").doctor.checks()
                                           if c.name == "lab server"])["value"]
    assert doctor and f"you are {alice} (your Unix user) with 1 lab(s)" in doctor[0], doctor
    assert "per pod 64 MiB and 48 processes and 0.5 of a core; 384 MiB for all your pods" in doctor[0], doctor
    assert got["backend"] == "remote" and got["simulated"] is False
    assert got["probe"]["ok"] and got["probe"]["answered_by"] == "default/b" and got["probe"]["latency_ms"]
    agrees, verdict, simulated, kinds = got["walk"]
    assert agrees and verdict == "delivered to default/b" and not simulated, got["walk"]
    assert "guard" in kinds and kinds[-1] == "deliver", kinds  # hops the kernel traced, not the oracle's
    reason, simulated, rows, written, file_error = got["capture"]  # real packets, through the server
    assert reason == "stopped" and not simulated and written and not file_error, got["capture"]
    assert ["SYN", "default/a -> default/b"] in rows and ["SYN,ACK", "default/b -> default/a"] in rows, rows
    assert any(summary.endswith('"') and '"default/b ' in summary for summary, _ in rows), rows  # the answer
    flow, took, errors, running = got["flow"]  # the kernel's flow log, polled through the server
    assert flow and flow["verdict"] == "allowed" and not flow["simulated"] and flow["node"], got["flow"]
    assert took < 1.0 and errors == [] and not running, got["flow"]
    assert got["caps"]["real_packets"] and "lab server" in got["caps"]["where"]
    assert len(containers("mine", alice)) > 4  # on the server's engine, labelled with alice's Unix name

    def bob_tries():
        remote = labkit.runtime.registry.create("remote")
        seen = [i.name for i in remote.list_labs()]
        outcomes = {"seen": seen}
        for name, call in (("attach", lambda: labkit.Lab.attach("mine", [])),
                           ("remove", lambda: remote.remove_lab("mine", alice)),
                           ("remove-all", lambda: remote.remove_labs(alice))):
            try:
                outcomes[name] = repr(call())
            except LabkitError as exc:
                outcomes[name] = f"{type(exc).__name__}: {exc}"
        try:
            socket_ = __import__("socket").socket(__import__("socket").AF_UNIX)
            socket_.connect("/var/run/docker.sock")
            outcomes["engine"] = "connected"
        except OSError as exc:
            outcomes["engine"] = f"refused: {exc.strerror}"
        return outcomes

    bob_saw = as_user(bob, sock, bob_tries)["value"]
    assert bob_saw["seen"] == []
    assert bob_saw["attach"].startswith("NotFound") and f"of {bob}" in bob_saw["attach"]
    assert bob_saw["remove"] == "0" and bob_saw["remove-all"] == "0"
    assert bob_saw["engine"].startswith("refused"), bob_saw["engine"]  # a learner never gets the engine
    assert len(containers("mine", alice)) > 4  # alice's lab is untouched

    def alice_again():
        lab = labkit.Lab.attach("mine", got["history"])
        out = {"probe": lab.probe("b", "default/a").ok, "rules": "labkit-guard" in lab.rules()}
        for name, docs in (("privileged", [PRIVILEGED]), ("foreign", [FOREIGN]),
                           ("too-many", [pod_doc(f"p{i}") for i in range(3)])):
            try:
                lab.apply(docs)
                out[name] = "applied"
            except LabkitError as exc:
                out[name] = f"{type(exc).__name__}: {exc}"
        out["pods"] = lab.pods
        lab.close()
        return out

    again = as_user(alice, sock, alice_again)["value"]
    assert again["probe"] is True
    assert "spec.containers[0].securityContext.privileged" in again["privileged"]
    assert "spec.containers[0].image" in again["foreign"] and "allow-list" in again["foreign"]
    assert again["too-many"].startswith("Refused") and "allows 4" in again["too-many"]
    assert again["pods"] == ["default/a", "default/b"]
    assert wait_until(lambda: containers("mine", alice) == [], 30)


def test_every_pod_is_held_to_its_memory_and_pids_and_a_learner_to_their_memory(server, users):
    sock, _ = server
    alice, _ = users

    def hog_and_bomb():
        lab = labkit.Lab("limits")
        lab.apply([pod_doc("hog"), pod_doc("bomb")])
        cgroup = lab.exec("hog", ["sh", "-c", "cd /sys/fs/cgroup; cat memory.max 2>/dev/null || cat "  # v2, else v1
                                           "memory/memory.limit_in_bytes; cat pids.max 2>/dev/null || cat pids/pids.max;"
                                           "cat cpu.max 2>/dev/null || cat cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us"]
                          ).output.split()
        hog = lab.exec("hog", ["python3", "-c", "b = bytearray(400 * 2**20); b[::4096] = b'x' * len(b[::4096])"])
        bomb = lab.exec("bomb", ["sh", "-c", "for i in $(seq 100); do sleep 3 & done 2>&1; wait; echo done"])
        after = lab.probe("hog", "default/bomb").ok  # both pods still serve
        other = labkit.Lab("limits2")
        try:
            other.apply([pod_doc(f"q{i}") for i in range(2)])  # 6 pods of 64 MiB in all (2 DNS): the most allowed
            other.apply([pod_doc("q2")])
            third = "applied"
        except LabkitError as exc:
            third = f"{type(exc).__name__}: {exc}"
        out = {"cgroup": cgroup, "hog": [hog.exit_code, hog.output[-200:]], "bomb": bomb.output[-400:],
               "after": after, "third": third, "pods2": other.pods}
        other.close()
        lab.close()
        return out

    got = as_user(alice, sock, hog_and_bomb)["value"]
    assert got["cgroup"] == [str(64 * 2**20), "48", "50000", "100000"], got["cgroup"]  # set by the server, on the engine
    assert got["hog"][0] == 137, got["hog"]  # killed by the kernel at its pod's memory limit
    assert "cannot fork" in got["bomb"].lower() or "can't fork" in got["bomb"], got["bomb"]  # stopped at 48
    assert got["after"] is True
    assert got["third"].startswith("Refused") and "384 MiB" in got["third"] and "limits: 3" in got["third"], got
    assert got["pods2"] == ["default/q0", "default/q1"]  # the refused change changed nothing


def test_an_idle_lab_is_removed_and_a_restarted_server_removes_what_a_killed_one_left(users):
    alice, _ = users
    folder = tempfile.mkdtemp(prefix="labkit-server-")
    os.chmod(folder, 0o755)
    sock = os.path.join(folder, "idle.sock")
    proc = start_server(sock, "--idle-lab-minutes", "0.1")  # 6 s
    try:
        as_user(alice, sock, lambda: labkit.Lab("sleepy").detach())
        assert containers("sleepy", alice)
        assert wait_until(lambda: containers("sleepy", alice) == [], 60), "an idle lab was not removed"
        as_user(alice, sock, lambda: labkit.Lab("orphan").detach())
        proc.kill()  # no clean-up: the lab is left on the engine
        proc.wait(timeout=30)
        assert containers("orphan", alice)
        proc = start_server(sock, "--idle-lab-minutes", "0")
        assert containers("orphan", alice) == []  # removed at start, before it serves
        gone = as_user(alice, sock, lambda: [i.name for i in labkit.runtime.registry.create("remote").list_labs()])
        assert gone["value"] == []
    finally:
        stop_server(proc)
        shutil.rmtree(folder, ignore_errors=True)


def test_labs_per_learner_are_limited_and_a_stopped_server_leaves_nothing(server, users):
    sock, proc = server
    alice, _ = users

    def three_labs():
        out = []
        for name in ("one", "two", "three"):
            try:
                labkit.Lab(name).detach()
                out.append("started")
            except LabkitError as exc:
                out.append(f"{type(exc).__name__}: {exc}")
        return out

    got = as_user(alice, sock, three_labs)["value"]
    assert got[:2] == ["started", "started"] and got[2].startswith("Refused") and "close one first" in got[2]
    assert containers("one", alice) and containers("two", alice)
    proc.send_signal(signal.SIGTERM)  # the server stops: it removes the labs it ran
    proc.wait(timeout=120)
    assert containers("one", alice) == [] and containers("two", alice) == []
    time.sleep(0.1)
