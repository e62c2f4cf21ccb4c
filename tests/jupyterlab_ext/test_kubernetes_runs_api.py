"""``executor = "kubernetes"`` over HTTP: a real server whose runs are Jobs in the API emulator.

The server process talks to the emulator served by this test's event loop, so every blocking
call (starting the server, HTTP requests) goes through ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import json
import time

import kmock
import pytest

from datalabs_pipelines.executors.kubernetes import job_name

pytest_plugins = ["tests.k8s_fixtures"]
pytestmark = pytest.mark.slow

JOBS = "batch/v1/jobs"
CSV = "ra,dec,magnitude,name\n10.68,41.27,3.4,M31\n"


async def _wait_state(server, run_id: str, state: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = (await asyncio.to_thread(server.get, f"runs/{run_id}")).json()
        if run["state"] == state:
            return run
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} is {run['state']!r}, not {state!r}, after {timeout}s")


async def _set_job_status(k8s_api, run_id: str, status: dict) -> None:
    url = f"/apis/batch/v1/namespaces/{k8s_api.namespace}/jobs/{job_name(run_id)}/status"
    headers = {"Content-Type": "application/merge-patch+json"}
    async with k8s_api.emulator.patch(
        url, data=json.dumps({"status": status}), headers=headers
    ) as resp:
        assert resp.status == 200, await resp.text()


async def test_runs_become_jobs_followed_and_cancelled_over_http(k8s_api, start_server, tmp_path):
    k8s_api.emulator.resources[JOBS] = kmock.ResourceInfo(
        kind="Job",
        singular="job",
        namespaced=True,
        verbs={"create", "delete", "get", "list", "patch", "watch"},
        subresources={"status"},
    )
    server = await asyncio.to_thread(
        start_server,
        executor="kubernetes",
        k8s_namespace=k8s_api.namespace,
        k8s_kubeconfig=str(k8s_api.kubeconfig),
        k8s_input_dir=str(tmp_path / "input-claim"),
        k8s_output_dir=str(tmp_path / "output-claim"),
        poll_interval=0.2,
    )
    (server.root / "sources.csv").write_text(CSV)
    body = {
        "pipeline": "esasky/bright-sources",
        "inputs": {"catalogue": "sources.csv", "magnitude_limit": 5.0},
    }

    response = await asyncio.to_thread(server.post, "runs", body)
    assert response.status_code == 201, response.text
    run = response.json()
    assert run["state"] == "queued", run.get("exit_reason")
    assert k8s_api.emulator.get_object(JOBS, k8s_api.namespace, job_name(run["id"])) is not None
    # The workspace file reached the input claim, where the Job can read it.
    staged = tmp_path / "input-claim" / run["id"]
    assert (staged / "inputs" / "0" / "sources.csv").read_text() == CSV

    await _set_job_status(k8s_api, run["id"], {"active": 1})
    await _wait_state(server, run["id"], "running")
    await _set_job_status(
        k8s_api,
        run["id"],
        {
            "active": 0,
            "failed": 1,
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "DeadlineExceeded",
                    "message": "Job was active longer than specified deadline",
                }
            ],
        },
    )
    failed = await _wait_state(server, run["id"], "failed")
    assert failed["exit_reason"] == (
        "DeadlineExceeded: Job was active longer than specified deadline"
    )

    second = (await asyncio.to_thread(server.post, "runs", body)).json()
    assert second["state"] == "queued", second.get("exit_reason")
    cancel = await asyncio.to_thread(server.post, f"runs/{second['id']}/cancel")
    assert cancel.status_code == 200, cancel.text
    assert cancel.json()["state"] == "cancelled"
    assert k8s_api.emulator.get_object(JOBS, k8s_api.namespace, job_name(second["id"])) is None
    listed = (await asyncio.to_thread(server.get, "runs")).json()["runs"]
    assert [(r["id"], r["state"]) for r in listed] == [
        (second["id"], "cancelled"),
        (run["id"], "failed"),
    ]


@pytest.mark.parametrize(
    "env, expected",
    [("kubernetes", "kubernetes"), ("local", "local"), ("", "local"), ("k8s", "local")],
)
def test_the_session_runs_where_its_spawner_says(monkeypatch, env, expected):
    """``$DATALABS_PIPELINES_EXECUTOR`` (set by DatalabsKubeSpawner.run_work_claims) is the
    executor's default; anything else is the embedded default."""
    from jupyterlab_ext.app import DatalabsExtension

    monkeypatch.setenv("DATALABS_PIPELINES_EXECUTOR", env)
    assert DatalabsExtension().executor == expected
