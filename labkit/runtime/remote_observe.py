"""The remote backend's packet captures and flow logs: handles whose work runs on the lab server.

Owns ``RemoteCapture`` (a ``CaptureHandle``: ``capture-start`` when it is made, once the
server's tcpdump listens; a waiter thread whose ``capture-stop`` calls wait on the server for
the capture's own end; ``stop()`` ends it at once; the pcap comes back whole when it ended, so
``data()`` is empty while it runs) and ``RemoteFlows`` (a ``FlowSource`` whose thread asks
``flows-poll`` every ``POLL`` seconds for the flows after the last one it has and hands each
to ``on_event``; ``stop()`` ends the polling and calls ``flows-stop``, whose answer has the
flows still being assembled). The server stops either when nobody asks about it for a minute
(``labkit.server.observe``). ``call`` is the lab's ``(method, action, body) -> answer``
(``RemoteLab``); errors come back as the same ``LabkitError`` classes as locally.
"""
from __future__ import annotations

import base64
import binascii
import logging
import threading
from typing import Any, Callable

from labkit.errors import BackendError, LabkitError
from labkit.runtime import capturing, flowing

log = logging.getLogger(__name__)

Call = Callable[..., dict]
POLL = 0.3           # seconds between flow polls (a flow shows within 1 s of its attempt)
STOP_TIMEOUT = 10.0  # seconds stop() waits for a capture the server ends
MAX_ERRORS = 100


def _id(answer: Any, what: str) -> str:
    if not isinstance(answer, dict) or not isinstance(answer.get("id"), str):
        raise BackendError(f"the lab server did not say which {what} it started: {str(answer)[:200]}")
    return answer["id"]


def _interfaces(value: Any) -> dict[int, str]:
    if not isinstance(value, dict):
        return {}
    return {int(k): str(v) for k, v in value.items() if str(k).isdigit()}


class RemoteCapture(capturing.CaptureHandle):
    """A capture the lab server runs (see the module's docstring)."""

    def __init__(self, call: Call, target: str, spec: dict[str, Any]):
        answer = call("POST", "capture-start", {"target": target, "spec": spec})
        ident = _id(answer, "capture")
        super().__init__(str(answer.get("target") or target), dict(answer.get("spec") or spec))
        self.id = ident
        self.simulated = bool(answer.get("simulated"))
        if isinstance(answer.get("started"), (int, float)):
            self.started = float(answer["started"])
        self.interfaces = _interfaces(answer.get("interfaces"))
        self._request = call
        self._stopping = threading.Event()
        self._delivery = threading.Lock()
        self._waiter = threading.Thread(target=self._wait_for_end, name=f"labkit-remote-capture-{self.target}",
                                        daemon=True)
        self._waiter.start()

    def _wait_for_end(self) -> None:
        while self.reason is None:
            try:
                answer = self._request("POST", "capture-stop", {"id": self.id, "wait": True})
            except LabkitError as exc:
                if not self._stopping.is_set():  # else stop() hands it over (it may have taken it first)
                    self._end(f"the lab server lost the capture: {exc}")
                return
            if self._deliver(answer):
                return

    def _deliver(self, answer: Any) -> bool:
        """End the handle with the server's pcap; False while the server's capture still runs."""
        if not isinstance(answer, dict) or not answer.get("done"):
            return False
        try:
            data = base64.b64decode(answer.get("pcap") or "", validate=True)
        except (binascii.Error, TypeError, ValueError) as exc:
            self._end(f"the lab server sent a capture labkit cannot read: {exc}")
            return True
        reason = answer.get("reason") if answer.get("reason") in capturing.REASONS else "ended"
        with self._delivery:
            if self.reason is None:
                self.interfaces = _interfaces(answer.get("interfaces")) or self.interfaces
                self._append(data)
                packets = answer.get("packets")
                self.packets = packets if isinstance(packets, int) and not isinstance(packets, bool) else 0
                self._finish(reason, str(answer.get("note") or ""))
        return True

    def _end(self, note: str) -> None:
        with self._delivery:
            self._finish("ended", note)

    def stop(self) -> None:
        if self.done:
            return
        self._stopping.set()
        problem = ""
        try:
            self._deliver(self._request("POST", "capture-stop", {"id": self.id, "wait": False}))
        except LabkitError as exc:  # the waiter took it first (it hands it over), or the lab went
            problem = f": {exc}"
        if self.reason is None and self._waiter is not threading.current_thread():
            self._waiter.join(STOP_TIMEOUT)
        if self.reason is None:
            self._end(f"the lab server did not hand the capture over{problem}")
        self.wait(STOP_TIMEOUT)  # its callbacks (the pcap file) ran


class RemoteFlows(flowing.FlowSource):
    """A flow log the lab server runs, polled (see the module's docstring)."""

    def __init__(self, call: Call, on_event: Callable[[Any], None], every: float = POLL):
        super().__init__(on_event)
        answer = call("POST", "flows-start", {})
        self.id = _id(answer, "flow log")
        self.simulated = bool(answer.get("simulated"))
        self._request, self._every, self._after = call, every, 0
        self._quit = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="labkit-remote-flows", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        more = False
        while more or not self._quit.wait(self._every):
            if self._quit.is_set():
                return
            try:
                answer = self._request("POST", "flows-poll", {"id": self.id, "after": self._after})
            except LabkitError as exc:  # the lab closed, or the server forgot the log
                self._note(f"the flow log on the lab server ended: {exc}")
                self.stop()
                return
            more = self._take(answer)
            if not answer.get("running", True) and not more:
                self._note("the flow log stopped on the lab server")
                self.stop()
                return

    def _take(self, answer: Any) -> bool:
        """Hand over the flows of one answer; True when the server has more waiting."""
        if not isinstance(answer, dict) or not isinstance(answer.get("flows"), list):
            self._note(f"the lab server sent a flow log labkit cannot read: {str(answer)[:200]}")
            return False
        missed = answer.get("missed")
        if isinstance(missed, int) and not isinstance(missed, bool) and missed > 0:
            self._note(f"{missed} flow(s) were lost: the lab server keeps only the newest flows of a log for "
                       "its poller, and this one polled too late")
        for item in answer["flows"]:
            try:
                seq, flow = item["seq"], flowing.flow_from_dict(item["flow"])
                if isinstance(seq, bool) or not isinstance(seq, int):
                    raise ValueError(f"seq {seq!r} is not a whole number")
            except (KeyError, TypeError, ValueError) as exc:
                self._note(f"the lab server sent a flow labkit cannot read: {exc}")
                continue
            self._after = max(self._after, seq)
            self.emit(flow)
        for error in answer.get("errors") or []:
            if isinstance(error, str) and error not in self.errors:
                self._note(error)
        return bool(answer.get("more"))

    def _note(self, text: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            log.warning("%s", text)
            self.errors.append(text)

    def _stop(self) -> None:
        self._quit.set()
        if self._poller is not threading.current_thread():
            self._poller.join(timeout=STOP_TIMEOUT)  # its call in flight ends; then none is sent again
        try:  # its answer has every flow the server kept after ours, those still assembling too
            self._take(self._request("POST", "flows-stop", {"id": self.id, "after": self._after}))
        except LabkitError:  # the lab closed or the server forgot it: nothing of it runs there any more
            pass
