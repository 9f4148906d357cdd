"""tcpdump in a pod's network namespace, a node or the internet host, run by the node agent's ``capture``.

Owns the host side of one capture on the docker backend: which container runs it (a pod's
capture runs in its node's container, entering the pod's namespace on ``eth0``; a node's and
the internet host's in their own containers on ``-i any``), the line protocol with the agent
over one streaming ``docker exec`` (``engine.ExecStream``, see ``labkit.node.capture``), and
a reader thread that collects the pcap records until the agent says why it ended. A filter
tcpdump rejects is a ``ModelError`` on ``filter`` with tcpdump's own words; nothing keeps
running then (the agent kills tcpdump's process group on every way out, and ends at EOF).
"""
from __future__ import annotations

import base64
import contextlib
import json
import threading
from typing import Any

from labkit.errors import BackendError, ModelError
from labkit.runtime import capturing
from labkit.runtime.docker import engine

READY_TIMEOUT = 20.0  # compiling the filter and starting tcpdump
STOP_TIMEOUT = 5.0    # the agent drains tcpdump for at most 2 s after "stop"
FILTER_HELP = ('see "man pcap-filter"; e.g. "tcp port 80", "udp port 53", "host 10.244.1.3", '
               '"icmp or arp"')


def start(lab, target: str, spec: dict[str, Any]) -> "DockerCapture":
    """A capture on ``target`` (a pod ref, ``node-N`` or ``internet``) of the DockerLab ``lab``, listening."""
    spec = capturing.check_spec(**spec)
    kind, what = capturing.resolve_target(lab.cluster, target)
    if kind == "pod":
        handle = lab.pods.get(what)
        if handle is None:
            raise BackendError(f"pod {what} of lab {lab.name!r} is being replaced or removed right now: try again")
        where, place, netns, iface, name = (handle.node.id, f"pod {what} ({handle.node.what})", handle.netns,
                                            "eth0", what)
    elif kind == "node":
        node = lab.nodes[what - 1]
        where, place, netns, iface, name = node.id, node.what, None, "any", node.name
    else:
        where, place, netns, iface, name = lab.internet.id, f"the internet host of lab {lab.name!r}", None, "any", \
            capturing.INTERNET
    return DockerCapture(lab.client, where, place, name, {"netns": netns, "iface": iface, **spec})


class DockerCapture(capturing.CaptureHandle):
    simulated = False

    def __init__(self, client, container_id: str, place: str, target: str, request: dict[str, Any]):
        super().__init__(target, {k: request[k] for k in ("filter", "seconds", "count", "max_bytes")})
        self.place = place
        self._closing = False
        self._stream = engine.ExecStream(client, container_id, engine.NODE_AGENT + ["capture"],
                                         f"the capture in {place}")
        try:
            self._stream.send_line(json.dumps(request))
            line = self._stream.read_line(READY_TIMEOUT)
            answer = json.loads(line) if line is not None else {"error": "the capture helper ended at once"}
            if not answer.get("ready"):
                raise self._refusal(answer)
        except BaseException:  # a refusal, a timeout or Ctrl-C: the agent sees EOF and kills tcpdump
            self._stream.close()
            raise
        self.started = float(answer.get("started") or self.started)
        self.interfaces = {int(k): str(v) for k, v in (answer.get("interfaces") or {}).items()}
        self._reader = threading.Thread(target=self._pump, name=f"labkit-capture-{target}", daemon=True)
        self._reader.start()

    def _refusal(self, answer: dict[str, Any]) -> Exception:
        error = str(answer.get("error") or answer)
        if answer.get("field") == "filter":
            return ModelError(f"tcpdump cannot use the filter {self.spec['filter']!r}: {error} ({FILTER_HELP})",
                              path="filter")
        return BackendError(f"capturing in {self.place} failed: {error}")

    def _pump(self) -> None:
        reason, note = "ended", "the capture helper ended without saying why"
        try:
            while True:
                line = self._stream.read_line(self.spec["seconds"] + 30)
                if line is None:
                    break
                answer = json.loads(line)
                if "pcap" in answer:
                    self._append(base64.b64decode(answer["pcap"]))
                elif answer.get("done"):
                    reason, note = str(answer.get("reason") or "ended"), str(answer.get("note") or "")
                    self.packets = int(answer.get("packets") or 0)
                    break
                elif "error" in answer:
                    note = str(answer["error"])
                    break
        except (BackendError, OSError, ValueError) as exc:
            reason, note = ("stopped", "") if self._closing else ("ended", f"reading the capture failed: {exc}")
        finally:
            with contextlib.suppress(OSError):
                self._stream.close()
            self._finish(reason, note)

    def stop(self) -> None:
        if self.done:
            return
        with contextlib.suppress(OSError):
            self._stream.send_line("stop")
        if not self.wait(STOP_TIMEOUT):  # the agent does not answer: EOF ends it (and its tcpdump)
            self._closing = True
            with contextlib.suppress(OSError):
                self._stream.close()
            self.wait(STOP_TIMEOUT)
