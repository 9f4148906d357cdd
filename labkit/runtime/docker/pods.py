"""Pods as containers: a pause container owning the pod's network namespace, app containers
joining it, and the CNI ADD/DEL that labkit performs inside the pod's node.

Owns how one pod of the model becomes containers (names, labels, hostname, DNS settings,
commands, the default ``serve`` app) and how its network is plugged in with the real CNI
``bridge`` plugin and ``static`` IPAM (the address comes from the model, so the oracle and
the kernel agree on every IP). A pod's ``/etc/hosts`` and ``/etc/resolv.conf`` are written
once, as the kubelet writes them (``labkit.semantics.cluster_dns``), into the pause container
before its app containers start: those join its network and get the very same files.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from labkit.dataplane import names
from labkit.errors import BackendError, BackendUnavailable
from labkit.model import addressing as addr
from labkit.model.cluster import Cluster
from labkit.model.objects import Container, Pod
from labkit.model.parse_workloads import LAB_IMAGE
from labkit.runtime.base import PodLimits
from labkit.runtime.docker import engine
from labkit.runtime.docker import labels as lk
from labkit.runtime.docker.nodes import NodeContainer
from labkit.semantics import cluster_dns

# a pod's logs stay small on the engine's disk, whatever its app writes
LOG_CONFIG = {"type": "json-file", "config": {"max-size": "1m", "max-file": "1"}}
POD_SYSCTLS = {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1",
               "net.ipv4.ip_forward": "0"}
log = logging.getLogger(__name__)


class CniState:
    """One lab's CNI bookkeeping: which nodes have their cni0 bridge yet (the first ADD on a node
    creates it, so it must run alone there; later ADDs may run side by side)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self.bridged: set[str] = set()

    def lock(self, node: NodeContainer) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(node.id, threading.Lock())


@dataclass
class PodHandle:
    ref: str
    spec: object
    node: NodeContainer
    pause: object
    pid: int
    cni: dict = field(default_factory=dict)
    apps: dict[str, object] = field(default_factory=dict)

    @property
    def netns(self) -> str:
        return f"/proc/{self.pid}/ns/net"

    @property
    def resolv_conf(self) -> str:
        return f"/proc/{self.pid}/root/etc/resolv.conf"


def serve_command(pod: Pod, container: Container) -> list[str]:
    argv = ["python3", "-m", "labkit.node", "serve", "--name", pod.ref]
    for p in container.ports:
        argv += ["--port", f"{p.container_port}/{p.protocol}"]
    return argv


def app_options(pod: Pod, container: Container, lab_image: str) -> dict:
    image = lab_image if container.image == LAB_IMAGE else container.image
    options: dict = {"image": image, "environment": dict(container.env)}
    if container.cap_drop:
        options["cap_drop"] = list(container.cap_drop)
    if container.command or container.args:
        options["command"] = list(container.command) + list(container.args)
    elif image == lab_image:
        options["command"] = serve_command(pod, container)
    return options


def cni_args(lab: str, cluster: Cluster, ref: str, netns: str) -> dict:
    """The CNI request for ``ref``: bridge cni0, static IPAM with the model's address, then routed
    through the node's gateway (``labkit.node.wiring``)."""
    index = cluster.pod_nodes[ref]
    cidr = addr.node_pod_cidr(index)
    ip = cluster.pod_ips[ref]
    return {"netns": netns, "ifname": names.POD_IFNAME, "container_id": names.cni_container_id(lab, ref),
            "bridge": {"subnet": str(cidr), "gateway": addr.node_gateway(index), "address": f"{ip}/{cidr.prefixlen}"},
            # routed through the node's gateway, with the port name and MAC the guard table expects
            "route": {"ip": ip, "gateway": addr.node_gateway(index), "port": names.pod_port(ip),
                      "mac": names.pod_mac(ip), "gateway_mac": names.pod_mac(addr.node_gateway(index))}}


def limit_options(limits: PodLimits | None, containers: int) -> tuple[dict, dict]:
    """Engine options for a pod's pause container and for each of its ``containers`` app
    containers: small logs always; with ``limits``, the pod's memory (no swap) and PIDs shared
    evenly between its app containers, and so is its CPU time (``PodLimits.per_container``)."""
    pause, app = {"log_config": LOG_CONFIG}, {"log_config": LOG_CONFIG}
    if limits is None:
        return pause, app
    memory, pids, cpu = limits.per_container(containers)
    pause["pids_limit"] = PodLimits.PAUSE_PIDS
    if memory:
        pause |= {"mem_limit": PodLimits.PAUSE_MEMORY, "memswap_limit": PodLimits.PAUSE_MEMORY}
        app |= {"mem_limit": memory, "memswap_limit": memory}
    if pids:
        app["pids_limit"] = pids
    if cpu:
        app["nano_cpus"] = cpu
    return pause, app


def create(client, lab: str, owner: str, cni: CniState, cluster: Cluster, ref: str, node: NodeContainer,
           lab_image: str, stamp: dict[str, str], limits: PodLimits | None = None) -> PodHandle:
    """Start ``ref``'s containers and plug its network in; on failure, remove what was made."""
    pod = cluster.pods[ref]
    pause_limits, app_limits = limit_options(limits, len(pod.spec.containers))
    pause = engine.run(
        client, lk.pause_container(owner, lab, ref), lab_image,
        lk.labels(lab, owner, "pause", pod=ref, node=node.name, **stamp), **pause_limits,
        network_mode="none", hostname=cluster_dns.pod_hostname(pod), command=["sleep", "infinity"],
        sysctls=POD_SYSCTLS)
    handle = PodHandle(ref, pod.spec, node, pause, 0)
    try:
        handle.pid = engine.pid(pause)
        write_name_files(client, pause, cluster, ref)
        handle.cni = cni_args(lab, cluster, ref, handle.netns)
        if node.id in cni.bridged:  # cni0 exists: the bridge plugin's ADDs may run side by side
            engine.agent(client, node.id, "cni", {"command": "ADD", **handle.cni}, what=node.what)
        else:  # the first ADD creates cni0: never two at once
            with cni.lock(node):
                engine.agent(client, node.id, "cni", {"command": "ADD", **handle.cni}, what=node.what)
                cni.bridged.add(node.id)
        for c in pod.spec.containers:
            options = app_options(pod, c, lab_image)
            image = options.pop("image")
            handle.apps[c.name] = engine.run(
                client, lk.app_container(owner, lab, ref, c.name), image,
                lk.labels(lab, owner, "app", pod=ref, node=node.name, container=c.name, **stamp),
                network_mode=f"container:{pause.id}", **options, **app_limits)
    except BackendUnavailable as exc:
        remove(client, handle)
        raise BackendUnavailable(f"pod {ref}: {exc}") from exc
    except BackendError as exc:
        remove(client, handle)
        raise BackendError(f"pod {ref} could not start: {exc}") from exc
    except BaseException:
        remove(client, handle)
        raise
    return handle


WRITE_FILES = 'printf %s "$1" > /etc/hosts && printf %s "$2" > /etc/resolv.conf'


def write_name_files(client, pause, cluster: Cluster, ref: str) -> None:
    """The pod's ``/etc/hosts`` and ``/etc/resolv.conf`` as the kubelet writes them (its dnsPolicy
    and dnsConfig; Docker's own options cannot say "no nameserver"). Written in place, inside the
    pause container: the files are the engine's bind mounts, which app containers share."""
    hosts, resolv = cluster_dns.etc_hosts(cluster, ref), cluster_dns.resolv_conf(cluster, ref)
    code, out, err = engine.exec_raw(client, pause.id, ["sh", "-c", WRITE_FILES, "sh", hosts, resolv], timeout=30,
                                     what=f"the pause container of pod {ref}")
    if code != 0:
        raise BackendError("writing /etc/hosts and /etc/resolv.conf failed: "
                           f"{(out + err).decode(errors='replace')[-300:]}")


def remove(client, handle: PodHandle) -> None:
    """Unplug the pod (CNI DEL) and remove its containers."""
    if handle.cni:
        try:
            engine.agent(client, handle.node.id, "cni", {"command": "DEL", **handle.cni}, what=handle.node.what)
        except BackendError as exc:
            # Removing the pause container destroys the namespace and the veth with it.
            log.info("CNI DEL for %s failed (%s); removing its containers cleans up", handle.ref, exc)
    engine.remove(client, list(handle.apps.values()) + [handle.pause])


PARKED = "__old"  # "__" occurs in no live container name (labels.py uses "_" once as a separator)


def park(handle: PodHandle) -> None:
    """Move a running pod's containers out of the way of its replacement (names only)."""
    for c in [handle.pause, *handle.apps.values()]:
        engine.rename(c, engine.current_name(c) + PARKED)


def unpark(handle: PodHandle) -> None:
    """Give a parked pod its container names back (its replacement failed)."""
    for c in [handle.pause, *handle.apps.values()]:
        name = engine.current_name(c)
        if name.endswith(PARKED):  # a park that failed half-way renamed only some
            engine.rename(c, name.removesuffix(PARKED))
