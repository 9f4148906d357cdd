"""The widgets without a browser or kernel: clicks, values, CSS classes (jupyter.md §2.6).

The world: namespaces x and y, pods a and b in each (label app=<name>, serving 80/TCP),
on the sim backend; the assertions compare the widgets with ``lab.expected``.
"""
from __future__ import annotations

import asyncio
import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("matplotlib")

import labkit  # noqa: E402
from labkit.probe.matrix import Matrix  # noqa: E402
from labkit.widgets import ExplainView, LabPanel, MatrixView, PolicyEditor, ServiceEditor  # noqa: E402

PODS = ["x/a", "x/b", "y/a", "y/b"]
DENY_ALL_X = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny-all
  namespace: x
spec:
  podSelector: {}
  policyTypes: [Ingress]
"""
BAD_END_PORT = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bad, namespace: x}
spec:
  podSelector: {}
  ingress:
  - ports:
    - {port: 90, endPort: 80}
"""


def world(nodes: int = 1) -> list[dict]:
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n, "labels": {"ns": n}}} for n in "xy"]
    for ref in PODS:
        ns, name = ref.split("/")
        docs.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns,
                                                                      "labels": {"app": name}},
                     "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 80, "name": "http"}]}]}})
    return docs


@pytest.fixture
def lab():
    with labkit.Lab("w", backend="sim") as lab:
        lab.apply(world())
        yield lab


@pytest.fixture
def panel(lab):
    panel = LabPanel(lab)
    yield panel
    panel.close()


def classes(button) -> set[str]:
    return set(button._dom_classes)


def assert_cells_match_expected(view, lab, port=80, protocol="TCP"):
    expected = lab.expected(port, protocol)
    assert sorted(view.cells) == sorted((s, d) for s in expected.pods for d in expected.pods)
    for (src, dst), button in view.cells.items():
        want = "allow" if expected.allowed(src, dst) else "deny"
        assert {"labkit-cell", want} <= classes(button), (src, dst, button._dom_classes)
        assert ({"allow", "deny"} - {want}).isdisjoint(classes(button))


# ------------------------------------------------------------------ matrix
def test_matrix_cells_get_allow_and_deny_classes_matching_the_oracle(lab):
    lab.apply(DENY_ALL_X)
    view = MatrixView(lab)
    assert_cells_match_expected(view, lab)
    assert "deny" in classes(view.cells[("y/a", "x/b")]) and "allow" in classes(view.cells[("x/a", "y/b")])
    assert not any("differs" in classes(b) for b in view.cells.values())
    assert "SIMULATED" in view.header.value
    assert "observed: 10 of 16 allowed" in view.header.value and "expected (oracle): 10 allowed" in view.header.value
    assert view.matrix.source == "simulated"


def test_matrix_port_selector_probes_again(lab):
    view = MatrixView(lab)
    view.port_input.value = 81  # nothing listens on 81: refused everywhere
    assert "81/TCP" in view.header.value
    assert view.matrix.port == 81
    assert_cells_match_expected(view, lab, port=81)
    assert all("deny" in classes(b) for b in view.cells.values())
    view.protocol_input.value = "UDP"
    assert view.matrix.protocol == "UDP"


def test_differences_from_the_oracle_are_highlighted(lab):
    view = MatrixView(lab, probe=False)
    expected = lab.expected()
    observed = list(expected.expected)
    observed[0] ^= 0b10  # x/a -> x/b flipped
    view.show(Matrix(expected.pods, 80, "TCP", observed, expected.expected, "observed"))
    cell = view.cells[("x/a", "x/b")]
    assert {"labkit-cell", "deny", "differs"} <= classes(cell)
    assert cell.description.endswith("!")
    assert "1 cell(s) differ" in view.header.value and "observed</b> with real packets" in view.header.value
    assert sum("differs" in classes(b) for b in view.cells.values()) == 1


def test_clicking_a_cell_explains_it_naming_the_policy(lab):
    lab.apply(DENY_ALL_X)
    view = MatrixView(lab)
    view.cells[("y/a", "x/b")].click()
    text = view.explanation.value
    assert "labkit-explain" in view.explanation._dom_classes
    assert "x/deny-all" in text and "denied" in text and "y/a -&gt; x/b" in text
    view.cells[("x/a", "y/b")].click()
    assert "allowed" in view.explanation.value and "by default" in view.explanation.value


def test_matrix_of_an_empty_lab_says_so():
    with labkit.Lab("w", backend="sim") as empty:
        view = MatrixView(empty)
        assert view.cells == {} and "no pods yet" in view.header.value


# ------------------------------------------------------------------ policy editor
def test_deny_all_through_the_yaml_editor_turns_x_red(panel, lab):
    drawn = panel.drawn
    panel.policies.editor.text.value = DENY_ALL_X
    panel.policies.editor.apply_button.click()
    assert "x/deny-all" in lab.cluster.policies
    assert "valid" in panel.policies.editor.message._dom_classes
    cells = panel.matrix_view.cells
    for (src, dst), button in cells.items():
        into_x = dst.startswith("x/") and src != dst
        assert ("deny" if into_x else "allow") in classes(button), (src, dst)
    assert_cells_match_expected(panel.matrix_view, lab)
    assert panel.drawn == drawn + 1  # the topology was redrawn after the change
    assert "x/deny-all" in panel.policies.policy_list.children[0].children[1].value
    assert panel.errors.messages == []


def test_invalid_yaml_shows_the_field_path_and_leaves_the_lab_unchanged(lab):
    editor = PolicyEditor(lab)
    before, history = lab.cluster, list(lab.history)
    editor.editor.text.value = BAD_END_PORT
    editor.editor.validate_button.click()
    assert editor.editor.valid is False
    assert "spec.ingress[0].ports[0].endPort" in editor.editor.message.value
    editor.editor.apply_button.click()
    assert "invalid" in editor.editor.message._dom_classes
    assert "NetworkPolicy x/bad: spec.ingress[0].ports[0].endPort" in editor.editor.message.value
    assert "unchanged" in editor.editor.message.value
    assert lab.cluster is before and lab.cluster.policies == before.policies and lab.history == history
    assert editor.errors.messages == []  # a learner's mistake is inline, not an "error"


@pytest.mark.parametrize("text, needle", [
    ("kind: [unclosed", "cannot parse YAML at line"),
    ("", "empty"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: nope}\nspec: {containers: [{name: c}]}",
     "metadata.namespace: namespace &#x27;nope&#x27; not found"),
])
def test_other_invalid_inputs_are_inline_too(lab, text, needle):
    editor = PolicyEditor(lab)
    editor.editor.text.value = text
    assert editor.editor.validate() is False
    assert needle in editor.editor.message.value
    assert editor.editor.apply() is None and lab.cluster.policies == {}


def test_validate_is_a_dry_run(lab):
    editor = PolicyEditor(lab)
    editor.editor.text.value = DENY_ALL_X
    editor.editor.validate_button.click()
    assert editor.editor.valid is True and "networkpolicy/x/deny-all created" in editor.editor.message.value
    assert lab.cluster.policies == {}


def _apply_preset(editor, preset, namespace="x"):
    editor.namespace.value = namespace
    editor.preset.value = preset
    assert "kind: NetworkPolicy" in editor.editor.text.value  # the preset wrote its YAML
    editor.editor.apply_button.click()
    assert editor.editor.valid is True, editor.editor.message.value


def test_preset_deny_all_ingress(lab):
    changed = []
    editor = PolicyEditor(lab, on_change=lambda: changed.append(1))
    _apply_preset(editor, "deny all ingress")
    assert changed == [1] and "x/deny-all-ingress" in lab.cluster.policies
    m = lab.expected()
    assert not m.allowed("y/a", "x/a") and not m.allowed("x/b", "x/a") and m.allowed("x/a", "y/a")


def test_preset_deny_all_egress_then_allow_dns(lab):
    editor = PolicyEditor(lab)
    _apply_preset(editor, "deny all egress")
    m = lab.expected()
    assert not m.allowed("x/a", "y/a") and not m.allowed("x/a", "x/b") and m.allowed("y/a", "x/a")
    assert not lab.explain("x/a", "kube-system/coredns", 53, "UDP").allowed
    assert "cannot resolve" in str(lab.explain("x/a", "a.y"))
    _apply_preset(editor, "allow DNS egress")
    assert lab.explain("x/a", "kube-system/coredns", 53, "UDP").allowed
    assert lab.explain("x/a", "kube-system/coredns", 53, "TCP").allowed
    assert not lab.expected().allowed("x/a", "y/a")  # still no egress on 80
    assert "cannot resolve" not in str(lab.explain("x/a", "a.y"))


def test_custom_form_builds_the_policy_it_describes(lab):
    editor = PolicyEditor(lab)
    editor.namespace.value = "x"
    editor.name.value = "b-from-a"
    editor.pods.value = "app=b"
    editor.peer_pods.value = "app=a"
    editor.peer_namespaces.value = "ns in (x, y)"
    editor.ports.value = "80/TCP"
    assert "ingress rule 0: allows from pods with app=a in namespaces with ns in (x,y), on 80/TCP" \
        in editor.preview.value
    editor.use_button.click()
    editor.editor.apply_button.click()
    m = lab.expected()
    assert m.allowed("x/a", "x/b") and m.allowed("y/a", "x/b") and not m.allowed("y/b", "x/b")
    assert m.allowed("y/b", "x/a")  # x/a is not selected
    assert not lab.expected(port=81).allowed("x/a", "x/b")


def test_a_bad_form_field_is_reported_in_the_preview(lab):
    editor = PolicyEditor(lab)
    editor.pods.value = "app==="
    assert "not a valid policy yet" in editor.preview.value and "pods: cannot read" in editor.preview.value
    editor.use_button.click()  # the same error, through the guard, lands in the error area
    assert editor.errors.messages and "cannot read" in editor.errors.messages[0]


def test_policy_list_deletes_through_the_lab(lab):
    lab.apply(DENY_ALL_X)
    changed = []
    editor = PolicyEditor(lab, on_change=lambda: changed.append(1))
    row = editor.policy_list.children[0]
    delete, label = row.children
    assert "labkit-delete" in delete._dom_classes and "x/deny-all" in label.value
    delete.click()
    assert lab.cluster.policies == {} and changed == [1]
    assert "no NetworkPolicy yet" in editor.policy_list.children[0].value


# ------------------------------------------------------------------ services, explain
def test_service_form_applies_and_lists_endpoints(lab):
    changed = []
    editor = ServiceEditor(lab, on_change=lambda: changed.append(1))
    editor.namespace.value = "x"
    editor.name.value = "web"
    editor.selector.value = "app=b"
    editor.port.value = 8000
    editor.target_port.value = "http"
    editor.use_button.click()
    assert "targetPort: http" in editor.editor.text.value
    editor.editor.apply_button.click()
    assert changed == [1] and "x/web" in lab.cluster.services
    listing = " ".join(getattr(r, "value", "") or r.children[1].value for r in editor.service_list.children)
    assert f"Endpoints x/web: {lab.pod_ip('x/b')}:80" in listing
    assert "kube-system/kube-dns" in listing
    assert lab.probe("x/a", "web.x", 8000).answered_by == "x/b"


@pytest.mark.parametrize("kind, check", [
    ("headless", lambda lab: lab.cluster.service_ips["x/web"] is None),
    ("NodePort", lambda lab: lab.cluster.services["x/web"].ports[0].node_port == 30080),
])
def test_service_types(lab, kind, check):
    editor = ServiceEditor(lab)
    editor.namespace.value = "x"
    editor.type.value = kind
    editor.node_port.value = 30080
    assert (editor.node_port.layout.display == "none") is (kind != "NodePort")
    editor.use_form()
    assert editor.editor.apply() is not None, editor.editor.message.value
    assert check(lab)


def test_explain_view_names_the_deciding_policy(lab):
    lab.apply(DENY_ALL_X)
    view = ExplainView(lab)
    view.src.value = "y/b"
    view.dst.value = "x/a"
    view.button.click()
    assert "x/deny-all" in view.output.value and "denied" in view.output.value
    assert "y/a" in view.dst.options and "203.0.113.10" in view.dst.options


def test_explain_view_walks_the_packet_beside_the_explanation(lab):
    lab.apply(DENY_ALL_X)
    view = ExplainView(lab)
    view.src.value, view.dst.value = "y/b", "x/a"
    view.trace_button.click()
    assert "denied" in view.output.value  # the explanation is shown too
    assert "labkit-walk" in view.walk_output.value and "DROPPED" in view.walk_output.value
    assert "simulated" in view.walk_output.value  # on sim, the oracle's hops, said so
    view.dst.value = "y/a"
    walk = view.trace()
    assert walk.verdict == "delivered to y/a" and "DROPPED" not in view.walk_output.value


# ------------------------------------------------------------------ the panel
def test_panel_banner_says_simulated_and_has_the_tabs(panel, lab):
    assert "SIMULATED" in panel.banner.value and lab.notice in panel.banner.value
    assert {"labkit-banner", "simulated"} <= set(panel.banner._dom_classes)
    assert panel.tabs.titles == ("Topology", "Matrix", "Policies", "Services", "Explain", "Flows")
    assert panel.topology.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert "labkit-live" in panel.live.toggle._dom_classes
    assert "labkit-error" in panel.errors.html._dom_classes
    panel.show_tab("Policies")
    assert panel.tabs.selected_index == 2


def test_edits_from_code_show_up_at_once_without_a_loop(panel, lab):
    drawn = panel.drawn
    panel.refresh()
    assert panel.drawn == drawn  # nothing changed: no redraw
    lab.apply(DENY_ALL_X)  # in a script (no asyncio loop) the panel refreshes inside the apply
    assert "deny" in classes(panel.matrix_view.cells[("y/a", "x/a")])
    assert panel.drawn == drawn + 1 and not panel.stale
    assert "x/deny-all" in panel.policies.policy_list.children[0].children[1].value
    assert "changed since this view" not in panel.banner.value


def test_without_auto_refresh_the_panel_says_it_is_stale_until_refresh(lab):
    panel = LabPanel(lab, auto_refresh=False)
    lab.apply(DENY_ALL_X)
    assert panel.stale and "stale" in panel.banner._dom_classes
    assert "The lab changed since this view</b>: press Refresh" in panel.banner.value
    assert "allow" in classes(panel.matrix_view.cells[("y/a", "x/a")])  # the old view, clearly marked
    panel.refresh_button.click()
    assert not panel.stale and "changed since this view" not in panel.banner.value
    assert "deny" in classes(panel.matrix_view.cells[("y/a", "x/a")])
    panel.close()
    assert panel._listener not in lab.change_listeners  # a closed panel follows the lab no more


def test_in_a_kernel_the_panel_refreshes_when_the_cell_is_done(lab):
    """In Jupyter a cell runs on the kernel's loop: the change marks the view stale at once and
    the refresh runs after the cell (here: after the coroutine yields), once for several changes."""
    async def cell():
        panel = LabPanel(lab)
        probes = []
        panel.matrix_view.listeners.append(probes.append)
        lab.apply(DENY_ALL_X)
        lab.label("pod", "y/a", {"extra": "1"})
        during = (panel.stale, "refreshing as soon as the cell is done" in panel.banner.value,
                  "allow" in classes(panel.matrix_view.cells[("y/a", "x/a")]), len(probes))
        await asyncio.sleep(0.05)
        return panel, during, probes

    panel, during, probes = asyncio.run(cell())
    assert during == (True, True, True, 0)
    assert len(probes) == 1 and not panel.stale  # one refresh for the two changes
    assert "deny" in classes(panel.matrix_view.cells[("y/a", "x/a")])
    panel.close()


def test_a_failing_change_listener_never_undoes_the_change(lab):
    def broken(changes):
        raise RuntimeError("listener is broken")

    lab.change_listeners.append(broken)
    lab.apply(DENY_ALL_X)
    assert "x/deny-all" in lab.cluster.policies
    assert any("listener is broken" in e for e in lab.events)


def test_panel_topology_options_draw_the_namespace_view_and_the_changes(lab):
    panel = LabPanel(lab, topology_options={"group": "namespace"})
    assert panel.topology.value[:4] == b"\x89PNG" and not panel.errors.messages
    panel.close()
    panel = LabPanel(lab, topology_options={"only": "changes"})
    lab.apply(DENY_ALL_X)
    assert panel._previous is not None and panel._previous.count_allowed == 16
    assert not panel.errors.messages and panel.topology.value[:4] == b"\x89PNG"
    panel.close()


# ------------------------------------------------------------------ readable headers, a chosen source
def test_matrix_column_headers_are_short_with_the_full_name_on_hover():
    from labkit.widgets.matrix import column_heads, short_name
    assert short_name("web-7d4b9c6f5x-k2x9p") == "web-…k2x9p"  # a replica: Deployment + its own suffix
    assert short_name("a") == "a" and len(short_name("a-very-long-pod-name-indeed")) == 12
    heads = column_heads(["shop/web-7d4b9c6f5x-k2x9p", "shop/web-7d4b9c6f5x-q8zzv", "default/client"])
    assert "title='shop/web-7d4b9c6f5x-k2x9p'" in heads["shop/web-7d4b9c6f5x-k2x9p"]
    assert "<b>web-…k2x9p</b>" in heads["shop/web-7d4b9c6f5x-k2x9p"] and "shop/" in heads["shop/web-7d4b9c6f5x-k2x9p"]
    clash = column_heads(["x/frontend-one-cache", "x/frontend-two-cache"])  # same short form: shown whole
    assert "<b>frontend-one-cache</b>" in clash["x/frontend-one-cache"]
    assert "<b>front…-cache</b>" in column_heads(["x/frontend-one-cache"])["x/frontend-one-cache"]


def test_matrix_view_headers_carry_the_full_ref(lab):
    view = MatrixView(lab)
    heads = view.grid.children[1:1 + len(PODS)]
    assert [h.tooltip for h in heads] == PODS
    assert all(f"title='{ref}'" in h.value for h, ref in zip(heads, PODS))


def test_the_explain_tab_starts_with_a_source_chosen(lab):
    view = ExplainView(lab)
    assert view.src.value == PODS[0] and view.dst.value == PODS[1]
    explanation = view.explain()  # one click gives an answer
    assert explanation is not None and "allowed" in view.output.value
    with labkit.Lab("w-empty", backend="sim") as empty:
        late = ExplainView(empty)
        assert late.src.value is None
        empty.apply(world())
        late.refresh()
        assert late.src.value == PODS[0]


def test_explain_follows_the_matrix_port_only_when_it_changes(panel):
    panel.explain_view.port_input.value = 53  # the learner's own choice survives refreshes
    panel.refresh()
    assert panel.explain_view.port_input.value == 53
    panel.matrix_view.port_input.value = 8080
    assert panel.explain_view.port_input.value == 8080 and panel.live.port == 8080
    assert panel.matrix.port == 8080


def test_an_exception_in_a_callback_is_shown_in_the_error_area(panel, lab, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("boom: the probe exploded")

    monkeypatch.setattr(lab, "matrix", boom)
    panel.refresh_button.click()  # must not raise
    assert "boom: the probe exploded" in panel.errors.html.value
    assert "refreshing the panel" in panel.errors.html.value and "traceback" in panel.errors.html.value
    assert any("boom" in e for e in lab.events)
    monkeypatch.setattr(lab, "explain", boom)
    panel.matrix_view.cells[("x/a", "y/a")].click()
    assert panel.errors.messages[0].startswith("explaining x/a -> y/a: RuntimeError: boom")
    panel.errors.clear_button.click()
    assert panel.errors.html.value == "" and panel.errors.messages == []


def test_a_labkit_error_in_a_callback_is_shown_without_traceback(panel):
    panel.matrix_view.port_input.value = 70000
    assert "port" in panel.errors.html.value and "traceback" not in panel.errors.html.value


def test_panel_with_two_nodes(tmp_path):
    with labkit.Lab("w2", backend="sim", nodes=2) as lab:
        lab.apply(world())
        panel = LabPanel(lab)
        assert {lab.cluster.node_of(p) for p in PODS} == {"node-1", "node-2"}
        assert "2 node(s)" in panel.banner.value and panel.topology.value[:4] == b"\x89PNG"
        panel.close()
