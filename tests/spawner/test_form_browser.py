"""The spawn form's volume picker in a real Chromium with a 10,000-volume catalogue.

The form is rendered as the hub renders it and loaded from a file, inside a ``<form>`` as
JupyterHub's spawn page wraps it; what the browser would submit is read with ``FormData``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from datalabs_spawner.catalogue import Datalab
from datalabs_spawner.form import SHOWN_VOLUMES, render_form
from datalabs_volumes.models import Volume, VolumeSource
from tests.helpers import browser_page, generated_volumes, launch_chromium, spawn_page

pytestmark = pytest.mark.slow
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
COUNT = 10_000


def lab(slug: str, defaults: tuple[str, ...]) -> Datalab:
    return Datalab(
        slug=slug,
        title=slug.title(),
        kind="notebook",
        image="x:1",
        mission="M",
        default_volumes=defaults,
    )


@contextlib.contextmanager
def opened(tmp_path: Path, form_html: str, screenshot: str):
    """The form in a fresh Chromium page, as the spawn page holds it."""
    path = spawn_page(tmp_path / "spawn.html", form_html)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            with browser_page(browser, ARTIFACTS / screenshot) as page:
                page.goto(path.as_uri())
                yield page
        finally:
            browser.close()


@pytest.fixture
def page(tmp_path):
    labs = [lab("first", ("vol-09999",)), lab("second", ("vol-00041", "vol-08001"))]
    with opened(tmp_path, render_form(labs, generated_volumes(COUNT)), "spawn-form-10000.png") as p:
        yield p


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
        # Last in the list, so its row is made in the page; and a name objects inherit.
        mission="toString",
        source=VolumeSource(type="local", path="/archive/x"),
        description="</script><script>alert(2)</script>",
    )
    others = generated_volumes(SHOWN_VOLUMES + 5)
    html = render_form([lab("first", ())], [*others, volume])
    assert "<img src=x" not in html and "</script><script>alert(2)" not in html
    dialogs: list[str] = []
    with opened(tmp_path, html, "spawn-form-escape.png") as page:
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.reload()  # with the dialog listener in place from the start
        expect(page.locator("input[value=vol-x]")).to_have_count(0)
        server_tags = page.locator(".dl-volume").first.evaluate(TAGS)
        page.fill("#dl-volume-search", "onerror")  # beyond the first page: made here
        made = page.locator(".dl-volume:visible")
        expect(made).to_have_count(1)
        expect(made.locator("strong")).to_have_text("<img src=x onerror=alert(1)>")
        expect(made.locator("small")).to_have_text("</script><script>alert(2)</script>")
        made_tags = made.evaluate(TAGS)
        expect(page.locator("fieldset:visible legend")).to_have_text(["toString"])
    assert dialogs == []
    # The row the page made has the same elements as the server's.
    assert made_tags == server_tags == "INPUT,LABEL,STRONG,CODE,BR,SMALL"
