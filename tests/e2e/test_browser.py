"""A person in Chromium: log in as alice, pick a datalab and volumes, land in JupyterLab."""

import re

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.e2e.conftest import ARTIFACTS
from tests.helpers import browser_page, launch_chromium

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def page(request):
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            with browser_page(browser, ARTIFACTS / f"last-{request.node.name}.png") as page:
                yield page
        finally:
            browser.close()


def log_in(page, hub, user):
    page.goto(f"{hub.url}/hub/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", hub.password)
    page.click("input[type=submit], button[type=submit]")


def test_alice_picks_a_datalab_and_volumes_and_sees_them_in_jupyterlab(page, demo_hub):
    log_in(page, demo_hub, "alice")
    page.goto(f"{demo_hub.url}/hub/spawn")
    form = page.locator("#datalabs-form")
    expect(form).to_be_visible()
    # Cards for each datalab; alice sees the restricted volume (she is in rosetta-team)
    expect(form.locator(".dl-card")).to_have_count(4)
    expect(form.locator("input[value=rosetta-restricted]")).to_have_count(1)
    # The form comes back with alice's last choice (another test of the session may have
    # started her planetary-lab with other volumes): pick another datalab first, so that
    # picking planetary-lab is a change, as it is for someone choosing it anew.
    form.locator(".dl-card[data-slug=astronomy-lab]").click()
    form.locator(".dl-card[data-slug=planetary-lab]").click()
    # Picking the planetary datalab pre-selects its default volumes
    expect(form.locator("input[value=psa-rosetta]")).to_be_checked()
    expect(form.locator("input[value=spice-juice]")).to_be_checked()
    # The search box filters volumes
    page.fill("#dl-volume-search", "embargo")
    expect(form.locator(".dl-volume:visible")).to_have_count(1)
    form.locator("input[value=rosetta-restricted]").check()
    page.fill("#dl-volume-search", "")
    form.locator("input[value=spice-juice]").uncheck()
    page.screenshot(path=str(ARTIFACTS / "spawn-form.png"), full_page=True)
    page.locator("form#spawn_form input[type=submit], form#spawn_form button[type=submit]").click()
    try:
        page.wait_for_url(re.compile(r".*/user/alice/lab.*"), timeout=90_000)
        browser_panel = page.locator(".jp-DirListing-content")
        expect(browser_panel.get_by_text("data", exact=True)).to_be_visible(timeout=60_000)
        browser_panel.get_by_text("data", exact=True).dblclick()
        expect(browser_panel.get_by_text("psa-rosetta", exact=True)).to_be_visible()
        expect(browser_panel.get_by_text("rosetta-restricted", exact=True)).to_be_visible()
        expect(browser_panel.get_by_text("spice-juice", exact=True)).to_have_count(0)
        page.screenshot(path=str(ARTIFACTS / "jupyterlab-volumes.png"))
    finally:
        demo_hub.stop_server("alice")
