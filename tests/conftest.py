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
    """Can the docker backend run here? Asked once, through labkit's public backend API."""
    if "status" not in _state:
        backend = None
        try:
            from labkit.runtime import registry
            backend = registry.create("docker")
            backend.image()  # raises (with the fix) when the lab image is missing or stale
            _state["status"] = (True, "engine and image ready")
            _state["backend"] = backend
        except Exception as exc:  # any reason the backend cannot run is reported verbatim
            _state["status"] = (False, f"{type(exc).__name__}: {exc}")
            if backend is not None:
                backend.close()
    return _state["status"]  # type: ignore[return-value]


def docker_backend():
    """The docker backend the gate opened (public API only), or a fresh one if the gate never ran."""
    if _state.get("backend") is None:
        from labkit.runtime import registry
        _state["backend"] = registry.create("docker")
    return _state["backend"]


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
    backend = _state.get("backend")
    if backend is None:
        return set()
    return {info.name for info in backend.list_labs() if backend.session in info.sessions}


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


def pytest_unconfigure(config):
    backend = _state.pop("backend", None)
    if backend is not None:
        backend.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Each phase's report on the item (``item.rep_call``...): fixtures take screenshots of failures."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
