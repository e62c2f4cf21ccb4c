"""The Data panel in a real JupyterLab and Chromium: hosted volumes, the user's own storage
(a real ``rclone serve webdav`` on 127.0.0.1), search, access and accessibility.

The lab runs as alice (hub group ``rosetta-team``) on a copy of the demo catalogue with one
more volume, ``staff-archive``, that only the ``staff`` group may read.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.hubprocess import lab_settings
from tests.labserver import running_lab
from tests.servers import CANARY
from tests.ui.conftest import CATALOGUE, axe_violations, settled, shot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PANEL = '[data-testid="dl-data-panel"]'
READABLE = ["esasky-catalogue", "psa-rosetta", "rosetta-restricted", "spice-juice"]

STAFF_VOLUME = """\
id: staff-archive
title: Staff-only archive
mission: Rosetta
description: Readable by the staff group only.
source:
  type: local
  path: psa-rosetta
access:
  groups: [staff]
"""


@pytest.fixture(scope="module")
def data_lab(tmp_path_factory, ui_archive):
    state = tmp_path_factory.mktemp("data-lab")
    catalogue = state / "catalogue"
    shutil.copytree(CATALOGUE, catalogue)
    (catalogue / "rosetta" / "volumes" / "staff-archive.yaml").write_text(STAFF_VOLUME)
    env = {"JUPYTERLAB_SETTINGS_DIR": str(lab_settings(state))}
    with running_lab(
        state, catalogue, ui_archive, user="alice", groups=["rosetta-team"], extra_env=env
    ) as lab:
        yield lab


def open_data_panel(page: Page, lab) -> None:
    """Open JupyterLab with a fresh layout and the Data panel from its sidebar tab.

    A fresh layout: a layout restored with the panel open, late, would hide it again after the
    click that was meant to show it."""
    page.goto(f"{lab.url}/lab?reset&token={lab.token}")
    page.wait_for_selector("#jp-main-dock-panel", state="visible", timeout=60_000)
    show_data_panel(page)
    expect(page.get_by_test_id("dl-volume-list")).to_have_attribute("data-ready", "true")


def show_data_panel(page: Page) -> None:
    """Click the panel's sidebar tab unless the panel shows already (a click would hide it)."""
    if not page.get_by_test_id("dl-data-panel").is_visible():
        page.locator('.lm-TabBar-tab[data-id="datalabs-data-panel"]').click()
    expect(page.get_by_test_id("dl-data-panel")).to_be_visible()


def volume(page: Page, vid: str):
    return page.locator(f'.dl-volume[data-id="{vid}"]')


def file_browser_item(page: Page, name: str):
    return page.locator("#filebrowser .jp-DirListing-item").filter(
        has=page.locator(".jp-DirListing-itemText", has_text=re.compile(f"^{re.escape(name)}$"))
    )


def test_attach_a_volume_see_it_under_data_and_open_it_from_the_panel(page, data_lab):
    open_data_panel(page, data_lab)
    row = volume(page, "psa-rosetta")
    expect(row.get_by_test_id("dl-volume-state")).to_have_text("available")
    try:
        row.get_by_role("button", name="Attach").click()
        expect(row.get_by_test_id("dl-volume-state")).to_have_text("attached")
        expect(row.get_by_role("button", name="Detach")).to_be_enabled()
        shot(page, "data-volume-attached")

        # JupyterLab's own file browser shows it under data/.
        page.locator('.lm-TabBar-tab[data-id="filebrowser"]').click()
        page.locator("#filebrowser .jp-BreadCrumbs-home").click()
        file_browser_item(page, "data").dblclick()
        expect(file_browser_item(page, "psa-rosetta")).to_be_visible()

        # "Open in file browser" goes straight into the volume.
        show_data_panel(page)
        row.get_by_role("button", name="Open in file browser").click()
        expect(page.locator("#filebrowser")).to_be_visible()
        expect(page.locator("#filebrowser .jp-BreadCrumbs")).to_contain_text("psa-rosetta")
        expect(file_browser_item(page, "bundle_rosetta_demo")).to_be_visible()
        shot(page, "data-volume-in-file-browser")

        show_data_panel(page)
        row.get_by_role("button", name="Detach").click()
        expect(row.get_by_test_id("dl-volume-state")).to_have_text("available")
    finally:
        if (data_lab.root / "data" / "psa-rosetta").is_mount():
            data_lab.api("POST", "volumes/psa-rosetta/detach")
    assert not (data_lab.root / "data" / "psa-rosetta").is_mount()


def test_preview_lists_a_volume_before_attaching_it(page, data_lab):
    open_data_panel(page, data_lab)
    row = volume(page, "spice-juice")
    row.get_by_role("button", name="Preview files").click()
    preview = row.get_by_test_id("dl-preview")
    preview.get_by_role("button", name="kernels/").click()
    expect(preview.get_by_role("button", name="mk/")).to_be_visible()
    preview.get_by_role("button", name="mk/").click()
    expect(preview).to_contain_text("juice_demo.tm")
    expect(row.get_by_test_id("dl-volume-state")).to_have_text("available")
    assert not (data_lab.root / "data" / "spice-juice").exists()


def test_a_volume_alice_may_not_read_is_absent_and_search_filters(page, data_lab):
    # The server knows the volume; alice is simply not shown it.
    assert data_lab.api("GET", "volumes/staff-archive").status_code == 403
    open_data_panel(page, data_lab)
    listed = page.locator(".dl-volume").evaluate_all("rows => rows.map(r => r.dataset.id)")
    assert sorted(listed) == READABLE
    expect(page.locator('.dl-group[data-mission="Rosetta"] .dl-group-toggle')).to_contain_text(
        "(2)"
    )
    search = page.get_by_role("searchbox", name="Search volumes")
    search.fill("ganymede")  # in spice-juice's description only
    expect(page.locator(".dl-volume")).to_have_count(1)
    expect(volume(page, "spice-juice")).to_be_visible()
    expect(page.get_by_role("status").first).to_have_text("1 of 4 volumes match")
    search.fill("rosetta pds4")
    expect(page.locator(".dl-volume")).to_have_count(1)
    expect(volume(page, "psa-rosetta")).to_be_visible()
    shot(page, "data-search")
    search.fill("staff")
    expect(page.locator(".dl-volume")).to_have_count(0)
    search.fill("")
    expect(page.locator(".dl-volume")).to_have_count(4)
    # A collapsed mission hides its volumes but keeps its heading.
    toggle = page.locator('.dl-group[data-mission="Rosetta"] .dl-group-toggle')
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(page.locator(".dl-volume")).to_have_count(2)


def add_connection(page: Page, name: str, options: dict[str, str]):
    page.get_by_test_id("dl-add-connection").click()
    form = page.get_by_test_id("dl-connection-form")
    form.get_by_label("Storage type").select_option("webdav")
    form.locator('[name="name"]').fill(name)
    for key, value in options.items():
        field = form.locator(f'[name="{key}"]')
        if field.evaluate("e => e.tagName") == "SELECT":
            field.select_option(value)
        else:
            field.fill(value)
    assert form.locator('[name="pass"]').get_attribute("type") == "password"
    return form


def test_connect_webdav_attach_it_and_open_a_file_from_it(page, data_lab, serve):
    server = serve("webdav")
    open_data_panel(page, data_lab)
    try:
        form = add_connection(page, "my-dav", server.options())
        form.get_by_role("button", name="Test and save").scroll_into_view_if_needed()
        shot(page, "data-connection-form")
        form.get_by_role("button", name="Test and save").click()
        row = page.locator('.dl-connection[data-name="my-dav"]')
        expect(row).to_contain_text("127.0.0.1")
        expect(form).to_have_count(0)
        # The secret was sent once and is never shown back, not even in a hidden attribute.
        assert CANARY not in page.content()

        row.get_by_role("button", name="Test").click()
        expect(row.get_by_role("status")).to_have_text("The connection works.")
        row.get_by_role("button", name="Attach").click()
        expect(row).to_have_attribute("data-attached", "true")
        shot(page, "data-connection-attached")
        row.get_by_role("button", name="Open in file browser").click()
        expect(page.locator("#filebrowser .jp-BreadCrumbs")).to_contain_text("my-dav")
        file_browser_item(page, "hello.txt").dblclick()
        editor = page.locator(".jp-FileEditor .cm-content")
        expect(editor).to_contain_text("hello from webdav")
        shot(page, "data-connection-file-open")

        show_data_panel(page)
        row.get_by_role("button", name="Detach").click()
        expect(row).to_have_attribute("data-attached", "false")
        row.get_by_role("button", name="Delete").click()
        row.get_by_role("button", name="Really delete").click()
        expect(row).to_have_count(0)
        assert data_lab.api("GET", "connections/my-dav").status_code == 404
    finally:
        data_lab.api("DELETE", "connections/my-dav")


def test_a_wrong_password_shows_the_servers_error_in_the_form(page, data_lab, serve):
    server = serve("webdav")
    open_data_panel(page, data_lab)
    form = add_connection(page, "wrong-dav", server.options(password="N0tTheRightOne"))
    form.get_by_role("button", name="Test and save").click()
    error = form.get_by_test_id("dl-form-error")
    expect(error).to_be_visible()
    expected = data_lab.api(
        "POST",
        "connections",
        json={
            "name": "wrong-dav",
            "backend": "webdav",
            "options": server.options("N0tTheRightOne"),
        },
    ).json()["message"]
    expect(error).to_have_text(expected)
    expect(error).to_have_attribute("role", "alert")
    error.scroll_into_view_if_needed()
    shot(page, "data-wrong-password")
    # Nothing was saved; the form keeps what was typed so the user can fix it.
    expect(page.locator('.dl-connection[data-name="wrong-dav"]')).to_have_count(0)
    assert data_lab.api("GET", "connections/wrong-dav").status_code == 404
    expect(form.locator('[name="name"]')).to_have_value("wrong-dav")


def test_edit_a_connection_keeping_its_saved_password(page, data_lab, serve):
    server = serve("webdav")
    made = data_lab.api(
        "POST",
        "connections",
        json={"name": "edit-dav", "backend": "webdav", "options": server.options()},
    )
    assert made.status_code == 201, made.text
    open_data_panel(page, data_lab)
    try:
        row = page.locator('.dl-connection[data-name="edit-dav"]')
        row.get_by_role("button", name="Edit").click()
        form = row.get_by_test_id("dl-connection-form")
        # The saved options are filled in, the name and type fixed, the secret never shown.
        expect(form.locator('[name="name"]')).to_have_value("edit-dav")
        expect(form.locator('[name="name"]')).to_have_attribute("readonly", "")
        expect(form.get_by_label("Storage type")).to_be_disabled()
        expect(form.locator('[name="url"]')).to_have_value(server.options()["url"])
        expect(form.locator('[name="pass"]')).to_have_value("")
        expect(form.locator('[name="pass"]')).to_have_attribute("placeholder", "unchanged")
        assert CANARY not in page.content()
        violations = axe_violations(page, PANEL)
        assert not violations, json.dumps(violations, indent=2)
        form.locator('[name="pass"]').scroll_into_view_if_needed()
        shot(page, "data-connection-edit")

        # A wrong new password is refused in place; nothing saved changes.
        form.locator('[name="pass"]').fill("N0tTheRightOne")
        form.get_by_role("button", name="Test and save").click()
        expect(form.get_by_test_id("dl-form-error")).to_be_visible()
        # Left empty, the saved password is kept: only the folder changes.
        form.locator('[name="pass"]').fill("")
        form.locator('[name="path"]').fill("sub")
        form.get_by_role("button", name="Test and save").click()
        expect(form).to_have_count(0)
        expect(row.get_by_role("status")).to_have_text("Saved: the connection works.")
        expect(row).to_contain_text(" · sub")
        saved = data_lab.api("GET", "connections/edit-dav").json()
        assert saved["path"] == "sub"
        assert saved["options"]["pass"] == "********"

        # The kept password still opens the storage; a mounted connection cannot be edited.
        row.get_by_role("button", name="Attach").click()
        expect(row).to_have_attribute("data-attached", "true")
        expect(row.get_by_role("button", name="Edit")).to_be_disabled()
        row.get_by_role("button", name="Open in file browser").click()
        expect(file_browser_item(page, "data.csv")).to_be_visible()
        show_data_panel(page)
        row.get_by_role("button", name="Detach").click()
        expect(row).to_have_attribute("data-attached", "false")
    finally:
        data_lab.api("DELETE", "connections/edit-dav")


def test_the_data_panel_has_no_serious_accessibility_violations_light_or_dark(page, data_lab):
    open_data_panel(page, data_lab)
    volume(page, "psa-rosetta").get_by_role("button", name="Preview files").click()
    expect(volume(page, "psa-rosetta").get_by_test_id("dl-preview")).to_contain_text(
        "bundle_rosetta_demo"
    )
    page.get_by_test_id("dl-add-connection").click()
    expect(page.get_by_test_id("dl-connection-form")).to_be_visible()
    light = axe_violations(page, PANEL)
    shot(page, "data-accessibility")
    assert not light, json.dumps(light, indent=2)

    # The same panel in JupyterLab's dark theme: its colours are the theme's variables.
    set_theme(data_lab, "JupyterLab Dark")
    try:
        open_data_panel(page, data_lab)
        expect(page.locator("body")).to_have_attribute("data-jp-theme-name", "JupyterLab Dark")
        expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false")
        page.get_by_test_id("dl-add-connection").click()
        expect(page.get_by_test_id("dl-connection-form")).to_be_visible()
        settled(page)
        dark = axe_violations(page, PANEL)
        shot(page, "data-accessibility-dark")
        assert not dark, json.dumps(dark, indent=2)
    finally:
        set_theme(data_lab, "JupyterLab Light")


def set_theme(lab, theme: str) -> None:
    """Set the user's JupyterLab theme through the server's settings API, as the menu does."""
    r = lab.request(
        "PUT",
        "lab/api/settings/@jupyterlab/apputils-extension:themes",
        json={"raw": json.dumps({"theme": theme})},
    )
    assert r.status_code == 204, r.text
