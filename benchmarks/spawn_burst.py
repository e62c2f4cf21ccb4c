"""N users press Start at the same moment on the embedded hub: do all N get a session, how fast?

One real embedded hub (the demo config, its default ``concurrent_starts``), ``planetary-lab``
with two volumes, as in issue 14. First one user's start is timed alone (the median of a few,
from the REST request to the server being ready). Then N users (argv[1], default 40) press
Start together through the REST API. The CPU bound for the burst is N x (median single start)
/ cores: a perfect machine would need that long for N starts. Printed: how many became ready
(must be N), the time until the last was ready, p50 and max per-user time to ready, and last
``spawn_burst: ratio=<time to last ready / CPU bound> target=1.5``.
With ``BENCH_SMOKE=1``: 2 users, one single start, no warm-up (it starts and reaches its
figure; the figure means nothing).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "config" / "sample-data"))

from make_sample_data import make_sample_data  # noqa: E402

from tests.e2e.hubprocess import Hub, running_hub  # noqa: E402

SMOKE = os.environ.get("BENCH_SMOKE") == "1"
BODY = {"profile": "planetary-lab", "volumes": ["psa-rosetta", "spice-juice"]}
SINGLE_ROUNDS = 1 if SMOKE else 3
#: Longer than any start may take: a start that has not answered by then counts as failed.
BURST_TIMEOUT = 900


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def single_start(hub: Hub, user: str) -> float:
    start = time.perf_counter()
    r = hub.api("POST", f"users/{user}/server", json=BODY)
    assert r.status_code in (201, 202), r.text
    hub.wait_ready(user, timeout=300)
    elapsed = time.perf_counter() - start
    hub.stop_server(user)
    return elapsed


def burst(hub: Hub, users: list[str]) -> tuple[dict[str, float], dict[str, str]]:
    """Every user presses Start at once; per user, seconds until ready (or why not)."""
    ready: dict[str, float] = {}
    failed: dict[str, str] = {}
    pressed: set[str] = set()
    go = threading.Barrier(len(users) + 1)
    t0 = 0.0

    def press(user: str) -> None:
        go.wait()
        r = hub.api("POST", f"users/{user}/server", json=BODY)
        if r.status_code not in (201, 202):
            failed[user] = f"{r.status_code} {r.text[:200]}"
        pressed.add(user)

    with ThreadPoolExecutor(len(users)) as pool:
        for user in users:
            pool.submit(press, user)
        go.wait()
        t0 = time.perf_counter()
        # One poller for all users (N pollers would load the hub they measure).
        deadline = t0 + BURST_TIMEOUT
        while time.perf_counter() < deadline and len(ready) + len(failed) < len(users):
            now = time.perf_counter()
            for model in hub.api("GET", "users").json():
                name = model["name"]
                if name not in users or name in ready or name in failed:
                    continue
                server = model.get("servers", {}).get("")
                if server and server.get("ready"):
                    ready[name] = now - t0
                elif name in pressed and not model.get("pending") and not server:
                    failed[name] = "stopped without becoming ready"
            time.sleep(0.25)
    for user in users:
        if user not in ready and user not in failed:
            failed[user] = f"not ready after {BURST_TIMEOUT} s"
    return ready, failed


def stop_all(hub: Hub, users: list[str]) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda u: hub.stop_server(u, timeout=300), users))


def main() -> None:
    n = 2 if SMOKE else int(sys.argv[1]) if len(sys.argv) > 1 else 40
    if SMOKE:
        print("smoke run (BENCH_SMOKE=1): tiny sizes, the figures are not measurements")
    users = [f"burst{i:03d}" for i in range(n)]
    with tempfile.TemporaryDirectory(prefix="datalabs-bench-") as tmp:
        archive = Path(tmp) / "archive"
        make_sample_data(archive)
        (Path(tmp) / "hub").mkdir()
        with running_hub(Path(tmp) / "hub", archive) as hub:
            for user in ["solo", *users]:
                r = hub.api("POST", f"users/{user}")
                assert r.status_code == 201, r.text
            if not SMOKE:
                single_start(hub, "solo")  # warm-up: imports, first JupyterLab start
            singles = [single_start(hub, "solo") for _ in range(SINGLE_ROUNDS)]
            try:
                ready, failed = burst(hub, users)
            finally:
                stop_all(hub, users)
    single = statistics.median(singles)
    bound = n * single / cores()
    print(f"single start alone: median {single:.2f} s over {len(singles)}")
    print(f"{len(ready)} of {n} ready ({cores()} cores)")
    for user, why in sorted(failed.items()):
        print(f"  {user}: {why}")
    if not ready:
        print("spawn_burst: ratio=999 target=1.5")
        sys.exit(1)
    times = sorted(ready.values())
    last = times[-1]
    print(f"per-user time to ready: p50 {statistics.median(times):.2f} s, max {last:.2f} s")
    print(f"last ready after {last:.2f} s; CPU bound N x single / cores = {bound:.2f} s")
    print(f"spawn_burst: ratio={last / bound:.3f} target=1.5")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
