"""The docker backend: one Docker engine, on which labs run as containers with real kernel rules.

Owns what is engine-wide (the kind-style provider side of the contract): the engine
connection (passed in, or found the way docker-py finds it), the lab image, the list of
labs with their owner and age, removing one lab or every lab of an owner (or, for an
admin, every lab), capabilities, and starting or attaching the ``DockerLab`` of one lab.
"""
from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from labkit.errors import BackendError, NotFound
from labkit.model.addressing import MAX_NODES
from labkit.runtime.base import Backend, Capabilities, LabInfo, PodLimits, StepHook, check_owner, replay
from labkit.runtime import neighbours
from labkit.runtime.docker import engine, image
from labkit.runtime.docker import labels as lk
from labkit.runtime.docker.dockerlab import DockerLab

PROTOCOLS = ("TCP", "UDP")


class DockerBackend(Backend):
    """Labs on one Docker engine.

    Args:
        client: a docker-py client to use (its owner closes it); default: connect to
            ``base_url``, else the way docker-py does (``DOCKER_HOST`` or the default socket),
            waiting up to ``timeout`` seconds for an answer; that client ``close()`` closes.
        step_hook: for tests of the all-or-nothing promise: called with each step's name
            (``dockerlab.STEPS``) before the step runs during a change; raising there is a
            failure at that step.
        served_by: the name of the lab server this backend works for: every container it
            makes is labelled with it, so that server, restarted, finds its orphans
            (``remove_served_labs``); it lists, attaches and removes only labs so labelled
            (other labs on the same engine are not the server's to touch).
        pod_limits: memory, PIDs and CPU the engine allows each pod (a lab server's limits).
    """

    name = "docker"
    simulated = False

    def __init__(self, client=None, *, base_url: str | None = None, timeout: float = 30.0,
                 step_hook: StepHook | None = None, served_by: str | None = None,
                 pod_limits: PodLimits | None = None):
        self._own_client = client is None
        self.served_by, self.pod_limits = served_by, pod_limits
        self.client = client if client is not None else engine.connect(timeout, base_url)
        self.step_hook = step_hook
        self.session = lk.SESSION_ID  # what this process's containers carry in io.labkit.session
        self.local = engine.is_local(self.client)  # the engine (and its kernel, its processes) is this machine's
        self._sctp: bool | None = None

    def __repr__(self) -> str:
        return f"<DockerBackend {engine.where(self.client)}>"

    # ------------------------------------------------------------ what it can do
    def image(self) -> str:
        """The lab image's tag; raises BackendUnavailable (with the command that fixes it) when missing or stale."""
        return image.check(self.client)

    @staticmethod
    def image_tag() -> str:
        return image.tag()

    @staticmethod
    def can_build_offline() -> bool:
        return image.can_build_offline()

    def build_image(self, offline: bool, base: str | None = None) -> str:
        """Build the lab image (offline: debootstrap + import; else the Dockerfile); returns the log."""
        return image.build(offline=offline, client=self.client, base=base)

    def capabilities(self) -> Capabilities:
        if self._sctp is None:  # one throw-away container of the lab image asks the kernel once
            code, output = engine.run_once(self.client, self.image(), ["python3", "-c", (
                "import socket\ntry:\n socket.socket(socket.AF_INET, socket.SOCK_STREAM, 132).close(); print('yes')\n"
                "except OSError:\n print('no')")], timeout=60)
            if code != 0:
                raise BackendError(f"could not ask the engine's kernel about SCTP (exit {code}): {output[-300:]}")
            self._sctp = output.strip().endswith("yes")
        protocols = PROTOCOLS + (("SCTP",) if self._sctp else ())
        return Capabilities("docker", True, self._sctp, MAX_NODES, protocols, engine.where(self.client))

    def neighbour_table(self) -> neighbours.NeighbourTable | None:
        """The machine's one neighbour (ARP) table: limit, entries in use, overflows (None: engine elsewhere)."""
        return neighbours.read(engine.is_local(self.client))

    # ------------------------------------------------------------ labs on the engine
    def list_labs(self, owner: str | None = None) -> list[LabInfo]:
        groups: dict[tuple[str, str], list] = defaultdict(list)
        for c in engine.labelled(self.client, owner=owner, server=self.served_by):
            lab = c.labels.get(lk.LAB, "")
            if lab:  # throw-away check containers carry an empty lab label
                groups[(lab, c.labels.get(lk.OWNER, ""))].append(c)
        out = []
        for (lab, who), found in groups.items():
            roles = [c.labels.get(lk.ROLE) for c in found]
            pods = {c.labels.get(lk.POD) for c in found if c.labels.get(lk.ROLE) == "pause"}
            out.append(LabInfo(lab, who, self.name, min(engine.created(c) for c in found), roles.count("node"),
                               len([p for p in pods if p and not p.startswith("kube-system/")]),
                               tuple(sorted({c.labels.get(lk.SESSION, "") for c in found}))))
        return sorted(out, key=lambda info: (info.created, info.owner, info.name))

    def remove_lab(self, name: str, owner: str) -> int:
        check_owner(owner)
        return engine.remove(self.client, engine.labelled(self.client, name, owner, server=self.served_by))

    def remove_every_lab(self) -> int:
        return engine.remove(self.client, engine.labelled(self.client))

    def remove_served_labs(self) -> int:
        """Remove every lab a lab server of this ``served_by`` name made (its orphans after a restart)."""
        if not self.served_by:
            raise BackendError("remove_served_labs needs a backend made with served_by=<the lab server's name>")
        return engine.remove(self.client, engine.labelled(self.client, server=self.served_by))

    # ------------------------------------------------------------ one lab
    def start(self, name: str, nodes: int, owner: str, *, seed: int = 0) -> DockerLab:
        check_owner(owner)
        lab_image = self.image()
        if engine.labelled(self.client, name, owner):  # refused before anything is made
            raise BackendError(f"a lab named {name!r} of {owner} already runs on this engine: close it, or remove "
                               f"it with `labkit down --lab {name}`")
        runtime = DockerLab(self.client, lab_image, name, owner, replay(nodes, []), self.step_hook,
                            self.served_by, self.pod_limits)
        try:
            runtime.boot()
        except BaseException:
            # Only what this process made goes: if another process claimed the same name at
            # the same instant, its lab is not ours to remove. Twice: a request that Ctrl-C cut
            # off may still be completed by the engine a moment later.
            for pause in (0.0, 0.5):
                time.sleep(pause)
                engine.remove(self.client, engine.labelled(self.client, name, owner, lk.SESSION_ID))
            raise
        return runtime

    def attach(self, name: str, nodes: int, history: list[dict[str, Any]], owner: str) -> DockerLab:
        check_owner(owner)
        found = engine.labelled(self.client, name, owner, server=self.served_by)
        if not found:  # another owner's lab of the same name is not found either
            raise NotFound(f"no lab named {name!r} of {owner} runs on this engine")
        running = sum(1 for c in found if c.labels.get(lk.ROLE) == "node") or nodes  # what runs decides
        runtime = DockerLab(self.client, self.image(), name, owner, replay(running, history), self.step_hook,
                            self.served_by, self.pod_limits)
        runtime.history = list(history)
        runtime.adopt(found)
        return runtime

    def close(self) -> None:
        if self._own_client:
            self.client.close()
