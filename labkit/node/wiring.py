"""After the CNI bridge plugin's ADD: route the pod through its node and name its port.

Owns the two changes labkit makes to what the bridge plugin set up, both for reasons a
real CNI has too (Calico routes every pod through the node the same way):

* the pod's address becomes a /32 with a link route to the node's gateway and a default
  route via it, so a pod sends every packet to the gateway and holds one neighbour (ARP)
  entry, not one per peer: the machine's one neighbour table then grows with the number
  of pods, not its square;
* the pod's MAC (``0a:58`` + its IPv4 address) and the node-side port's name (``lkp`` + the
  address in hex) follow from the address, so the node's anti-spoofing rules can be
  rendered from the model alone;
* the pods' bridge hands bridged frames to the node's IP hooks (``nf_call_iptables``), so a
  frame a pod sends straight to another pod's MAC still meets the NetworkPolicy rules. It is
  set on this bridge only: the node-wide switch stays off, because on the fabric bridge of
  node-1 it would turn a NodePort connection that node-1 sends back to node-2 into a bridged
  frame that is never masqueraded (and so never answered).

Request part (in ``cni`` ADD): ``"route": {"ip", "gateway", "port", "mac", "gateway_mac"?}``
(``gateway_mac`` fixes the bridge's own MAC, which otherwise follows its ports). The pod's
namespace is entered with ``nsenter`` after ``checked_netns`` refused the host's.
"""

import ipaddress
import re
import subprocess

from .errors import NodeError

_PORT = re.compile(r"^lkp[0-9a-f]{8}$")
_MAC = re.compile(r"^0a:58(:[0-9a-f]{2}){4}$")


def _ip(argv, netns=None, ok_errors=()):
    full = (["nsenter", "--net=%s" % netns, "--"] if netns else []) + ["ip"] + argv
    proc = subprocess.run(full, capture_output=True, text=True, timeout=20, check=False)
    if proc.returncode != 0 and not any(e in proc.stderr for e in ok_errors):
        raise NodeError("ip %s%s failed: %s" % (" ".join(argv), " (in the pod)" if netns else "",
                                                 proc.stderr.strip() or "exit %d" % proc.returncode))


def host_port(result, bridge):
    """The node-side veth the plugin made: the interface of its result that is neither the
    bridge nor inside the pod (``sandbox``)."""
    for iface in (result or {}).get("interfaces", []):
        if iface.get("name") != bridge and not iface.get("sandbox"):
            return iface["name"]
    raise NodeError("the CNI result names no node-side interface: %r" % (result,))


def check(spec):
    try:
        ip = ipaddress.IPv4Address(spec["ip"])
        gateway = ipaddress.IPv4Address(spec["gateway"])
    except (KeyError, TypeError, ValueError) as exc:
        raise NodeError("route: ip and gateway must be IPv4 addresses (%s)" % exc) from exc
    port, mac = spec.get("port"), spec.get("mac")
    if not isinstance(port, str) or not _PORT.match(port):
        raise NodeError("route.port: must look like lkp0af40105, got %r" % (port,))
    if not isinstance(mac, str) or not _MAC.match(mac):
        raise NodeError("route.mac: must look like 0a:58:0a:f4:01:05, got %r" % (mac,))
    hexed = "%08x" % int(ip)
    if port != "lkp" + hexed or mac != "0a:58:" + ":".join(hexed[i:i + 2] for i in range(0, 8, 2)):
        # they follow from the address, so the node's guard rules (rendered from the model) match
        raise NodeError("route: port %s and mac %s do not belong to %s" % (port, mac, ip))
    return str(ip), str(gateway), port, mac


def route_pod(netns, ifname, bridge, result, spec):
    """Rename the node-side port, give the pod its MAC and a /32 routed through the gateway."""
    ip, gateway, port, mac = check(spec)
    gateway_mac = spec.get("gateway_mac")
    if gateway_mac is not None:  # fixed, so it never changes as ports come and go (and reads the same everywhere)
        if not isinstance(gateway_mac, str) or not _MAC.match(gateway_mac):
            raise NodeError("route.gateway_mac: must look like 0a:58:0a:f4:01:01, got %r" % (gateway_mac,))
        _ip(["link", "set", "dev", bridge, "address", gateway_mac])
    _ip(["link", "set", "dev", bridge, "type", "bridge", "nf_call_iptables", "1"])
    veth = host_port(result, bridge)
    if veth != port:
        _ip(["link", "set", "dev", veth, "down"])
        _ip(["link", "set", "dev", veth, "name", port])
        _ip(["link", "set", "dev", port, "up"])
    pod_cidr = next((a["address"] for a in result.get("ips", []) if a.get("address", "").startswith(ip + "/")), None)
    _ip(["link", "set", "dev", ifname, "address", mac], netns)
    if pod_cidr and not pod_cidr.endswith("/32"):
        _ip(["address", "del", pod_cidr, "dev", ifname], netns)
    _ip(["address", "replace", ip + "/32", "dev", ifname], netns)
    _ip(["route", "replace", gateway, "dev", ifname, "scope", "link"], netns)
    _ip(["route", "replace", "default", "via", gateway, "dev", ifname], netns)
    # The node may have learnt the pod's first, random MAC while the plugin set it up.
    _ip(["neigh", "del", ip, "dev", bridge], ok_errors=("No such file", "Cannot assign"))
    return {"port": port, "mac": mac}
