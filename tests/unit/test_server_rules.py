"""The lab server's own rules, on the simulated backend in this process: memory per learner,
idle labs, a learner's labs removed at once, and the options of ``labkit serve`` (sizes,
addresses, TCP only with hub tokens). The docker side of the same promises (limits set on
containers, a memory hog killed, a fork bomb stopped, orphans removed) is in
tests/integration/test_lab_server.py; hub tokens in tests/integration/test_classroom_hub.py."""
from __future__ import annotations

import pytest

from labkit.cli import main
from labkit.errors import ModelError
from labkit.runtime.sim import SimBackend
from labkit.server.app import LabServer, Limits
from labkit.server.identity import token_of
from labkit.server.main import parse_listen, parse_size

MIB = 2**20


def pod(name: str, ns: str = "default") -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
            "spec": {"containers": [{"name": "app"}]}}


def call(server: LabServer, owner: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    return server.handle(owner, method, path, body)


def start(server: LabServer, owner: str, name: str) -> tuple[int, dict]:
    return call(server, owner, "POST", "/v1/labs", {"name": name})


def apply(server: LabServer, owner: str, name: str, docs: list[dict]) -> tuple[int, dict]:
    return call(server, owner, "POST", f"/v1/labs/{name}/change", {"op": {"op": "apply", "documents": docs}})


@pytest.fixture
def clock():
    return [1000.0]


@pytest.fixture
def server(clock):
    app = LabServer(SimBackend(), Limits(labs_per_owner=3, pods_per_lab=10, memory_per_pod=64 * MIB,
                                         memory_per_learner=320 * MIB, idle_seconds=60), clock=lambda: clock[0])
    yield app
    app.close_all()


def test_memory_per_learner_counts_every_pod_of_every_lab_and_a_refusal_changes_nothing(server):
    assert start(server, "ann", "one")[0] == 200  # its DNS pod: 64 MiB
    assert apply(server, "ann", "one", [pod("a"), pod("b")])[0] == 200  # 192 MiB
    assert start(server, "ann", "two")[0] == 200  # 256 MiB
    status, answer = apply(server, "ann", "two", [pod("c"), pod("d")])  # would be 384 MiB
    assert status == 403 and answer["error"]["type"] == "Refused"
    message = answer["error"]["message"]
    assert "320 MiB" in message and "64 MiB each" in message and "one: 3" in message and "close a lab" in message
    assert apply(server, "ann", "two", [pod("c")])[0] == 200  # 320 MiB: exactly the limit
    assert start(server, "bob", "one")[0] == 200  # another learner's memory is their own
    status, answer = start(server, "ann", "three")
    assert status == 403 and "320 MiB" in answer["error"]["message"]
    labs = call(server, "ann", "GET", "/v1/labs")[1]["labs"]
    assert sorted(i["name"] for i in labs) == ["one", "two"]


def test_whoami_says_every_limit(server):
    status, me = call(server, "ann", "GET", "/v1/whoami")
    assert status == 200 and me["owner"] == "ann" and me["labs"] == 0
    assert me["limits"] == {"labs_per_owner": 3, "pods_per_lab": 10, "images": (), "memory_per_pod": 64 * MIB,
                            "pids_per_pod": None, "memory_per_learner": 320 * MIB, "idle_seconds": 60,
                            "cpus_per_pod": None, "nodes_per_lab": 3}


def test_an_idle_lab_is_removed_and_a_used_one_kept(server, clock):
    start(server, "ann", "idle")
    start(server, "ann", "busy")
    clock[0] += 50
    assert server.reap_idle() == []
    assert call(server, "ann", "GET", "/v1/labs/busy/rules")[0] == 200  # used at 50 s
    clock[0] += 11  # idle: unused for 61 s; busy: for 11 s
    assert server.reap_idle() == [("idle", "ann")]
    status, answer = call(server, "ann", "GET", "/v1/labs/idle/rules")
    assert status == 404 and "no lab named 'idle' of ann" in answer["error"]["message"]
    assert call(server, "ann", "GET", "/v1/labs/busy/rules")[0] == 200
    assert [i["name"] for i in call(server, "ann", "GET", "/v1/labs")[1]["labs"]] == ["busy"]


def test_removing_a_learner_removes_their_labs_only(server):
    start(server, "ann", "one")
    start(server, "bob", "one")
    assert server.owners() == {"ann", "bob"}
    server.remove_owner("ann")
    assert server.owners() == {"bob"}
    assert call(server, "ann", "GET", "/v1/labs/one/rules")[0] == 404
    assert call(server, "bob", "GET", "/v1/labs/one/rules")[0] == 200


@pytest.mark.parametrize("text, size", [("256M", 256 * MIB), ("2G", 2 * 2**30), ("512KiB", 512 * 1024),
                                        ("1048576", MIB), (" 4g ", 4 * 2**30)])
def test_sizes(text, size):
    assert parse_size(text, "--memory-per-pod") == size


@pytest.mark.parametrize("text", ["0", "12X", "-1M", "", "1.5G"])
def test_bad_sizes_name_the_flag(text):
    with pytest.raises(ModelError) as caught:
        parse_size(text, "--memory-per-pod")
    assert caught.value.path == "--memory-per-pod" and "256M" in str(caught.value)


def test_listen_addresses():
    assert parse_listen("0.0.0.0:8765") == ("0.0.0.0", 8765)
    assert parse_listen("[::1]:80") == ("::1", 80)
    for bad in ("8765", "host:", "host:99999", ":80"):
        with pytest.raises(ModelError) as caught:
            parse_listen(bad)
        assert caught.value.path == "--listen"


def test_tokens_are_read_from_the_authorization_header():
    assert token_of({"Authorization": "token abc"}) == "abc"
    assert token_of({"Authorization": "Bearer  xyz "}) == "xyz"
    assert token_of({"Authorization": "Basic abc"}) is None
    assert token_of({}) is None and token_of({"Authorization": "token "}) is None


def test_serve_refuses_tcp_without_hub_tokens_and_hub_without_its_environment(capsys, monkeypatch):
    assert main(["serve", "--listen", "127.0.0.1:8765"]) == 1
    assert "--listen (TCP) needs --hub" in capsys.readouterr().err
    monkeypatch.delenv("JUPYTERHUB_API_URL", raising=False)
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    assert main(["serve", "--socket", "/nonexistent/x.sock", "--hub"]) == 1
    assert "JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN" in capsys.readouterr().err
    assert main(["serve"]) == 1
    assert "--socket PATH" in capsys.readouterr().err


def test_pods_beyond_the_lab_limit_are_refused_in_any_namespace_and_so_are_huge_pods(clock):
    app = LabServer(SimBackend(), Limits(pods_per_lab=2, memory_per_pod=64 * MIB, pids_per_pod=64))
    start(app, "ann", "one")
    status, answer = apply(app, "ann", "one", [pod("a", "kube-system"), pod("b", "kube-system"),
                                               pod("c", "kube-system")])
    assert status == 403 and "3 pods" in answer["error"]["message"]  # kube-system is no way around it
    crowded = pod("crowded")
    crowded["spec"]["containers"] = [{"name": f"c{i}"} for i in range(5)]  # 64 MiB in 5 shares < 16 MiB
    status, answer = apply(app, "ann", "one", [crowded])
    assert status == 400 and answer["error"]["path"] == "spec.containers" and "allows 4 per pod" in \
        answer["error"]["message"]
    crowded["spec"]["containers"] = crowded["spec"]["containers"][:4]
    assert apply(app, "ann", "one", [crowded])[0] == 200
    app.close_all()


def test_names_values_and_labs_the_server_does_not_hold_are_refused_with_the_field(server):
    for name, fix in (("Bad_Name", "name"), ("x" * 21, "name")):
        status, answer = start(server, "ann", name)
        assert status == 400 and answer["error"]["path"] == fix
    for nodes in (0, 4, "2", True):
        status, answer = call(server, "ann", "POST", "/v1/labs", {"name": "many", "nodes": nodes})
        assert status == 400 and answer["error"]["path"] == "nodes" and "from 1 to 3" in answer["error"]["message"]
    start(server, "ann", "one")
    assert "a lab named 'one' of ann already runs" in start(server, "ann", "one")[1]["error"]["message"]
    status, answer = call(server, "ann", "POST", "/v1/labs/one/probe",
                          {"requests": [{"src": "a", "dst": "b", "port": 80, "protocol": "TCP"}], "timeout": "soon"})
    assert status == 400 and answer["error"]["path"] == "timeout"
    status, answer = call(server, "ann", "POST", "/v1/labs/one/deciding-rules", {"src": "a", "dst": "b",
                                                                                 "port": "eighty", "protocol": "TCP"})
    assert status == 400 and answer["error"]["path"] == "requests[].port"
    status, answer = call(server, "ann", "POST", "/v1/labs/other/attach", {"history": [], "nodes": 1})
    assert status == 404 and "no lab named 'other' of ann" in answer["error"]["message"]
    status, answer = call(server, "bob", "POST", "/v1/labs/one/attach", {})
    assert status == 404  # ann's lab, by its name, is not bob's
