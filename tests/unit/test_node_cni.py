"""labkit.node cni: config builder, plugin contract (fake plugin), real bridge plugin
in two throw-away network namespaces (root only; no packets are sent)."""

import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.nsholder import can_unshare_net, pod_namespace

NODE_DIR = Path(__file__).resolve().parents[2] / "labkit" / "node"


def load_node(module):
    """Import labkit/node/<module> as a package of its own (no other labkit code)."""
    name = "_labkit_node_under_test"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, NODE_DIR / "__init__.py", submodule_search_locations=[str(NODE_DIR)])
        package = importlib.util.module_from_spec(spec)
        sys.modules[name] = package
        spec.loader.exec_module(package)
    return importlib.import_module("%s.%s" % (name, module))


cni = load_node("cni")


@pytest.fixture(scope="module")
def node_env(tmp_path_factory):
    """PYTHONPATH holding a copy of labkit/node ALONE (as in the lab image)."""
    root = tmp_path_factory.mktemp("nodepkg")
    shutil.copytree(NODE_DIR, root / "labkit" / "node",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return {"PYTHONPATH": str(root), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8"}, root


def run_node(env, command, request, prefix=()):
    proc = subprocess.run([*prefix, sys.executable, "-m", "labkit.node", command],
                          input=json.dumps(request), capture_output=True, text=True,
                          env=env[0], cwd=env[1], timeout=60)
    return proc.returncode, json.loads(proc.stdout)


def test_bridge_config_is_the_standard_one():
    assert cni.bridge_config("10.244.0.0/24", "10.244.0.1", "10.244.0.5") == {
        "cniVersion": "1.0.0", "name": "labkit", "type": "bridge", "bridge": "cni0",
        "isGateway": True, "hairpinMode": True, "ipMasq": False, "mtu": 1500,
        "ipam": {"type": "static",
                 "addresses": [{"address": "10.244.0.5/24", "gateway": "10.244.0.1"}],
                 "routes": [{"dst": "0.0.0.0/0"}]},
    }


def test_bridge_config_options_and_errors():
    conf = cni.bridge_config("10.244.1.0/24", "10.244.1.1", "10.244.1.9/24",
                             bridge="br-lab", mtu=1450)
    assert conf["bridge"] == "br-lab" and conf["mtu"] == 1450
    assert conf["ipam"]["addresses"][0]["address"] == "10.244.1.9/24"
    with pytest.raises(ValueError, match="must lie in subnet"):
        cni.bridge_config("10.244.0.0/24", "10.244.0.1", "10.244.1.5")
    with pytest.raises(ValueError, match="is the gateway"):
        cni.bridge_config("10.244.0.0/24", "10.244.0.1", "10.244.0.1")
    with pytest.raises(ValueError):
        cni.bridge_config("not-a-cidr", "10.244.0.1", "10.244.0.5")


FAKE_PLUGIN = r'''#!{python}
import json, os, sys
config = json.load(sys.stdin)
keys = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH", "CNI_ARGS")
with open(os.path.join(os.path.dirname(__file__), "last-call.json"), "w") as out:
    json.dump({{"env": {{k: os.environ.get(k) for k in keys}}, "config": config}}, out)
if config.get("fail"):
    print(json.dumps({{"cniVersion": "1.0.0", "code": 7, "msg": "boom",
                      "details": "the details"}}))
    sys.exit(1)
if os.environ["CNI_COMMAND"] == "ADD":
    print(json.dumps({{"cniVersion": "1.0.0", "ips": [{{"address": "10.244.0.5/24"}}]}}))
'''


@pytest.fixture
def fake_cni(tmp_path):
    plugin = tmp_path / "fakebridge"
    plugin.write_text(FAKE_PLUGIN.format(python=sys.executable))
    plugin.chmod(0o755)
    return tmp_path


def fake_request(cni_dir, command="ADD", **config):
    return {"command": command, "netns": "/proc/424242/ns/net", "container_id": "abc",
            "ifname": "eth0", "cni_path": "%s:/nonexistent" % cni_dir,
            "config": {"cniVersion": "1.0.0", "name": "labkit", "type": "fakebridge",
                       **config}}


def test_plugin_gets_cni_env_and_config(node_env, fake_cni):
    code, reply = run_node(node_env, "cni", fake_request(fake_cni))
    assert code == 0
    assert reply == {"result": {"cniVersion": "1.0.0", "ips": [{"address": "10.244.0.5/24"}]}}
    call = json.loads((fake_cni / "last-call.json").read_text())
    assert call["env"] == {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "abc",
                           "CNI_NETNS": "/proc/424242/ns/net", "CNI_IFNAME": "eth0",
                           "CNI_PATH": "%s:/nonexistent" % fake_cni, "CNI_ARGS": ""}
    assert call["config"]["type"] == "fakebridge"


def test_del_with_prev_result_returns_null(node_env, fake_cni):
    request = dict(fake_request(fake_cni, "DEL"), prev_result={"ips": []})
    code, reply = run_node(node_env, "cni", request)
    assert code == 0 and reply == {"result": None}
    call = json.loads((fake_cni / "last-call.json").read_text())
    assert call["env"]["CNI_COMMAND"] == "DEL" and call["config"]["prevResult"] == {"ips": []}


def test_plugin_error_is_exit_2_with_code_and_message(node_env, fake_cni):
    code, reply = run_node(node_env, "cni", fake_request(fake_cni, fail=True))
    assert code == 2
    assert reply["error"] == "CNI plugin fakebridge ADD failed: boom (the details)"
    assert reply["code"] == 7 and reply["msg"] == "boom" and reply["details"] == "the details"


def test_missing_plugin_and_missing_netns(node_env, fake_cni):
    request = fake_request(fake_cni)
    request["config"]["type"] = "nosuchplugin"
    code, reply = run_node(node_env, "cni", request)
    assert code == 2 and "CNI plugin 'nosuchplugin' not found in CNI_PATH" in reply["error"]
    request = fake_request(fake_cni)
    del request["netns"]
    code, reply = run_node(node_env, "cni", request)
    assert code == 2 and reply["error"].startswith("netns:")


def test_bridge_shortcut_builds_config(node_env, fake_cni):
    request = fake_request(fake_cni)
    del request["config"]
    request["bridge"] = {"subnet": "10.244.0.0/24", "gateway": "10.244.0.1",
                         "address": "10.244.0.5"}
    code, reply = run_node(node_env, "cni", request)  # real "bridge" is not in fake dir
    assert code == 2 and "CNI plugin 'bridge' not found" in reply["error"]
    request["bridge"]["address"] = "10.9.9.9"
    code, reply = run_node(node_env, "cni", request)
    assert code == 2 and reply["error"].startswith("bridge: ") and "subnet" in reply["error"]


def _real_cni_dir():
    for directory in ("/usr/lib/cni", "/opt/cni/bin"):
        if all(os.access(os.path.join(directory, p), os.X_OK) for p in ("bridge", "static")):
            return directory
    return None


needs_netns = pytest.mark.skipif(
    not can_unshare_net() or not shutil.which("nsenter") or not shutil.which("ip"),
    reason="needs root with CAP_SYS_ADMIN (unshare --net), nsenter and ip to create "
           "a throw-away network namespace")


@needs_netns
@pytest.mark.skipif(_real_cni_dir() is None,
                    reason="CNI bridge/static plugins not installed (containernetworking-plugins)")
def test_real_bridge_plugin_in_private_namespaces(node_env):
    with pod_namespace() as (_, node_ns), pod_namespace() as (_, pod_ns):
        in_node = ("nsenter", "--net=%s" % node_ns, "--")
        request = {"command": "ADD", "netns": pod_ns, "container_id": "labkit-test",
                   "ifname": "eth0", "cni_path": _real_cni_dir(),
                   "config": cni.bridge_config("10.244.0.0/24", "10.244.0.1", "10.244.0.5")}
        code, reply = run_node(node_env, "cni", request, prefix=in_node)
        assert code == 0, reply
        assert reply["result"]["ips"][0] == {"interface": 2, "address": "10.244.0.5/24",
                                             "gateway": "10.244.0.1"}
        code, out = run_node(node_env, "exec-in", {"netns": pod_ns,
                                                   "argv": ["ip", "-4", "-o", "addr"]})
        assert "eth0" in out["output"] and "10.244.0.5/24" in out["output"]
        code, out = run_node(node_env, "exec-in", {"netns": pod_ns,
                                                   "argv": ["ip", "route"]})
        assert "default via 10.244.0.1 dev eth0" in out["output"]
        code, out = run_node(node_env, "exec-in", {"netns": node_ns,
                                                   "argv": ["ip", "-d", "link"]})
        assert "cni0" in out["output"] and "hairpin on" in out["output"]
        code, again = run_node(node_env, "cni", request, prefix=in_node)
        assert code == 2 and "already exists" in again["error"] and "code" in again
        code, reply = run_node(node_env, "cni", dict(request, command="DEL"), prefix=in_node)
        assert code == 0 and reply == {"result": None}
        code, out = run_node(node_env, "exec-in", {"netns": pod_ns,
                                                   "argv": ["ip", "-o", "link"]})
        assert "eth0" not in out["output"]
