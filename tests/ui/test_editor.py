"""The Pipeline Editor in Chromium: open a CWL workflow as a graph, build one from the palette,
link ports, see a refused link's reason, save, and check the file with cwltool."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from playwright.sync_api import expect

from tests.pipelines.samples import COUNT, HEAD, UPPER
from tests.ui.conftest import (
    REPO,
    axe_violations,
    fresh_workspace,
    open_lab,
    set_theme,
    settled,
    shot,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Read where the suite lies beside the checkout (CI clones into another folder).
CONFORMANCE = REPO.parent / "shared" / "cwl-v1.2" / "tests"


START = """\
# A workflow built in the Pipeline Editor.
cwlVersion: v1.2
class: Workflow
inputs:
  src: File
outputs: {}
steps: {}
"""


SAMPLE_TOOLS = {"upper": UPPER, "head": HEAD, "count": COUNT}


def write_workflow(root, name: str, text: str, tools: tuple[str, ...]) -> None:
    """The workflow ``name`` in the workspace, with the sample ``tools`` it runs in tools/."""
    (root / "tools").mkdir(exist_ok=True)
    for tool in tools:
        (root / "tools" / f"{tool}.cwl").write_text(SAMPLE_TOOLS[tool])
    (root / name).write_text(text)


def open_in_editor(page, lab, path: str) -> None:
    """Open ``path`` with "Open With -> Pipeline Editor" from the file browser."""
    page.set_viewport_size({"width": 1600, "height": 900})
    folder = path.rsplit("/", 1)[0] if "/" in path else ""
    open_lab(page, lab, fresh_workspace(folder, name="editor-test"))
    name = path.rsplit("/", 1)[-1]
    item = page.locator(".jp-DirListing-item", has_text=name).first
    item.click(button="right")
    page.locator(".lm-Menu-itemLabel", has_text="Open With").click()
    page.locator(".lm-Menu-itemLabel", has_text="Pipeline Editor").click()
    page.wait_for_selector(".dl-pipeline-editor .react-flow__node", timeout=30_000)


def handle(page, node: str, handle_id: str):
    return page.locator(f'.react-flow__handle[data-nodeid="{node}"][data-handleid="{handle_id}"]')


def link(page, source: str, source_port: str, target: str, target_port: str) -> None:
    """Drag from an output handle to an input handle, as a person does with the mouse."""
    start = handle(page, source, f"out:{source_port}").bounding_box()
    end = handle(page, target, f"in:{target_port}").bounding_box()
    page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
    page.mouse.down()
    page.mouse.move(end["x"] + end["width"] / 2, end["y"] + end["height"] / 2, steps=12)
    page.mouse.up()


def edges(page) -> int:
    return page.locator(".dl-pipeline-editor .react-flow__edge").count()


def test_build_a_three_step_workflow_from_the_palette(page, ui_lab):
    root = ui_lab.root
    write_workflow(root, "build.cwl", START, ("upper", "head", "count"))

    open_in_editor(page, ui_lab, "build.cwl")
    editor = page.locator(".dl-pipeline-editor")
    pane = editor.locator(".react-flow__pane")
    box = pane.bounding_box()
    # Drag three tools from the palette onto the canvas.
    for key, x in (("upper", 0.35), ("head", 0.55), ("count", 0.75)):
        before = editor.locator(".react-flow__node").count()
        editor.locator(f'[data-tool="path:tools/{key}.cwl"]').drag_to(
            pane, target_position={"x": box["width"] * x, "y": box["height"] * (x - 0.1)}
        )
        page.wait_for_function(
            f"document.querySelectorAll('.dl-pipeline-editor .react-flow__node').length > {before}"
        )
        editor.locator(f'.react-flow__node[data-id="{key}"]').wait_for()
    # Auto-layout puts them in a row after the input; fit brings them into view.
    page.locator(
        ".dl-pipeline-editor-widget .jp-ToolbarButtonComponent", has_text="Auto-layout"
    ).click()
    page.locator(".react-flow__controls-fitview").click()
    settled(page, ".dl-pipeline-editor")

    link(page, "src", "src", "upper", "text")
    page.wait_for_function(
        "document.querySelectorAll('.dl-pipeline-editor .react-flow__edge').length == 1"
    )
    link(page, "upper", "upper", "head", "file")
    page.wait_for_function(
        "document.querySelectorAll('.dl-pipeline-editor .react-flow__edge').length == 2"
    )
    link(page, "head", "first", "count", "file")
    page.wait_for_function(
        "document.querySelectorAll('.dl-pipeline-editor .react-flow__edge').length == 3"
    )
    # Linked, auto-layout gives each step its own column.
    page.locator(
        ".dl-pipeline-editor-widget .jp-ToolbarButtonComponent", has_text="Auto-layout"
    ).click()
    page.locator(".react-flow__controls-fitview").click()
    settled(page, ".dl-pipeline-editor")
    xs = [
        editor.locator(f'.react-flow__node[data-id="{n}"]').bounding_box()["x"]
        for n in ("src", "upper", "head", "count")
    ]
    assert xs == sorted(xs) and len(set(xs)) == 4, xs

    # A File cannot feed an int: refused, with the reason.
    link(page, "src", "src", "head", "lines")
    notice = editor.locator(".dl-editor-notice-error")
    notice.wait_for()
    assert "workflow input 'src' gives File but 'head/lines' takes int" in notice.inner_text()
    assert edges(page) == 3
    shot(page, "editor-refused-link")

    # Set the step input `lines` to 2 in the properties panel.
    editor.locator('.react-flow__node[data-id="head"] .dl-editor-node-id').click()
    field = editor.locator('[data-testid="default-lines"]')
    field.fill("2")
    field.press("Enter")
    # And make the count a workflow output.
    editor.locator('.react-flow__node[data-id="count"] .dl-editor-node-id').click()
    editor.locator(".dl-editor-props button", has_text="Make it a workflow output").click()
    page.wait_for_function(
        "document.querySelectorAll('.dl-pipeline-editor .react-flow__edge').length == 4"
    )

    page.locator(".dl-pipeline-editor-widget .jp-ToolbarButtonComponent", has_text="Save").click()
    editor.locator(".dl-editor-notice-info", has_text="cwltool finds it valid").wait_for()
    # More room for the picture: the file browser folded away.
    page.locator(".react-flow__pane").click(position={"x": 10, "y": 10})
    page.keyboard.press("Control+b")
    page.wait_for_selector("#jp-left-stack", state="hidden")
    settled(page, ".dl-pipeline-editor")
    page.locator(".react-flow__controls-fitview").click()
    settled(page, ".dl-pipeline-editor")
    shot(page, "editor-three-steps")

    text = (root / "build.cwl").read_text()
    assert "# A workflow built in the Pipeline Editor." in text
    for step in ("upper:", "head:", "count:", "run: tools/head.cwl", "default: 2"):
        assert step in text, text
    checked = subprocess.run(
        [sys.executable, "-m", "cwltool", "--validate", str(root / "build.cwl")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stderr

    # Publish it to alice's own catalogue: it is found like any pipeline.
    page.locator(
        ".dl-pipeline-editor-widget .jp-ToolbarButtonComponent", has_text="Publish"
    ).click()
    dialog = page.locator(".jp-Dialog")
    dialog.locator('input[name="label"]').fill("Three steps")
    dialog.locator('input[name="keywords"]').fill("demo, text")
    dialog.locator('input[name="author"]').fill("Alice")
    dialog.locator(".jp-Dialog-button", has_text="Publish").click()
    editor.locator(".dl-editor-notice-info", has_text="Published as alice/build").wait_for()
    found = ui_lab.api("GET", "pipelines", params={"q": "three steps"}).json()["pipelines"]
    assert [(p["id"], p["keywords"], p["authors"]) for p in found] == [
        ("alice/build", ["demo", "text"], ["Alice"])
    ]

    # Run it from the editor: the Pipelines launch dialog asks for the input, then the steps
    # turn green on the canvas as the run goes.
    (root / "input.txt").write_text("alpha\nbeta\ngamma\n")
    page.locator(
        ".dl-pipeline-editor-widget .jp-ToolbarButtonComponent", has_text="Run"
    ).first.click()
    dialog = page.get_by_role("dialog", name="Launch")
    dialog.wait_for()
    dialog.locator(".dl-field[data-input='src'] .dl-path input").fill("input.txt")
    dialog.get_by_role("button", name="Launch", exact=True).click()
    editor.locator(".dl-editor-notice-info", has_text=": success.").wait_for(timeout=120_000)
    for step in ("upper", "head", "count"):
        node = editor.locator(f'.react-flow__node[data-id="{step}"] .dl-editor-node')
        assert node.get_attribute("data-state") == "success", step
    shot(page, "editor-run")

    # Undo brings back the unsaved state one edit at a time; redo goes forward again.
    editor.locator(".react-flow__pane").click(position={"x": 10, "y": 10})
    page.keyboard.press("Control+z")
    page.wait_for_function(
        "document.querySelectorAll('.dl-pipeline-editor .react-flow__edge').length == 3"
    )
    page.keyboard.press("Control+Shift+z")
    page.wait_for_function(
        "document.querySelectorAll('.dl-pipeline-editor .react-flow__edge').length == 4"
    )


def test_a_conformance_workflow_with_scatter_and_a_subworkflow_is_drawn(page, ui_lab):
    folder = ui_lab.root / "conformance"
    folder.mkdir(exist_ok=True)
    for name in ("scatter-wf1.cwl", "count-lines10-wf.cwl", "wc-tool.cwl", "parseInt-tool.cwl"):
        shutil.copy(f"{CONFORMANCE}/{name}", folder / name)

    open_in_editor(page, ui_lab, "conformance/scatter-wf1.cwl")
    editor = page.locator(".dl-pipeline-editor")
    # React Flow draws an edge only once both of its nodes are measured: wait for the drawing.
    expect(editor.locator(".react-flow__node")).to_have_count(3)
    expect(editor.locator(".react-flow__edge")).to_have_count(2)
    step = editor.locator('.react-flow__node[data-id="step1"]')
    assert step.locator(".dl-editor-badge", has_text="scatter").count() == 1
    assert "echo_in" in step.inner_text() and "string" in step.inner_text()

    open_in_editor(page, ui_lab, "conformance/count-lines10-wf.cwl")
    editor = page.locator(".dl-pipeline-editor").last
    nodes = editor.locator(".react-flow__node")
    expect(nodes).to_have_count(3)
    expand = editor.locator('button[aria-label="Expand the subworkflow step0"]')
    assert "2 steps" in expand.inner_text()
    expand.click()
    # The subworkflow's input, two steps and output are drawn inside the step, with its links.
    page.wait_for_function(
        "document.querySelectorAll('.dl-pipeline-editor .react-flow__node.dl-editor-inner')"
        ".length == 4"
    )
    expect(editor.locator('.react-flow__node[data-id="step0::step1"]')).to_have_count(1)
    expect(editor.locator('.react-flow__node[data-id="step0::step2"]')).to_have_count(1)
    expect(editor.locator(".react-flow__edge.dl-edge-inner")).to_have_count(3)
    shot(page, "editor-subworkflow")


MISMATCH = """\
cwlVersion: v1.2
class: Workflow
inputs:
  src: File
outputs:
  first:
    type: File
    outputSource: head/first
steps:
  count:
    run: tools/count.cwl
    in: {file: src}
    out: [counted]
  head:
    run: tools/head.cwl
    in:
      lines: count/counted
      file: src
    out: [first]
"""


def test_validation_problems_show_on_the_node_and_link(page, ui_lab):
    root = ui_lab.root
    write_workflow(root, "mismatch.cwl", MISMATCH, ("head", "count"))

    open_in_editor(page, ui_lab, "mismatch.cwl")
    editor = page.locator(".dl-pipeline-editor")
    page.locator(".dl-pipeline-editor-widget .jp-ToolbarButtonComponent", has_text="Save").click()
    editor.locator(".dl-editor-notice-error", has_text="cwltool finds").wait_for()
    head = editor.locator('.react-flow__node[data-id="head"] .dl-editor-node')
    assert "dl-has-problem" in head.get_attribute("class")
    assert "lines" in head.locator(".dl-editor-node-problem").inner_text()
    bad = editor.locator(".react-flow__edge.dl-edge-problem")
    expect(bad).to_have_count(1)
    assert bad.get_attribute("data-id") == "count/counted->head/lines"
    # The list under the canvas names the step; clicking it selects the step.
    editor.locator(".dl-editor-problems button", has_text="head").first.click()
    assert editor.locator(".dl-editor-props-title").inner_text() == "Step head"
    shot(page, "editor-problems")


def test_a_run_colours_the_steps_by_state(page, ui_lab):
    root = ui_lab.root
    write_workflow(
        root,
        "two.cwl",
        "cwlVersion: v1.2\nclass: Workflow\ninputs:\n  src: File\n"
        "outputs:\n  n: {type: File, outputSource: count/counted}\n"
        "steps:\n  upper: {run: tools/upper.cwl, in: {text: src}, out: [upper]}\n"
        "  count: {run: tools/count.cwl, in: {file: upper/upper}, out: [counted]}\n",
        ("upper", "count"),
    )
    (root / "two.txt").write_text("a\nb\n")
    pipeline = ui_lab.api("POST", "editor/run-draft", json={"path": "two.cwl"}).json()
    run = ui_lab.api(
        "POST", "runs", json={"pipeline": pipeline["id"], "inputs": {"src": "two.txt"}}
    ).json()

    open_in_editor(page, ui_lab, "two.cwl")
    editor = page.locator(".dl-pipeline-editor")
    page.locator(
        ".dl-pipeline-editor-widget .jp-ToolbarButtonComponent", has_text="Show run"
    ).click()
    page.locator(".jp-Dialog input").fill(run["id"])
    page.locator(".jp-Dialog-button", has_text="OK").click()
    editor.locator(".dl-editor-notice-info", has_text=f"Run {run['id']}: success").wait_for(
        timeout=90_000
    )
    for step in ("upper", "count"):
        node = editor.locator(f'.react-flow__node[data-id="{step}"] .dl-editor-node')
        assert node.get_attribute("data-state") == "success"
        assert "dl-state-success" in node.get_attribute("class")
    shot(page, "editor-run-states")


def test_the_text_view_shows_what_the_graph_view_saved(page, ui_lab):
    root = ui_lab.root
    write_workflow(root, "synced.cwl", START, ("upper",))

    # The text editor is the default for .cwl; the graph view opens beside it on the same file.
    open_lab(page, ui_lab, fresh_workspace(name="editor-test"))
    page.set_viewport_size({"width": 1600, "height": 900})
    page.locator(".jp-DirListing-item", has_text="synced.cwl").dblclick()
    text_view = page.locator(".jp-FileEditor .cm-content")
    text_view.wait_for()
    assert "steps: {}" in text_view.inner_text()
    item = page.locator(".jp-DirListing-item", has_text="synced.cwl")
    item.click(button="right")
    page.locator(".lm-Menu-itemLabel", has_text="Open With").click()
    page.locator(".lm-Menu-itemLabel", has_text="Pipeline Editor").click()
    editor = page.locator(".dl-pipeline-editor")
    editor.locator(".react-flow__node").first.wait_for()

    # Keyboard only: focus the tool's Add button, press Enter; then save with Ctrl+S.
    add = editor.locator('button[aria-label="Add Upper case as a step"]')
    add.focus()
    page.keyboard.press("Enter")
    editor.locator('.react-flow__node[data-id="upper"]').wait_for()
    editor.locator(".dl-editor-canvas").focus()
    page.keyboard.press("Control+s")
    editor.locator(".dl-editor-notice", has_text="Saved synced.cwl").wait_for()

    page.locator(".lm-TabBar-tab", has_text="synced.cwl").first.click()
    page.wait_for_function(
        "[...document.querySelectorAll('.jp-FileEditor .cm-content')]"
        ".some(e => e.innerText.includes('run: tools/upper.cwl'))"
    )
    assert "run: tools/upper.cwl" in (root / "synced.cwl").read_text()


def test_the_editor_has_no_serious_accessibility_violations_light_or_dark(page, ui_lab):
    root = ui_lab.root
    write_workflow(root, "a11y.cwl", MISMATCH, ("head", "count"))
    open_in_editor(page, ui_lab, "a11y.cwl")
    editor = page.locator(".dl-pipeline-editor")
    editor.locator('.react-flow__node[data-id="head"] .dl-editor-node-id').click()
    page.locator(".dl-pipeline-editor-widget .jp-ToolbarButtonComponent", has_text="Save").click()
    editor.locator(".dl-editor-notice-error").wait_for()
    problems = {"light": axe_violations(page, ".dl-pipeline-editor")}
    set_theme(page, "JupyterLab Dark")
    try:
        problems["dark"] = axe_violations(page, ".dl-pipeline-editor")
        shot(page, "editor-dark")
    finally:
        set_theme(page, "JupyterLab Light")
    assert not any(problems.values()), json.dumps(problems, indent=1)


def test_a_package_with_several_workflows_offers_the_choice(page, ui_lab):
    """An EO application package holding two workflows: the editor lists them, and the one
    picked is drawn."""
    from tests.pipelines.samples import two_workflow_package

    folder = ui_lab.root / "packages"
    folder.mkdir(exist_ok=True)
    (folder / "two.cwl").write_text(two_workflow_package())
    page.set_viewport_size({"width": 1600, "height": 900})
    open_lab(page, ui_lab, fresh_workspace("packages", name="editor-test"))
    page.locator(".jp-DirListing-item", has_text="two.cwl").first.click(button="right")
    page.locator(".lm-Menu-itemLabel", has_text="Open With").click()
    page.locator(".lm-Menu-itemLabel", has_text="Pipeline Editor").click()
    chooser = page.locator(".dl-pipeline-editor .dl-editor-choices")
    chooser.wait_for(timeout=30_000)
    assert "water-bodies, water-bodies-twice" in page.locator(".dl-editor-empty").inner_text()
    assert chooser.locator("button").all_inner_texts() == [
        "Open water-bodies",
        "Open water-bodies-twice",
    ]
    chooser.locator("button", has_text="Open water-bodies-twice").click()
    page.wait_for_selector('.dl-pipeline-editor .react-flow__node[data-id="once"]', timeout=30_000)
    expect(page.locator(".dl-pipeline-editor .react-flow__node")).to_have_count(3)
