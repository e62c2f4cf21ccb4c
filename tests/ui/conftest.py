"""Fixtures for the JupyterLab front-end tests: a real jupyter-server with JupyterLab and the
Datalabs extension, driven by the real Debian Chromium through Playwright.

- ``ui_archive``: the demo archive (``config/sample-data/make_sample_data.py``), one per session.
- ``ui_lab``: jupyter-server run as alice (hub group ``rosetta-team``) with the demo catalogue
  and archive, JupyterLab's news prompt turned off; one per test module, always stopped (with
  its mounts). A ``tests.labserver.Lab``: ``.url``, ``.token``, ``.root``, ``.api(...)``.
- ``browser``: one headless Chromium per test module (``/usr/bin/chromium``, no download).
- ``page``: a fresh browser page per test; what it showed last is saved as
  ``tests/artifacts/ui/last-<test>.png`` for whoever reads a failure.
- ``open_lab(page, lab, path="lab")``: open JupyterLab with the server's token and wait until
  its shell is ready; ``fresh_workspace()`` is a ``path`` with a workspace of its own.
- ``shot(page, name)``: save ``tests/artifacts/ui/<name>.png`` (the README picks from there).
- ``axe_violations(page, selector)``: the serious and critical axe-core findings inside a node.
- ``set_theme(page, name)``: switch JupyterLab's theme from its Settings menu, as a user does.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.e2e.hubprocess import lab_settings
from tests.helpers import browser_page, launch_chromium, load_sample_data_generator
from tests.labserver import running_lab

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts" / "ui"
CATALOGUE = REPO / "config" / "catalogue"
AXE = REPO / "jupyterlab_ext" / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="session")
def ui_archive(tmp_path_factory):
    out = tmp_path_factory.mktemp("ui-archive")
    load_sample_data_generator().make_sample_data(out)
    return out


@pytest.fixture(scope="module")
def ui_lab(tmp_path_factory, ui_archive):
    state = tmp_path_factory.mktemp("ui-lab")
    env = {"JUPYTERLAB_SETTINGS_DIR": str(lab_settings(state))}
    with running_lab(
        state, CATALOGUE, ui_archive, user="alice", groups=["rosetta-team"], extra_env=env
    ) as lab:
        yield lab


# One per module, not per session: sync Playwright keeps an event loop running in this thread
# while it is open, and the asyncio tests that run after the UI tests need the thread's loop.
@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        chromium = launch_chromium(p)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(request, browser):
    with browser_page(browser, ARTIFACTS / f"last-{request.node.name}.png") as page:
        yield page


_workspaces = itertools.count()


def fresh_workspace(folder: str = "", name: str = "test") -> str:
    """A JupyterLab URL with a workspace of its own, so no test sees another's tabs or panels
    (JupyterLab restores a workspace's last layout when it opens it)."""
    url = f"lab/workspaces/{name}-{next(_workspaces)}"
    return f"{url}/tree/{folder}" if folder else url


def open_lab(page, lab, path: str = "lab") -> None:
    """Open JupyterLab at ``path`` with the server's token; wait for its shell."""
    page.goto(f"{lab.url}/{path}?token={lab.token}")
    page.wait_for_selector("#jp-main-dock-panel", state="visible", timeout=60_000)
    # JupyterLab is ready once it has restored the last layout and focused the main area (a
    # restored tab, or the Launcher it opens into an empty one, up to a second after its splash
    # screen goes): before that, it would take the focus from whatever a test just did.
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=60_000)
    page.wait_for_function(
        "() => document.activeElement?.closest('#jp-main-dock-panel') != null", timeout=30_000
    )


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    target = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(target))
    return target


@pytest.fixture
def lab_opener():
    return open_lab


def axe_violations(page, selector: str) -> list[dict]:
    """Serious and critical axe-core findings inside ``selector`` (axe is loaded when missing)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        "sel => axe.run(document.querySelector(sel)).then(r => r.violations.map(v => ({"
        " id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => n.target.join(' ') + ': ' + n.failureSummary)})))",
        selector,
    )
    return [v for v in found if v["impact"] in ("serious", "critical")]


def set_theme(page, name: str) -> None:
    """Switch JupyterLab's theme as a user does: Settings > Theme > name."""
    page.locator(".lm-MenuBar-item", has_text="Settings").click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Theme$")).hover()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(name)}$")).click()
    page.wait_for_function(
        "name => document.body.dataset.jpThemeName === name", arg=name, timeout=30_000
    )
    # The theme's variables are in force: its background is dark exactly when it says so.
    page.wait_for_function(
        """() => {
            const probe = document.createElement('div');
            probe.style.background = 'var(--jp-layout-color0)';
            document.body.appendChild(probe);
            const [r, g, b] = getComputedStyle(probe).backgroundColor.match(/\\d+/g).map(Number);
            probe.remove();
            const light = 0.2126 * r + 0.7152 * g + 0.0722 * b > 128;
            return String(light) === document.body.dataset.jpThemeLight;
        }""",
        timeout=30_000,
    )
    settled(page)


def settled(page, selector: str = "body") -> None:
    """Wait until nothing under ``selector`` moves: no finite CSS animation or transition
    running, and the same React Flow viewport and node positions for five frames in a row."""
    page.evaluate("() => { window.__dlSettled = { sig: null, frames: 0 }; }")
    page.wait_for_function(
        """sel => {
            const root = document.querySelector(sel);
            if (!root) {
                return false;
            }
            const moving = document.getAnimations().some(a =>
                a.playState === 'running' &&
                Number.isFinite(a.effect?.getComputedTiming().endTime) &&
                root.contains(a.effect?.target ?? null));
            if (moving) {
                return false;
            }
            const sig = [...root.querySelectorAll('.react-flow__viewport, .react-flow__node')]
                .map(n => n.style.transform).join('|');
            const s = window.__dlSettled;
            if (sig === s.sig) { s.frames += 1; } else { s.sig = sig; s.frames = 0; }
            return s.frames >= 5;
        }""",
        arg=selector,
        polling="raf",
        timeout=30_000,
    )
