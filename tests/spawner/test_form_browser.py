"""The spawn form's volume picker in a real Chromium with a 10,000-volume catalogue.

The form is rendered as the hub renders it and loaded from a file, inside a ``<form>`` as
JupyterHub's spawn page wraps it; what the browser would submit is read with ``FormData``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from datalabs_spawner.catalogue import Datalab
from datalabs_spawner.form import SHOWN_VOLUMES, render_form
from datalabs_volumes.models import Volume, VolumeSource
from tests.helpers import browser_page, launch_chromium

pytestmark = pytest.mark.slow
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
COUNT = 10_000
MISSIONS = 40


def volumes() -> list[Volume]:
    return [
        Volume(
            id=f"vol-{i:05d}",
            title=f"Volume {i}",
            mission=f"Mission {i % MISSIONS}",
            source=VolumeSource(type="local", path=f"/archive/{i}"),
            description=f"Level 2 products, orbit {i * 7}",
        )
        for i in range(COUNT)
    ]


def lab(slug: str, defaults: tuple[str, ...]) -> Datalab:
    return Datalab(
        slug=slug,
        title=slug.title(),
        kind="notebook",
        image="x:1",
        mission="M",
        default_volumes=defaults,
    )


@pytest.fixture
def page(tmp_path):
    html = render_form(
        [lab("first", ("vol-09999",)), lab("second", ("vol-00041", "vol-08001"))], volumes()
    )
    path = tmp_path / "spawn.html"
    path.write_text(f'<!doctype html><form id="spawn_form">{html}</form>', encoding="utf-8")
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            with browser_page(browser, ARTIFACTS / "spawn-form-10000.png") as page:
                page.goto(path.as_uri())
                yield page
        finally:
            browser.close()


TAGS = "row => [...row.querySelectorAll('*')].map(e => e.tagName).join(',')"


def submitted(page) -> list[str]:
    return page.evaluate(
        "() => new FormData(document.getElementById('spawn_form')).getAll('volumes')"
    )


def test_ten_thousand_volumes_are_searched_and_chosen_ones_kept(page):
    rows = page.locator(".dl-volume:visible")
    count = page.locator("#dl-volume-count")
    # The first page of rows, plus the datalab's default volume from far down the list.
    expect(rows).to_have_count(SHOWN_VOLUMES + 1)
    expect(page.locator(".dl-volume:visible input[value=vol-09999]")).to_be_checked()
    shown = f"Showing {SHOWN_VOLUMES} of {COUNT} volumes: search to find the others."
    expect(count).to_have_text(shown)
    assert page.locator(".dl-volume").count() == SHOWN_VOLUMES + 1  # not 10,000 rows

    page.fill("#dl-volume-search", "orbit 8638")  # the description of volume 1234 only
    expect(count).to_have_text("1 volume matches.")
    expect(rows).to_have_count(1)
    expect(page.locator("fieldset:visible legend")).to_have_text(["Mission 34"])
    page.locator("input[value=vol-01234]").check()

    page.fill("#dl-volume-search", "mission 7")  # 250 volumes of "Mission 7"
    expect(count).to_have_text(
        f"Showing {SHOWN_VOLUMES} of 250 matching volumes: refine the search."
    )
    expect(rows).to_have_count(SHOWN_VOLUMES)
    # The chosen ones are not shown by this search, but still submitted.
    assert sorted(submitted(page)) == ["vol-01234", "vol-09999"]

    page.fill("#dl-volume-search", "")
    expect(rows).to_have_count(SHOWN_VOLUMES + 2)  # the first page and the two chosen
    expect(count).to_have_text(shown)

    # Another datalab: its default volumes are chosen and shown wherever they are.
    page.locator(".dl-card[data-slug=second]").click()
    expect(page.locator(".dl-volume:visible input[value=vol-08001]")).to_be_checked()
    expect(page.locator(".dl-volume:visible input[value=vol-00041]")).to_be_checked()
    assert sorted(submitted(page)) == ["vol-00041", "vol-08001"]
    # The first page is all Mission 0's (sorted by mission, then title); both are Mission 1's.
    expect(rows).to_have_count(SHOWN_VOLUMES + 2)
    page.fill("#dl-volume-search", "no such volume")
    expect(count).to_have_text("0 volumes match.")
    expect(rows).to_have_count(0)
    expect(page.locator("fieldset:visible")).to_have_count(0)
    assert sorted(submitted(page)) == ["vol-00041", "vol-08001"]


def test_rows_made_in_the_page_are_the_servers_rows_and_escape_text(tmp_path):
    volume = Volume(
        id="vol-x",
        title="<img src=x onerror=alert(1)>",
        mission="Zeta",  # last in the list: its row is made in the page
        source=VolumeSource(type="local", path="/archive/x"),
        description="</script><script>alert(2)</script>",
    )
    others = volumes()[: SHOWN_VOLUMES + 5]
    html = render_form([lab("first", ())], [*others, volume])
    assert "<img src=x" not in html and "</script><script>alert(2)" not in html
    path = tmp_path / "spawn.html"
    path.write_text(f'<!doctype html><form id="spawn_form">{html}</form>', encoding="utf-8")
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            with browser_page(browser, ARTIFACTS / "spawn-form-escape.png") as page:
                dialogs: list[str] = []
                page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
                page.goto(path.as_uri())
                expect(page.locator("input[value=vol-x]")).to_have_count(0)
                server_tags = page.locator(".dl-volume").first.evaluate(TAGS)
                page.fill("#dl-volume-search", "onerror")  # beyond the first page: made here
                made = page.locator(".dl-volume:visible")
                expect(made).to_have_count(1)
                expect(made.locator("strong")).to_have_text("<img src=x onerror=alert(1)>")
                expect(made.locator("small")).to_have_text("</script><script>alert(2)</script>")
                made_tags = made.evaluate(TAGS)
        finally:
            browser.close()
    assert dialogs == []
    # The row the page made has the same elements as the server's.
    assert made_tags == server_tags == "INPUT,LABEL,STRONG,CODE,BR,SMALL"
