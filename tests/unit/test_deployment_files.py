"""The ways labkit reaches learners, checked as far as this machine allows.

The wheel is built and installed in a fresh virtual environment (as `pip install` on a new
machine would): notebooks, image recipes and the classroom JupyterLab defaults travel with
it, and `labkit` works with nothing but PyYAML, on the simulated backend, saying so.
Binder's `.binder/postBuild` and `.binder/start` run in that environment. The classroom
files (compose, Zero to JupyterHub and its lab server) need a registry and a cluster to run;
here they are checked for what would break a class: commands that exist, the engine's safety
flags, no host Docker socket, nothing privileged but the lab server's engine, ports and names
that agree with each other, and the hub's values against the chart's own schema.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from labkit import __version__
from labkit.cli import build_parser
from labkit.launch import settings_dir

REPO = Path(__file__).resolve().parents[2]
ENV = REPO / "environments"
CLASSROOM = ENV / "classroom"
OVERRIDES = "share/jupyter/lab/settings/overrides.d/labkit.json"
SAFE_FLAGS = {"--bridge=none", "--iptables=false", "--ip-forward=false", "--ip6tables=false", "--ip-masq=false"}
WORLD = """\
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec: {containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: b}}
spec: {containers: [{name: app, ports: [{containerPort: 80}]}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-b, namespace: x}
spec: {podSelector: {matchLabels: {app: b}}, policyTypes: [Ingress]}
"""


def run(argv, **kwargs):
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kwargs)
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(REPO)])
    (built,) = out.glob("k8s_labkit-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh(tmp_path_factory, wheel):
    """A new virtual environment with only the wheel (and PyYAML) installed, and a clean env."""
    root = tmp_path_factory.mktemp("fresh")
    venv = root / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)])
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(root / "home"), "LANG": "C.UTF-8"}
    (root / "home").mkdir()
    return venv, env


def test_wheel_carries_notebooks_recipes_agent_cases_and_jupyterlab_defaults(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {n.rsplit("/", 1)[1] for n in names if n.startswith("labkit/notebooks/")}
    assert shipped == {p.name for p in (REPO / "notebooks").glob("*.ipynb")}
    for path in ("labkit/environments/image/Dockerfile", "labkit/environments/image/build-offline.sh",
                 "labkit/environments/image/packages.txt", "labkit/environments/start-dockerd.sh",
                 "labkit/node/__main__.py", "labkit/testing/netpol-cases.yaml"):
        assert path in names, path
    data = f"k8s_labkit-{__version__}.data/data/{OVERRIDES}"
    assert data in names
    # the same defaults `labkit lab` gives its own JupyterLab
    assert json.loads(zipfile.ZipFile(wheel).read(data)) == \
        json.loads((ENV / "jupyterlab" / "labkit-overrides.json").read_text())


def test_labkit_lab_and_the_installed_overrides_agree(tmp_path):
    overrides = json.loads((ENV / "jupyterlab" / "labkit-overrides.json").read_text())
    user = settings_dir(tmp_path)
    for plugin, values in overrides.items():
        package, name = plugin.split(":")
        assert json.loads((user / package / f"{name}.jupyterlab-settings").read_text()) == values


def test_a_fresh_install_works_simulated_with_only_pyyaml(fresh, tmp_path):
    venv, env = fresh
    assert (venv / OVERRIDES).is_file()
    listed = run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json"], env=env).stdout
    installed = {p["name"].lower() for p in json.loads(listed)}
    assert "docker" not in installed and "pyyaml" in installed
    dest = tmp_path / "course"
    run(["labkit", "notebooks", str(dest)], env=env)
    assert sorted(p.name for p in dest.glob("*.ipynb")) == sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb"))
    (dest / "00-welcome.ipynb").write_text("{}")  # a learner's edit ...
    run(["labkit", "notebooks", str(dest)], env=env)
    assert (dest / "00-welcome.ipynb").read_text() == "{}"  # ... is never overwritten
    world = tmp_path / "world.yaml"
    world.write_text(WORLD)
    proc = run(["labkit", "matrix", "-f", str(world), "--port", "80"], env=env)
    assert "simulated" in proc.stdout and "SIMULATED" in proc.stderr
    assert re.search(r"^x/a\s+\.\s+X\s*$", proc.stdout, re.M), proc.stdout
    explained = run(["labkit", "explain", "x/a", "x/b", "--port", "80", "-f", str(world)], env=env).stdout
    assert "denied" in explained and "x/deny-b" in explained


def test_binder_build_and_start_give_a_simulated_lab_with_widgets(fresh):
    venv, env = fresh
    run(["bash", str(REPO / ".binder" / "postBuild")], env=env, cwd=REPO)
    code = ("import labkit, labkit.widgets, labkit.viz, ipywidgets, matplotlib\n"
            "lab = labkit.Lab('binder')\n"
            "print(lab.backend_name, lab.probe('kube-system/coredns', 'kube-system/coredns', port=53,"
            " protocol='UDP').simulated)\n"
            "lab.close()\n")
    proc = run([str(REPO / ".binder" / "start"), "python", "-c", code], env=env)
    assert proc.stdout.split() == ["sim", "True"], proc.stdout
    # start hands over to its arguments, exit code included (it ends in exec "$@")
    assert subprocess.run([str(REPO / ".binder" / "start"), "sh", "-c", "exit 7"], env=env).returncode == 7


# ------------------------------------------------------------------ classroom files
def labkit_commands(script: str) -> list[list[str]]:
    """The labkit command lines of a `sh -c` script."""
    commands = []
    for part in re.split(r"&&|;|\|\|", script):
        words = [w for w in shlex.split(part.replace("(", " ").replace(")", " ")) if w != "exec"]
        words = words[:words.index(">")] if ">" in words else words
        if words and words[0] == "labkit":
            commands.append(words[1:])
    return commands


def assert_valid_labkit(argv: list[str]) -> None:
    args, unknown = build_parser().parse_known_args(argv)
    assert not unknown or argv[0] == "lab", (argv, unknown)


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((CLASSROOM / "compose.yaml").read_text())


def test_start_dockerd_uses_the_same_safety_flags():
    text = (ENV / "start-dockerd.sh").read_text()
    assert {"--bridge=none", "--iptables=false", "--ip-forward=false"} <= set(re.findall(r"--[a-z0-9-]+=[a-z]+", text))
    assert "ip6tables ip-masq" in text  # added as =false where dockerd knows them


def test_compose_engine_is_safe_and_the_lab_uses_it(compose):
    engine, lab = compose["services"]["engine"], compose["services"]["lab"]
    # dockerd first: given only flags, docker:dind's entrypoint adds an open tcp://0.0.0.0:2375
    assert engine["command"][0] == "dockerd" and not any("tcp://" in a for a in engine["command"])
    assert SAFE_FLAGS <= set(engine["command"])
    host = next(a.split("=", 1)[1] for a in engine["command"] if a.startswith("--host="))
    assert lab["environment"]["DOCKER_HOST"] == host and lab["environment"]["LABKIT_BACKEND"] == "docker"
    socket_dir = os.path.dirname(host.removeprefix("unix://"))
    for service in (engine, lab):
        assert f"engine-socket:{socket_dir}" in service["volumes"]
        for volume in service["volumes"]:
            assert not volume.startswith(("/", ".")) and "docker.sock" not in volume, volume  # named volumes only
    assert "privileged" not in lab and lab.get("network_mode") != "host"
    assert all(p.startswith("127.0.0.1:") for p in lab["ports"])
    assert engine["healthcheck"]["test"][-1] == "info" and lab["depends_on"]["engine"]["condition"] == "service_healthy"
    assert (CLASSROOM / lab["build"]["context"] / lab["build"]["dockerfile"]).resolve() == CLASSROOM / "Dockerfile"
    commands = labkit_commands(lab["command"][-1])
    assert [c[:2] for c in commands] == [["images", "build"], ["lab", "--dir"]]
    for argv in commands:
        assert_valid_labkit(argv)


# ------------------------------------------------ JupyterHub on Kubernetes + the lab server
Z2JH = REPO.parent / "shared" / "vendor" / "z2jh"
SERVER_MANIFEST = CLASSROOM / "k8s" / "labkit-server.yaml"
# `labkit serve`'s flags (the CLI's TCP/hub mode is written elsewhere: the parser is not imported
# here, the manifest's arguments are checked against this list). None: a switch; else the type.
SERVE_FLAGS = {"--listen": str, "--socket": str, "--hub": None, "--labs-per-owner": int,
               "--pods-per-lab": int, "--memory-per-pod": "size", "--pids-per-pod": int,
               "--memory-per-learner": "size", "--idle-lab-minutes": int, "--hub-poll-seconds": int,
               "--allow-image": "repeat"}
DNS_RULES = {"dnsPortsCloudMetadataServer", "dnsPortsKubeSystemNamespace", "dnsPortsPrivateIPs"}


def deep_merge(defaults, ours):
    """Helm's merge of values: mappings merged key by key, anything else (lists too) replaced by ours."""
    if isinstance(defaults, dict) and isinstance(ours, dict):
        merged = dict(defaults)
        for key, value in ours.items():
            merged[key] = deep_merge(defaults[key], value) if key in defaults else value
        return merged
    return ours


def _values() -> dict:
    return yaml.safe_load((CLASSROOM / "z2jh-values.yaml").read_text())


def _chart() -> tuple[dict, dict]:
    """The vendored chart's default values and its values schema; skips when they are absent."""
    if not (Z2JH / "values.schema.yaml").is_file() or not (Z2JH / "values.yaml").is_file():
        pytest.skip("the vendored Zero to JupyterHub chart schema is not beside this checkout (../shared/vendor/z2jh)")
    return (yaml.safe_load((Z2JH / "values.yaml").read_text()),
            yaml.safe_load((Z2JH / "values.schema.yaml").read_text()))


def schema_errors(values: dict, schema: dict) -> list[str]:
    import jsonschema  # noqa: PLC0415 - a test dependency: missing is an error, never a skip
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = validator_class(schema).iter_errors(values)
    return sorted(f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors)


def walk(node, path=()):
    """(path, key, value) for every key of every mapping in a YAML tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from walk(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, (*path, i))


@pytest.fixture(scope="module")
def server():
    docs = [d for d in yaml.safe_load_all(SERVER_MANIFEST.read_text()) if d]
    by_kind: dict[str, list[dict]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    assert sorted(by_kind) == ["Deployment", "NetworkPolicy", "Service"], sorted(by_kind)
    (deployment,), (service,), (policy,) = by_kind["Deployment"], by_kind["Service"], by_kind["NetworkPolicy"]
    pod = deployment["spec"]["template"]
    containers = {c["name"]: c for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]}
    return {"deployment": deployment, "service": service, "policy": policy, "pod": pod, "containers": containers}


def serve_options(argv: list[str]) -> dict:
    """`labkit serve` arguments as {flag: value}; fails on a flag the lab server does not have."""
    options: dict = {}
    words = iter(argv)
    for word in words:
        flag, eq, inline = word.partition("=")
        assert flag in SERVE_FLAGS, f"`labkit serve` has no flag {flag}"
        kind = SERVE_FLAGS[flag]
        if kind is None:
            assert not eq, f"{flag} takes no value"
            options[flag] = True
            continue
        value = inline if eq else next(words, None)
        assert value is not None and not value.startswith("--"), f"{flag} needs a value"
        if kind is int:
            assert value.isdigit() and int(value) > 0, (flag, value)
            value = int(value)
        elif kind == "size":
            assert re.fullmatch(r"[1-9][0-9]*[KMG]", value), (flag, value)
        if kind == "repeat":
            options.setdefault(flag, []).append(value)
        else:
            assert flag not in options, f"{flag} given twice"
            options[flag] = value
    return options


def start_dockerd_flags() -> set[str]:
    """The flags start-dockerd.sh starts dockerd with: its `flags=(...)` and the `flags+=` loop."""
    text = (ENV / "start-dockerd.sh").read_text()
    (base,) = re.findall(r"^flags=\(([^)]*)\)", text, re.M)
    flags = set(base.split())
    loops = re.findall(r"^for f in ([a-z0-9 -]+); do\n.*?flags\+=\(\"(--\$f=[a-z]+)\"\)", text, re.M | re.S)
    for names, added in loops:
        flags |= {added.replace("$f", name) for name in names.split()}
    assert {"--bridge=none", "--iptables=false"} <= flags, flags
    return flags


def server_url(server) -> str:
    port = server["service"]["spec"]["ports"][0]["port"]
    return f"http://{server['service']['metadata']['name']}:{port}"


def test_hub_values_merged_into_the_chart_defaults_validate_against_its_schema():
    defaults, schema = _chart()
    values = _values()
    assert schema_errors(deep_merge(defaults, values), schema) == []
    # the check can fail: an unknown key (a typo) anywhere in the schema's closed objects is caught
    typo = deep_merge(values, {"singleuser": {"networkPolicy": {"egressAllowRule": {"privateIPs": False}}}})
    assert any("egressAllowRule" in e for e in schema_errors(deep_merge(defaults, typo), schema))


def test_learner_servers_get_no_engine_and_nothing_privileged(server):
    user = _values()["singleuser"]
    privileged = [(path, value) for path, key, value in walk(user) if key == "privileged" and value]
    assert privileged == []
    assert not user.get("extraContainers") and not user.get("initContainers")
    assert not user.get("profileList"), "a profile could bring its own containers: check them here"
    # the chart's default blocks the metadata server with a *privileged* iptables init container
    assert user["cloudMetadata"]["blockWithIptables"] is False
    assert user["allowPrivilegeEscalation"] is False
    text = yaml.safe_dump(user)
    assert "docker.sock" not in text and "hostPath" not in text and "DOCKER_HOST" not in text
    assert "extraVolumes" not in user.get("storage", {}) and "extraPodConfig" not in user
    # the lab server, by its Service's name and port; the backend stays "auto"
    assert user["extraEnv"] == {"LABKIT_SERVER": server_url(server)}
    # the notebook image is the lab server's image too
    assert f"{user['image']['name']}:{user['image']['tag']}" == server["containers"]["server"]["image"]
    notebook = user["defaultUrl"].split("/lab/tree/labkit/", 1)[1]
    assert (REPO / "notebooks" / notebook).is_file()
    hook = user["lifecycleHooks"]["postStart"]["exec"]["command"][-1]
    commands = labkit_commands(hook)
    assert commands == [["notebooks", "$HOME/labkit"]]  # the folder defaultUrl opens; no image build
    for argv in commands:
        assert_valid_labkit(argv)


def test_learner_servers_may_reach_only_dns_and_the_lab_server(server):
    policy = _values()["singleuser"]["networkPolicy"]
    assert policy["enabled"] is True
    rules = policy["egressAllowRules"]
    assert {k for k, v in rules.items() if v} <= DNS_RULES and rules["dnsPortsKubeSystemNamespace"]
    # the chart's defaults for the others are true for nonPrivateIPs: each must be said false here
    assert {k for k, v in rules.items() if v is False} == {"cloudMetadataServer", "nonPrivateIPs", "privateIPs"}
    (rule,) = policy["egress"]
    (target,) = rule["to"]
    assert set(target) == {"podSelector"}  # pods of this namespace, no ipBlock
    labels = target["podSelector"]["matchLabels"]
    assert labels.items() <= server["pod"]["metadata"]["labels"].items()
    assert labels == server["service"]["spec"]["selector"]
    assert rule["ports"] == [{"protocol": "TCP", "port": server["service"]["spec"]["ports"][0]["port"]}]
    assert not policy.get("ingress") and not policy.get("allowedIngressPorts")


def test_hub_registers_the_lab_server_its_roles_and_the_culler(server):
    values = _values()
    hub = values["hub"]
    (key,) = hub["services"]
    service = hub["services"][key]
    assert service["url"] == server_url(server)
    assert service["display"] is False
    assert "api_token" not in service and "apiToken" not in service  # the chart generates it
    roles = hub["loadRoles"]
    assert roles["labkit"]["services"] == [key]
    assert roles["labkit"]["scopes"] == ["list:users", "read:servers"]
    access = f"access:services!service={key}"
    assert roles["server"]["scopes"] == ["users:activity!user", "access:servers!server", access]
    assert "users" not in roles["server"] and "services" not in roles["server"]
    # a token holds only what its owner holds: every user must hold the access scope too
    assert roles["user"]["scopes"] == ["self", access] and set(roles["user"]) <= {"description", "scopes"}
    (egress,) = hub["networkPolicy"]["egress"]
    assert egress["to"][0]["podSelector"]["matchLabels"] == server["service"]["spec"]["selector"]
    assert values["cull"] == {"enabled": True, "timeout": 3600}


def test_only_the_lab_servers_engine_is_privileged(server):
    containers = server["containers"]
    privileged = {name for name, c in containers.items() if c.get("securityContext", {}).get("privileged")}
    assert privileged == {"engine"}
    engine = containers["engine"]
    assert engine["image"] == "docker:28-dind"
    for name, c in containers.items():
        if name != "engine":
            ctx = c["securityContext"]
            assert ctx["runAsNonRoot"] is True and ctx["allowPrivilegeEscalation"] is False, name
            assert ctx["readOnlyRootFilesystem"] is True and ctx["capabilities"] == {"drop": ["ALL"]}, name
    spec = server["pod"]["spec"]
    assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
    assert spec["automountServiceAccountToken"] is False
    assert all(set(v) <= {"name", "emptyDir"} for v in spec["volumes"]), "emptyDir volumes only"
    # alone on a dedicated, tainted node pool
    (selector_key,) = spec["nodeSelector"]
    assert {(t["key"], t["value"], t["effect"]) for t in spec["tolerations"]} == \
        {(selector_key, spec["nodeSelector"][selector_key], "NoSchedule")}
    assert server["deployment"]["spec"]["replicas"] == 1


def test_the_engine_runs_with_start_dockerds_flags_on_a_socket_only(server):
    engine = server["containers"]["engine"]
    args = engine.get("command", []) + engine["args"]
    # dockerd first: given only flags, docker:dind's entrypoint adds an open tcp://0.0.0.0:2375
    assert args[0] == "dockerd" and not any("tcp://" in a for a in args)
    hosts = [a.split("=", 1)[1] for a in args if a.startswith(("--host=", "-H="))]
    assert len(hosts) == 1 and hosts[0].startswith("unix://")
    assert {a for a in args[1:] if not a.startswith(("--host=", "--group="))} == start_dockerd_flags()
    assert {"name": "DOCKER_TLS_CERTDIR", "value": ""} in engine["env"]
    assert engine["restartPolicy"] == "Always"  # a native sidecar: up before lab-image and server
    socket_dir = os.path.dirname(hosts[0].removeprefix("unix://"))
    mounts = {name: {m["mountPath"]: m["name"] for m in c["volumeMounts"]} for name, c in server["containers"].items()}
    volume = mounts["engine"][socket_dir]
    for name, c in server["containers"].items():
        if name != "engine":
            env = {e["name"]: e.get("value") for e in c["env"]}
            assert env["DOCKER_HOST"] == hosts[0], name
            assert mounts[name][socket_dir] == volume, name
            assert "/var/lib/docker" not in mounts[name], name
    # the pre-built lab image goes into the engine before the server starts
    names = [c["name"] for c in server["pod"]["spec"]["initContainers"]]
    assert names == ["engine", "lab-image"]
    assert server["containers"]["lab-image"]["command"][:2] == ["docker", "load"]


def test_the_lab_server_listens_where_the_service_and_policies_say(server):
    c = server["containers"]["server"]
    assert c["command"] == ["labkit", "serve"]
    options = serve_options(c["args"])
    assert options.get("--hub") is True and "--socket" not in options
    host, _, port = options["--listen"].rpartition(":")
    assert host == "0.0.0.0" and port.isdigit()
    (container_port,) = c["ports"]
    assert container_port["containerPort"] == int(port)
    (service_port,) = server["service"]["spec"]["ports"]
    assert service_port["port"] == int(port)
    assert service_port["targetPort"] in (int(port), container_port["name"])
    labels = server["pod"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == server["deployment"]["metadata"]["name"] == "labkit-server"
    assert server["service"]["spec"]["selector"].items() <= labels.items()
    assert server["deployment"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # the chart's NetworkPolicy for the hub admits only pods with this label
    assert labels["hub.jupyter.org/network-access-hub"] == "true"
    # the hub, and the service's own token from the chart's Secret
    env = {e["name"]: e for e in c["env"]}
    assert env["JUPYTERHUB_API_URL"]["value"] == "http://hub:8081/hub/api"
    (key,) = _values()["hub"]["services"]
    token = env["JUPYTERHUB_API_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token == {"name": "hub", "key": f"hub.services.{key}.apiToken"}  # the chart's Secret, its key
    # in: learners' servers and the hub, on the listening port only; out: the hub's API and DNS only
    policy = server["policy"]["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"protocol": "TCP", "port": int(port)}]
    assert sorted(f["podSelector"]["matchLabels"]["component"] for f in ingress["from"]) == ["hub", "singleuser-server"]
    assert all(set(f) == {"podSelector"} and len(f["podSelector"]["matchLabels"]) == 1 for f in ingress["from"])
    hub_rule, dns_rule = policy["egress"]
    assert hub_rule == {"to": [{"podSelector": {"matchLabels": {"component": "hub"}}}],
                        "ports": [{"protocol": "TCP", "port": 8081}]}
    assert sorted((p["protocol"], p["port"]) for p in dns_rule["ports"]) == [("TCP", 53), ("UDP", 53)]
    assert dns_rule["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}]


def test_classroom_dockerfile_copies_what_exists_and_installs_the_lab_extra():
    text = (CLASSROOM / "Dockerfile").read_text()
    sources = []
    for line in text.splitlines():
        if line.startswith("COPY "):
            words = [w for w in line.split()[1:] if not w.startswith("--")]
            sources += words[:-1]
    assert sorted(sources) == sorted(["pyproject.toml", "README.md", "labkit", "notebooks", "environments"])
    for src in sources:
        assert (REPO / src).exists(), src
    assert '"/tmp/labkit[lab]"' in text
