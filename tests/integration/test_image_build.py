"""The lab image's two recipes give the same image: the Dockerfile (built through the
engine's API, as `labkit images build --dockerfile` does where a registry is reachable)
and the offline build (debootstrap + docker import) that CI and the other tests use.

No registry is reachable here, so the Dockerfile's FROM is a local stand-in for
debian:bookworm-slim (`build-offline.sh --slim-base`: debootstrap minbase from the same apt
mirror, trimmed like the slim image). Its RUN steps fetch the lab's packages from that
mirror like any Dockerfile build does. The built image then runs a small lab.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import labkit
from tests.integration.helpers import LAB_LABEL, NODE_CODE_LABEL, REPO, VERSION_LABEL, backend, client, pod_doc

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0,
                       reason="the slim stand-in for debian:bookworm-slim is made with debootstrap, "
                              "which needs Linux and root"),
]

SLIM = "labkit-test/bookworm-slim:local"
BUILT = f"labkit-test/lab-dockerfile:{labkit.__version__}"
BUILD_OFFLINE = REPO / "environments" / "image" / "build-offline.sh"


def offline_tag() -> str:
    """The image the other tests use (built offline), once labkit has checked it matches this labkit."""
    return backend().image()


def run_in(tag: str, script: str) -> str:
    out = client().containers.run(tag, ["sh", "-c", script], network_mode="none", remove=True,
                                  labels={LAB_LABEL: "it-image-build"})
    return out.decode()


@pytest.fixture(scope="module")
def built():
    docker = client()
    made = []
    try:
        subprocess.run(["bash", str(BUILD_OFFLINE), "--slim-base", SLIM], check=True, capture_output=True,
                       text=True, timeout=900)
        made.append(SLIM)
        with pytest.MonkeyPatch.context() as mp:  # LABKIT_IMAGE names the image labkit builds and uses
            mp.setenv("LABKIT_IMAGE", BUILT)
            assert backend().image_tag() == BUILT
            log = backend().build_image(offline=False, base=SLIM)
        made.append(BUILT)
        assert f"Successfully tagged {BUILT}" in log, log[-2000:]
        yield docker.images.get(BUILT)
    finally:
        for tag in reversed(made):  # only the test's own images, newest first
            docker.images.remove(tag, noprune=False)


def test_both_recipes_install_the_same_packages(built):
    listing = "dpkg-query -W -f='${Package}\\n' | sort"
    offline = run_in(offline_tag(), listing).split()
    from_dockerfile = run_in(BUILT, listing).split()
    assert len(offline) > 100
    assert from_dockerfile == offline, (sorted(set(offline) ^ set(from_dockerfile)))


def test_both_recipes_keep_the_same_cni_plugins_node_code_and_settings(built, monkeypatch):
    offline = client().images.get(offline_tag())
    assert run_in(BUILT, "ls /usr/lib/cni") == run_in(offline_tag(), "ls /usr/lib/cni")
    assert run_in(BUILT, "ls /usr/lib/cni").split() == sorted(
        ["bridge", "host-local", "loopback", "portmap", "ptp", "static", "tuning"])
    for key in (NODE_CODE_LABEL, VERSION_LABEL):
        assert built.labels[key] == offline.labels[key], key
    assert built.attrs["Config"]["Env"] == offline.attrs["Config"]["Env"]
    assert built.attrs["Config"]["Cmd"] == offline.attrs["Config"]["Cmd"]
    for tool in ("python3", "nft", "ip", "conntrack", "dnsmasq", "tcpdump", "curl", "nc", "dig", "ping"):
        assert run_in(BUILT, f"command -v {tool} || echo MISSING").strip() != "MISSING", tool
    # labkit accepts the Dockerfile's image as current: its node agent hash is this labkit's
    monkeypatch.setenv("LABKIT_IMAGE", BUILT)
    assert backend().image() == BUILT


def test_a_lab_runs_on_the_dockerfile_image(built, monkeypatch):
    monkeypatch.setenv("LABKIT_IMAGE", BUILT)
    with labkit.Lab("it-image-df", backend="docker") as lab:
        lab.apply([pod_doc("a"), pod_doc("b")])
        result = lab.probe("a", "default/b", port=80)
        assert result.ok and result.answered_by == "default/b", result
        assert {c.image.tags[0] for c in client().containers.list(
            filters={"label": f"{LAB_LABEL}=it-image-df"})} == {BUILT}
