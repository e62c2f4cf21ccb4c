"""Every script in ``benchmarks/`` starts and reaches its figures in its smoke mode.

``BENCH_SMOKE=1`` makes a benchmark run on a tiny size, one round: not a timing (no figure is
compared with its target here), only proof that the script still runs to its last line, so
that a change which breaks ``make bench`` fails ``make test`` instead. Each script sets up what
it needs itself (real servers, hubs, Chromium, generated data) and stops it, as it does in
``make bench``. A new script is picked up by the glob and must have a smoke mode too.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: The scripts (``_name.py`` are modules they share, not benchmarks).
BENCHMARKS = sorted((REPO / "benchmarks").glob("[!_]*.py"))

#: ``<name>: <unit>=<number> target=<number>``, as README's Benchmarks section and `make bench`'s
#: readers expect; the last line is always a ratio.
FIGURE = re.compile(r"^(?P<name>\w+): (?P<unit>ratio|ms|mib)=\d+(\.\d+)? target=\d+(\.\d+)?$")
#: Scripts that print more than the one figure named after them.
FIGURES = {
    "pipeline_overhead": [
        "runs_get_p99",
        "archive_run_folder",
        "archive_input_overhead",
        "pipeline_overhead",
    ],
    "remote_read": ["remote_read", "remote_list"],
    "spawn_overhead": ["sandbox_spawn", "spawn_overhead"],
}
MARKS = {
    "spawn_form": [pytest.mark.browser],
    "ui_catalogue": [pytest.mark.browser],
    "spawn_overhead": [pytest.mark.e2e],
    "broker_attach": [pytest.mark.e2e],
    "k8s_spawn": [pytest.mark.k8s],
    "cluster_pipeline": [pytest.mark.k8s],
    "spawn_burst": [pytest.mark.e2e],
}
#: Per script. Measured smoke runs on the 2-core machine at load average 9: spawn_overhead (two
#: hubs, one spawn each) 80 s, ui_catalogue 42 s, pipeline_overhead 23 s, the rest under 15 s.
TIMEOUT = 300


def run_smoke(script: Path) -> tuple[int, str, str]:
    """Run ``script`` with BENCH_SMOKE=1; on a timeout interrupt it (so that its ``finally``
    blocks stop what it started) and then kill what is left of its process group."""
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=REPO,
        env=dict(os.environ, BENCH_SMOKE="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        err += f"\n(stopped after {TIMEOUT} s)"
    return proc.returncode, out, err


@pytest.mark.slow
@pytest.mark.parametrize(
    "script", [pytest.param(p, id=p.stem, marks=MARKS.get(p.stem, [])) for p in BENCHMARKS]
)
def test_benchmark_reaches_its_figures(script):
    code, out, err = run_smoke(script)
    lines = out.strip().splitlines()
    report = f"exit {code}\n--- stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}"
    assert code == 0, report
    assert lines, report
    last = FIGURE.match(lines[-1])
    assert last and last["unit"] == "ratio", (
        f"last line is not '<name>: ratio=<n> target=<n>'\n{report}"
    )
    printed = [m["name"] for m in map(FIGURE.match, lines) if m]
    assert printed == FIGURES.get(script.stem, [script.stem]), report


def test_every_benchmark_is_found():
    # An empty glob (the folder moved) would make the test above a silent skip.
    assert BENCHMARKS, f"no benchmark scripts in {REPO / 'benchmarks'}"
