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
    assert {"allowed: the connection worked", "denied: no answer (dropped by policy)",
            "observed differs from the oracle", "isolated for ingress",
            "isolated for egress (dashed ring)"} <= set(labels)
    assert "refused: nothing listens on the port" not in labels  # every pod listens on 80: nothing is refused
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


# ------------------------------------------------------------------ readable pictures (issue 13 part 4)
DENY_X_A = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "deny-a", "namespace": "x"},
            "spec": {"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Ingress"]}}


def probe_edges(g):
    return {(u, v): d for u, v, d in g.edges(data=True) if d["kind"] == "probe"}


def test_namespace_colours_are_the_same_in_every_lab_and_process():
    from labkit.viz import namespace_colour
    from labkit.viz.colours import ALLOWED, DENIED, FIXED
    assert namespace_colour("default") == FIXED["default"] and namespace_colour("kube-system") == FIXED["kube-system"]
    code = "from labkit.viz import namespace_colour as c; print(c('shop'), c('payments'), c('team-42'))"
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": seed, "PATH": ""}).stdout for seed in ("1", "2")}
    assert len(runs) == 1  # not Python's salted hash()
    assert runs.pop().split() == [namespace_colour("shop"), namespace_colour("payments"), namespace_colour("team-42")]
    assert {namespace_colour(n) for n in ("x", "y", "payments", "team-42")}.isdisjoint({ALLOWED, DENIED})
    course = [["shop", "other"], ["dev", "monitoring", "shop"], ["ops", "shop"], ["guest", "shop"], ["x", "y", "z"]]
    for together in course:  # no two namespaces of one notebook look alike
        assert len({namespace_colour(n) for n in together}) == len(together), together


def test_red_says_why_dropped_by_policy_or_refused(lab):
    lab.apply(DENY_X_A)
    g = topology_graph(lab, lab.matrix(port=80))
    edges = probe_edges(g)
    assert edges[("x/b", "x/a")]["why"] == "policy"  # isolated, nothing allows: dropped
    assert edges[("x/a", "y/a")]["allowed"] and edges[("x/a", "y/a")]["why"] is None
    nothing = probe_edges(topology_graph(lab, lab.matrix(port=81)))  # no pod listens on 81
    assert nothing[("x/a", "y/a")]["why"] == "refused" and nothing[("x/b", "x/a")]["why"] == "policy"
    fig = topology_figure(lab, lab.matrix(port=81))
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "refused: nothing listens on the port" in labels and "denied: no answer (dropped by policy)" in labels


def test_focus_and_only_filter_the_arrows(lab):
    lab.apply(DENY_X_A)
    matrix = lab.matrix()
    around = probe_edges(topology_graph(lab, matrix, focus="x/a"))
    assert around and all("x/a" in pair for pair in around) and len(around) == 2 * 3
    denied = probe_edges(topology_graph(lab, matrix, only="denied"))
    assert denied and not any(d["allowed"] for d in denied.values())
    assert len(denied) == sum(1 for s in matrix.pods for d in matrix.pods if s != d and not matrix.allowed(s, d))
    allowed = probe_edges(topology_graph(lab, matrix, only="allowed"))
    assert allowed and all(d["allowed"] for d in allowed.values())
    assert "only denied" in topology_figure(lab, matrix, only="denied").axes[0].get_title(loc="left")


def test_only_changes_shows_what_the_last_apply_did(lab):
    before = lab.matrix()
    lab.apply(DENY_X_A)
    after = lab.matrix()
    changes = probe_edges(topology_graph(lab, after, only="changes", previous=before))
    assert changes and all(d["changed"] == "now denied" for d in changes.values())
    assert set(changes) == {(s, d) for s in after.pods for d in after.pods
                            if s != d and before.allowed(s, d) != after.allowed(s, d)}
    assert all(dst == "x/a" for _, dst in changes)
    with pytest.raises(LabkitError, match="previous"):
        topology_figure(lab, after, only="changes")


@pytest.mark.parametrize("kwargs, needle", [({"only": "red"}, "only="), ({"group": "node"}, "group="),
                                            ({"focus": "x/nope"}, "focus=")])
def test_bad_options_name_the_keyword_and_the_choices(lab, kwargs, needle):
    with pytest.raises(LabkitError, match=needle):
        topology_figure(lab, lab.matrix(), **kwargs)


def test_group_by_namespace_counts_the_pod_pairs(lab):
    lab.apply(DENY_X_A)
    matrix = lab.matrix()
    g = topology_graph(lab, matrix, group="namespace")
    assert sorted(g.nodes) == ["ns:x", "ns:y"] and sorted(g.nodes["ns:x"]["pods"]) == ["x/a", "x/b"]
    y_to_x = g.edges["ns:y", "ns:x"]
    pairs = [(s, d) for s in ("y/a", "y/b") for d in ("x/a", "x/b")]
    assert y_to_x["allowed"] == sum(matrix.allowed(s, d) for s, d in pairs)
    assert y_to_x["allowed"] + y_to_x["policy"] + y_to_x["refused"] == 4
    assert y_to_x["verdict"] == ("denied" if not y_to_x["allowed"] else "mixed" if y_to_x["policy"] else "allowed")
    within = g.nodes["ns:x"]["within"]
    assert within["allowed"] + within["policy"] + within["refused"] == 2
    fig = topology_figure(lab, matrix, group="namespace")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "ns x" in texts and "ns y" in texts and png(fig).startswith(PNG_MAGIC)


def test_wiring_draws_bridges_veths_and_the_fabric(lab):
    from labkit.dataplane import names
    fig = topology_figure(lab, wiring=True)
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "bridge cni0  10.244.1.1" in texts
    for ref in PODS:
        assert names.pod_port(lab.pod_ip(ref)) in texts  # the node end of each pod's veth pair
    if lab.cluster.node_count > 1:
        assert "node fabric 198.18.0.0/24" in texts and "10.244.2.0/24 via 198.18.0.2" in texts
        # each node's uplink as its `ip route` names it: node-1 hosts the fabric bridge itself
        assert "lkfabric (fabric bridge) 198.18.0.1" in texts and "fabric0 198.18.0.2" in texts
        assert "fabric0 198.18.0.1" not in texts
    layout = compute_layout(lab.cluster, wiring=True)
    for index, (x0, x1, y) in layout.bridges.items():
        assert y < min(py for ref, (_, py) in layout.pods.items() if lab.cluster.pod_nodes[ref] == index)


def test_the_internet_host_and_node_ports_appear_with_a_node_port_service(lab):
    assert "internet" not in " ".join(t.get_text() for t in topology_figure(lab).axes[0].texts)
    lab.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "pub", "namespace": "x"},
               "spec": {"type": "NodePort", "selector": {"app": "a"}, "ports": [{"port": 80, "nodePort": 30080}]}})
    texts = " ".join(t.get_text() for t in topology_figure(lab).axes[0].texts)
    assert "internet" in texts and "203.0.113.10" in texts and "198.18.0.1:30080" in texts
    assert "nodePort 30080" in texts
    assert "internet" not in " ".join(t.get_text() for t in topology_figure(lab, internet=False).axes[0].texts)
    g = topology_graph(lab)
    assert g.nodes["svc:x/pub"]["node_ports"] == [30080]


# ------------------------------------------------------------------ honest, uncluttered pictures (issue 13, h6 #16)
PUBLIC = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "pub", "namespace": "x"},
          "spec": {"type": "NodePort", "selector": {"app": "b"}, "ports": [{"port": 80, "nodePort": 30080}]}}
TO_A = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "to-a", "namespace": "x"},
        "spec": {"selector": {"app": "a"}, "ports": [{"port": 80}]}}


def legend_of(fig) -> list[str]:
    return [t.get_text() for t in fig.legends[0].get_texts()]


def renderer_of(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def test_the_legend_lists_only_what_the_picture_draws():
    with labkit.Lab("viz-legend", backend="sim", nodes=2) as lab:  # notebook 02's world: no policy, no Service
        lab.apply([d for d in world() if d["kind"] in ("Namespace", "Pod")])
        fig = topology_figure(lab, lab.matrix(), wiring=True)
        labels = legend_of(fig)
        assert labels == ["namespace x", "namespace y", "bridge cni0 in a node", "veth pair: pod eth0 <-> bridge port",
                          "allowed: the connection worked"]
        texts = " ".join(t.get_text() for t in fig.axes[0].texts)
        assert "bridge cni0" in texts and "node fabric" in texts  # what notebook 02 shows
        assert "16 of 16 allowed (self-connections not drawn)" in fig.axes[0].get_title(loc="left")
        assert "self-connections not counted" in topology_figure(lab, lab.matrix(), group="namespace"
                                                                 ).axes[0].get_title(loc="left")
        lab.apply(DENY_X_A)
        labels = legend_of(topology_figure(lab, lab.matrix(port=81)))  # nothing listens on 81
        assert "isolated for ingress" in labels and "isolated for egress (dashed ring)" not in labels
        assert "refused: nothing listens on the port" in labels and "allowed: the connection worked" not in labels


def test_the_node_port_label_sits_above_the_node_box_and_clear_of_its_title(lab):
    from matplotlib.transforms import Bbox
    lab.apply(PUBLIC)
    fig = topology_figure(lab, internet=True)
    renderer = renderer_of(fig)
    ax = fig.axes[0]
    texts = {t.get_text(): t.get_window_extent(renderer) for t in ax.texts}
    label = texts["198.18.0.1:30080"]
    node_top = ax.transData.transform((0, compute_layout(lab.cluster, internet=True).boxes[0].y1))[1]
    assert label.y0 > node_top  # above the node box's border, not across it
    titles = [box for text, box in texts.items() if text.startswith("node-")]
    assert titles and not any(Bbox.intersection(label, title) for title in titles)


def test_services_option_draws_only_those_services_each_in_its_own_colour(lab):
    lab.apply([PUBLIC, TO_A])
    g = topology_graph(lab)
    colours = {name: d["colour"] for name, d in g.nodes(data=True) if d["kind"] == "service"}
    assert sorted(colours) == ["svc:x/pub", "svc:x/to-a", "svc:x/web"] and len(set(colours.values())) == 3
    only = topology_graph(lab, services=["x/pub"])
    assert [n for n, d in only.nodes(data=True) if d["kind"] == "service"] == ["svc:x/pub"]
    assert only.nodes["svc:x/pub"]["colour"] == colours["svc:x/pub"]  # the same colour as in the full picture
    assert [(u, v) for u, v, d in only.edges(data=True) if d["kind"] == "endpoint"] == [("svc:x/pub", "x/b")]
    fig = topology_figure(lab, services=["x/pub"])
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "svc x/pub NodePort" in texts and "svc x/web" not in texts and "198.18.0.1:30080" in texts
    assert "Service" in legend_of(fig) and "Service (one colour each)" in legend_of(topology_figure(lab))
    with pytest.raises(LabkitError, match=r"services=.*no Service x/nope; choose among x/pub, x/to-a, x/web"):
        topology_figure(lab, services=["x/nope"])
    assert "svc" not in " ".join(t.get_text() for t in topology_figure(lab, services=[]).axes[0].texts)


def test_service_lines_run_beside_the_columns_not_through_pod_labels(lab):
    lab.apply([PUBLIC, TO_A])
    fig = topology_figure(lab, internet=True)
    renderer = renderer_of(fig)
    ax = fig.axes[0]
    labels = [t.get_window_extent(renderer) for t in ax.texts if "\n10.244." in t.get_text()]
    assert len(labels) == len(PODS)
    endpoint_lines = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(endpoint_lines) == 3  # x/web -> x/b, x/pub -> x/b, x/to-a -> x/a
    for line in endpoint_lines:
        path = line.get_transform().transform_path(line.get_path())
        assert not any(path.intersects_bbox(box, filled=False) for box in labels), line.get_color()
