"""``cni``: run a real CNI plugin (bridge + static IPAM by default) for one pod.

Request: ``{"command": "ADD"|"DEL"|"CHECK"|"VERSION", "netns": "/proc/PID/ns/net",
"container_id": "...", "ifname": "eth0", "config": {...}}`` (or ``"bridge": {subnet,
gateway, address, ...}`` instead of ``config``, built by ``bridge_config``; optional
``prev_result``, ``cni_path``, ``args``; with ADD, ``route`` routes the pod through its
node, see ``wiring``). The plugin named by ``config["type"]`` is looked
up in CNI_PATH (env, else /usr/lib/cni:/opt/cni/bin), run with the CNI_* environment and
the config on stdin, in the caller's network namespace (the node's). Reply:
``{"result": <plugin JSON or null>}``; a plugin error becomes NodeError carrying the
plugin's ``code``, ``msg`` and ``details``.
"""

import ipaddress
import json
import os
import re
import subprocess

from .errors import NodeError
from .netns import checked_netns
from .wiring import route_pod

DEFAULT_CNI_PATH = "/usr/lib/cni:/opt/cni/bin"
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION")
PLUGIN_TIMEOUT = 30
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def bridge_config(subnet, gateway, address, bridge="cni0", mtu=1500, name="labkit"):
    """The standard labkit network config: bridge plugin + static IPAM for one pod.

    ``address`` may be given with or without a prefix length (the subnet's is used)."""
    net = ipaddress.IPv4Network(subnet, strict=False)
    gw = ipaddress.IPv4Address(gateway)
    ip = ipaddress.IPv4Interface(address if "/" in str(address)
                                 else "%s/%d" % (address, net.prefixlen))
    if ip.ip not in net or gw not in net:
        raise ValueError("address %s and gateway %s must lie in subnet %s" % (ip, gw, net))
    if ip.ip == gw:
        raise ValueError("address %s is the gateway" % ip.ip)
    return {
        "cniVersion": "1.0.0",
        "name": name,
        "type": "bridge",
        "bridge": bridge,
        "isGateway": True,
        "hairpinMode": True,
        "ipMasq": False,
        "mtu": int(mtu),
        "ipam": {
            "type": "static",
            "addresses": [{"address": "%s/%d" % (ip.ip, net.prefixlen),
                           "gateway": str(gw)}],
            "routes": [{"dst": "0.0.0.0/0"}],
        },
    }


def find_plugin(plugin_type, cni_path):
    for directory in cni_path.split(":"):
        candidate = os.path.join(directory, plugin_type)
        if directory and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise NodeError("CNI plugin %r not found in CNI_PATH %s" % (plugin_type, cni_path))


def run_plugin(command, config, netns="", container_id="", ifname="eth0",
               cni_path=None, args=None, timeout=PLUGIN_TIMEOUT):
    """Run the plugin; returns its parsed JSON result (None when it prints nothing)."""
    cni_path = cni_path or os.environ.get("CNI_PATH") or DEFAULT_CNI_PATH
    plugin = find_plugin(config["type"], cni_path)
    env = dict(os.environ)
    env.update(CNI_COMMAND=command, CNI_CONTAINERID=container_id, CNI_NETNS=netns or "",
               CNI_IFNAME=ifname, CNI_PATH=cni_path, CNI_ARGS=args or "")
    try:
        proc = subprocess.run([plugin], input=json.dumps(config).encode(), env=env,
                              capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise NodeError("CNI plugin %s %s timed out after %ss"
                        % (config["type"], command, timeout)) from exc
    except OSError as exc:
        raise NodeError("cannot run CNI plugin %s: %s" % (plugin, exc.strerror)) from exc
    out = proc.stdout.decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(out) if out else None
    except ValueError:
        parsed = None
    if proc.returncode != 0 or (isinstance(parsed, dict) and "code" in parsed
                                and "cniVersion" not in parsed):
        err = parsed if isinstance(parsed, dict) else {}
        msg = err.get("msg") or out or proc.stderr.decode("utf-8", "replace").strip() \
            or "exit code %d" % proc.returncode
        text = "CNI plugin %s %s failed: %s" % (config["type"], command, msg)
        if err.get("details"):
            text += " (%s)" % err["details"]
        raise NodeError(text, code=err.get("code"), msg=err.get("msg", msg),
                        details=err.get("details"))
    if out and parsed is None:
        raise NodeError("CNI plugin %s %s printed non-JSON output: %s"
                        % (config["type"], command, out[:500]))
    return parsed


def _text(request, key, default=None, required=False):
    value = request.get(key, default)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise NodeError("%s: must be a non-empty string" % key)
    return value


def handle(request):
    command = request.get("command")
    if command not in COMMANDS:
        raise NodeError("command: must be one of %s, got %r" % ("/".join(COMMANDS), command))
    config = request.get("config")
    if config is None and isinstance(request.get("bridge"), dict):
        try:
            config = bridge_config(**request["bridge"])
        except (TypeError, ValueError) as exc:
            raise NodeError("bridge: %s" % exc) from exc
    if not isinstance(config, dict):
        raise NodeError("config: must be a CNI network config object")
    for key in ("cniVersion", "name", "type"):
        if not isinstance(config.get(key), str) or not config[key]:
            raise NodeError("config.%s: required string" % key)
    if not _NAME.match(config["type"]):
        raise NodeError("config.type: bad plugin name %r" % config["type"])
    netns = _text(request, "netns", required=command in ("ADD", "CHECK"))
    checked_netns(netns)
    container_id = _text(request, "container_id", required=command != "VERSION") or ""
    ifname = _text(request, "ifname", "eth0", required=True)
    if request.get("prev_result") is not None:
        config = dict(config, prevResult=request["prev_result"])
    result = run_plugin(command, config, netns=netns, container_id=container_id,
                        ifname=ifname, cni_path=_text(request, "cni_path"),
                        args=_text(request, "args"))
    answer = {"result": result}
    if command == "ADD" and isinstance(request.get("route"), dict):
        try:
            answer["routed"] = route_pod(netns, ifname, config.get("bridge", "cni0"), result, request["route"])
        except BaseException:  # all or nothing: the pod is unplugged again
            run_plugin("DEL", config, netns=netns, container_id=container_id, ifname=ifname,
                       cni_path=_text(request, "cni_path"), args=_text(request, "args"))
            raise
    return answer
