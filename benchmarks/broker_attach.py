"""Hot attach through the broker, against the bind mount it ends in.

A real embedded hub (the demo config) runs alice's session. Each round attaches
``psa-rosetta`` the way the Data panel does: a request to her session's API, which asks the
hub's broker with her token, which checks the hub's groups and the catalogue and bind-mounts
the volume read-only into her workspace; timed from the request to the answer, then detached
(not timed). The baseline, measured in the same run and interleaved with it: the same
``LocalMounter`` bind mount of the same volume's folder, called directly in this process.
Also shown: the broker asked directly with her own token (no session in between).

Issue 11's target is a p50 of at most 250 ms through the broker. The last line gives the
ratio of the two p50s, and as target that 250 ms budget in units of the baseline's p50:
``broker_attach: ratio=<p50 session+broker / p50 direct bind> target=<250 ms / p50 direct
bind>`` (ratio <= target means the 250 ms target is met).
With ``BENCH_SMOKE=1``: one round, no warm-up (it starts and reaches its figure; the figure
means nothing).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "config" / "sample-data"))

import requests  # noqa: E402
from make_sample_data import make_sample_data  # noqa: E402

from datalabs_volumes.mount.local import LocalMounter, is_mount_point  # noqa: E402
from tests.e2e.hubprocess import running_hub  # noqa: E402

SMOKE = os.environ.get("BENCH_SMOKE") == "1"
ROUNDS = 1 if SMOKE else 25
VOLUME = "psa-rosetta"
TARGET_SECONDS = 0.250


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    if SMOKE:
        print("smoke run (BENCH_SMOKE=1): one round, the figures are not measurements")
    with tempfile.TemporaryDirectory(prefix="datalabs-bench-") as tmp:
        tmp_path = Path(tmp)
        archive = tmp_path / "archive"
        make_sample_data(archive)
        (tmp_path / "hub").mkdir()
        with running_hub(tmp_path / "hub", archive) as hub:
            r = hub.api(
                "POST", "users/alice/server", json={"profile": "planetary-lab", "volumes": []}
            )
            assert r.status_code in (201, 202), r.text
            hub.wait_ready("alice")
            r = hub.api("POST", "users/alice/tokens", json={"note": "broker benchmark"})
            token = r.json()["token"]
            broker = f"{hub.url}/hub/datalabs/v1/users/alice/volumes/{VOLUME}/"
            headers = {"Authorization": f"token {token}"}
            target = hub.state / "workspaces" / "alice" / "data" / VOLUME
            source = archive / "psa-rosetta"
            assert source.is_dir(), f"{source}: the sample archive changed; fix VOLUME"
            direct_target = tmp_path / "direct" / "data" / VOLUME
            mounter = LocalMounter("bind")
            loop = asyncio.new_event_loop()

            def via_session():
                r = hub.server("alice", "POST", f"datalabs/api/volumes/{VOLUME}/attach")
                assert r.status_code == 200, r.text
                assert is_mount_point(target)

            def via_broker():
                r = requests.post(broker + "attach", headers=headers, timeout=60)
                assert r.status_code == 200, r.text

            def detach():
                r = requests.post(broker + "detach", headers=headers, timeout=60)
                assert r.status_code == 200, r.text

            def direct():
                mounted = loop.run_until_complete(mounter.attach(source, direct_target))
                assert mounted.method == "bind"

            def direct_detach():
                loop.run_until_complete(mounter.detach(direct_target))

            try:
                if not SMOKE:
                    # Warm-up: imports, the first catalogue scan, the volume's size walk.
                    for call, undo in ((via_session, detach), (via_broker, detach)):
                        call()
                        undo()
                    direct()
                    direct_detach()
                t_session, t_broker, t_direct = [], [], []
                for i in range(ROUNDS):
                    # Alternate the order, so that neither always runs on a cache the other
                    # warmed.
                    steps = [
                        (t_session, via_session, detach),
                        (t_broker, via_broker, detach),
                        (t_direct, direct, direct_detach),
                    ]
                    for times, call, undo in steps if i % 2 else reversed(steps):
                        times.append(timed(call))
                        undo()
            finally:
                # Never leave the archive mounted under a folder that is about to be removed.
                if is_mount_point(direct_target):
                    direct_detach()
                loop.close()
                hub.stop_server("alice")
    p50_session = statistics.median(t_session)
    p50_broker = statistics.median(t_broker)
    p50_direct = statistics.median(t_direct)
    print(f"direct LocalMounter bind mount (baseline): p50 {p50_direct * 1000:.1f} ms")
    print(f"broker asked directly with alice's token: p50 {p50_broker * 1000:.1f} ms")
    print(
        f"hot attach through the session API and the broker: p50 {p50_session * 1000:.1f} ms "
        f"over {ROUNDS} (target <= {TARGET_SECONDS * 1000:.0f} ms: "
        f"{'met' if p50_session <= TARGET_SECONDS else 'NOT met'})"
    )
    print(
        f"broker_attach: ratio={p50_session / p50_direct:.3f} "
        f"target={TARGET_SECONDS / p50_direct:.3f}"
    )


if __name__ == "__main__":
    main()
