"""The workspace disk filling up during a run, on a real jupyter-server whose run store (the
session's ``pipeline-runs`` folder) is on a real 16 MiB tmpfs: the run is failed with that
reason, the space the run took is given back, and the session goes on answering and running."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "pipelines" / "data"
DISK_MIB = 16


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 16 MiB tmpfs; unmounted at the end (after the server that uses it is stopped)."""
    assert os.geteuid() == 0, "mounting a tmpfs needs root; run this test as CI does"
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MIB}m", "tmpfs", str(disk)], check=True
    )
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_run_that_fills_the_disk_fails_with_that_reason_and_the_session_goes_on(
    small_disk, start_server, tmp_path, wait_run
):
    pipelines = tmp_path / "catalogue" / "test" / "pipelines"
    pipelines.mkdir(parents=True)
    for name in ("fills-disk.cwl", "echo.cwl"):
        shutil.copy(DATA / name, pipelines / name)
    server = start_server(
        pipelines_home=str(small_disk / "pipeline-runs"),
        catalogue_dirs=[str(tmp_path / "catalogue")],
    )

    launched = server.post("runs", {"pipeline": "test/fills-disk", "inputs": {"mib": 4 * DISK_MIB}})
    assert launched.status_code == 201, launched.text
    run = wait_run(server, launched.json()["id"])

    assert run["state"] == "failed"
    assert run["exit_reason"].startswith(
        "no space left on the workspace disk: step 'fill' could not write its files. "
        "The run's unfinished files were removed ("
    ), run["exit_reason"]
    assert {s["name"]: s["state"] for s in run["steps"]} == {"small": "success", "fill": "failed"}
    # What the run wrote is given back, so the session can write again.
    assert shutil.disk_usage(small_disk).free > DISK_MIB * 2**20 // 2
    assert server.get("pipelines").status_code == 200
    assert server.get("runs").json()["runs"][0]["state"] == "failed"
    again = server.post("runs", {"pipeline": "test/fills-disk", "inputs": {"mib": 1}})
    assert again.status_code == 201, again.text
    finished = wait_run(server, again.json()["id"])
    assert finished["state"] == "success", finished["exit_reason"]
    assert os.path.getsize(finished["outputs"]["filled"]["path"]) == 2**20

    # A disk filled by something else: a new run is refused with what to do, not a 500.
    with open(small_disk / "filler.bin", "wb", buffering=0) as filler:
        with pytest.raises(OSError, match="No space left on device"):
            while True:
                filler.write(b"x" * 2**20)
    refused = server.post("runs", {"pipeline": "test/fills-disk", "inputs": {"mib": 1}})
    assert refused.status_code == 507, refused.text
    assert refused.json()["message"].startswith("The workspace disk is full")
    assert server.get("runs").status_code == 200
