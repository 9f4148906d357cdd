"""``labkit serve``: the lab server process, from its command-line options to its threads.

Owns putting the parts together: the docker backend (labelled with the server's name, every
pod limited), the ``LabServer`` with its limits, the identity (peer credentials, or hub
tokens with ``--hub``), the transport (unix socket and/or TCP), the idle-lab reaper and the
hub watcher, and the clean-up at start (the orphans of an earlier run of this server) and at
stop (every lab it runs). SIGTERM and Ctrl-C stop it.
"""
from __future__ import annotations

import logging
import os
import re
import signal
import threading
from typing import Callable

from labkit.errors import ModelError
from labkit.runtime import registry
from labkit.runtime.base import PodLimits
from labkit.server.app import LabServer, Limits
from labkit.server.http import TCPHTTPServer, UnixHTTPServer
from labkit.server.hub import HubWatcher
from labkit.server.identity import HubIdentity, PeerIdentity

log = logging.getLogger("labkit.serve")
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}


def parse_size(text: str, flag: str) -> int:
    """``256M``, ``2G``, ``1048576``: bytes (K, M, G are powers of 1024)."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)i?B?\s*", text or "", re.IGNORECASE)
    if not m or int(m.group(1)) == 0:
        raise ModelError(f"{text!r} is not a size: write e.g. 256M or 2G", path=flag)
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


def parse_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ModelError(f"{text!r} is not HOST:PORT (e.g. 0.0.0.0:8765)", path="--listen")
    return host.strip("[]"), int(port)


def _size_or_none(text: str | None, flag: str) -> int | None:
    return None if text in (None, "", "0") else parse_size(text, flag)


def limits_from(args) -> Limits:
    return Limits(args.labs_per_owner, args.pods_per_lab, tuple(args.allow_image),
                  _size_or_none(args.memory_per_pod, "--memory-per-pod"), args.pids_per_pod or None,
                  _size_or_none(args.memory_per_learner, "--memory-per-learner"),
                  args.idle_lab_minutes * 60 if args.idle_lab_minutes else None, args.cpus_per_pod or None,
                  args.nodes_per_lab)


def _every(seconds: float, stop: threading.Event, job: Callable[[], object], name: str) -> threading.Thread:
    def run() -> None:
        while not stop.wait(seconds):
            try:
                job()
            except Exception:  # noqa: BLE001 - a background round that fails is logged, the server goes on
                log.exception("%s failed", name)
    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def serve(args, say: Callable[[str], None]) -> int:
    # every option is checked before anything is done
    if not args.socket and not args.listen:
        raise ModelError("give --socket PATH (one machine) and/or --listen HOST:PORT (a cluster)", path="--socket")
    if args.listen and not args.hub:
        raise ModelError("--listen (TCP) needs --hub: on TCP only a hub token says who is calling", path="--listen")
    listen = parse_listen(args.listen) if args.listen else None
    for flag, value, least in (("--idle-lab-minutes", args.idle_lab_minutes, 0), ("--hub-poll-seconds",
                               args.hub_poll_seconds, 1), ("--labs-per-owner", args.labs_per_owner, 1),
                               ("--pods-per-lab", args.pods_per_lab, 1), ("--pids-per-pod", args.pids_per_pod, 0),
                               ("--cpus-per-pod", args.cpus_per_pod, 0), ("--nodes-per-lab", args.nodes_per_lab, 1)):
        if value < least:
            raise ModelError(f"must be at least {least}", path=flag)
    limits = limits_from(args)
    identity = HubIdentity.from_environment(args.hub_service) if args.hub else PeerIdentity()
    backend = registry.create("docker", served_by=args.name,
                              pod_limits=PodLimits(limits.memory_per_pod, limits.pids_per_pod, limits.cpus_per_pod))
    backend.image()  # fail now, with the fix, rather than at the first learner's lab
    removed = backend.remove_served_labs()
    if removed:
        say(f"removed {removed} container(s) of labs an earlier run of lab server {args.name!r} left")
    app = LabServer(backend, limits)
    servers: list = []
    serving: list = []  # those whose serve_forever runs (only they may be shut down: it waits for it)
    watcher = None
    stop = threading.Event()
    try:  # whatever was made is undone, also when a socket cannot be bound
        if args.socket:
            servers.append(UnixHTTPServer(args.socket, app, identity))
        if listen:
            servers.append(TCPHTTPServer(listen, app, identity))
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        for server in servers:
            threading.Thread(target=server.serve_forever, name="labkit-serve", daemon=True).start()
            serving.append(server)
        if limits.idle_seconds:
            _every(min(60.0, limits.idle_seconds / 4), stop, app.reap_idle, "labkit-idle-reaper")
        if args.hub:
            watcher = HubWatcher(os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"], app.owners,
                                 app.remove_owner, args.hub_poll_seconds).start()
        where = " and ".join([f"unix://{args.socket}"] * bool(args.socket) + [f"http://{args.listen}"] * bool(listen))
        say(f"labkit serve {args.name!r}: labs for every {'hub user' if args.hub else 'Unix user'} on {where} "
            f"(engine {backend.capabilities().where}); Ctrl-C or SIGTERM stops it and removes its labs")
        stop.wait()
    finally:
        stop.set()
        if watcher is not None:
            watcher.stop()
        for server in serving:
            server.shutdown()
        for server in servers:
            server.server_close()
        app.close_all()
        backend.remove_served_labs()
        backend.close()
    return 0
