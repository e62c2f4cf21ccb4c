"""The notebook UI through the real hub: in her JupyterLab session, alice attaches an archive
volume from the Data panel and runs a pipeline on a file of it from the Pipelines panel; the
run's outputs are where JupyterLab's file browser can open them."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.test_browser import log_in, page  # noqa: F401 - the Chromium page fixture
from tests.ui.conftest import shot

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.slow]

PRODUCT = "data/psa-rosetta/bundle_rosetta_demo/data_raw/timeseries/"
PRODUCT += "ro_demo_miro_temperature_20140806.xml"


def sidebar_panel(page, tab_id: str, test_id: str):  # noqa: F811
    """Show a left-sidebar panel by its tab, unless the restored layout shows it already."""
    tab = page.locator(f'.jp-SideBar .lm-TabBar-tab[data-id="{tab_id}"]')
    expect(tab).to_be_visible()
    panel = page.get_by_test_id(test_id)
    if not panel.is_visible():
        tab.click()
    expect(panel).to_be_visible()
    return panel


def test_alice_attaches_a_volume_and_runs_a_pipeline_in_her_session(page, demo_hub):  # noqa: F811
    log_in(page, demo_hub, "alice")
    r = demo_hub.api("POST", "users/alice/server", json={"profile": "planetary-lab", "volumes": []})
    assert r.status_code in (201, 202), r.text
    demo_hub.wait_ready("alice")
    try:
        page.goto(f"{demo_hub.url}/user/alice/lab?reset")
        page.wait_for_selector("#jp-main-dock-panel", state="visible", timeout=60_000)

        # Data panel: the volume is offered, not attached; Attach mounts it in the session.
        data = sidebar_panel(page, "datalabs-data-panel", "dl-data-panel")
        row = data.locator('.dl-volume[data-id="psa-rosetta"]')
        expect(row.get_by_test_id("dl-volume-state")).to_have_text("available")
        row.get_by_role("button", name="Attach").click()
        expect(row.get_by_test_id("dl-volume-state")).to_have_text("attached", timeout=60_000)
        listing = demo_hub.server("alice", "GET", "api/contents/data/psa-rosetta").json()
        assert "bundle_rosetta_demo" in {e["name"] for e in listing["content"]}
        shot(page, "session-data-panel")

        # Pipelines panel: launch the PDS4 plot on the product of the attached volume.
        pipes = sidebar_panel(page, "datalabs-pipelines", "dl-pipelines-panel")
        pipes.get_by_label("Search pipelines").fill("PDS4")
        card = pipes.locator(".dl-pipeline[data-pipeline='rosetta/pds4-table-plot']")
        card.get_by_role("button", name="Launch").click()
        dialog = page.get_by_role("dialog", name="Launch")
        dialog.locator(".dl-field[data-input='product'] .dl-path input").fill(PRODUCT)
        dialog.get_by_role("button", name="Launch", exact=True).click()
        run_page = page.get_by_test_id("dl-run-page")
        expect(run_page).to_be_visible()
        # The run's own state; the step graph is checked by tests/ui/test_pipelines_panel.py.
        expect(run_page).to_have_attribute("data-state", "success", timeout=120_000)
        run_id = run_page.get_attribute("data-run")
        shot(page, "session-run")

        # The outputs are in the session's visible run folder, so the file browser opens them.
        outputs = demo_hub.server(
            "alice", "GET", f"api/contents/pipeline-runs/runs/{run_id}/outputs"
        )
        assert outputs.status_code == 200, outputs.text
        names = {e["name"] for e in outputs.json()["content"]}
        assert "plot.svg" in names, names
    finally:
        demo_hub.stop_server("alice")
