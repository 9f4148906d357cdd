"""What the lab server learns from JupyterHub: whose servers are running.

Owns the clean-up that follows a learner's hub server: when it stops (stopped by hand,
culled by jupyterhub-idle-culler, or found dead by the hub's poll), that learner's labs are
removed. The watcher asks the hub's REST API for the users with an active server
(``GET /users?state=active``, paginated; the service needs the scopes ``list:users`` and
``read:servers``) and removes the labs of every owner not among them. When the hub does
not answer, nothing is removed: only the hub may say a server stopped.
"""
from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from typing import Callable

from labkit.errors import BackendUnavailable
from labkit.runtime.base import owner_for

log = logging.getLogger(__name__)
PAGE = 200


class HubUnavailable(BackendUnavailable):
    """The hub's API did not answer usably (nothing may be removed on its word)."""


def active_owners(api_url: str, api_token: str, timeout: float = 10.0) -> set[str]:
    """Owner names (``owner_for`` of hub user names) of every user with a running or starting server."""
    out: set[str] = set()
    offset = 0
    while True:
        request = urllib.request.Request(
            f"{api_url.rstrip('/')}/users?state=active&offset={offset}&limit={PAGE}",
            headers={"Authorization": f"token {api_token}", "Accept": "application/jupyterhub-pagination+json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the hub's own URL
                page = json.load(response)
        except (OSError, ValueError) as exc:
            raise HubUnavailable(f"the hub at {api_url} did not answer /users: {exc}") from exc
        items = page.get("items") if isinstance(page, dict) else page
        if not isinstance(items, list):
            raise HubUnavailable(f"the hub at {api_url} answered /users with {str(page)[:200]}")
        out |= {owner_for(u["name"]) for u in items if isinstance(u, dict) and u.get("name")}
        nxt = (page.get("_pagination") or {}).get("next") if isinstance(page, dict) else None
        if not nxt:
            return out
        following = int(nxt.get("offset", offset + len(items)))
        if following <= offset or not items:  # a page that does not move on would loop forever
            raise HubUnavailable(f"the hub at {api_url} paginated /users without moving on (offset {offset})")
        offset = following


class HubWatcher:
    """Every ``interval`` seconds, ``remove_owner`` each holder of labs whose hub server is not active."""

    def __init__(self, api_url: str, api_token: str, owners: Callable[[], set[str]],
                 remove_owner: Callable[[str], int], interval: float = 30.0):
        self.api_url, self.api_token, self.interval = api_url, api_token, interval
        self.owners, self.remove_owner = owners, remove_owner
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="labkit-hub-watcher", daemon=True)

    def __repr__(self) -> str:
        return f"<HubWatcher {self.api_url} every {self.interval:g}s>"

    def check(self) -> dict[str, int]:
        """One round: {owner: containers removed} for the owners whose server stopped."""
        holders = self.owners()
        if not holders:
            return {}
        active = active_owners(self.api_url, self.api_token)
        return {owner: self.remove_owner(owner) for owner in sorted(holders - active)}

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                for owner, removed in self.check().items():
                    log.warning("%s's hub server stopped: removed their labs (%d containers)", owner, removed)
            except HubUnavailable as exc:
                log.warning("%s; labs are kept until the hub answers", exc)
            except Exception:  # noqa: BLE001 - the watcher must outlive one bad round; it is logged
                log.exception("the hub watcher's round failed")

    def start(self) -> "HubWatcher":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)
