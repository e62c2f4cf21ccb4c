"""Spawn time of DatalabsLocalSpawner with three hosted volumes, against plain local spawning.

Two real embedded hubs run side by side: one with DatalabsLocalSpawner (the demo config), one
with JupyterHub's plain ``SimpleLocalProcessSpawner`` (the baseline), same config otherwise.
Spawns alternate between them, each timed from the REST request to the server being ready.
Last line: ``spawn_overhead: ratio=<median datalabs / median plain> target=1.10``.
With ``BENCH_SMOKE=1``: one spawn on each hub, no warm-up (it starts and reaches its figure;
the figure means nothing).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "config" / "sample-data"))

from make_sample_data import make_sample_data  # noqa: E402

from tests.e2e.hubprocess import running_hub  # noqa: E402

SMOKE = os.environ.get("BENCH_SMOKE") == "1"
ROUNDS = 1 if SMOKE else 7
VOLUMES = ["psa-rosetta", "spice-juice", "esasky-catalogue"]


def timed_spawn(hub, body) -> float:
    start = time.perf_counter()
    r = hub.api("POST", "users/alice/server", json=body)
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("alice")
    elapsed = time.perf_counter() - start
    hub.stop_server("alice")
    return elapsed


def main() -> None:
    if SMOKE:
        print("smoke run (BENCH_SMOKE=1): tiny sizes, the figures are not measurements")
    with tempfile.TemporaryDirectory(prefix="datalabs-bench-") as tmp, ExitStack() as stack:
        archive = Path(tmp) / "archive"
        make_sample_data(archive)
        (Path(tmp) / "ours").mkdir()
        (Path(tmp) / "plain").mkdir()
        ours = stack.enter_context(running_hub(Path(tmp) / "ours", archive))
        plain = stack.enter_context(
            running_hub(
                Path(tmp) / "plain",
                archive,
                [
                    "--JupyterHub.spawner_class=simple",
                    f"--SimpleLocalProcessSpawner.home_dir_template={tmp}/plain/home/{{username}}",
                    "--Spawner.args=--allow-root",
                ],
            )
        )
        body = {"profile": "planetary-lab", "volumes": VOLUMES}
        if not SMOKE:
            timed_spawn(ours, body)  # warm-up: imports, first JupyterLab start
            timed_spawn(plain, {})
        t_ours, t_plain = [], []
        for i in range(ROUNDS):
            # Alternate which goes first, so that neither always runs on a cache the other warmed.
            if i % 2:
                t_ours.append(timed_spawn(ours, body))
                t_plain.append(timed_spawn(plain, {}))
            else:
                t_plain.append(timed_spawn(plain, {}))
                t_ours.append(timed_spawn(ours, body))
    m_ours, m_plain = statistics.median(t_ours), statistics.median(t_plain)
    print(f"plain SimpleLocalProcessSpawner (baseline): median {m_plain:.3f} s over {ROUNDS}")
    print(f"DatalabsLocalSpawner with {len(VOLUMES)} volumes: median {m_ours:.3f} s over {ROUNDS}")
    print(f"spawn_overhead: ratio={m_ours / m_plain:.3f} target=1.10")


if __name__ == "__main__":
    main()
