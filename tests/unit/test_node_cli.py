"""labkit.node CLI contract: JSON errors, exit codes, stdlib-only and self-contained."""

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parents[2] / "labkit" / "node"


@pytest.fixture(scope="module")
def node_env(tmp_path_factory):
    """PYTHONPATH holding a copy of labkit/node ALONE (as in the lab image)."""
    root = tmp_path_factory.mktemp("nodepkg")
    shutil.copytree(NODE_DIR, root / "labkit" / "node",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return {"PYTHONPATH": str(root), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8"}, root


def run_node(env, command, stdin="", args=()):
    proc = subprocess.run([sys.executable, "-m", "labkit.node", command, *args],
                          input=stdin, capture_output=True, text=True, env=env[0],
                          cwd=env[1], timeout=30)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("command,stdin,needle", [
    ("probe", "{not json", "invalid JSON on stdin"),
    ("probe", "[1, 2]", "stdin must hold one JSON object, got list"),
    ("probe", "{}", "probes: must be a list"),
    ("probe", '{"probes": [{"dst": "127.0.0.1", "port": 0}]}', "probes[0].port"),
    ("probe", '{"probes": [{"dst": "127.0.0.1", "port": 80, "protocol": "ICMP"}]}',
     "probes[0].protocol"),
    ("probe", '{"timeout": -1, "probes": []}', "timeout: must be a number"),
    ("probe", '{"probes": [{"port": 80}]}', "probes[0].dst: required"),
    ("cni", '{"command": "FOO"}', "command: must be one of ADD/DEL/CHECK/VERSION"),
    ("cni", '{"command": "ADD", "config": {"cniVersion": "1.0.0", "name": "n"}}',
     "config.type"),
    ("cni", '{"command": "ADD", "config": {"cniVersion": "1.0.0", "name": "n", '
            '"type": "../../bin/sh"}, "netns": "/x", "container_id": "c"}',
     "config.type: bad plugin name"),
    ("nft", '{"ruleset": 5}', "ruleset: must be a string"),
    ("nft-list", '{"tables": ["ip; rm -rf /"]}', "bad table"),
    ("sysctl", '{"values": {"../../etc/passwd": "1"}}', "bad sysctl key"),
    ("sysctl", '{"values": {"net.ipv4.ip_forward": [1]}}', "must be a string or an integer"),
    ("exec-in", '{"argv": []}', "argv: must be a non-empty list"),
    ("exec-in", '{"argv": ["true"], "timeout": 0}', "timeout: must be a number"),
])
def test_bad_input_gives_exit_2_and_json_error(node_env, command, stdin, needle):
    code, out, _ = run_node(node_env, command, stdin)
    assert code == 2
    reply = json.loads(out)
    assert set(reply) >= {"error"}
    assert needle in reply["error"]
    assert out.count("\n") == 1  # one JSON object, nothing else on stdout


def test_unknown_command_and_no_command(node_env):
    code, out, _ = run_node(node_env, "frobnicate")
    assert code == 2 and "unknown command 'frobnicate'" in json.loads(out)["error"]
    proc = subprocess.run([sys.executable, "-m", "labkit.node"], capture_output=True,
                          text=True, env=node_env[0], cwd=node_env[1], timeout=30)
    assert proc.returncode == 2 and "usage" in json.loads(proc.stdout)["error"]


def test_serve_bad_arguments(node_env):
    code, out, _ = run_node(node_env, "serve", args=["--name", "a/b", "--port", "80/ICMP"])
    assert code == 2 and "protocol must be TCP, UDP or SCTP" in json.loads(out)["error"]
    code, out, _ = run_node(node_env, "serve", args=["--port", "80"])
    assert code == 2 and "--name" in json.loads(out)["error"]


def test_info(node_env):
    code, out, _ = run_node(node_env, "info", "")
    reply = json.loads(out)
    assert code == 0 and reply["python"].startswith("3.")
    assert isinstance(reply["sctp"], bool) and "nft" in reply["tools"]


def test_empty_probe_batch(node_env):
    code, out, _ = run_node(node_env, "probe", '{"probes": []}')
    assert code == 0 and json.loads(out) == {"results": []}


def test_package_is_stdlib_only_and_self_contained():
    for path in sorted(NODE_DIR.glob("*.py")):
        text = path.read_text()
        tree = ast.parse(text)
        assert ast.get_docstring(tree), "%s lacks a module docstring" % path.name
        assert len(text.splitlines()) < 300, "%s is too long" % path.name
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: stays inside labkit.node
                    assert node.level == 1, path.name
                    continue
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names, "%s imports %s" % (path.name, name)
