"""labkit.node nft / nft-list: contract with a fake nft, then the real nft inside a
throw-away network namespace (root only; the host's ruleset is never touched)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.nsholder import can_unshare_net, pod_namespace

NODE_DIR = Path(__file__).resolve().parents[2] / "labkit" / "node"


@pytest.fixture(scope="module")
def node_env(tmp_path_factory):
    """PYTHONPATH holding a copy of labkit/node ALONE (as in the lab image)."""
    root = tmp_path_factory.mktemp("nodepkg")
    shutil.copytree(NODE_DIR, root / "labkit" / "node",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return {"PYTHONPATH": str(root), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8"}, root


def run_node(env, command, request, path=None):
    penv = dict(env[0], PATH=path) if path else env[0]
    proc = subprocess.run([sys.executable, "-m", "labkit.node", command],
                          input=json.dumps(request), capture_output=True, text=True,
                          env=penv, cwd=env[1], timeout=60)
    assert proc.stdout.count("\n") == 1, proc.stdout
    return proc.returncode, json.loads(proc.stdout)


FAKE_NFT = r'''#!{python}
import json, os, sys
args = sys.argv[1:]
log = os.path.join(os.path.dirname(__file__), "calls.jsonl")
stdin = sys.stdin.read() if "-f" in args else None
with open(log, "a") as out:
    out.write(json.dumps({{"args": args, "stdin": stdin}}) + "\n")
if "list" in args:
    family, name = args[-2:]
    if name == "missing":
        sys.stderr.write("Error: No such file or directory\nlist table %s %s\n" % (family, name))
        sys.exit(1)
    if name == "broken":
        sys.stderr.write("Error: Could not process rule: Operation not permitted\n")
        sys.exit(1)
    if "-j" in args:
        print(json.dumps({{"nftables": [{{"table": {{"family": family, "name": name}}}}]}}))
    else:
        print("table %s %s {{\n}}" % (family, name))
    sys.exit(0)
if "bogus" in stdin:
    sys.stderr.write("/dev/stdin:2:3-7: Error: syntax error, unexpected string\n"
                     "  bogus\n  ^^^^^\n")
    sys.exit(1)
'''


@pytest.fixture
def fake_nft(tmp_path):
    script = tmp_path / "nft"
    script.write_text(FAKE_NFT.format(python=sys.executable))
    script.chmod(0o755)
    path = "%s:/usr/sbin:/usr/bin:/sbin:/bin" % tmp_path

    def calls():
        log = tmp_path / "calls.jsonl"
        return [json.loads(l) for l in log.read_text().splitlines()] if log.exists() else []
    return path, calls


RULESET = "add table ip labkit-svc\ndelete table ip labkit-svc\ntable ip labkit-svc {\n}\n"


def test_apply_runs_nft_once_with_ruleset_on_stdin(node_env, fake_nft):
    path, calls = fake_nft
    code, reply = run_node(node_env, "nft", {"ruleset": RULESET}, path)
    assert code == 0 and reply["ok"] is True and reply["checked"] is False
    assert isinstance(reply["ms"], float)
    assert calls() == [{"args": ["-f", "-"], "stdin": RULESET}]


def test_check_mode_uses_dash_c(node_env, fake_nft):
    path, calls = fake_nft
    code, reply = run_node(node_env, "nft", {"ruleset": RULESET, "check": True}, path)
    assert code == 0 and reply["checked"] is True
    assert calls()[0]["args"] == ["-c", "-f", "-"]


def test_nft_error_keeps_line_numbers(node_env, fake_nft):
    path, _ = fake_nft
    code, reply = run_node(node_env, "nft", {"ruleset": "table ip x {\n  bogus\n}\n"}, path)
    assert code == 2
    assert reply["error"].startswith("/dev/stdin:2:3-7: Error: syntax error")
    assert "^^^^^" in reply["error"] and reply["exit_code"] == 1


def test_list_skips_missing_tables(node_env, fake_nft):
    path, calls = fake_nft
    request = {"tables": ["table ip labkit-svc", "inet labkit-pol", "ip missing"]}
    code, reply = run_node(node_env, "nft-list", request, path)
    assert code == 0
    assert reply["missing"] == ["ip missing"]
    assert list(reply["tables"]) == ["ip labkit-svc", "inet labkit-pol"]
    assert reply["text"] == "table ip labkit-svc {\n}\ntable inet labkit-pol {\n}\n"
    assert calls()[0]["args"] == ["list", "table", "ip", "labkit-svc"]
    code, same = run_node(node_env, "nft", {"list": request["tables"]}, path)
    assert code == 0 and same == reply


def test_list_json_and_real_errors(node_env, fake_nft):
    path, _ = fake_nft
    code, reply = run_node(node_env, "nft-list", {"tables": ["ip t"], "json": True}, path)
    assert code == 0
    assert reply["json"]["ip t"] == {"nftables": [{"table": {"family": "ip", "name": "t"}}]}
    code, reply = run_node(node_env, "nft-list", {"tables": ["ip broken"]}, path)
    assert code == 2 and "Operation not permitted" in reply["error"]


def test_missing_nft_binary(node_env, tmp_path):
    code, reply = run_node(node_env, "nft", {"ruleset": RULESET}, str(tmp_path))
    assert code == 2 and reply["error"] == "nft not found (is nftables installed?)"


@pytest.mark.skipif(not can_unshare_net() or not shutil.which("nsenter")
                    or not shutil.which("nft"),
                    reason="needs root with CAP_SYS_ADMIN (unshare --net), nsenter and nft "
                           "for a throw-away network namespace")
def test_real_nft_in_private_namespace(node_env):
    with pod_namespace() as (_, netns):
        ruleset = RULESET.replace("{\n}", "{\n  chain c {\n    type filter hook forward "
                                  "priority 0; policy accept;\n    ip daddr 10.96.0.1 "
                                  "counter\n  }\n}")
        code, reply = run_node(node_env, "nft", {"ruleset": ruleset, "check": True,
                                                  "netns": netns})
        assert code == 0 and reply["checked"] is True
        code, reply = run_node(node_env, "nft-list", {"tables": ["ip labkit-svc"],
                                                      "netns": netns})
        assert code == 0 and reply["missing"] == ["ip labkit-svc"]  # -c changed nothing
        code, reply = run_node(node_env, "nft", {"ruleset": ruleset, "netns": netns})
        assert code == 0 and reply["ok"] is True
        code, reply = run_node(node_env, "nft", {"ruleset": ruleset, "netns": netns})
        assert code == 0  # add+delete preamble: re-applying replaces atomically
        code, reply = run_node(node_env, "nft-list", {"tables": ["ip labkit-svc",
                                                                 "inet labkit-pol"],
                                                      "netns": netns, "json": True})
        assert code == 0 and reply["missing"] == ["inet labkit-pol"]
        assert reply["json"]["ip labkit-svc"]["nftables"][1]["table"]["name"] == "labkit-svc"
        code, reply = run_node(node_env, "nft-list", {"tables": ["ip labkit-svc"],
                                                      "netns": netns})
        assert "ip daddr 10.96.0.1 counter packets 0 bytes 0" in reply["text"]
        bad = "table ip labkit-svc {\n  chain c {\n    bogus rule\n  }\n}\n"
        code, reply = run_node(node_env, "nft", {"ruleset": bad, "netns": netns})
        assert code == 2 and reply["error"].startswith("/dev/stdin:3:")
        code, reply = run_node(node_env, "nft-list", {"tables": ["ip labkit-svc"],
                                                      "netns": netns})
        assert "10.96.0.1" in reply["text"]  # failed transaction left the table intact
