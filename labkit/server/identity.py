"""Who is calling the lab server: the owner name every lab of a request is looked up under.

Owns the two ways a caller is known, and how they combine:

* ``PeerIdentity``: on a unix socket, the kernel's peer credentials (``SO_PEERCRED``): the
  caller's Unix user name, which nobody can claim by writing it in a request.
* ``HubIdentity``: the learner's JupyterHub token (``Authorization: token ...``), checked
  against the hub with the ``jupyterhub`` package's own service-auth helper (``HubAuth``,
  cached for a minute, so a revoked token works up to a minute longer), which must carry the
  scope to access this service. Over a unix socket with Unix users (one machine), the hub
  user must also be the socket's peer: a token copied into another learner's process does
  not work there. Over TCP (a cluster) the token alone names the caller: serve TCP only
  where learners cannot read each other's environment.

An identity is ``identify(sock, headers) -> owner`` and raises ``Unauthorized`` (401) or
``Refused`` (403) with what to do.
"""
from __future__ import annotations

import os
import pwd
import socket
import struct
from typing import Any, Mapping

from labkit.errors import BackendUnavailable
from labkit.runtime.base import owner_for
from labkit.runtime.wire import Refused, Unauthorized


def peer_user(sock: socket.socket) -> str | None:
    """The Unix user name of the process at the other end of a unix socket (None: not a unix socket)."""
    if sock.family != socket.AF_UNIX:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", creds)
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid{uid}"


class PeerIdentity:
    """The socket's peer is the owner (one machine, one Unix user per learner, no hub)."""

    def __repr__(self) -> str:
        return "<PeerIdentity: the unix socket's peer credentials>"

    def __call__(self, sock: socket.socket, headers: Mapping[str, str]) -> str:
        user = peer_user(sock)
        if user is None:
            raise Unauthorized("this lab server knows callers only by their unix socket: connect to its socket")
        return owner_for(user)


def token_of(headers: Mapping[str, str]) -> str | None:
    value = (headers.get("Authorization") or "").strip()
    kind, _, token = value.partition(" ")
    if kind.lower() in ("token", "bearer") and token.strip():
        return token.strip()
    return None


class HubIdentity:
    """The learner's JupyterHub token names the owner (the hub user name).

    Args:
        api_url: the hub's API (``$JUPYTERHUB_API_URL``, e.g. ``http://127.0.0.1:8081/hub/api``).
        api_token: this service's own token (``$JUPYTERHUB_API_TOKEN`` of a hub-managed service).
        service: the service name learners' tokens must be allowed to access.
        peer_must_match: on a unix socket, the peer's Unix user must be the hub user.
        hub_auth: a ready ``HubAuth`` (tests, or a differently configured one); else made here.
    """

    def __init__(self, api_url: str, api_token: str, service: str = "labkit", *, peer_must_match: bool = True,
                 hub_auth: Any = None):
        if hub_auth is None:
            from jupyterhub.services.auth import HubAuth  # noqa: PLC0415 - only a server with a hub needs it
            hub_auth = HubAuth(api_url=api_url, api_token=api_token, cache_max_age=60,
                               access_scopes={f"access:services!service={service}"})
        self.hub_auth, self.service, self.peer_must_match = hub_auth, service, peer_must_match

    @classmethod
    def from_environment(cls, service: str | None = None, *, peer_must_match: bool = True) -> "HubIdentity":
        """As a hub-managed service (or a server given the hub's URL and its service token) sees it."""
        url, token = os.environ.get("JUPYTERHUB_API_URL", ""), os.environ.get("JUPYTERHUB_API_TOKEN", "")
        if not url or not token:
            raise Refused("--hub needs JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN (the hub sets both for a "
                          "service it manages; elsewhere give the hub's API URL and the service's api_token)")
        name = service or os.environ.get("JUPYTERHUB_SERVICE_NAME") or "labkit"
        return cls(url, token, name, peer_must_match=peer_must_match)

    def __repr__(self) -> str:
        return f"<HubIdentity {self.hub_auth.api_url} service={self.service}>"

    def __call__(self, sock: socket.socket, headers: Mapping[str, str]) -> str:
        token = token_of(headers)
        if token is None:
            raise Unauthorized("this lab server needs your JupyterHub token (Authorization: token ...): run labkit "
                               "inside your hub server, where JUPYTERHUB_API_TOKEN is set")
        try:
            user = self.hub_auth.user_for_token(token)
        except Exception as exc:  # noqa: BLE001 - HubAuth raises tornado's errors when the hub fails
            raise BackendUnavailable(f"the hub at {self.hub_auth.api_url} could not check your token ({exc}): "
                                     "try again in a moment") from exc
        if not user or user.get("kind", "user") != "user":
            raise Unauthorized("the hub does not know this token as a user's (expired, revoked, or a service's): "
                               "restart your server from the hub's control panel")
        if not self.hub_auth.check_scopes(self.hub_auth.access_scopes, user):
            raise Refused(f"your token may not use the lab server (it lacks access:services!service={self.service}): "
                          "ask the teacher to grant it to the hub's 'server' role")
        name = user["name"]
        peer = peer_user(sock)
        if self.peer_must_match and peer is not None and peer != name:
            raise Refused(f"this token is {name}'s but the connection comes from Unix user {peer}: each learner "
                          "uses their own token")
        return owner_for(name)
