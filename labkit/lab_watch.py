"""The readiness watcher of a ``Lab``: probes every pod's readinessProbe once a period, in a thread.

Owns ``ReadinessWatch``, a mixin of ``Lab``: after every change and then once a probe period
(at least 1 s) it asks the runtime to run the probes; when endpoints change, the runtime
enforces them before the lab adopts the new readiness. A background error is logged and kept
in ``lab.events``, never lost. It uses the lab's lock, stop event and runtime.
"""
from __future__ import annotations

import logging
import threading

log = logging.getLogger("labkit.lab")


class ReadinessWatch:
    """Readiness probing for ``Lab`` (which sets ``cluster``, ``events``, ``_runtime``, ``_lock``,
    ``_stop``, ``_watcher``, ``_closed`` and ``name``)."""

    def _probed(self) -> list[tuple[str, int]]:
        return [(ref, c.readiness_probe.period_seconds) for ref, p in self.cluster.pods.items()
                for c in p.spec.containers if c.readiness_probe is not None]

    def _refresh_readiness(self) -> None:
        """Run every readiness probe once; if endpoints change, the runtime enforces them before returning."""
        if not self._probed():
            return
        found = self._runtime.refresh_readiness()
        self.events.extend(found.events)
        if found.not_ready != self.cluster.not_ready:
            self.cluster = self.cluster.with_readiness(found.not_ready)

    def _ensure_watcher(self) -> None:
        # on sim too: its probes are judged from the containers' modelled files, every period
        if self._watcher is None and self._probed():
            self._watcher = threading.Thread(target=self._watch, name=f"labkit-readiness-{self.name}", daemon=True)
            self._watcher.start()

    def _watch(self) -> None:
        while True:
            probed = self._probed()
            if self._stop.wait(max(1, min((p for _, p in probed), default=5))):
                return
            try:
                with self._lock:
                    if self._closed:
                        return
                    self._refresh_readiness()
            except Exception as exc:  # a background error must never vanish: keep it for the learner
                log.warning("lab %s: readiness check failed: %s", self.name, exc)
                self.events.append(f"readiness check failed: {exc}")

