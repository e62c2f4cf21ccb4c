"""The Data panel with 10,000 volumes, against the same panel with 100.

Two generated catalogues (one YAML file per volume, as ``config/catalogue/*/volumes/*.yaml``,
spread over 20 missions; every volume reads the same small archive folder) each get a real
jupyter-server with JupyterLab and the extension (``tests.labserver.running_lab``), driven by
the Debian Chromium. For each size, after a warm-up, every round reloads JupyterLab and times
in the page, with ``performance.now()``:

- open: from running ``datalabs:open-data-panel`` to the list rendered (its rows in the DOM and
  laid out), which includes the panel asking for its first page (``GET volumes?limit=50``);
- filter: from typing a search term (one ``input`` event, as a paste or a fast typist's last
  key gives) to the filtered list rendered. The term matches 1% of the volumes.

Medians of the rounds. Last line::

    ui_catalogue: ratio=<10000-time / 100-time> target=3

where the time is open + filter, the whole wait a user has before reading the filtered list.
With ``BENCH_SMOKE=1``: 100 and 200 volumes, one round without warm-up (it starts and reaches
its figure; the figure means nothing).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.e2e.hubprocess import lab_settings  # noqa: E402
from tests.helpers import launch_chromium  # noqa: E402
from tests.labserver import running_lab  # noqa: E402

SMOKE = os.environ.get("BENCH_SMOKE") == "1"
SIZES = (100, 200) if SMOKE else (100, 10_000)
MISSIONS = 20
ROUNDS = 1 if SMOKE else int(os.environ.get("BENCH_ROUNDS", "5"))
#: Rounds run first and not counted: they warm the browser's and the server's caches.
WARMUP = 0 if SMOKE else 1
#: Every hundredth volume has it in its description.
TERM = "spectrometer"

OPEN_JS = """async () => {
  const done = () => {
    const list = document.querySelector('[data-testid="dl-volume-list"][data-ready="true"]');
    return list !== null && list.querySelector('.dl-volume') !== null;
  };
  const t0 = performance.now();
  const rendered = new Promise(resolve => {
    const observer = new MutationObserver(() => {
      if (done()) { observer.disconnect(); resolve(); }
    });
    observer.observe(document.body, {childList: true, subtree: true, attributes: true});
  });
  window.jupyterapp.commands.execute('datalabs:open-data-panel');
  await rendered;
  void document.querySelector('[data-testid="dl-data-panel"]').offsetHeight;  // layout
  return performance.now() - t0;
}"""

FILTER_JS = """async (term) => {
  const input = document.querySelector('[data-testid="dl-search"]');
  const setValue = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
  const t0 = performance.now();
  setValue.call(input, term);
  input.dispatchEvent(new Event('input', {bubbles: true}));
  const list = document.querySelector('[data-testid="dl-volume-list"]');
  while (list.dataset.query !== term) {
    await new Promise(resolve => setTimeout(resolve, 0));
  }
  void list.offsetHeight;  // layout
  return [performance.now() - t0, Number(list.dataset.matching)];
}"""


def write_catalogue(root: Path, count: int) -> Path:
    """``root/catalogue/mission-NN/volumes/vol-NNNNN.yaml`` for ``count`` volumes."""
    catalogue = root / "catalogue"
    for i in range(count):
        mission = f"mission-{i % MISSIONS:02d}"
        folder = catalogue / mission / "volumes"
        folder.mkdir(parents=True, exist_ok=True)
        kind = TERM if i % 100 == 7 else "imager"
        (folder / f"vol-{i:05d}.yaml").write_text(
            f"id: vol-{i:05d}\n"
            f"title: Volume {i:05d} of {mission}\n"
            f"mission: Mission {i % MISSIONS:02d}\n"
            f"description: Calibrated {kind} products, orbit {i}.\n"
            "source:\n  type: local\n  path: shared\n"
        )
    return catalogue


def measure(browser, root: Path, count: int) -> tuple[list[float], list[float], list[float]]:
    archive = root / "archive"
    (archive / "shared").mkdir(parents=True)
    (archive / "shared" / "readme.txt").write_text("a small volume\n")
    catalogue = write_catalogue(root, count)
    state = root / "state"
    # So that the page can run the panel's command itself, timed in the page.
    config = state / "jupyter" / "config"
    config.mkdir(parents=True)
    (config / "jupyter_server_config.json").write_text(
        '{"LabApp": {"expose_app_in_browser": true}}'
    )
    env = {"JUPYTERLAB_SETTINGS_DIR": str(lab_settings(state))}
    opened, filtered, served = [], [], []
    with running_lab(state, catalogue, archive, extra_env=env) as lab:
        # The first answer reads and validates every YAML file; a page sizes only its rows.
        start = time.perf_counter()
        r = lab.api("GET", "volumes?limit=50", timeout=900)
        assert r.status_code == 200 and r.json()["total"] == count, r.text[:300]
        print(f"{count:>6} volumes: first page after start {time.perf_counter() - start:.1f} s")
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        page = context.new_page()
        try:
            for i in range(ROUNDS + WARMUP):
                start = time.perf_counter()
                r = lab.api("GET", "volumes?limit=50")
                assert r.status_code == 200 and r.json()["total"] == count, r.text[:300]
                served.append((time.perf_counter() - start) * 1000)
                page.goto(f"{lab.url}/lab?reset&token={lab.token}")
                page.wait_for_function(
                    "window.jupyterapp && window.jupyterapp.commands"
                    ".hasCommand('datalabs:open-data-panel')",
                    timeout=60_000,
                )
                page.wait_for_selector("#jp-main-dock-panel", state="visible")
                # Time the panel, not JupyterLab still starting up.
                page.evaluate("() => window.jupyterapp.restored")
                page.wait_for_load_state("networkidle")
                t_open = page.evaluate(OPEN_JS)
                t_filter, matching = page.evaluate(FILTER_JS, TERM)
                assert matching == count // 100, matching
                shown = page.locator(".dl-volume").count()
                assert 0 < shown <= matching, shown  # the panel caps the rows it renders
                if i >= WARMUP:
                    opened.append(t_open)
                    filtered.append(t_filter)
        finally:
            context.close()
    return opened, filtered, served


def main() -> None:
    if SMOKE:
        print("smoke run (BENCH_SMOKE=1): tiny sizes, the figures are not measurements")
    medians: dict[int, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="datalabs-bench-") as tmp, sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            for count in SIZES:
                opened, filtered, served = measure(browser, Path(tmp) / str(count), count)
                medians[count] = (statistics.median(opened), statistics.median(filtered))
                print(
                    f"{count:>6} volumes: open to rendered median {medians[count][0]:.1f} ms, "
                    f"filter median {medians[count][1]:.1f} ms over {ROUNDS} rounds "
                    "(GET volumes?limit=50 alone, from Python: median "
                    f"{statistics.median(served):.1f} ms)"
                )
        finally:
            browser.close()
    small, large = medians[SIZES[0]], medians[SIZES[1]]
    print(f"open ratio {large[0] / small[0]:.2f}, filter ratio {large[1] / small[1]:.2f}")
    print(f"ui_catalogue: ratio={sum(large) / sum(small):.2f} target=3")


if __name__ == "__main__":
    main()
