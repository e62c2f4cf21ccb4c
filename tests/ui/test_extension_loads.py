"""The prebuilt front end is served by the session's JupyterLab and its plugins start."""

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.ui.conftest import open_lab

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_jupyterlab_lists_and_starts_the_datalabs_plugins(page, ui_lab):
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text))
    open_lab(page, ui_lab)
    listed = page.evaluate(
        "JSON.parse(document.getElementById('jupyter-config-data').textContent)"
        ".federated_extensions.map(e => e.name)"
    )
    assert "datalabs-jupyterlab" in listed
    # The data plugin says so in the console when JupyterLab activates it.
    page.wait_for_timeout(500)
    assert any("datalabs: data panel loaded" in m for m in messages), messages
    # The Pipelines panel opens from the command palette and lists the demo catalogue.
    palette = page.locator(".lm-CommandPalette-input")
    # The shortcut works once JupyterLab has loaded its keybindings, a moment after the shell.
    # Pressed again only while the palette is still closed: the shortcut toggles it.
    for _ in range(6):
        if palette.is_visible():
            break
        page.keyboard.press("Control+Shift+C")
        try:
            palette.wait_for(state="visible", timeout=5_000)
        except PlaywrightTimeout:
            continue
    palette.fill("Open the Pipelines panel")
    page.locator(
        ".lm-CommandPalette-item.lm-mod-active[data-command='datalabs:open-pipelines']"
    ).wait_for()
    page.keyboard.press("Enter")
    panel = page.get_by_test_id("dl-pipelines-panel")
    panel.wait_for(state="visible")
    panel.locator(".dl-pipeline[data-pipeline='rosetta/pds4-table-plot']").wait_for()
    # The launcher's Datalabs section opens the runs viewer.
    page.locator(".jp-LauncherCard", has_text="Pipeline runs").click()
    page.get_by_test_id("dl-runs-view").wait_for(state="visible")
