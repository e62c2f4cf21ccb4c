"""Sessions outlive the hub: the real embedded hub restarted under running sessions.

Each test has its own hub (``running_hub``), restarted with the same settings by
``hub.process``. The config's ``cleanup_servers = False`` is what leaves sessions running when
the hub stops; the restarted hub finds them from JupyterHub's own spawner state, polls them and
routes to them through a new configurable-http-proxy.

- two sessions with volumes and a pipeline run under way survive a restart: both answer through
  the proxy as the same servers, with their volumes mounted, and the run (and a second one
  that waited for the machine's only run slot, which the first one kept) ends ``success``;
- a session whose server died while the hub was down is cleaned (volumes, the sandbox's
  ``data/`` mount) and shown stopped, while the other one carries on (with and without the
  sandbox);
- the hub killed with SIGKILL while it mounted a session's volumes: the restarted hub unmounts
  what that start left, shows the user stopped, and the user starts again;
- the hub killed with SIGKILL after it launched a server that did not answer yet: the
  restarted hub finds it (its pid was stored at launch) and keeps it once it answers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

from datalabs_pipelines.events import read_events
from datalabs_spawner.spawner import process_start
from datalabs_volumes.mount.local import mounts_under
from tests.e2e.hubprocess import REPO, Hub, gated_server_cmd, processes_under, running_hub

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.root]

VOLUMES = ["psa-rosetta", "spice-juice"]
BODY = {"profile": "planetary-lab", "volumes": VOLUMES}

# A step that tells it started, then waits for the test's gate file (test-made paths).
GATE_CWL = """cwlVersion: v1.2
class: CommandLineTool
label: Wait for a gate file
baseCommand: [sh, -c, 'touch "$1"; while [ ! -e "$0" ]; do sleep 0.05; done']
inputs:
  gate: {type: string, inputBinding: {position: 1}}
  started: {type: string, inputBinding: {position: 2}}
outputs: []
"""


def wait_until(what: str, check, timeout: float = 60):
    """Poll ``check()`` until it returns something true; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not after {timeout} s"
        time.sleep(0.05)


def start(hub: Hub, user: str, body: dict = BODY) -> None:
    r = hub.api("POST", f"users/{user}/server", json=body)
    assert r.status_code in (201, 202), r.text


def wait_answering(hub: Hub, user: str, timeout: float = 60) -> None:
    """Ready in the hub's model, and answering through the proxy: a restarted hub answers
    its API a moment before it has given the new proxy the session's route."""
    hub.wait_ready(user, timeout=timeout)
    wait_until(
        f"{user}'s session answering through the proxy",
        lambda: hub.server(user, "GET", "api/status").status_code == 200,
        timeout,
    )


def server_started(hub: Hub, user: str) -> str:
    """When the user's jupyter server started, as it says through the proxy."""
    r = hub.server(user, "GET", "api/status")
    assert r.status_code == 200, r.text
    return r.json()["started"]


def data_listing(hub: Hub, user: str) -> list[str]:
    r = hub.server(user, "GET", "api/contents/data")
    assert r.status_code == 200, r.text
    return sorted(c["name"] for c in r.json()["content"])


def is_stopped(hub: Hub, user: str) -> bool:
    model = hub.api("GET", f"users/{user}").json()
    return not model["servers"] and not model["pending"]


def stored_pid(state: Path, user: str) -> int:
    """The pid in the user's spawner state in the hub's database (what a restarted hub reads)."""
    with contextlib.closing(sqlite3.connect(state / "jupyterhub.sqlite")) as db:
        (raw,) = db.execute(
            "SELECT spawners.state FROM spawners JOIN users ON spawners.user_id = users.id "
            "WHERE users.name = ? AND spawners.name = ''",
            (user,),
        ).fetchone()
    return json.loads(raw)["pid"]


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
    return found


def run_state(hub: Hub, user: str, run_id: str) -> dict:
    r = hub.server(user, "GET", f"datalabs/api/runs/{run_id}")
    assert r.status_code == 200, r.text
    return r.json()


def open_gates(gates: list[Path]) -> None:
    for gate in gates:
        if gate.parent.is_dir():
            gate.touch()


def launch(hub: Hub, user: str, gate: Path, started: Path) -> str:
    r = hub.server(
        user,
        "POST",
        "datalabs/api/runs",
        json={"pipeline": "restart/gate", "inputs": {"gate": str(gate), "started": str(started)}},
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_sessions_and_a_pipeline_run_survive_a_hub_restart(tmp_path, demo_archive):
    """The issue's "done when": two running sessions with volumes and a running pipeline;
    after a restart both answer through the proxy, volumes mounted, and the run succeeds."""
    catalogue = tmp_path / "catalogue"
    (catalogue / "restart" / "pipelines").mkdir(parents=True)
    (catalogue / "restart" / "pipelines" / "gate.cwl").write_text(GATE_CWL)
    state = tmp_path / "hub"
    state.mkdir()
    # In each user's workspace: their runs (in their sandboxes, when sessions run in one) see it.
    ws = {user: state / "workspaces" / user for user in ("alice", "bob")}
    gates = [ws[user] / "gate" for user in ws]
    alice_step, bob_step = ws["alice"] / "step-started", ws["bob"] / "step-started"
    dirs = [str(REPO / "config" / "catalogue"), str(catalogue)]
    args = [
        f"--DatalabsSpawnerMixin.catalogue_dirs={dirs!r}",
        # One run at a time on the machine: the run under way keeps its slot over the restart.
        "--DatalabsLocalSpawner.pipeline_runs_machine=1",
    ]
    with running_hub(state, demo_archive, args) as hub:
        try:
            for user in ("alice", "bob"):
                start(hub, user)
            for user in ("alice", "bob"):
                hub.wait_ready(user)
            before = {user: server_started(hub, user) for user in ("alice", "bob")}
            run_id = launch(hub, "alice", gates[0], alice_step)
            wait_until("alice's run step started", alice_step.exists, 120)
            assert run_state(hub, "alice", run_id)["state"] == "running"

            hub.process.restart()

            for user in ("alice", "bob"):
                wait_answering(hub, user)
                # The same servers (not started again), through the new proxy.
                assert server_started(hub, user) == before[user]
                assert data_listing(hub, user) == VOLUMES
                data = state / "workspaces" / user / "data"
                # (a sandboxed session also has its own shared bind of data/ itself)
                assert sorted(p.name for p in mounts_under(data) if p != data) == VOLUMES
            assert run_state(hub, "alice", run_id)["state"] == "running"
            # bob's run waits for the only run slot, which alice's run still holds.
            bob_run = launch(hub, "bob", gates[1], bob_step)
            rundir = state / "workspaces" / "bob" / "pipeline-runs" / "runs" / bob_run
            wait_until(
                "bob's run waiting for the slot",
                lambda: any(
                    "waiting for a free run slot" in e.get("message", "")
                    for e in read_events(rundir)[0]
                ),
            )
            assert not bob_step.exists()
            open_gates(gates)
            for user, rid in (("alice", run_id), ("bob", bob_run)):
                run = wait_until(
                    f"{user}'s run to end",
                    lambda u=user, r=rid: (
                        (s := run_state(hub, u, r))["state"] not in ("queued", "running") and s
                    ),
                    120,
                )
                assert run["state"] == "success", run
        finally:
            open_gates(gates)


@pytest.mark.parametrize("sandbox", [False, True], ids=["unboxed", "sandboxed"])
def test_a_session_that_died_while_the_hub_was_down_is_cleaned_and_shown_stopped(
    tmp_path, demo_archive, accounts, sandbox
):
    state = tmp_path / "hub"
    state.mkdir()
    args = []
    if sandbox:
        args = [
            "--DatalabsLocalSpawner.sandbox=True",
            f"--DatalabsLocalSpawner.account_prefix={accounts}",
        ]
    with running_hub(state, demo_archive, args) as hub:
        for user in ("alice", "bob"):
            start(hub, user)
        for user in ("alice", "bob"):
            hub.wait_ready(user)
        alice_started = server_started(hub, "alice")
        alice_pid = stored_pid(state, "alice")
        alice_processes = {p: process_start(p) for p in descendants(alice_pid)}
        assert len(alice_processes) >= (4 if sandbox else 1)  # supervisor, bwrap, init, server
        bob_data = state / "workspaces" / "bob" / "data"
        assert mounts_under(bob_data)

        hub.process.stop()
        # bob's session dies while the hub is down (in a sandbox: its supervisor, and with it
        # the whole sandbox).
        pid = stored_pid(state, "bob")
        os.kill(pid, signal.SIGKILL)
        wait_until("bob's server to end", lambda: process_start(pid) is None, 10)
        hub.process.start()

        # Shown stopped, with nothing of his session left mounted, and well before the
        # hub's 60 s http_timeout (the time it gives a live server to answer).
        wait_until("bob shown stopped", lambda: is_stopped(hub, "bob"), 30)
        assert mounts_under(bob_data) == []
        assert not [p for p in VOLUMES if (bob_data / p).exists()]
        # alice's session carries on, through the proxy, with her volumes.
        wait_answering(hub, "alice")
        assert server_started(hub, "alice") == alice_started
        assert data_listing(hub, "alice") == VOLUMES
        # The restarted hub stops her session as its own: all of it, volumes included.
        hub.stop_server("alice")
        assert process_start(alice_pid) is None
        assert mounts_under(state / "workspaces" / "alice") == []
        wait_until(
            "every process of alice's session to end",
            lambda: all(process_start(p) != t for p, t in alice_processes.items()),
            10,
        )


MOUNT_HOLD = """#!/bin/sh
# Test-made stand-in for mount(8) on the hub's PATH: while HOLD exists, the step that makes
# the staging bind mount of one volume's folder read-only waits (after telling REACHED its
# pid), the staging folder holding that volume's files; then it is the real mount.
for last; do :; done
case "$*" in
  *remount,bind,ro*)
    if [ -e "{hold}" ] && [ "$(ls "$last")" = "$(ls "{source}")" ]; then
      echo $$ > "{reached}"
      while [ -e "{hold}" ]; do
        kill -0 "$PPID" 2>/dev/null || exit 1  # the hub is gone: mount nothing
        sleep 0.05
      done
    fi;;
esac
exec {mount} "$@"
"""


def test_a_hub_killed_while_mounting_leaves_nothing_after_its_restart(tmp_path, demo_archive):
    """SIGKILL to the hub mid-spawn (one volume mounted, the next being mounted): the
    restarted hub unmounts what that start left (its staging mount included), shows the user
    stopped, and they can start."""
    state = tmp_path / "hub"
    state.mkdir()
    tools = tmp_path / "bin"
    tools.mkdir()
    hold, reached = tmp_path / "hold", tmp_path / "reached"
    (tools / "mount").write_text(
        MOUNT_HOLD.format(
            source=demo_archive / "spice-juice",
            hold=hold,
            reached=reached,
            mount=shutil.which("mount"),
        )
    )
    (tools / "mount").chmod(0o755)
    env = {"PATH": f"{tools}:{os.environ['PATH']}"}
    # One start at a time: the start the dead hub never finished must not hold the slot.
    args = ["--DatalabsLocalSpawner.concurrent_starts=1"]
    workspace = state / "workspaces" / "alice"
    hold.touch()
    with running_hub(state, demo_archive, args, env) as hub:
        start(hub, "alice")
        wait_until("the second volume's mount to be reached", reached.exists, 60)
        # (a sandboxed start binds data/ itself first, shared, for the sandbox)
        assert [p.name for p in mounts_under(workspace) if p != workspace / "data"] == [
            "psa-rosetta"
        ]

        # The volume is bound in the hub's staging folder, not yet read-only nor in place.
        killed = hub.process.proc.pid
        staged = list(Path(tempfile.gettempdir()).glob(f"datalabs-stage-{killed}.*"))
        assert len(staged) == 1 and mounts_under(staged[0]) == staged, staged

        hub.process.stop(signal.SIGKILL)
        mounting = int(reached.read_text())
        wait_until("the held mount to give up", lambda: process_start(mounting) is None, 10)
        hold.unlink()
        hub.process.start()

        wait_until("alice shown stopped", lambda: is_stopped(hub, "alice"), 30)
        assert mounts_under(workspace) == []
        assert processes_under(workspace) == []
        # The killed hub's staging folder is unmounted and gone.
        assert mounts_under(staged[0]) == [] and not staged[0].exists()
        # She starts again, and gets her session with both volumes.
        start(hub, "alice")
        hub.wait_ready("alice")
        assert data_listing(hub, "alice") == VOLUMES


def test_a_server_launched_before_the_hub_was_killed_is_kept_once_it_answers(
    tmp_path, demo_archive
):
    """SIGKILL after the server was launched but before it answered: its pid was stored at
    launch, so the restarted hub finds it, waits for it to answer, and keeps the session."""
    state = tmp_path / "hub"
    state.mkdir()
    gate = socket.socket()  # the server starts once the test listens on it
    gate.bind(("127.0.0.1", 0))
    cmd = gated_server_cmd(gate)
    with running_hub(state, demo_archive, [f"--Spawner.cmd={cmd!r}"]) as hub:
        try:

            def press_start() -> None:
                # Its answer would come after the hub's slow_spawn_timeout: the hub dies first
                # (the proxy answers 503 then, or the connection breaks).
                with contextlib.suppress(requests.RequestException):
                    hub.api("POST", "users/alice/server", json=BODY)

            threading.Thread(target=press_start, daemon=True).start()

            def launched() -> int | None:
                with contextlib.suppress(sqlite3.Error, TypeError, KeyError):
                    return stored_pid(state, "alice")
                return None

            pid = wait_until("alice's server launched", launched, 60)
            started = process_start(pid)
            assert started is not None
            assert is_stopped(hub, "alice") is False

            hub.process.stop(signal.SIGKILL)
            hub.process.start()
            gate.listen()

            wait_answering(hub, "alice", timeout=90)
            assert data_listing(hub, "alice") == VOLUMES
            assert process_start(stored_pid(state, "alice")) == started  # the same server
        finally:
            gate.listen()  # (again: harmless if it already listens)
