"""The prebuilt front end is served by the session's JupyterLab and its plugins start."""

import pytest
from playwright.sync_api import expect

from tests.ui.conftest import open_lab

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_jupyterlab_lists_and_starts_the_datalabs_plugins(page, ui_lab):
    open_lab(page, ui_lab)
    listed = page.evaluate(
        "JSON.parse(document.getElementById('jupyter-config-data').textContent)"
        ".federated_extensions.map(e => e.name)"
    )
    assert "datalabs-jupyterlab" in listed
    # The launcher offers the Data panel; once it shows, the shell has restored its layout and
    # no longer moves the focus (which would close the palette).
    card = page.locator(".jp-LauncherCard", has_text="Open the Data panel")
    expect(card).to_be_visible()
    palette = page.locator("#command-palette")

    def run_from_palette(label: str) -> None:
        # From the View menu: a shortcut pressed before the shell holds the focus gets lost.
        page.get_by_role("menuitem", name="View").click()
        page.get_by_role("menuitem", name="Activate Command Palette").click()
        expect(palette.locator("input")).to_be_focused()
        palette.locator("input").fill(label)
        item = palette.locator(".lm-CommandPalette-item", has_text=label)
        expect(item).to_be_visible()
        headers = palette.locator(".lm-CommandPalette-header").all_text_contents()
        assert [h.strip() for h in headers] == ["Datalabs"], headers
        item.click()

    # The Data panel opens from the command palette, under "Datalabs", and lists the volumes.
    run_from_palette("Open the Data panel")
    panel = page.get_by_test_id("dl-data-panel")
    expect(panel).to_be_visible()
    expect(panel.locator('.dl-volume[data-id="psa-rosetta"]')).to_be_visible()
    # So does the Pipelines panel, listing the demo catalogue.
    run_from_palette("Open the Pipelines panel")
    pipelines = page.get_by_test_id("dl-pipelines-panel")
    expect(pipelines).to_be_visible()
    expect(
        pipelines.locator(".dl-pipeline[data-pipeline='rosetta/pds4-table-plot']")
    ).to_be_visible()
    # The launcher's Datalabs section opens the runs viewer.
    page.locator(".jp-LauncherCard", has_text="Pipeline runs").click()
    expect(page.get_by_test_id("dl-runs-view")).to_be_visible()
