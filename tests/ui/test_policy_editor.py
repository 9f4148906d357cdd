"""The LabPanel in a real JupyterLab and Chromium: a deny-all typed into the policy editor
turns the matrix red; a packet walked from the Explain tab stops at it, and the Flows tab shows
the attempt, denied.

Opens ``notebooks/04-network-policies-1.ipynb`` (the curriculum's first NetworkPolicy
notebook, which builds a lab and shows ``LabPanel(lab)``) and runs every cell up to the
one that displays the panel (later cells add the notebook's own policies and the last
one closes the lab, so they are left to the nbval run). Then it types one deny-all
ingress policy per namespace shown in the matrix into the YAML editor, clicks Apply, and
waits until every cell between two different pods is ``deny`` and the topology picture
has been redrawn. Screenshots go to ``tests/ui/artifacts/`` (gitignored).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"  # gitignored
pytestmark = pytest.mark.ui

DENY_ALL = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: ui-deny-all
  namespace: {namespace}
spec:
  podSelector: {{}}
  policyTypes: [Ingress]
"""
CELL_TITLE = re.compile(r"^(\S+) -> (\S+): (allowed|denied)")


def cells(panel) -> list[tuple[str, str, str, str]]:
    """(src, dst, verdict from the tooltip, allow|deny class) for every matrix cell."""
    out = []
    for title, classes in panel.locator(".labkit-cell").evaluate_all(
            "els => els.map(e => [e.getAttribute('title') || '', e.className])"):
        m = CELL_TITLE.match(title)
        assert m, f"a matrix cell without a readable title: {title!r}"
        verdict = "allow" if "allow" in classes.split() else "deny"
        out.append((m.group(1), m.group(2), m.group(3), verdict))
    return out


def panel_cell(notebook: Path) -> tuple[int, int]:
    """(index of the cell that displays the panel, number of cells) of the notebook."""
    cells = json.loads(notebook.read_text())["cells"]
    seen_panel = False
    for i, cell in enumerate(cells):
        source = "".join(cell["source"])
        seen_panel = seen_panel or (cell["cell_type"] == "code" and "LabPanel(" in source)
        lines = [line.strip() for line in source.splitlines() if line.strip()]
        displays = lines and re.fullmatch(r"(panel|LabPanel\(.*\))", lines[-1])
        if seen_panel and cell["cell_type"] == "code" and displays:
            return i, len(cells)
    raise AssertionError(f"{notebook.name} has no cell that displays a LabPanel")


def run_up_to_the_panel(page, notebook: Path) -> None:
    from playwright.sync_api import expect  # noqa: PLC0415

    index, count = panel_cell(notebook)
    command = "Run All Cells"
    if index < count - 1:  # select the next cell, run everything above it
        page.locator(".jp-Notebook .jp-Cell").nth(index + 1).locator(".jp-InputPrompt").first.click()
        command = "Run All Above Selected Cell"
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name=command, exact=True).click()
    expect(page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-InputPrompt")).to_have_text(
        re.compile(r"\[\d+\]"), timeout=120_000)  # the panel cell ran


def test_deny_all_typed_into_the_policy_editor_turns_the_matrix_red(page, lab_server):
    from playwright.sync_api import expect  # noqa: PLC0415

    page.goto(lab_server.url(lab_server.notebook.name))
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator", timeout=90_000)
    lab_server.wait_for_kernel(page)
    run_up_to_the_panel(page, lab_server.notebook)

    panel = page.locator(".labkit-panel").first
    expect(panel).to_be_visible(timeout=120_000)
    expect(panel.locator(".labkit-banner")).to_contain_text(
        "SIMULATED" if lab_server.backend == "sim" else "real packets", timeout=30_000)
    topology = panel.locator("img.labkit-topology")
    expect(topology).to_be_visible()
    first_picture = topology.get_attribute("src")

    # the matrix as the notebook left it
    panel.locator(".lm-TabBar-tab", has_text="Matrix").first.click()
    expect(panel.locator(".labkit-cell").first).to_be_visible(timeout=30_000)
    before = cells(panel)
    pods = sorted({src for src, *_ in before})
    assert len(before) == len(pods) ** 2 and len(pods) >= 2, before
    assert any(v == "allow" for s, d, _, v in before if s != d), "nothing left to deny: " + repr(before)
    namespaces = sorted({p.split("/")[0] for p in pods})

    # type the policies into the YAML editor of the Policies tab and apply them
    panel.locator(".lm-TabBar-tab", has_text="Policies").first.click()
    editor = panel.locator(".labkit-policy-editor")
    textarea = editor.locator(".labkit-yaml textarea")
    expect(textarea).to_be_visible()
    textarea.fill("---\n".join(DENY_ALL.format(namespace=ns) for ns in namespaces))
    editor.locator(".labkit-apply").click()
    expect(editor.locator(".labkit-validation")).to_contain_text("applied", timeout=30_000)
    for ns in namespaces:
        expect(editor.locator(".labkit-validation")).to_contain_text(f"networkpolicy/{ns}/ui-deny-all")

    # every cell between two different pods turns deny; the error area stays empty
    panel.locator(".lm-TabBar-tab", has_text="Matrix").first.click()
    others = len(pods) * (len(pods) - 1)
    expect(panel.locator(".labkit-cell.deny")).to_have_count(others, timeout=30_000)
    after = cells(panel)
    assert all(v == "deny" and t == "denied" for s, d, t, v in after if s != d), after
    expect(panel.locator(".labkit-error")).to_have_text("")
    panel.scroll_into_view_if_needed()
    ARTIFACTS.mkdir(exist_ok=True)
    panel.screenshot(path=str(ARTIFACTS / "policy-editor-matrix.png"))
    panel.locator(".lm-TabBar-tab", has_text="Topology").first.click()
    expect(topology).not_to_have_attribute("src", first_picture, timeout=30_000)  # redrawn after the change
    page.wait_for_timeout(300)  # let the new image paint
    panel.screenshot(path=str(ARTIFACTS / "policy-editor-topology.png"))
    page.screenshot(path=str(ARTIFACTS / "policy-editor-page.png"), full_page=True)

    # Live: an asyncio task in the kernel probes in a thread and updates the panel until stopped
    live = panel.locator(".labkit-live")
    live.click()
    expect(panel.locator(".labkit-live-status")).to_contain_text(re.compile(r"\b([3-9]|\d\d+) rounds"),
                                                                timeout=30_000)
    live.click()
    expect(panel.locator(".labkit-live-status")).to_contain_text("live probing is off")
    expect(panel.locator(".labkit-error")).to_have_text("")

    # Flows: start the flow log, walk a packet from the Explain tab (dropped now, with its rule), and the
    # log shows the attempt, denied, in red; stopping it says so
    panel.locator(".lm-TabBar-tab", has_text="Flows").first.click()
    panel.locator(".labkit-flows-toggle").click()
    expect(panel.locator(".labkit-flows-status")).to_contain_text("flow log running", timeout=30_000)
    panel.locator(".lm-TabBar-tab", has_text="Explain").first.click()
    panel.locator(".labkit-trace-button").click()
    walk = panel.locator(".labkit-walk-output")
    expect(walk).to_contain_text("DROPPED", timeout=30_000)
    expect(walk).to_contain_text("ui-deny-all")
    panel.locator(".lm-TabBar-tab", has_text="Flows").first.click()
    expect(panel.locator("tr.labkit-flow.denied").first).to_be_visible(timeout=10_000)
    panel.screenshot(path=str(ARTIFACTS / "policy-editor-flows.png"))
    panel.locator(".labkit-flows-toggle").click()
    expect(panel.locator(".labkit-flows-status")).to_contain_text("flow log stopped", timeout=30_000)
    expect(panel.locator(".labkit-error")).to_have_text("")

