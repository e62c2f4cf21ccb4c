"""Spawn time of DatalabsLocalSpawner with three hosted volumes, against plain local spawning.

Three real embedded hubs run side by side: one with DatalabsLocalSpawner (the demo config), one
with the same in its sandbox (``sandbox=True``: the user's own system account in bubblewrap),
and one with JupyterHub's plain ``SimpleLocalProcessSpawner`` (the baseline), same config
otherwise. Spawns rotate between them, each timed from the REST request to the server being
ready. Prints ``sandbox_spawn: ratio=<median sandboxed / median plain> target=1.10``, then last
``spawn_overhead: ratio=<median datalabs / median plain> target=1.10``.
With ``BENCH_SMOKE=1``: one spawn on each hub, no warm-up (it starts and reaches its figure;
the figure means nothing).
"""

from __future__ import annotations

import os
import pwd
import statistics
import subprocess
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
#: The sandboxed hub's accounts, removed at the end.
ACCOUNT_PREFIX = "dlbench-"


def remove_accounts() -> None:
    for p in pwd.getpwall():
        if p.pw_name.startswith(ACCOUNT_PREFIX) and p.pw_gecos.startswith("Datalabs "):
            subprocess.run(["userdel", p.pw_name], check=False, capture_output=True)


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
        stack.callback(remove_accounts)
        archive = Path(tmp) / "archive"
        make_sample_data(archive)
        for name in ("ours", "sandboxed", "plain"):
            (Path(tmp) / name).mkdir()
        ours = stack.enter_context(running_hub(Path(tmp) / "ours", archive))
        sandboxed = stack.enter_context(
            running_hub(
                Path(tmp) / "sandboxed",
                archive,
                [
                    "--DatalabsLocalSpawner.sandbox=True",
                    f"--DatalabsLocalSpawner.account_prefix={ACCOUNT_PREFIX}",
                ],
            )
        )
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
        kinds = [(ours, body, []), (sandboxed, body, []), (plain, {}, [])]
        if not SMOKE:
            for hub, b, _ in kinds:  # warm-up: imports, first JupyterLab start, the account
                timed_spawn(hub, b)
        for i in range(ROUNDS):
            # Rotate which goes first, so that none always runs on a cache another warmed.
            for hub, b, times in kinds[i % 3 :] + kinds[: i % 3]:
                times.append(timed_spawn(hub, b))
        t_ours, t_sandboxed, t_plain = (times for _, _, times in kinds)
    m_ours, m_plain = statistics.median(t_ours), statistics.median(t_plain)
    m_sandboxed = statistics.median(t_sandboxed)
    print(f"plain SimpleLocalProcessSpawner (baseline): median {m_plain:.3f} s over {ROUNDS}")
    print(f"DatalabsLocalSpawner with {len(VOLUMES)} volumes: median {m_ours:.3f} s over {ROUNDS}")
    print(
        f"the same in its sandbox (own account, bubblewrap): median {m_sandboxed:.3f} s "
        f"over {ROUNDS}"
    )
    print(f"sandbox_spawn: ratio={m_sandboxed / m_plain:.3f} target=1.10")
    print(f"spawn_overhead: ratio={m_ours / m_plain:.3f} target=1.10")


if __name__ == "__main__":
    main()
