"""The hub, and with it the broker, killed while a session attaches a volume.

The real embedded hub is killed with SIGKILL while alice's session runs (the session and the
proxy are other processes and go on). Her attach then gets a 503 that says the hub is not
answering and to try again, marked retryable with ``Retry-After``, and nothing is mounted. The
hub is restarted on the same ports and state, and the very same attach succeeds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest

from datalabs_volumes.mount.local import is_mount_point
from tests.e2e.hubprocess import HubPorts, running_hub

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

VOLUME = "psa-rosetta"


def _kill(pid: int | None) -> None:
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_an_attach_while_the_hub_is_down_is_retryable_and_works_once_it_is_back(
    tmp_path, demo_archive, monkeypatch
):
    # No idle-culler service: a hub killed with SIGKILL would leave it running.
    monkeypatch.setenv("DATALABS_IDLE_TIMEOUT", "0")
    state = tmp_path / "hub-state"
    state.mkdir()
    ports = HubPorts.free()
    attach = f"datalabs/api/volumes/{VOLUME}/attach"
    target = state / "workspaces" / "alice" / "data" / VOLUME
    session_pid = None
    finished = False
    try:
        with running_hub(state, demo_archive, ports=ports) as hub:
            r = hub.api(
                "POST", "users/alice/server", json={"profile": "planetary-lab", "volumes": []}
            )
            assert r.status_code in (201, 202), r.text
            server = hub.wait_ready("alice")
            session_pid = server.get("state", {}).get("pid")
            # The session knows the token from here on (jupyterhub-singleuser caches it), so
            # it can still tell who calls while the hub is down.
            volumes = hub.server("alice", "GET", "datalabs/api/volumes")
            assert volumes.status_code == 200, volumes.text
            assert VOLUME in [v["id"] for v in volumes.json()]

            hub.kill()

            r = hub.server("alice", "POST", attach)
            assert r.status_code == 503, r.text
            answer = r.json()
            assert answer["retryable"] is True
            assert answer["reason"] == "hub_unavailable"
            assert "The hub is not answering (it may be restarting)" in answer["message"]
            assert "nothing was changed. Try again in 5 seconds" in answer["message"]
            assert r.headers["Retry-After"] == "5"
            assert not is_mount_point(target)

        with running_hub(state, demo_archive, ports=ports) as hub:
            # The restarted hub found the session still running and routes to it (it answers
            # its API a moment before it has given the new proxy the session's route).
            hub.wait_ready("alice")
            deadline = time.monotonic() + 60
            while hub.server("alice", "GET", "datalabs/api/volumes").status_code != 200:
                assert time.monotonic() < deadline, "alice's session is not reachable again"
                time.sleep(0.2)
            r = hub.server("alice", "POST", attach)
            assert r.status_code == 200, r.text
            assert r.json()["mounted"]
            assert is_mount_point(target)
            hub.stop_server("alice")
            assert not is_mount_point(target)
        finished = True
    finally:
        if not finished:
            # Whatever failed, neither the session nor the killed hub's proxy stays behind.
            _kill(session_pid)
            with contextlib.suppress(OSError, ValueError):
                _kill(int((state / "proxy.pid").read_text()))
