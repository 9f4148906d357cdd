"""Shared test fixtures: the docker-backend gate and the leak check.

Docker tests (marked ``docker``) run when an engine answers and the lab image matches
this labkit; otherwise they are skipped with the reason, except when
``LABKIT_REQUIRE_DOCKER=1`` (set by ``./dev test`` after it started an engine and built
the image): then an unavailable engine fails them, so CI can never pass by skipping.
"""
from __future__ import annotations

import os

import pytest

_state: dict[str, object] = {}


def docker_status() -> tuple[bool, str]:
    if "status" not in _state:
        try:
            from labkit.runtime.docker import engine, image
            client = engine.connect(timeout=10)
            image.check(client)
            _state["status"] = (True, "engine and image ready")
            _state["client"] = client
        except Exception as exc:  # any reason the backend cannot run is reported verbatim
            _state["status"] = (False, f"{type(exc).__name__}: {exc}")
    return _state["status"]  # type: ignore[return-value]


def pytest_collection_modifyitems(config, items):
    # Browser tests last: Playwright's sync API keeps an event loop running in the main
    # thread for the rest of the session, which would confuse the asyncio widget tests.
    items.sort(key=lambda item: item.get_closest_marker("ui") is not None)
    docker_items = [i for i in items if i.get_closest_marker("docker")]
    if not docker_items:
        return
    ok, why = docker_status()
    if ok:
        return
    if os.environ.get("LABKIT_REQUIRE_DOCKER") == "1":
        for item in docker_items:
            item.fixturenames.append("_docker_required")
        _state["required_failure"] = why
        return
    for item in docker_items:
        item.add_marker(pytest.mark.skip(reason=f"docker backend unavailable: {why}"))


@pytest.fixture
def _docker_required():
    pytest.fail(f"LABKIT_REQUIRE_DOCKER=1 but the docker backend is unavailable: {_state['required_failure']}")


def labelled_labs() -> set[str]:
    """Labs with containers created by this test process (other processes' labs are theirs)."""
    from labkit.dataplane import names
    client = _state.get("client")
    if client is None:
        return set()
    return {c.labels.get(names.LAB, "") for c in client.containers.list(
        all=True, filters={"label": f"{names.SESSION}={names.SESSION_ID}"})}


@pytest.fixture(autouse=True)
def no_leaked_containers(request):
    """Fail any docker test that leaves a container labelled with a lab it created."""
    if not request.node.get_closest_marker("docker") or not docker_status()[0]:
        yield
        return
    before = labelled_labs()
    yield
    leaked = labelled_labs() - before - set(getattr(request.config, "_labkit_shared_labs", set()))
    assert not leaked, f"labelled containers leaked by this test, labs: {sorted(leaked)}"


def share_lab(config, name: str) -> None:
    """Register a lab that a module-scoped fixture keeps across tests (exempt from the leak check)."""
    shared = getattr(config, "_labkit_shared_labs", set())
    shared.add(name)
    config._labkit_shared_labs = shared
