"""Idle culling on the real embedded hub (jupyterhub-idle-culler as a hub service).

Its own hub with a 20 s idle time (``DATALABS_IDLE_TIMEOUT``): carol leaves her session alone
and it is stopped; dave leaves his alone too, but a pipeline run of his is under way, so his
session keeps reporting activity and stays up, and the run finishes. A hub killed with SIGKILL
leaves no culler behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.hubprocess import running_hub

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

IDLE = 20
BODY = {"profile": "planetary-lab", "volumes": []}


def hub_time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_idle_sessions_are_stopped_but_not_one_with_a_run_under_way(
    tmp_path, demo_archive, monkeypatch
):
    monkeypatch.setenv("DATALABS_IDLE_TIMEOUT", str(IDLE))
    state = tmp_path / "hub"
    state.mkdir()
    # In dave's workspace: his run (in his sandbox, when sessions run in one) must see it.
    gate = state / "workspaces" / "dave" / "gate"
    with running_hub(state, demo_archive) as hub:
        try:
            for user in ("carol", "dave"):
                assert hub.api("POST", f"users/{user}").status_code == 201
                r = hub.api("POST", f"users/{user}/server", json=BODY)
                assert r.status_code in (201, 202), r.text
            for user in ("carol", "dave"):
                hub.wait_ready(user, timeout=120)
            # dave publishes a pipeline that waits for a file, and runs it.
            own = state / "workspaces" / "dave" / ".datalabs" / "catalogue" / "dave" / "pipelines"
            own.mkdir(parents=True)
            (own / "wait.cwl").write_text(
                "cwlVersion: v1.2\nclass: CommandLineTool\nlabel: Wait for a file\n"
                "baseCommand: [sh, -c, 'while [ ! -e \"$0\" ]; do sleep 0.1; done']\n"
                "inputs: {gate: {type: string, inputBinding: {position: 1}}}\noutputs: []\n"
            )
            r = hub.server(
                "dave",
                "POST",
                "datalabs/api/runs",
                json={"pipeline": "dave/wait", "inputs": {"gate": str(gate)}},
            )
            assert r.status_code == 201, r.text
            run_id = r.json()["id"]
            launched = datetime.now(UTC)

            # carol's idle session is stopped by the culler.
            deadline = time.monotonic() + 180
            while hub.api("GET", "users/carol").json()["servers"]:
                assert time.monotonic() < deadline, "carol's idle session was never culled"
                time.sleep(0.5)
            # No request has reached dave's session since the launch, yet the hub sees it
            # active more than the idle time later, and it is still up: the run counts.
            deadline = time.monotonic() + 180
            while True:
                server = hub.api("GET", "users/dave").json()["servers"].get("")
                assert server and server["ready"], "dave's session was stopped during his run"
                if hub_time(server["last_activity"]) > launched + timedelta(seconds=IDLE + 1):
                    break
                assert time.monotonic() < deadline, f"no activity from dave's run: {server}"
                time.sleep(0.5)
            gate.touch()
            deadline = time.monotonic() + 120
            while (run := hub.server("dave", "GET", f"datalabs/api/runs/{run_id}").json())[
                "state"
            ] not in ("success", "failed", "cancelled"):
                assert time.monotonic() < deadline, f"the run did not end: {run}"
                time.sleep(0.3)
            assert run["state"] == "success", run
        finally:
            if gate.parent.is_dir():
                gate.touch()
            for user in ("carol", "dave"):
                hub.stop_server(user)


def cullers() -> list[int]:
    """Pids of every jupyterhub-idle-culler on the machine."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if entry.name.isdigit() and b"jupyterhub_idle_culler" in argv:
            found.append(int(entry.name))
    return found


def test_a_killed_hub_leaves_no_culler_behind(tmp_path, demo_archive, monkeypatch):
    """A hub killed with SIGKILL cannot stop its services; the culler must go by itself, or the
    restarted hub runs two cullers side by side."""
    monkeypatch.setenv("DATALABS_IDLE_TIMEOUT", str(IDLE))
    state = tmp_path / "hub"
    state.mkdir()
    before = set(cullers())
    try:
        with running_hub(state, demo_archive) as hub:
            deadline = time.monotonic() + 30
            while not (mine := set(cullers()) - before):
                assert time.monotonic() < deadline, "the hub started no idle culler"
                time.sleep(0.1)
            hub.kill()
            deadline = time.monotonic() + 30
            while left := [pid for pid in mine if pid in cullers()]:
                assert time.monotonic() < deadline, f"the culler {left} outlived its hub"
                time.sleep(0.1)
            hub.process.start()
            deadline = time.monotonic() + 30
            while len(now := set(cullers()) - before) != 1:
                assert time.monotonic() < deadline, f"the restarted hub runs cullers {now}"
                time.sleep(0.1)
    finally:
        for pid in set(cullers()) - before:  # what a failure left
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
