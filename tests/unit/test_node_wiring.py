"""The node agent's routed wiring takes only what follows from the pod's address (it runs as
root in the node: a request cannot name another port, MAC or a malformed value)."""
from __future__ import annotations

import pytest

from labkit.node import wiring
from labkit.node.errors import NodeError

GOOD = {"ip": "10.244.1.5", "gateway": "10.244.1.1", "port": "lkp0af40105", "mac": "0a:58:0a:f4:01:05"}


def test_the_port_and_mac_follow_from_the_address():
    assert wiring.check(GOOD) == ("10.244.1.5", "10.244.1.1", "lkp0af40105", "0a:58:0a:f4:01:05")


@pytest.mark.parametrize("change, message", [
    ({"port": "lkp0af40106"}, "do not belong"),
    ({"mac": "0a:58:0a:f4:01:06"}, "do not belong"),
    ({"port": "eth0; rm -rf /"}, "route.port"),
    ({"mac": "ff:ff:ff:ff:ff:ff"}, "route.mac"),
    ({"ip": "10.244.1.5 dev lo"}, "IPv4"),
    ({"gateway": None}, "IPv4"),
])
def test_anything_else_is_refused(change, message):
    with pytest.raises(NodeError, match=message):
        wiring.check({**GOOD, **change})


def test_the_node_side_port_is_the_interface_outside_the_pod():
    result = {"interfaces": [{"name": "cni0"}, {"name": "veth1234"}, {"name": "eth0", "sandbox": "/proc/9/ns/net"}]}
    assert wiring.host_port(result, "cni0") == "veth1234"
    with pytest.raises(NodeError):
        wiring.host_port({"interfaces": [{"name": "cni0"}]}, "cni0")
