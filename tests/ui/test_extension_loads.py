"""The prebuilt front end is served by the session's JupyterLab and its plugins start."""

import pytest
from playwright.sync_api import expect

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
    # The launcher offers the Data panel; once it shows, the shell has restored its layout and
    # no longer moves the focus (which would close the palette).
    card = page.locator(".jp-LauncherCard", has_text="Open the Data panel")
    expect(card).to_be_visible()
    # The Data panel opens from the command palette, under "Datalabs", and lists the volumes.
    palette = page.locator("#command-palette")
    page.get_by_role("menuitem", name="View").click()
    page.get_by_role("menuitem", name="Activate Command Palette").click()
    expect(palette.locator("input")).to_be_focused()
    palette.locator("input").fill("Open the Data panel")
    item = palette.locator(".lm-CommandPalette-item", has_text="Open the Data panel")
    expect(item).to_be_visible()
    headers = palette.locator(".lm-CommandPalette-header").all_text_contents()
    assert [h.strip() for h in headers] == ["Datalabs"], headers
    item.click()
    panel = page.get_by_test_id("dl-data-panel")
    expect(panel).to_be_visible()
    expect(panel.locator('.dl-volume[data-id="psa-rosetta"]')).to_be_visible()
    # The pipelines plugin says so in the console when JupyterLab activates it.
    page.wait_for_timeout(500)
    for part in ("pipelines",):
        assert any(f"datalabs: {part} panel loaded" in m for m in messages), messages
