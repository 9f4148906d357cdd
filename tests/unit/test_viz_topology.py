"""The topology picture: graph content, deterministic layout, Figure and PNG output.

World: namespaces x, y; pods a, b (label app=<name>) in each; Service x/web -> app=b;
a policy isolating x/b for ingress and one isolating every pod of y for egress.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("networkx")

from matplotlib.figure import Figure  # noqa: E402

import labkit  # noqa: E402
from labkit.errors import LabkitError  # noqa: E402
from labkit.probe.matrix import Matrix  # noqa: E402
from labkit.viz import compute_layout, png, svg, topology_figure, topology_graph  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PODS = ["x/a", "x/b", "y/a", "y/b"]


def world() -> list[dict]:
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in "xy"]
    docs += [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": p.split("/")[1], "namespace": p.split("/")[0],
                                                              "labels": {"app": p.split("/")[1]}},
              "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 80}]}]}} for p in PODS]
    docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "x"},
                 "spec": {"selector": {"app": "b"}, "ports": [{"port": 80}]}})
    docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                 "metadata": {"name": "b-in", "namespace": "x"},
                 "spec": {"podSelector": {"matchLabels": {"app": "b"}}, "ingress": [{"from": [{"podSelector": {}}]}]}})
    docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                 "metadata": {"name": "no-egress", "namespace": "y"},
                 "spec": {"podSelector": {}, "policyTypes": ["Egress"]}})
    return docs


@pytest.fixture(params=[1, 2], ids=["1node", "2nodes"])
def lab(request):
    with labkit.Lab("viz", backend="sim", nodes=request.param) as lab:
        lab.apply(world())
        yield lab


def test_figure_without_a_matrix(lab):
    fig = topology_figure(lab)
    assert isinstance(fig, Figure)
    data = png(fig)
    assert data.startswith(PNG_MAGIC) and len(data) > 5000
    assert svg(fig).lstrip().startswith(b"<?xml")


def test_figure_with_a_matrix_and_a_difference(lab):
    expected = lab.expected()
    observed = list(expected.expected)
    observed[0] ^= 1 << 1  # x/a -> x/b observed the other way
    matrix = Matrix(expected.pods, 80, "TCP", observed, expected.expected, "observed")
    fig = topology_figure(lab, matrix)
    assert "1 differ from the oracle" in fig.axes[0].get_title(loc="left")
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"allowed", "denied", "differs from the oracle", "isolated for ingress"} <= set(labels)
    assert png(fig).startswith(PNG_MAGIC)


def test_graph_content(lab):
    g = topology_graph(lab, lab.expected())
    pods = sorted(n for n, d in g.nodes(data=True) if d["kind"] == "pod")
    assert pods == PODS  # kube-system hidden by default
    assert g.nodes["x/b"]["ingress_isolated"] == ["x/b-in"] and g.nodes["x/a"]["ingress_isolated"] == []
    assert g.nodes["y/a"]["egress_isolated"] == ["y/no-egress"]
    assert g.nodes["x/a"]["ip"] == lab.pod_ip("x/a")
    assert [(u, v) for u, v, d in g.edges(data=True) if d["kind"] == "endpoint"] == [("svc:x/web", "x/b")]
    probes = {(u, v): d for u, v, d in g.edges(data=True) if d["kind"] == "probe"}
    assert len(probes) == 4 * 3  # every ordered pair, no self edges
    assert probes[("x/a", "x/b")]["allowed"] and not probes[("y/b", "x/b")]["allowed"]
    assert not probes[("y/a", "x/a")]["allowed"]  # y has no egress
    assert not any(d["differs"] for d in probes.values())
    system = topology_graph(lab.cluster, include_system=True)
    assert "kube-system/coredns" in system and "svc:kube-system/kube-dns" in system


def test_pods_are_grouped_by_node_and_namespace(lab):
    layout = compute_layout(lab.cluster)
    nodes = [b for b in layout.boxes if b.kind == "node"]
    assert len(nodes) == lab.cluster.node_count
    for ref, (x, y) in layout.pods.items():
        box = nodes[lab.cluster.pod_nodes[ref] - 1]
        assert box.x0 < x < box.x1 and box.y0 < y < box.y1
        ns_box = next(b for b in layout.boxes if b.kind == "namespace" and b.namespace == ref.split("/")[0]
                      and b.x0 < x < b.x1)
        assert ns_box.y0 < y < ns_box.y1
    sx, sy = layout.services["x/web"]
    assert sy > max(y for _, y in layout.pods.values())


def test_layout_is_deterministic_and_does_not_jump(lab):
    first = compute_layout(lab.cluster)
    assert compute_layout(lab.cluster) == first
    assert png(topology_figure(lab, seed=1)) == png(topology_figure(lab, seed=2))
    lab.apply({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "deny", "namespace": "x"}, "spec": {"podSelector": {}}})
    assert compute_layout(lab.cluster).pods == first.pods  # a policy change moves nothing


def test_a_cluster_and_an_empty_lab_draw_too():
    with labkit.Lab("empty", backend="sim", nodes=2) as lab:
        assert png(topology_figure(lab.cluster)).startswith(PNG_MAGIC)
        assert png(topology_figure(lab, lab.matrix())).startswith(PNG_MAGIC)
    with pytest.raises(LabkitError, match="Lab or a Cluster"):
        topology_figure("x/a")


def test_a_stale_matrix_naming_deleted_pods_is_tolerated(lab):
    matrix = lab.matrix()
    lab.delete("pod", "a", namespace="y")
    g = topology_graph(lab, matrix)
    assert "y/a" not in g and len([1 for *_, d in g.edges(data=True) if d["kind"] == "probe"]) == 3 * 2


def test_importing_labkit_imports_no_ui_library_and_viz_uses_no_pyplot():
    code = ("import sys, labkit, labkit.viz, labkit.widgets\n"
            "heavy = [m for m in ('matplotlib', 'networkx', 'ipywidgets') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "lab = labkit.Lab('imp', backend='sim')\n"
            "from labkit.viz import topology_figure, png\n"
            "png(topology_figure(lab, lab.matrix()))\n"
            "assert 'matplotlib.pyplot' not in sys.modules\n"
            "assert 'ipywidgets' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[2]))
