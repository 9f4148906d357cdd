"""JupyterHub for a classroom on one machine, with labkit's lab server as a hub-managed service.

Learners are local Unix users in one group (PAM log-in, one LocalProcessSpawner server each,
running as that user). Their kernels reach labs only through the lab server (``labkit serve
--hub``), which alone holds the Docker engine's socket: it knows a learner by their hub
token, and by the socket's peer credentials, which must be the same user. Idle servers are
culled by jupyterhub-idle-culler; when a learner's server stops (by hand, culled, or dead),
the lab server removes their labs.

`up` (beside this file) sets the environment this file reads; every value has a default:
  LABKIT_HUB_PREFIX   the Python environment with labkit, JupyterLab, JupyterHub (bin/...)
  LABKIT_HUB_STATE    where the hub keeps its database and cookie secret
  LABKIT_HUB_BIND     the address learners open (http://0.0.0.0:8000)
  LABKIT_HUB_PORTS    the hub's and the proxy's own API ports on 127.0.0.1 (8081,8001)
  LABKIT_HUB_GROUP    the Unix group whose members may log in (labkit-learners)
  LABKIT_HUB_ADMINS   hub admins (teachers), comma-separated Unix user names
  LABKIT_CHP          configurable-http-proxy's executable
  LABKIT_SERVER_SOCKET the lab server's unix socket (/run/labkit/server.sock)
  LABKIT_SERVE_FLAGS  more flags for `labkit serve` (limits; see `labkit serve --help`)
  LABKIT_CULL_TIMEOUT seconds of inactivity before a learner's server is stopped (3600)
"""
import os
import shlex
import sys

c = get_config()  # noqa: F821 - JupyterHub's config loader defines it

env = os.environ.get
prefix = env("LABKIT_HUB_PREFIX", sys.prefix)
state = env("LABKIT_HUB_STATE", "/var/lib/labkit-hub")
socket_path = env("LABKIT_SERVER_SOCKET", "/run/labkit/server.sock")
hub_port, proxy_port = (int(p) for p in env("LABKIT_HUB_PORTS", "8081,8001").split(","))
cull_timeout = int(env("LABKIT_CULL_TIMEOUT", "3600"))
os.makedirs(state, mode=0o700, exist_ok=True)

# ---------------------------------------------------------------- the hub and its proxy
c.JupyterHub.bind_url = env("LABKIT_HUB_BIND", "http://0.0.0.0:8000")
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{proxy_port}"
c.ConfigurableHTTPProxy.command = [env("LABKIT_CHP", "configurable-http-proxy")]
c.JupyterHub.db_url = f"sqlite:///{state}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = f"{state}/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = f"{state}/jupyterhub.pid"
c.JupyterHub.cleanup_servers = True  # a hub that stops stops learners' servers (and their labs go)

# ---------------------------------------------------------------- learners
c.JupyterHub.authenticator_class = "pam"
c.PAMAuthenticator.allowed_groups = {env("LABKIT_HUB_GROUP", "labkit-learners")}
c.Authenticator.admin_users = set(filter(None, env("LABKIT_HUB_ADMINS", "").split(",")))  # teachers
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~/labkit-notebooks"
c.Spawner.http_timeout = 120
# Each server first copies the course notebooks into the learner's home (never overwriting
# their edits), then starts; kernels find the lab server through LABKIT_SERVER and send the
# hub token (JUPYTERHUB_API_TOKEN) the hub gives every server.
c.Spawner.cmd = ["sh", "-c", f'{shlex.quote(prefix)}/bin/labkit notebooks "$HOME/labkit-notebooks" >/dev/null; '
                 f'exec {shlex.quote(prefix)}/bin/jupyterhub-singleuser "$@"', "jupyterhub-singleuser"]
c.Spawner.environment = {"LABKIT_SERVER": f"unix://{socket_path}", "LABKIT_BACKEND": "auto"}

# ---------------------------------------------------------------- services
c.JupyterHub.services = [
    {"name": "labkit",
     "command": [f"{prefix}/bin/labkit", "serve", "--socket", socket_path, "--hub",
                 *shlex.split(env("LABKIT_SERVE_FLAGS", ""))],
     "environment": {k: v for k, v in os.environ.items() if k in ("PATH", "DOCKER_HOST", "LABKIT_IMAGE")}},
    {"name": "idle-culler",
     "command": [f"{prefix}/bin/python", "-m", "jupyterhub_idle_culler", f"--timeout={cull_timeout}",
                 f"--cull-every={max(10, min(300, cull_timeout // 4))}"]},
]
c.JupyterHub.load_roles = [
    # the lab server asks which learners' servers run (their labs go when they stop)
    {"name": "labkit-server", "scopes": ["list:users", "read:servers"], "services": ["labkit"]},
    {"name": "idle-culler", "services": ["idle-culler"],
     "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"]},
    # a learner may call the lab server, and so may the token their server gets (a token never
    # holds more than its owner)
    {"name": "user", "scopes": ["self", "access:services!service=labkit"]},
    {"name": "server", "scopes": ["users:activity!user", "access:servers!server", "access:services!service=labkit"]},
]
