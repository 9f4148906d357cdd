"""The one-machine classroom, as a teacher brings it up and learners use it: a real JupyterHub
with configurable-http-proxy (npm) and jupyterhub-idle-culler, throw-away Unix learners, the
lab server as a hub service, and real Chromium through Playwright.

``environments/classroom/hub/up`` does the set-up (a Python environment in a temporary
prefix, the proxy from npm, the learners with passwords) and runs the hub on free ports of
127.0.0.1. Learners log in through the browser and run notebook 04 on real packets through
the lab server; then isolation is checked with each learner's own hub token (read from their
running server's environment, as their kernels get it), limits, and clean-up: a server
stopped from the hub's home page, a server culled for idleness, a lab server killed and
restarted by the hub, the hub stopped. The learners, the environment and the hub go again;
the host's routes, firewall and sysctls are compared before and after.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

import labkit
from labkit.errors import LabkitError
from tests.integration import learners
from tests.integration.helpers import REPO, host_state, pod_doc, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.ui]
UP = REPO / "environments" / "classroom" / "hub" / "up"
NOTEBOOK = "04-network-policies-1.ipynb"
CHROMIUM = os.environ.get("LABKIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
GROUP = "labkit-learners"
SERVE_FLAGS = "--hub-poll-seconds 2 --labs-per-owner 2 --pods-per-lab 6 --memory-per-pod 128M --pids-per-pod 64"


def _missing() -> str | None:
    if not hasattr(os, "fork") or os.geteuid() != 0 or not Path("/usr/sbin/useradd").exists():
        return "needs root on Linux: the classroom creates Unix learners and runs the hub as root"
    try:
        import playwright.sync_api  # noqa: F401, PLC0415
    except ImportError as exc:
        return f"playwright is not installed ({exc})"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no chromium at {CHROMIUM} (apt-get install chromium)"
    return None


if _missing():
    pytestmark.append(pytest.mark.skip(reason=_missing()))


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def owned_containers(owner: str) -> list[str]:
    out = subprocess.run(["docker", "ps", "-a", "--filter", f"label=io.labkit.owner={owner}", "--format",
                          "{{.Names}}"], capture_output=True, text=True, check=True).stdout
    return out.split()


class Hub:
    """The hub ``up`` runs, on free ports; ``start``/``stop`` by the PID this test started."""

    def __init__(self, prefix: str, state: str, socket_path: str, names: list[str]):
        self.prefix, self.state, self.socket, self.names = prefix, state, socket_path, names
        self.port, hub_port, proxy_port = _free_ports(3)
        self.ports = f"{hub_port},{proxy_port}"
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = Path(state).parent / f"{Path(state).name}.log"

    def start(self, cull_timeout: int = 3600, timeout: float = 900) -> None:
        args = [str(UP), "--prefix", self.prefix, "--state", self.state, "--bind", self.base, "--ports", self.ports,
                "--socket", self.socket, "--learners", ",".join(self.names), "--serve-flags", SERVE_FLAGS,
                "--cull-timeout", str(cull_timeout)]
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        ok = wait_until(lambda: self.proc.poll() is not None or (self._answers() and os.path.exists(self.socket)
                                                                  and self.lab_server_pid() is not None), timeout, 1)
        assert ok and self.proc.poll() is None, f"the hub did not come up: {self.tail()}"

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}/hub/api/", timeout=5) as r:  # noqa: S310 - 127.0.0.1
                return r.status == 200
        except OSError:
            return False

    def tail(self, n: int = 60) -> str:
        lines = [line for line in self.log.read_text(errors="replace").splitlines()
                 if not line.startswith("WARNING: Location")]
        return "\n".join(lines[-n:])

    def children(self) -> dict[int, str]:
        """The processes under the hub this test started: PID -> command line."""
        out, todo = {}, [self.proc.pid]
        while todo:
            pid = todo.pop()
            for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split() if Path(
                    f"/proc/{pid}").exists() else []:
                try:
                    out[int(child)] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    continue
                todo.append(int(child))
        return out

    def lab_server_pid(self) -> int | None:
        return next((pid for pid, cmd in self.children().items() if " serve --socket " in cmd), None)

    def token(self, user: str) -> str:
        """The hub token of ``user``'s running server (what their kernels send to the lab server)."""
        for pid, cmd in self.children().items():
            if "jupyterhub-singleuser" in cmd and os.stat(f"/proc/{pid}").st_uid == learners.uid(user):
                env = dict(e.split("=", 1) for e in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in e)
                if env.get("JUPYTERHUB_API_TOKEN"):
                    return env["JUPYTERHUB_API_TOKEN"]
        raise AssertionError(f"{user} has no running server with a hub token")

    def as_learner(self, user: str, job, token: str | None = None) -> dict:
        env = {"LABKIT_SERVER": f"unix://{self.socket}"}
        env["JUPYTERHUB_API_TOKEN"] = token if token is not None else self.token(user)
        return learners.as_user(user, job, env)

    def run(self, user: str, job, token: str | None = None):
        """What ``job`` returned as ``user`` with their hub token; fails with what went wrong."""
        answer = self.as_learner(user, job, token)
        assert "value" in answer, f"as {user}: {answer}"
        return answer["value"]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=180)


@pytest.fixture(scope="module")
def classroom():
    before = host_state()
    names = [f"lkh{os.getpid() % 10000}{who}" for who in "abc"]
    had_group = subprocess.run(["getent", "group", GROUP], capture_output=True).returncode == 0
    kept_prefix = os.environ.get("LABKIT_TEST_HUB_PREFIX")  # a developer's cache of the hub's environment
    prefix = kept_prefix or tempfile.mkdtemp(prefix="labkit-hub-env-")
    work = tempfile.mkdtemp(prefix="labkit-hub-")
    os.chmod(prefix, 0o755)
    os.chmod(work, 0o755)  # the lab server's socket is in here: learners must reach it
    hub = Hub(prefix, os.path.join(work, "state"), os.path.join(work, "run", "server.sock"), names)
    try:
        hub.start()
        hub.passwords = dict(line.split() for line in Path(hub.state, "learners.txt").read_text().splitlines())
        assert sorted(hub.passwords) == sorted(names)
        yield hub
    finally:
        hub.stop()
        left = {n: owned_containers(n) for n in names}
        users_left = [name for name in names if not learners.remove_user(name)]
        if not had_group:
            subprocess.run(["groupdel", GROUP], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
        if not kept_prefix:
            shutil.rmtree(prefix, ignore_errors=True)
    assert left == {n: [] for n in names}, f"labs left after the hub stopped: {left}"
    assert not users_left, f"learners who could not be removed: {users_left}"
    after = host_state()
    assert after == before, {k: (before.get(k), after.get(k)) for k in before if before.get(k) != after.get(k)}


@pytest.fixture(scope="module")
def browser(classroom):
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    args = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--no-first-run",
            "--disable-sync", "--disable-default-apps", "--disable-dev-shm-usage"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        yield browser
        browser.close()


def log_in(browser, hub: Hub, user: str):
    """A learner's own browser context, logged in through the hub's form; their server started."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    # nothing leaves the machine: any request for another host is aborted
    context.route(lambda url: not url.startswith(("http://127.0.0.1", "data:", "blob:")), lambda r: r.abort())
    page = context.new_page()
    page.goto(f"{hub.base}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", hub.passwords[user])
    page.click("#login_submit")
    page.wait_for_url(re.compile(rf"/user/{user}/lab"), timeout=180_000)
    return page


def notebook_status(page) -> str | None:
    return page.locator(".jp-Notebook-ExecutionIndicator").first.get_attribute("data-status")


ARTIFACTS = REPO / "tests" / "ui" / "artifacts"


@pytest.fixture
def screenshots(request):
    """Pages to photograph (tests/ui/artifacts) when the test fails."""
    pages: dict[str, object] = {}
    yield pages
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        for name, page in pages.items():
            try:
                page.screenshot(path=str(ARTIFACTS / f"hub-{request.node.name}-{name}.png"), full_page=True)
            except Exception as exc:  # noqa: BLE001 - a closed page has no picture; say so beside the others
                (ARTIFACTS / f"hub-{request.node.name}-{name}.txt").write_text(f"no screenshot: {exc}\n")


def test_three_learners_run_notebook_04_through_the_browser_on_real_packets(classroom, browser, screenshots):
    from playwright.sync_api import expect  # noqa: PLC0415

    pages = {user: log_in(browser, classroom, user) for user in classroom.names}
    screenshots.update(pages)
    for user, page in pages.items():
        page.goto(f"{classroom.base}/user/{user}/lab/tree/{NOTEBOOK}")
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator", timeout=120_000)
        assert wait_until(lambda: notebook_status(page) == "idle", 120, 0.5), f"{user}'s kernel did not start"
    for page in pages.values():  # all three at once
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    seen: dict[str, int] = {}

    def finished() -> bool:
        for user in classroom.names:  # each learner's pods run on the server's engine, as that learner
            seen[user] = max(seen.get(user, 0), len(owned_containers(user)))
        return all(notebook_status(p) == "idle" for p in pages.values())

    time.sleep(3)
    assert wait_until(finished, 600, 1), "the notebooks did not finish within 10 minutes"
    code_cells = sum(c["cell_type"] == "code" for c in json.loads((REPO / "notebooks" / NOTEBOOK).read_text())["cells"])
    for user, page in pages.items():
        # Run All stops at the first error: the last cell ran only if every cell before it did
        expect(page.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt").last).to_have_text(
            f"[{code_cells}]:", timeout=30_000)
        page.locator(".jp-Notebook .jp-WindowedPanel-outer").first.evaluate("e => e.scrollTop = 0")
        expect(page.locator(".jp-Notebook .jp-OutputArea-output").first).to_contain_text(
            "on remote", timeout=30_000)  # the first cell's Lab: on the lab server, real packets
        page.context.close()
    assert all(n > 10 for n in seen.values()), f"containers per learner while they ran: {seen}"
    assert all(owned_containers(u) == [] for u in classroom.names)  # the notebook's last cell closed its lab


PRIVILEGED = [
    ("spec.containers[0].securityContext.privileged", {"securityContext": {"privileged": True}}, {}),
    ("spec.hostNetwork", {}, {"hostNetwork": True}),
    ("spec.hostPID", {}, {"hostPID": True}),
    ("spec.volumes", {}, {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}),
    ("spec.containers[0].image", {"image": "alpine:3"}, {}),
]


def _hostile(extra_container: dict, extra_spec: dict) -> dict:
    doc = pod_doc("hostile", containers=[{"name": "app", **extra_container}])
    doc["spec"].update(extra_spec)
    return doc


def test_learners_are_isolated_from_each_other_the_hub_and_the_machine(classroom, browser):
    a, b, c = classroom.names
    for user in (a, b):
        log_in(browser, classroom, user).context.close()
    token_a, token_b = classroom.token(a), classroom.token(b)

    def a_builds():
        lab = labkit.Lab("secret-a")
        lab.apply([pod_doc("web-a")])
        out = {"ip": lab.pod_ip("default/web-a"), "caps": lab.capabilities.to_dict()}
        lab.detach()
        return out

    made = classroom.run(a, a_builds, token_a)
    assert made["caps"]["real_packets"] and "lab server" in made["caps"]["where"]

    def b_tries():
        remote = labkit.runtime.registry.create("remote")
        out = {"seen": [i.name for i in remote.list_labs()]}
        for name, call in (("attach", lambda: labkit.Lab.attach("secret-a", [])),
                           ("remove", lambda: remote.remove_lab("secret-a", a)),
                           ("exec", lambda: remote.client.call("POST", "/v1/labs/secret-a/exec",
                                                               {"pod": "default/web-a", "argv": ["id"]})),
                           ("close", lambda: remote.client.call("DELETE", "/v1/labs/secret-a"))):
            try:
                out[name] = repr(call())
            except LabkitError as exc:
                out[name] = f"{type(exc).__name__}: {exc}"
        lab = labkit.Lab("mine-b")
        lab.apply([pod_doc("web-b")])
        # B's pod dials the address A's pod has: it reaches B's own lab, never A's
        dialled = lab.exec("web-b", ["python3", "-c", (
            "import socket,sys\ns=socket.create_connection((sys.argv[1], 80), 3)\n"
            "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n'); print(s.recv(4096).decode(errors='replace'))"), made["ip"]])
        out["dialled"] = [dialled.exit_code, dialled.output]
        out["own_ip"] = lab.pod_ip("default/web-b")
        lab.close()
        return out

    tried = classroom.run(b, b_tries, token_b)
    assert tried["seen"] == []
    for name in ("attach", "exec", "close"):
        assert tried[name].startswith("NotFound") and f"of {b}" in tried[name], (name, tried[name])
    assert tried["remove"] == "0"
    assert owned_containers(a), "B's tries changed A's lab"
    # the same address in both labs: B's own pod answered, never A's
    assert tried["own_ip"] == made["ip"] and "default/web-b" in tried["dialled"][1], tried["dialled"]
    assert "web-a" not in tried["dialled"][1]

    # a token names one learner, and only from that learner's own Unix user; no token, no call
    stolen = classroom.as_learner(b, lambda: [i.name for i in labkit.runtime.registry.create("remote").list_labs()],
                                  token_a)
    assert stolen.get("error") == "Refused" and f"this token is {a}'s" in stolen["message"], stolen
    anonymous = learners.as_user(c, lambda: labkit.runtime.registry.create("remote").list_labs(),
                                 {"LABKIT_SERVER": f"unix://{classroom.socket}", "JUPYTERHUB_API_TOKEN": ""})
    assert anonymous.get("error") == "Unauthorized", anonymous

    # The hub and its proxy listen on 127.0.0.1 (a pod's 127.0.0.1 is its own); a listener on
    # every address of the machine stands for whatever a teacher may open to the network.
    listener = socket.create_server(("0.0.0.0", 0))
    hub_ports = [classroom.port, *map(int, classroom.ports.split(",")), listener.getsockname()[1]]
    host_addresses = sorted({a.split("/")[0] for a in re.findall(r"inet (\S+)", subprocess.run(
        ["ip", "-o", "-4", "addr"], capture_output=True, text=True, check=True).stdout)} - {"127.0.0.1"})
    for address in host_addresses:  # the machine itself reaches it on each of them
        socket.create_connection((address, hub_ports[-1]), 2).close()

    def a_from_inside():
        lab = labkit.Lab.attach("secret-a", [])
        reach = {}
        for address in host_addresses:  # the hub, the proxy and its API listen on the machine
            for port in hub_ports:
                r = lab.exec("web-a", ["python3", "-c", "import socket,sys\ntry:\n socket.create_connection("
                                     "(sys.argv[1], int(sys.argv[2])), 2); print('connected')\nexcept OSError as e:"
                                     "\n print(e)", address, str(port)])
                reach[f"{address}:{port}"] = r.output.strip()
        engine = lab.exec("web-a", ["sh", "-c", "ls -l /var/run/docker.sock /run/docker.sock 2>&1; true"]).output
        refused = {}
        for path, container, spec in PRIVILEGED:
            try:
                lab.apply([_hostile(container, spec)])
                refused[path] = "applied"
            except LabkitError as exc:
                refused[path] = str(exc)
        try:
            labkit.Lab("third").detach()  # secret-a and this make 2, the most; a third is one too many
            labkit.Lab("fourth").detach()
            too_many_labs = "started"
        except LabkitError as exc:
            too_many_labs = f"{type(exc).__name__}: {exc}"
        try:
            lab.apply([pod_doc(f"p{i}") for i in range(6)])
            too_many_pods = "applied"
        except LabkitError as exc:
            too_many_pods = f"{type(exc).__name__}: {exc}"
        try:
            socket.socket(socket.AF_UNIX).connect("/var/run/docker.sock")
            notebook_engine = "connected"
        except OSError as exc:
            notebook_engine = exc.strerror
        out = {"reach": reach, "engine": engine, "refused": refused, "labs": too_many_labs, "pods": too_many_pods,
               "notebook_engine": notebook_engine, "left": lab.pods}
        labkit.runtime.registry.create("remote").remove_labs(a)
        return out

    try:
        inside = classroom.run(a, a_from_inside, token_a)
    finally:
        listener.close()
    assert host_addresses and all(v != "connected" for v in inside["reach"].values()), inside["reach"]
    assert "No such file" in inside["engine"], inside["engine"]
    for path, _, _ in PRIVILEGED:
        assert path in inside["refused"][path], (path, inside["refused"][path])
    assert inside["labs"].startswith("Refused") and "close one first" in inside["labs"], inside["labs"]
    assert inside["pods"].startswith("Refused") and "allows 6" in inside["pods"], inside["pods"]
    assert inside["notebook_engine"] == "Permission denied", inside["notebook_engine"]
    assert inside["left"] == ["default/web-a"]  # every refused change changed nothing
    assert wait_until(lambda: owned_containers(a) == [], 60)


def test_a_lab_server_on_tcp_knows_learners_by_their_hub_token(classroom, browser):
    """As in a cluster: ``labkit serve --listen HOST:PORT --hub`` beside the hub, with the labkit
    service's own token (read from the running service's environment, as the hub gave it)."""
    a, b, _ = classroom.names
    service = classroom.lab_server_pid()
    env = dict(e.split("=", 1) for e in Path(f"/proc/{service}/environ").read_text().split("\0") if "=" in e)
    port = _free_ports(1)[0]
    hub_env = {k: env[k] for k in ("JUPYTERHUB_API_URL", "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_SERVICE_NAME")}
    proc = subprocess.Popen([f"{classroom.prefix}/bin/labkit", "serve", "--listen", f"127.0.0.1:{port}", "--hub",
                             "--name", f"tcp-{os.getpid()}", "--hub-poll-seconds", "2"],
                            env={"PATH": os.environ["PATH"], **hub_env}, stderr=subprocess.PIPE, text=True)
    try:
        with socket.socket() as probe_socket:
            assert wait_until(lambda: proc.poll() is None and probe_socket.connect_ex(("127.0.0.1", port)) == 0, 60)
        log_in(browser, classroom, a).context.close()
        address = {"LABKIT_SERVER": f"http://127.0.0.1:{port}"}

        def over_tcp():
            lab = labkit.Lab("tcp")
            lab.apply([pod_doc("x"), pod_doc("y")])
            labs = labkit.runtime.registry.create("remote").list_labs()
            out = {"ok": lab.probe("x", "default/y").ok, "owner": [i.owner for i in labs]}
            lab.close()
            return out

        got = learners.as_user(a, over_tcp, {**address, "JUPYTERHUB_API_TOKEN": classroom.token(a)})
        assert got.get("value") == {"ok": True, "owner": [a]}, got
        nobody = learners.as_user(b, lambda: labkit.runtime.registry.create("remote").list_labs(),
                                  {**address, "JUPYTERHUB_API_TOKEN": "not-a-token"})
        assert nobody.get("error") == "Unauthorized", nobody
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    assert owned_containers(a) == []


def test_stopped_culled_and_crashed_servers_leave_no_container(classroom, browser):
    a, b, c = classroom.names

    def one_lab():
        labkit.Lab("kept").detach()
        return True

    # A stops their server from the hub's home page: their labs go
    page = log_in(browser, classroom, a)
    classroom.run(a, one_lab)
    assert owned_containers(a)
    page.goto(f"{classroom.base}/hub/home")
    page.click("#stop")
    assert wait_until(lambda: owned_containers(a) == [], 90), f"A's labs outlived A's server: {classroom.tail()}"
    page.context.close()

    # the lab server is killed (no clean-up of its own); the hub restarts it, and it removes B's orphans
    log_in(browser, classroom, b).context.close()
    classroom.run(b, one_lab)
    assert owned_containers(b)
    killed = classroom.lab_server_pid()
    os.kill(killed, signal.SIGKILL)
    assert wait_until(lambda: classroom.lab_server_pid() not in (None, killed), 120, 1), classroom.tail()
    assert wait_until(lambda: owned_containers(b) == [], 60), owned_containers(b)

    # the hub stops (with it the lab server): nothing of anyone is left; then it runs again with a
    # short idle time, and C's idle server is culled: C's labs go with it
    log_in(browser, classroom, a).context.close()
    classroom.run(a, one_lab)
    classroom.stop()
    assert owned_containers(a) == []
    classroom.start(cull_timeout=30)
    page = log_in(browser, classroom, c)
    page.context.close()  # no more activity from C
    classroom.run(c, one_lab)
    assert owned_containers(c)
    assert wait_until(lambda: owned_containers(c) == [], 180, 2), f"C's labs outlived the cull: {classroom.tail()}"
    assert "Culling server" in classroom.tail(400) or "culling" in classroom.tail(400).lower()
