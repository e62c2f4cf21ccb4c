"""The spawn page's volume picker with 10,000 volumes, against the same page with 100.

The form is rendered as the hub renders it (``datalabs_spawner.form.render_form``, volumes over
40 missions), wrapped in a ``<form>`` as JupyterHub's spawn page wraps it and loaded from a file
into the Debian Chromium. Per size, after a warm-up, every round loads the page and times in
the page, with ``performance.now()``:

- load: from navigation start to the page laid out (the ``load`` event, then a frame);
- search: from typing a term (one ``input`` event) to the filtered list laid out, over terms
  that match one volume, 1/40 of them, and (clearing the box) all of them.

Medians of the rounds. Last line::

    spawn_form: ratio=<10000-time / 100-time> target=3

where the time is load + the median search, the wait before a user can pick a volume.
With ``BENCH_SMOKE=1``: 10 and 100 volumes, one round (it starts and reaches its figure; the
figure means nothing).
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

from datalabs_spawner.catalogue import Datalab  # noqa: E402
from datalabs_spawner.form import render_form  # noqa: E402
from tests.helpers import generated_volumes, launch_chromium, spawn_page  # noqa: E402

SMOKE = os.environ.get("BENCH_SMOKE") == "1"
SIZES = (10, 100) if SMOKE else (100, 10_000)
MISSIONS = 40
ROUNDS = 1 if SMOKE else 5
TERMS = ("orbit 147", "mission 7", "")

SEARCH = """async (term) => {
  const box = document.getElementById("dl-volume-search");
  const frame = () => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  box.value = "x"; box.dispatchEvent(new Event("input")); await frame(); await frame();
  const start = performance.now();
  box.value = term;
  box.dispatchEvent(new Event("input"));
  await frame(); await frame();
  document.body.offsetHeight;  // the filtered list laid out
  return performance.now() - start;
}"""
LOADED = """async () => {
  await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  document.body.offsetHeight;
  return performance.now();
}"""


def page_file(folder: Path, count: int) -> Path:
    volumes = generated_volumes(count, MISSIONS)
    lab = Datalab(slug="lab", title="Lab", kind="notebook", image="x:1", mission="M")
    start = time.perf_counter()
    html = render_form([lab], volumes)
    print(f"{count:>6} volumes: form rendered in {(time.perf_counter() - start) * 1000:.0f} ms, "
          f"{len(html) / 1024:.0f} KiB")  # fmt: skip
    return spawn_page(folder / f"spawn-{count}.html", html)


def measure(browser, path: Path) -> tuple[list[float], list[float]]:
    loads, searches = [], []
    page = browser.new_page()
    try:
        for rnd in range(ROUNDS + 1):  # the first round warms up and is not counted
            page.goto(path.as_uri())
            load = page.evaluate(LOADED)
            times = [page.evaluate(SEARCH, term) for term in TERMS]
            if rnd:
                loads.append(load)
                searches.append(statistics.median(times))
    finally:
        page.close()
    return loads, searches


def main() -> None:
    if SMOKE:
        print("smoke run (BENCH_SMOKE=1): tiny sizes, the figures are not measurements")
    medians: dict[int, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="datalabs-bench-") as tmp, sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            for count in SIZES:
                loads, searches = measure(browser, page_file(Path(tmp), count))
                medians[count] = (statistics.median(loads), statistics.median(searches))
                print(
                    f"{count:>6} volumes: load median {medians[count][0]:.1f} ms, search median "
                    f"{medians[count][1]:.1f} ms over {ROUNDS} rounds"
                )
        finally:
            browser.close()
    small, large = medians[SIZES[0]], medians[SIZES[1]]
    print(f"load ratio {large[0] / small[0]:.2f}, search ratio {large[1] / small[1]:.2f}")
    print(f"spawn_form: ratio={sum(large) / sum(small):.2f} target=3")


if __name__ == "__main__":
    main()
