"""The notice that a lab is simulated: a styled banner in the Lab's HTML repr, a first line in
its text repr, and a ``LabkitNotice`` warning only outside a notebook (where no banner is seen)."""
from __future__ import annotations

import sys
import types
import warnings

import pytest

import labkit


@pytest.fixture
def no_engine(monkeypatch):
    """backend="auto" on a machine where no Docker engine answers."""
    monkeypatch.delenv("LABKIT_BACKEND", raising=False)
    monkeypatch.delenv("LABKIT_SERVER", raising=False)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/h2-docker.sock")


@pytest.fixture
def in_notebook(monkeypatch):
    """An IPython shell with a kernel attached, as in Jupyter."""
    shell = types.SimpleNamespace(kernel=object())
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: shell
    monkeypatch.setitem(sys.modules, "IPython", fake)


def test_auto_without_engine_shows_an_amber_banner_with_the_reason(no_engine):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", labkit.LabkitNotice)
        with labkit.Lab("h2-banner", backend="auto") as lab:
            assert lab.simulated
            page = lab._repr_html_()
            assert "simulated" in page and "#fff8c5" in page  # the amber box
            assert "<b style='color:#7d4e00'>SIMULATED</b>: results come from labkit's model, not real packets" in page
            assert "Why: " in page and "docker" in lab.simulated_because.lower()
            first = repr(lab).splitlines()[0]
            assert first.startswith("SIMULATED: results come from labkit's model, not real packets (why: ")


def test_outside_a_notebook_the_notice_is_also_a_warning(no_engine):
    with pytest.warns(labkit.LabkitNotice, match="SIMULATED"):
        with labkit.Lab("h2-banner", backend="auto"):
            pass


def test_in_a_notebook_there_is_no_stderr_warning_only_the_banner(no_engine, in_notebook):
    with warnings.catch_warnings():
        warnings.simplefilter("error", labkit.LabkitNotice)  # any notice would fail the test
        with labkit.Lab("h2-banner", backend="auto") as lab:
            assert "SIMULATED" in lab._repr_html_()


def test_requested_sim_says_so_and_a_real_lab_has_no_banner(monkeypatch):
    monkeypatch.setenv("LABKIT_BACKEND", "sim")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", labkit.LabkitNotice)
        with labkit.Lab("h2-banner", backend="sim") as lab:
            assert "LABKIT_BACKEND=sim" in lab.simulated_because
            assert "SIMULATED" in repr(lab).splitlines()[0]


@pytest.mark.docker
def test_a_docker_lab_has_no_simulated_banner():
    with labkit.Lab("h2-banner", backend="docker") as lab:
        assert lab.simulated_because == ""
        assert "SIMULATED" not in lab._repr_html_() and "SIMULATED" not in repr(lab)
        assert repr(lab).startswith("<Lab 'h2-banner' on docker")
