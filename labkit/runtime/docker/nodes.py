"""Nodes and the lab's fabric: node containers, their sysctls, links and routes, the internet host.

Owns what a lab's nodes look like: a container per node with no uplink (network none),
its own network namespace holding cni0, conntrack and the nft tables; a fabric bridge in
node-1 joining every node (198.18.0.0/24) and the lab's internet host (203.0.113.10);
routes between the nodes' pod CIDRs. Nothing here touches the host's network.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from labkit.dataplane import names
from labkit.errors import BackendError
from labkit.model import addressing as addr
from labkit.runtime.docker import engine
from labkit.runtime.docker import labels as lk

NODE_OPTIONS = {  # never privileged: exactly the capabilities a node needs
    "network_mode": "none",
    "pid_mode": "host",  # the node sees its pods' /proc/<pid>/ns/net
    "cap_add": ["NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"],
    "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],  # + systempaths=unconfined, see engine
}
NODE_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    # Off node-wide: the pods' bridge turns it on for itself (node/wiring.py); on node-1's fabric
    # bridge it would keep NodePort traffic sent back to another node from being masqueraded.
    "net.bridge.bridge-nf-call-iptables": "0",
    "net.bridge.bridge-nf-call-ip6tables": "0",
    "net.ipv4.icmp_ratelimit": "0",
    "net.ipv4.conf.all.rp_filter": "0",
    # Pods reach each other through the gateway (routed); a redirect would tell them to go direct.
    "net.ipv4.conf.all.send_redirects": "0",
    "net.ipv4.conf.default.send_redirects": "0",
    "net.ipv4.conf.default.rp_filter": "0",
    "net.ipv6.conf.all.disable_ipv6": "1",
    "net.ipv6.conf.default.disable_ipv6": "1",
}
INTERNET_GATEWAY = addr.INTERNET_GATEWAY


@dataclass
class NodeContainer:
    """One node of a running lab: its container and the PID that holds its network namespace."""

    index: int
    container: object
    pid: int
    lab: str = ""

    @property
    def name(self) -> str:
        return addr.node_name(self.index)

    @property
    def id(self) -> str:
        return self.container.id

    @property
    def what(self) -> str:
        """How errors name it for people: ``node-2 of lab 'demo'``."""
        return f"{self.name} of lab {self.lab!r}"


def _sh(client, container, script: str) -> None:
    code, out, err = engine.exec_raw(client, container.id, ["sh", "-ec", script], timeout=30, what=container.name)
    if code != 0:
        raise BackendError(f"setting up {container.name} failed (exit {code}): {(out + err).decode()[-600:]}\n"
                           f"script:\n{script}")


def start_nodes(client, lab: str, owner: str, image: str, count: int, stamp: dict[str, str]) -> list[NodeContainer]:
    def one(i: int) -> NodeContainer:
        node = addr.node_name(i)
        c = engine.run_unconfined_paths(client, lk.node_container(owner, lab, node), image,
                                        lk.labels(lab, owner, "node", node=node, **stamp),
                                        command=["sleep", "infinity"], hostname=node, **NODE_OPTIONS)
        return NodeContainer(i, c, engine.pid(c), lab)

    # node-1 first, alone: creating its container (a name only one lab can hold) claims the
    # lab's name atomically, so two processes starting the same lab cannot both half-succeed.
    # Each in a worker thread that the pool waits for: a Ctrl-C never abandons a create request
    # half-way (the engine would finish it after the clean-up had looked).
    with ThreadPoolExecutor(max_workers=1) as first:
        nodes = [first.submit(one, 1).result()]
    with ThreadPoolExecutor(max_workers=max(1, count - 1)) as pool:
        nodes += list(pool.map(one, range(2, count + 1)))
    with ThreadPoolExecutor(max_workers=count) as pool:
        list(pool.map(lambda n: engine.agent(client, n.id, "sysctl", {"values": NODE_SYSCTLS}, what=n.what), nodes))
    return nodes


def wire_fabric(client, nodes: list[NodeContainer], internet_pid: int) -> None:
    """Join nodes and the internet host on a bridge in node-1; add routes between pod CIDRs."""
    first = nodes[0]
    lines = [f"ip link add {names.FABRIC_BRIDGE} type bridge",
             f"ip addr add {addr.node_ip(1)}/24 dev {names.FABRIC_BRIDGE}",
             f"ip addr add {INTERNET_GATEWAY}/24 dev {names.FABRIC_BRIDGE}",
             f"ip link set {names.FABRIC_BRIDGE} up"]
    peers = [(0, internet_pid)] + [(n.index, n.pid) for n in nodes[1:]]
    for index, pid in peers:
        port = names.fabric_port(index)
        lines += [f"ip link add {port} type veth peer name {names.FABRIC_LINK} netns {pid}",
                  f"ip link set {port} master {names.FABRIC_BRIDGE} up"]
    lines += [f"ip route add {addr.node_pod_cidr(n.index)} via {addr.node_ip(n.index)}" for n in nodes[1:]]
    _sh(client, first.container, "\n".join(lines))
    for n in nodes[1:]:
        routes = [f"ip route add {addr.node_pod_cidr(o.index)} via {addr.node_ip(o.index)}"
                  for o in nodes if o.index != n.index]
        _sh(client, n.container, "\n".join([
            f"ip addr add {addr.node_ip(n.index)}/24 dev {names.FABRIC_LINK}",
            f"ip link set {names.FABRIC_LINK} up",
            f"ip route add {addr.INTERNET_CIDR} via {addr.node_ip(1)}", *routes]))


def start_internet(client, lab: str, owner: str, image: str, stamp: dict[str, str]):
    """The lab's 'internet': a host at 203.0.113.10 serving 80 and 443 (TCP and UDP)."""
    ports = [f"{p}/{proto}" for p in (80, 443) for proto in ("TCP", "UDP")]
    command = ["python3", "-m", "labkit.node", "serve", "--name", "internet"]
    for port in ports:
        command += ["--port", port]
    c = engine.run(client, lk.internet_container(owner, lab), image, lk.labels(lab, owner, "internet", **stamp),
                   network_mode="none", hostname="internet", cap_add=["NET_ADMIN"], command=command)
    return c, engine.pid(c)


def configure_internet(client, container) -> None:
    _sh(client, container, "\n".join([
        f"ip addr add {addr.INTERNET_HOST_IP}/24 dev {names.FABRIC_LINK}",
        f"ip link set {names.FABRIC_LINK} up",
        # Like a host on the real internet, it reaches the nodes, never pod or Service IPs.
        f"ip route add {addr.NODE_FABRIC} via {INTERNET_GATEWAY}"]))
