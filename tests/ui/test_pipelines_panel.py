"""The Pipelines panel and the runs viewer in a real JupyterLab, driven by Chromium.

The lab has the demo catalogue plus a catalogue folder of our own with one slow pipeline
(``test/sleepy``, for cancelling), and the ``psa-rosetta`` archive volume attached, so that the
launch form picks its input from ``data/psa-rosetta`` like a user would. Runs are kept in a
visible workspace folder so that their outputs can be opened from JupyterLab (the contents API
hides dot-folders such as the default ``~/.local/share/datalabs``).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.hubprocess import lab_settings
from tests.labserver import running_lab
from tests.ui.conftest import (
    CATALOGUE,
    REPO,
    axe_violations,
    fresh_workspace,
    open_lab,
    set_theme,
    shot,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PRODUCT_DIR = ["data", "psa-rosetta", "bundle_rosetta_demo", "data_raw", "timeseries"]
PRODUCT = "ro_demo_miro_temperature_20140806.xml"


@pytest.fixture(scope="module")
def pipes_lab(tmp_path_factory, ui_archive):
    state = tmp_path_factory.mktemp("pipes-lab")
    extra = tmp_path_factory.mktemp("pipes-catalogue")
    (extra / "test" / "pipelines").mkdir(parents=True)
    shutil.copy(REPO / "tests/pipelines/data/sleepy.cwl", extra / "test/pipelines/sleepy.cwl")
    env = {
        "JUPYTERLAB_SETTINGS_DIR": str(lab_settings(state)),
        "DATALABS_CATALOGUE_DIRS": json.dumps([str(CATALOGUE), str(extra)]),
        "DATALABS_PIPELINES_HOME": str(state / "workspace" / "pipeline-runs"),
    }
    with running_lab(
        state, CATALOGUE, ui_archive, user="alice", groups=["rosetta-team"], extra_env=env
    ) as lab:
        r = lab.api("POST", "volumes/psa-rosetta/attach")
        assert r.status_code == 200, r.text
        assert (lab.root / Path(*PRODUCT_DIR) / PRODUCT).is_file()
        yield lab


def open_panel(page):
    """Open the Pipelines panel from the left sidebar (unless the restored layout shows it)."""
    tab = page.locator(".jp-SideBar .lm-TabBar-tab[data-id='datalabs-pipelines']")
    tab.wait_for()
    # JupyterLab restores the last layout (open_lab waits for that): clicking an open panel's
    # tab would close it.
    if "lm-mod-current" not in (tab.get_attribute("class") or ""):
        tab.click()
    panel = page.get_by_test_id("dl-pipelines-panel")
    panel.wait_for(state="visible")
    return panel


def launch_dialog(page, panel, query: str, pipeline: str):
    panel.get_by_label("Search pipelines").fill(query)
    card = panel.locator(f".dl-pipeline[data-pipeline='{pipeline}']")
    card.wait_for()
    card.get_by_role("button", name="Launch").click()
    dialog = page.get_by_role("dialog", name="Launch")
    dialog.wait_for()
    return dialog


def field(dialog, name: str):
    return dialog.locator(f".dl-field[data-input='{name}']")


def path_input(dialog, name: str):
    """The text box of a File or Directory input (beside its Browse button)."""
    return field(dialog, name).locator(".dl-path input")


def open_run(page, run_id: str):
    """Open a run's page the way a user does: My runs, then the run in the list."""
    page.get_by_test_id("dl-pipelines-panel").get_by_role("button", name="My runs").click()
    page.get_by_role("button", name=f"Open run {run_id}").click()
    page.locator(f"[data-testid=dl-run-page][data-run='{run_id}']").wait_for()


def wait_run_state(page, states: tuple[str, ...], timeout: float = 90_000) -> str:
    page.wait_for_function(
        "states => { const n = document.querySelector('[data-testid=dl-run-page]');"
        " return n && states.includes(n.dataset.state); }",
        arg=list(states),
        timeout=timeout,
    )
    return page.get_by_test_id("dl-run-page").get_attribute("data-state")


def wait_saved_run(lab, workspace: str, run_id: str | None) -> None:
    """Wait until JupyterLab has saved in ``workspace`` that its runs viewer shows ``run_id``."""
    deadline = time.monotonic() + 15
    saved = None
    while time.monotonic() < deadline:
        data = lab.request("GET", f"lab/api/workspaces/{workspace}").json().get("data", {})
        saved = data.get("datalabs-runs:runs", {}).get("data", {})
        if saved == {"run": run_id}:
            return
        time.sleep(0.2)
    raise AssertionError(f"the workspace keeps {saved}, not run {run_id}")


def run_to_end(lab, pipeline: str, inputs: dict) -> dict:
    r = lab.api("POST", "runs", json={"pipeline": pipeline, "inputs": inputs})
    assert r.status_code == 201, r.text
    run = r.json()
    deadline = time.monotonic() + 120
    while run["state"] not in ("success", "failed", "cancelled"):
        assert time.monotonic() < deadline, run
        time.sleep(0.5)
        run = lab.api("GET", f"runs/{run['id']}").json()
    return run


def test_search_launch_with_a_volume_file_watch_steps_and_open_the_output(page, pipes_lab):
    open_lab(page, pipes_lab, fresh_workspace())
    panel = open_panel(page)
    panel.get_by_label("Search pipelines").fill("PDS4")
    card = panel.locator(".dl-pipeline[data-pipeline='rosetta/pds4-table-plot']")
    card.wait_for()
    # Only what matches is listed, with its label, doc and keywords. The card above was listed
    # before the search too: wait for the search's answer to take the others away (CI once
    # counted while it was still on its way).
    expect(panel.locator(".dl-pipeline[data-pipeline='esasky/bright-sources']")).to_have_count(0)
    assert "Plot a table from a PDS4 product" in card.inner_text()
    assert "PSA" in card.locator(".dl-keywords").inner_text()
    shot(page, "pipelines-panel-search")

    dialog = launch_dialog(page, panel, "PDS4", "rosetta/pds4-table-plot")
    # Defaults are filled in, docs are the help text.
    assert dialog.get_by_label("X column").input_value() == "COMET_DISTANCE"
    assert dialog.get_by_label("Y column").input_value() == "SURFACE_TEMPERATURE"
    assert "psa-rosetta" in field(dialog, "product").locator(".dl-help").inner_text()

    # Pick the product from the mounted volume with JupyterLab's file dialog.
    field(dialog, "product").get_by_role("button", name="Browse for PDS4 label").click()
    picker = page.locator(".jp-Dialog")
    picker.wait_for()
    for name in PRODUCT_DIR:
        picker.locator(".jp-DirListing-item").filter(
            has=page.get_by_text(name, exact=True)
        ).dblclick()
    picker.locator(".jp-DirListing-item").filter(has=page.get_by_text(PRODUCT, exact=True)).click()
    picker.get_by_role("button", name="Select").click()
    picker.wait_for(state="detached")
    assert path_input(dialog, "product").input_value() == "/".join([*PRODUCT_DIR, PRODUCT])
    shot(page, "pipelines-launch-dialog")

    dialog.get_by_role("button", name="Launch", exact=True).click()
    # The run's page opens and its steps turn green as cwltool reports them.
    run_page = page.get_by_test_id("dl-run-page")
    run_page.wait_for()
    page.locator(".dl-step[data-step='extract'][data-state='success']").wait_for(timeout=90_000)
    page.locator(".dl-step[data-step='draw'][data-state='success']").wait_for(timeout=90_000)
    assert wait_run_state(page, ("success", "failed")) == "success"
    # One edge: draw reads the table that extract wrote; it stays drawn while the page updates.
    edges = page.get_by_test_id("dl-run-graph").locator(".react-flow__edge")
    expect(edges).to_have_count(1)
    for _ in range(5):
        assert edges.count() == 1
        page.wait_for_timeout(400)
    assert page.locator(".dl-step[data-step='draw']").evaluate(
        "n => getComputedStyle(n).borderLeftColor"
    ) == page.evaluate(
        "() => { const d = document.createElement('div');"
        " d.style.color = 'var(--jp-success-color1)'; document.body.append(d);"
        " const c = getComputedStyle(d).color; d.remove(); return c; }"
    )
    # Inputs as picked, a step's log, the provenance link.
    assert PRODUCT in page.get_by_test_id("dl-run-inputs").inner_text()
    page.get_by_role("button", name="Show the log of step draw").click()
    page.get_by_role("heading", name="Log of step draw").wait_for()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=dl-log]').textContent.includes('draw')"
    )
    href = page.get_by_role("link", name="Download provenance").get_attribute("href")
    assert href.endswith(f"/datalabs/api/runs/{run_page.get_attribute('data-run')}/provenance")
    # The link works with the browser's session (no token in it): a zip of the CWLProv bag.
    download = page.request.get(href)
    assert download.status == 200, download.text()
    assert download.headers["content-type"] == "application/zip"
    assert download.body()[:2] == b"PK"
    shot(page, "pipelines-run-success")

    # Open the plot: JupyterLab opens the SVG in a new tab.
    page.get_by_role("button", name="Open output plot (plot.svg)").click()
    page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="plot.svg").wait_for()
    page.locator(".jp-RenderedImage img, .jp-ImageViewer img").first.wait_for()
    shot(page, "pipelines-output-opened")


def test_bad_inputs_are_shown_beside_their_field(page, pipes_lab):
    open_lab(page, pipes_lab, fresh_workspace())
    panel = open_panel(page)
    dialog = launch_dialog(page, panel, "csv", "rosetta/csv-plot")
    dialog.get_by_role("button", name="Launch", exact=True).click()
    # Missing required inputs: the server names each, shown under its own field.
    error = field(dialog, "table").get_by_test_id("dl-input-error")
    error.wait_for()
    assert "missing (File required)" in error.inner_text()
    assert "missing" in field(dialog, "x_column").get_by_test_id("dl-input-error").inner_text()
    assert path_input(dialog, "table").get_attribute("aria-invalid") == "true"

    path_input(dialog, "table").fill("data/psa-rosetta/nope.csv")
    dialog.get_by_label("X column").fill("time")
    dialog.get_by_label("Y column").fill("temperature")
    dialog.get_by_role("button", name="Launch", exact=True).click()
    page.wait_for_function(
        '() => document.querySelector("[data-input=table] [data-testid=dl-input-error]")'
        "?.textContent.includes('file not found')"
    )
    assert field(dialog, "x_column").get_by_test_id("dl-input-error").count() == 0
    shot(page, "pipelines-bad-input")
    # Nothing was launched.
    assert dialog.is_visible()
    dialog.get_by_role("button", name="Cancel").click()
    assert page.get_by_role("dialog").count() == 0


def test_launch_dialog_works_from_the_keyboard(page, pipes_lab):
    open_lab(page, pipes_lab, fresh_workspace())
    panel = open_panel(page)
    panel.get_by_label("Search pipelines").focus()
    page.keyboard.type("grandchild")
    launch = panel.get_by_role("button", name="Launch test/sleepy")
    launch.wait_for()
    launch.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Launch test/sleepy")
    dialog.wait_for()
    # The first field has the focus; Escape closes and gives the focus back.
    page.wait_for_function("() => document.activeElement?.closest('.dl-field') !== null")
    page.keyboard.press("Escape")
    dialog.wait_for(state="detached")
    assert page.evaluate("() => document.activeElement.getAttribute('aria-label')") == (
        "Launch test/sleepy"
    )
    # Enter in a field submits the form: the run's page opens.
    page.keyboard.press("Enter")
    dialog.wait_for()
    page.wait_for_function("() => document.activeElement?.closest('.dl-field') !== null")
    page.keyboard.type("0")
    page.keyboard.press("Enter")
    page.get_by_test_id("dl-run-page").wait_for()
    assert wait_run_state(page, ("success", "failed")) == "success"


def test_cancel_a_long_run(page, pipes_lab):
    open_lab(page, pipes_lab, fresh_workspace())
    panel = open_panel(page)
    dialog = launch_dialog(page, panel, "grandchild", "test/sleepy")
    dialog.get_by_label("marker").fill("300")
    dialog.get_by_role("button", name="Launch", exact=True).click()
    page.locator(".dl-step[data-step='wait'][data-state='running']").wait_for(timeout=60_000)
    shot(page, "pipelines-long-run")
    page.get_by_role("button", name="Cancel run").click()
    assert wait_run_state(page, ("cancelled", "failed", "success"), timeout=30_000) == "cancelled"
    page.locator(".dl-state[data-state='cancelled']").first.wait_for()
    # The step that was running when the run was cancelled says so too.
    page.locator(".dl-step[data-step='wait'][data-state='cancelled']").wait_for()
    shot(page, "pipelines-cancelled")
    # The runs list says so too.
    page.get_by_role("button", name="All runs").click()
    run = page.get_by_test_id("dl-run-row").filter(has_text="test/sleepy").first
    assert run.get_attribute("data-state") == "cancelled"
    # The list follows runs started elsewhere (here: the REST API, as a terminal would).
    r = pipes_lab.api("POST", "runs", json={"pipeline": "test/sleepy", "inputs": {"marker": "0"}})
    assert r.status_code == 201, r.text
    page.locator(
        f"[data-testid=dl-run-row][data-run='{r.json()['id']}'][data-state='success']"
    ).wait_for(timeout=60_000)


def test_rerun_with_changed_inputs_opens_the_prefilled_dialog(page, pipes_lab):
    table = "/".join([*PRODUCT_DIR, PRODUCT.replace(".xml", ".csv")])
    first = run_to_end(
        pipes_lab,
        "rosetta/csv-plot",
        {"table": table, "x_column": "COMET_DISTANCE", "y_column": "SURFACE_TEMPERATURE"},
    )
    assert first["state"] == "success", first
    open_lab(page, pipes_lab, fresh_workspace())
    open_panel(page)
    open_run(page, first["id"])
    page.get_by_role("button", name="Re-run with changed inputs").click()
    dialog = page.get_by_role("dialog", name="Launch")
    dialog.wait_for()
    # The dialog has settled once its first field has the focus (CI typed into X column
    # before that, and the rest of the typing went to the first field).
    expect(path_input(dialog, "table")).to_be_focused()
    # Pre-filled with the run's inputs, the file as a workspace path.
    assert path_input(dialog, "table").input_value() == table
    assert dialog.get_by_label("X column").input_value() == "COMET_DISTANCE"
    assert dialog.get_by_label("Y column").input_value() == "SURFACE_TEMPERATURE"
    dialog.get_by_label("X column").fill("HELIOCENTRIC_DISTANCE")
    shot(page, "pipelines-rerun-dialog")
    dialog.get_by_role("button", name="Launch", exact=True).click()
    page.wait_for_function(
        "id => { const n = document.querySelector('[data-testid=dl-run-page]');"
        " return n && n.dataset.run !== id; }",
        arg=first["id"],
    )
    assert wait_run_state(page, ("success", "failed")) == "success"
    new_id = page.get_by_test_id("dl-run-page").get_attribute("data-run")
    new = pipes_lab.api("GET", f"runs/{new_id}").json()
    assert new["inputs"]["x_column"] == "HELIOCENTRIC_DISTANCE"
    assert new["inputs"]["y_column"] == "SURFACE_TEMPERATURE"
    assert new["inputs"]["table"]["path"] == first["inputs"]["table"]["path"]

    # Plain re-run: the same inputs again, in a new run.
    page.get_by_role("button", name="Re-run", exact=True).click()
    page.wait_for_function(
        "id => { const n = document.querySelector('[data-testid=dl-run-page]');"
        " return n && n.dataset.run !== id; }",
        arg=new_id,
    )
    again = page.get_by_test_id("dl-run-page").get_attribute("data-run")
    assert pipes_lab.api("GET", f"runs/{again}").json()["rerun_of"] == new_id

    # JupyterLab keeps which run the viewer shows in the workspace (written within a second),
    # and a reload brings the viewer back on that run.
    workspace = page.url.split("/lab/workspaces/", 1)[1].split("/")[0].split("?")[0]
    wait_saved_run(pipes_lab, workspace, again)
    page.reload()
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=60_000)
    page.locator(f"[data-testid=dl-run-page][data-run='{again}']").wait_for(timeout=30_000)
    assert wait_run_state(page, ("success", "failed")) == "success"
    page.get_by_role("button", name="All runs").click()
    page.get_by_test_id("dl-run-list").wait_for()
    wait_saved_run(pipes_lab, workspace, None)
    page.reload()
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=60_000)
    page.get_by_test_id("dl-run-list").wait_for(timeout=30_000)
    assert page.get_by_test_id("dl-run-page").count() == 0


def test_panel_and_runs_viewer_have_no_serious_accessibility_violations(page, pipes_lab):
    run = run_to_end(pipes_lab, "test/sleepy", {"marker": "0"})
    open_lab(page, pipes_lab, fresh_workspace())
    panel = open_panel(page)
    panel.locator(".dl-pipeline").first.wait_for()
    problems = {"panel": axe_violations(page, "[data-testid=dl-pipelines-panel]")}

    dialog = launch_dialog(page, panel, "PDS4", "rosetta/pds4-table-plot")
    problems["launch dialog"] = axe_violations(page, ".dl-launch")
    dialog.get_by_role("button", name="Cancel").click()

    panel.get_by_role("button", name="My runs").click()
    page.get_by_test_id("dl-run-list").wait_for()
    problems["runs list"] = axe_violations(page, "[data-testid=dl-runs-view]")
    page.get_by_role("button", name=f"Open run {run['id']}").click()
    wait_run_state(page, ("success",))
    problems["run page"] = axe_violations(page, "[data-testid=dl-runs-view]")
    shot(page, "pipelines-run-page-a11y")

    # The same page in the dark theme: colours come from the theme, contrast holds.
    set_theme(page, "JupyterLab Dark")
    try:
        problems["run page, dark"] = axe_violations(page, "[data-testid=dl-runs-view]")
        problems["panel, dark"] = axe_violations(page, "[data-testid=dl-pipelines-panel]")
        shot(page, "pipelines-run-page-dark")
    finally:
        set_theme(page, "JupyterLab Light")
    assert not any(problems.values()), json.dumps(problems, indent=1)
