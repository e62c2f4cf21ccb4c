"""The machine-wide run limit: real flock slot files, real supervisors and cwltool runs."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from datalabs_pipelines.executors.local import LocalExecutor, RunRequest
from datalabs_pipelines.executors.slots import ENV_MACHINE_RUNS, ENV_SLOTS_DIR, MachineSlots
from datalabs_pipelines.runs import FINAL_STATES, RunStore
from datalabs_pipelines.settings import Settings

HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


def test_a_slot_held_by_a_process_is_freed_when_that_process_dies(tmp_path):
    slots = MachineSlots(tmp_path / "slots", 1)
    slots.prepare()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "slots" / "slot-0")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert slots.try_acquire() is None
        holder.send_signal(signal.SIGKILL)  # a run killed outright keeps no slot
        holder.wait(10)
        fd = slots.try_acquire()
        assert fd is not None
        assert MachineSlots(tmp_path / "slots", 1).try_acquire() is None  # one holder at once
        os.close(fd)
    finally:
        holder.kill()
        holder.wait(10)


def test_the_limit_comes_from_the_environment_and_bad_values_are_named(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_MACHINE_RUNS, raising=False)
    monkeypatch.setenv(ENV_SLOTS_DIR, str(tmp_path))
    assert MachineSlots.from_env() is None
    monkeypatch.setenv(ENV_MACHINE_RUNS, "0")
    assert MachineSlots.from_env() is None
    monkeypatch.setenv(ENV_MACHINE_RUNS, "3")
    assert MachineSlots.from_env() == MachineSlots(tmp_path, 3)
    monkeypatch.setenv(ENV_MACHINE_RUNS, "many")
    with pytest.raises(ValueError, match="DATALABS_PIPELINES_MACHINE_RUNS: not a whole number"):
        MachineSlots.from_env()


def _events(run) -> list[dict]:
    path = Path(run.rundir) / "events.jsonl"
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def two_sessions(tmp_path, monkeypatch):
    """alice's and bob's sessions (one run store each) on a machine that runs one at a time."""
    monkeypatch.setenv(ENV_MACHINE_RUNS, "1")
    monkeypatch.setenv(ENV_SLOTS_DIR, str(tmp_path / "slots"))
    MachineSlots(tmp_path / "slots", 1).prepare()
    made = []
    for user in ("alice", "bob"):
        settings = Settings(home=tmp_path / user, user=user, max_concurrent=4)
        made.append(LocalExecutor(settings, RunStore(settings.db_path)))
    yield made
    for ex in made:
        for run in ex.store.list(states=("queued", "running", "cancelling"), limit=100):
            ex.cancel(run.user, run.id)
        ex.close()


def test_a_second_users_run_waits_for_the_machine_slot_then_runs(two_sessions, data_dir, wait_for):
    alice, bob = two_sessions
    marker = f"{random.randint(5000, 9000)}.{os.getpid() % 1000 + 7}"
    first = alice.submit(RunRequest("sleepy.cwl", str(data_dir / "sleepy.cwl"), {"marker": marker}))
    wait_for(
        lambda: alice.store.get(first.id).pgid is not None, timeout=60, what="alice's run started"
    )
    second = bob.submit(RunRequest("echo.cwl", str(data_dir / "echo.cwl"), {"text": "hi"}))
    wait_for(
        lambda: any("waiting for a free run slot" in e.get("message", "") for e in _events(second)),
        timeout=60,
        what="bob's run waiting for the slot",
    )
    assert bob.store.get(second.id).pgid is None  # no cwltool started for it
    alice.cancel("alice", first.id)
    done = wait_for(
        lambda: (r := bob.store.get(second.id)).state in FINAL_STATES and r,
        timeout=120,
        what="bob's run to end",
    )
    assert done.state == "success", done.exit_reason


def test_a_run_cancelled_while_it_waits_for_the_slot_never_starts(two_sessions, data_dir, wait_for):
    alice, bob = two_sessions
    marker = f"{random.randint(5000, 9000)}.{os.getpid() % 1000 + 9}"
    first = alice.submit(RunRequest("sleepy.cwl", str(data_dir / "sleepy.cwl"), {"marker": marker}))
    wait_for(
        lambda: alice.store.get(first.id).pgid is not None, timeout=60, what="alice's run started"
    )
    second = bob.submit(RunRequest("echo.cwl", str(data_dir / "echo.cwl"), {"text": "hi"}))
    wait_for(
        lambda: any("waiting for a free run slot" in e.get("message", "") for e in _events(second)),
        timeout=60,
        what="bob's run waiting for the slot",
    )
    cancelled = bob.cancel("bob", second.id)
    assert cancelled.state == "cancelled", cancelled
    assert cancelled.pgid is None
    assert alice.store.get(first.id).state == "running"  # the slot holder goes on
