"""Faults during a run, caused for real: a step the kernel's OOM killer ends (a real memory
cgroup with a small limit) and a workspace disk that fills up (a real small tmpfs)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from datalabs_pipelines.executors.local import RunRequest
from datalabs_pipelines.executors.memory import ENV_CGROUP, ENV_MEMORY_LIMIT, MemoryLimit
from datalabs_pipelines.runs import FINAL_STATES

MEMORY_ROOT = Path("/sys/fs/cgroup/memory")
#: Well above what cwltool itself holds (about 100 MiB), far below what `greedy` asks for.
LIMIT_MIB = 256


def _wait_final(store, run_id: str, wait_for, timeout: float = 120):
    return wait_for(
        lambda: (r := store.get(run_id)).state in FINAL_STATES and r,
        timeout=timeout,
        what=f"run {run_id} to end",
    )


@pytest.fixture
def memory_cgroup(monkeypatch: pytest.MonkeyPatch):
    """A parent memory cgroup for the runs' own, and the limit in the environment (which the
    runs' supervisors inherit, as from the hub); removed at the end."""
    # Not a skip: a test that cannot run must fail, not count as passed. CI runs as root here.
    assert os.geteuid() == 0, "this test needs root (a memory cgroup); run it as CI does"
    assert (MEMORY_ROOT / "cgroup.procs").exists(), f"no cgroup v1 memory controller: {MEMORY_ROOT}"
    parent = MEMORY_ROOT / f"datalabs-test-{secrets.token_hex(4)}"
    monkeypatch.setenv(ENV_CGROUP, str(parent))
    monkeypatch.setenv(ENV_MEMORY_LIMIT, str(LIMIT_MIB * 2**20))
    yield parent
    if parent.exists():
        for child in parent.iterdir():
            if child.is_dir():
                child.rmdir()
        parent.rmdir()


def test_the_memory_limit_comes_from_the_environment():
    assert MemoryLimit.from_env({}) is None
    assert MemoryLimit.from_env({ENV_MEMORY_LIMIT: "0"}) is None
    limit = MemoryLimit.from_env({ENV_MEMORY_LIMIT: "1048576", ENV_CGROUP: "/x/y"})
    assert limit == MemoryLimit(1048576, Path("/x/y"))
    assert MemoryLimit.from_env({ENV_MEMORY_LIMIT: "5"}).parent == Path(
        "/sys/fs/cgroup/memory/datalabs"
    )
    with pytest.raises(ValueError, match="DATALABS_PIPELINES_MEMORY_LIMIT must be a number"):
        MemoryLimit.from_env({ENV_MEMORY_LIMIT: "lots"})


def test_a_step_the_oom_killer_ends_fails_with_that_reason(
    executor, store, data_dir, wait_for, memory_cgroup
):
    greedy = RunRequest(
        pipeline="greedy.cwl", pipeline_path=str(data_dir / "greedy.cwl"), inputs={"mib": 1024}
    )
    run = _wait_final(store, executor.submit(greedy).id, wait_for)

    assert run.state == "failed"
    assert run.exit_reason.startswith(
        f"killed: out of memory: step 'greedy' needed more than the {LIMIT_MIB} MiB"
    ), run.exit_reason
    steps = {s.name: s for s in run.steps}
    assert (steps["small"].state, steps["small"].message) == ("success", None)
    assert steps["greedy"].state == "failed"
    assert steps["greedy"].message == f"killed: out of memory (over the run's {LIMIT_MIB} MiB)"
    assert run.to_json()["steps"][1]["message"] == steps["greedy"].message
    # The run's cgroup went with it.
    assert [p.name for p in memory_cgroup.iterdir() if p.is_dir()] == []

    # Under the limit, the same pipeline runs as before.
    modest = RunRequest(
        pipeline="greedy.cwl", pipeline_path=str(data_dir / "greedy.cwl"), inputs={"mib": 16}
    )
    run = _wait_final(store, executor.submit(modest).id, wait_for)
    assert run.state == "success", run.exit_reason
    assert Path(run.outputs["held"]["path"]).read_text() == f"{16 * 2**20}\n"
