"""A desktop datalab in Chromium: alice starts TOPCAT from the spawn page and sees it in noVNC.

Then she stops the session, and nothing of the desktop (X/VNC server, window manager, TOPCAT,
the session script) may be left running.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.e2e.conftest import ARTIFACTS
from tests.e2e.test_browser import log_in, page  # noqa: F401 - page is a fixture

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.slow]


def session_processes(home: Path) -> dict[int, str]:
    """pid -> command line of every process whose HOME is ``home`` (one user's session)."""
    wanted = f"HOME={home}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile, or a kernel thread
        if wanted in environ:
            found[int(entry.name)] = cmdline.strip()
    return found


def desktop_part(cmdline: str) -> str | None:
    """Which part of a desktop session a command line is, if any."""
    for part, pattern in [
        ("X/VNC server", r"Xtigervnc|Xvnc|Xvfb"),
        ("vncserver", r"vncserver"),
        ("websockify", r"websockify"),
        ("window manager", r"\bopenbox\b"),
        ("TOPCAT", r"topcat"),
        ("session script", r"desktop_session\.py"),
    ]:
        if re.search(pattern, cmdline):
            return part
    return None


def topcat_windows(display: str, home: Path) -> str:
    """The X window tree of ``display``, as xwininfo prints it (names in quotes)."""
    out = subprocess.run(
        ["xwininfo", "-root", "-tree"],
        env={"DISPLAY": display, "HOME": str(home), "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=10,
    )
    return out.stdout


def topcat_visible(png: bytes) -> tuple[bool, str]:
    """Whether a screenshot of the noVNC canvas shows TOPCAT's main window.

    The desktop behind it is one flat colour (openbox draws no wallpaper), while TOPCAT's
    window is a large area of Swing's light-grey panel colour around many other colours (icons,
    text, the title bar). So: the panel grey must cover a rectangle of at least 300 x 200 pixels
    and a fair share of the canvas, and the canvas must hold many distinct colours.
    """
    image = Image.open(io.BytesIO(png)).convert("RGB")
    width, height = image.size
    pixels = image.load()
    grey_rows: list[int] = []
    grey_cols: list[int] = []
    grey = 0
    for y in range(0, height, 2):
        for x in range(0, width, 2):
            r, g, b = pixels[x, y]
            if min(r, g, b) >= 200 and max(r, g, b) - min(r, g, b) <= 16:
                grey += 1
                grey_rows.append(y)
                grey_cols.append(x)
    share = grey / ((height // 2 + height % 2) * (width // 2 + width % 2))
    colours = len(image.getcolors(maxcolors=1 << 20) or ())
    if not grey:
        return False, f"no light-grey panel pixels; {colours} colours"
    box_w = max(grey_cols) - min(grey_cols)
    box_h = max(grey_rows) - min(grey_rows)
    ok = share >= 0.05 and box_w >= 300 and box_h >= 200 and colours >= 50
    return ok, f"panel grey {share:.1%} in a {box_w}x{box_h} box; {colours} colours"


def test_alice_opens_topcat_on_a_desktop_and_stopping_leaves_nothing(page, demo_hub):  # noqa: F811
    home = demo_hub.state / "workspaces" / "alice"
    log_in(page, demo_hub, "alice")
    page.goto(f"{demo_hub.url}/hub/spawn")
    form = page.locator("#datalabs-form")
    form.locator(".dl-card[data-slug=topcat]").click()
    expect(form.locator("input[value=esasky-catalogue]")).to_be_checked()
    started = time.monotonic()
    page.locator("form#spawn_form input[type=submit], form#spawn_form button[type=submit]").click()
    try:
        # The datalab opens straight on the desktop (its default_url), not on JupyterLab.
        page.wait_for_url(re.compile(r".*/user/alice/desktop/?$"), timeout=90_000)
        canvas = page.locator("canvas").first
        expect(canvas).to_be_visible(timeout=60_000)
        deadline = time.monotonic() + 90
        verdict = (False, "no screenshot taken")
        shot = b""
        while time.monotonic() < deadline:
            shot = canvas.screenshot()
            verdict = topcat_visible(shot)
            if verdict[0]:
                break
            time.sleep(1)
        seen_after = time.monotonic() - started
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "topcat-desktop.png"))
        (ARTIFACTS / "topcat-canvas.png").write_bytes(shot)
        assert verdict[0], f"TOPCAT's window is not on the canvas: {verdict[1]}"
        print(f"TOPCAT seen {seen_after:.1f} s after submitting the form ({verdict[1]})")

        # The X server agrees: TOPCAT has a window, and the volume is there for its file dialog.
        running = session_processes(home)
        parts = {desktop_part(c) for c in running.values()} - {None}
        assert {"X/VNC server", "window manager", "TOPCAT", "session script"} <= parts, running
        x_server = next(c for c in running.values() if desktop_part(c) == "X/VNC server")
        display = re.search(r"(:\d+)", x_server).group(1)
        assert "TOPCAT" in topcat_windows(display, home)
        assert (home / "data" / "esasky-catalogue" / "esasky_demo_sources.vot").is_file()
    finally:
        demo_hub.stop_server("alice")

    # Nothing of the desktop outlives the session.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        left = {p: c for p, c in session_processes(home).items() if desktop_part(c)}
        if not left:
            break
        time.sleep(0.5)
    assert not left, f"left running after the session stopped: {left}"
