"""The Kubernetes executor against the API emulator: runs become Calrissian Jobs and back.

The test plays the Job controller: it PATCHes a Job's ``status`` over HTTP as the controller
would, then lets the executor's periodic check (``tick``) read it. Executor calls go through
``asyncio.to_thread``, as the REST handlers make them, because the executor runs its own short
event loop per API call while the emulator serves on the test's loop.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import kmock
import kubernetes_validate
import pytest

from datalabs_pipelines.executors import local
from datalabs_pipelines.executors.kubernetes import ArchiveVolume, job_name
from datalabs_pipelines.executors.kubernetes_executor import (
    KubernetesExecutor,
    KubernetesSettings,
)
from datalabs_pipelines.executors.local import RunRequest
from datalabs_pipelines.runs import RunStore
from datalabs_pipelines.settings import Settings

pytest_plugins = ["tests.k8s_fixtures"]

JOBS = "batch/v1/jobs"
K8S_VERSION = "1.30"
ARCHIVE = ArchiveVolume(id="psa-rosetta", claim_name="psa-rosetta", mount_path="/data/psa-rosetta")
INPUTS = {
    "message": "hello",
    "table": {"class": "File", "path": "/data/psa-rosetta/ro-c-navcam/table.csv"},
}


@pytest.fixture
def executor(k8s_api, settings: Settings, tmp_path: Path) -> Iterator[KubernetesExecutor]:
    # What a cluster with the batch API serves; the emulator only declares core resources.
    k8s_api.emulator.resources[JOBS] = kmock.ResourceInfo(
        kind="Job",
        singular="job",
        namespaced=True,
        verbs={"create", "delete", "get", "list", "patch", "watch"},
        subresources={"status"},
    )
    k8s = KubernetesSettings(
        namespace=k8s_api.namespace,
        input_dir=str(tmp_path / "input-claim"),
        output_dir=str(tmp_path / "output-claim"),
        archive_volumes=(ARCHIVE,),
        kubeconfig=str(k8s_api.kubeconfig),
        request_timeout=5,
    )
    ex = KubernetesExecutor(settings, k8s, RunStore(settings.db_path))
    yield ex
    ex.close()


def _request(data_dir: Path, inputs: dict | None = None) -> RunRequest:
    return RunRequest(
        pipeline="demo/echo", pipeline_path=str(data_dir / "echo.cwl"), inputs=inputs or INPUTS
    )


async def _submit(executor: KubernetesExecutor, data_dir: Path, user: str = "ada"):
    return await asyncio.to_thread(executor.submit, _request(data_dir), user)


async def _run(executor: KubernetesExecutor, run_id: str, user: str = "ada") -> dict:
    """The run as ``GET runs/<id>`` shows it to its user."""
    run = await asyncio.to_thread(executor.store.get, run_id, user)
    return run.to_json()


async def _play_job_controller(k8s_api, run_id: str, status: dict) -> None:
    url = f"/apis/batch/v1/namespaces/{k8s_api.namespace}/jobs/{job_name(run_id)}/status"
    headers = {"Content-Type": "application/merge-patch+json"}
    body = json.dumps({"status": status})
    async with k8s_api.emulator.patch(url, data=body, headers=headers) as resp:
        assert resp.status == 200, await resp.text()


async def test_submit_creates_a_valid_calrissian_job_with_inputs_and_archives(
    k8s_api, executor, data_dir
):
    run = await _submit(executor, data_dir)

    assert run.state == "queued"
    assert run.user == "ada"
    job = k8s_api.emulator.get_object(JOBS, k8s_api.namespace, job_name(run.id))
    assert job is not None, "no Job was created"
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    assert job["metadata"]["labels"]["datalabs.io/run-id"] == run.id
    assert job["metadata"]["labels"]["datalabs.io/user"] == "ada"

    # The run's inputs reach the Job through the input claim, with the pipeline's folder.
    pod = job["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert args[-2:] == [
        f"/calrissian/input-data/{run.id}/pipeline/echo.cwl",
        f"/calrissian/input-data/{run.id}/job.json",
    ]
    staged = Path(executor.k8s.input_dir) / run.id
    assert json.loads((staged / "job.json").read_text()) == INPUTS
    assert (staged / "pipeline" / "echo.cwl").read_bytes() == (data_dir / "echo.cwl").read_bytes()
    assert run.inputs == INPUTS

    # The user's archive is attached read-only at the path the inputs name.
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["archive-psa-rosetta"]["persistentVolumeClaim"] == {
        "claimName": "psa-rosetta",
        "readOnly": True,
    }
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["archive-psa-rosetta"] == {
        "name": "archive-psa-rosetta",
        "mountPath": "/data/psa-rosetta",
        "readOnly": True,
    }


async def test_job_status_becomes_run_state(k8s_api, executor, data_dir):
    good = await _submit(executor, data_dir)
    bad = await _submit(executor, data_dir)

    await _play_job_controller(k8s_api, good.id, {"active": 1, "startTime": "2026-01-01T00:00:00Z"})
    await _play_job_controller(k8s_api, bad.id, {"active": 1})
    await asyncio.to_thread(executor.tick)
    assert (await _run(executor, good.id))["state"] == "running"
    assert (await _run(executor, bad.id))["state"] == "running"

    # Calrissian wrote its results to the output claim before its pod ended.
    results = Path(executor.k8s.output_dir) / good.id
    results.mkdir(parents=True)
    (results / "output.json").write_text(json.dumps({"out": "hello"}))
    (results / "cwltool.log").write_text("INFO Final process status is success\n")
    (results / "provenance").mkdir()
    (results / "provenance" / "bagit.txt").write_text("BagIt-Version: 0.97\n")
    await _play_job_controller(
        k8s_api,
        good.id,
        {
            "active": 0,
            "succeeded": 1,
            "conditions": [{"type": "Complete", "status": "True"}],
        },
    )
    await _play_job_controller(
        k8s_api,
        bad.id,
        {
            "active": 0,
            "failed": 1,
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                }
            ],
        },
    )
    await asyncio.to_thread(executor.tick)

    done = await _run(executor, good.id)
    assert done["state"] == "success"
    assert done["exit_reason"] is None
    assert done["outputs"] == {"out": "hello"}
    assert done["finished"] is not None
    # The log and provenance views read the run folder.
    assert "Final process status is success" in (Path(good.rundir) / "cwltool.log").read_text()
    assert (Path(good.rundir) / "provenance" / "bagit.txt").exists()
    failed = await _run(executor, bad.id)
    assert failed["state"] == "failed"
    assert failed["exit_reason"] == (
        "BackoffLimitExceeded: Job has reached the specified backoff limit"
    )

    # Final runs are left alone: a later tick changes nothing.
    await asyncio.to_thread(executor.tick)
    assert (await _run(executor, good.id))["state"] == "success"


async def test_cancel_deletes_the_job_and_marks_the_run_cancelled(k8s_api, executor, data_dir):
    run = await _submit(executor, data_dir)
    await _play_job_controller(k8s_api, run.id, {"active": 1})
    await asyncio.to_thread(executor.tick)

    cancelled = await asyncio.to_thread(executor.cancel, "ada", run.id)

    assert cancelled.state == "cancelled"
    assert cancelled.exit_reason == "cancelled by the user"
    assert k8s_api.emulator.get_object(JOBS, k8s_api.namespace, job_name(run.id)) is None
    deletes = [r for r in k8s_api.emulator if r.method == kmock.method.DELETE]
    assert [r.params.get("propagationPolicy") for r in deletes] == ["Background"]
    await asyncio.to_thread(executor.tick)
    assert (await _run(executor, run.id))["state"] == "cancelled"


async def test_a_job_deleted_behind_our_back_fails_the_run(k8s_api, executor, data_dir):
    run = await _submit(executor, data_dir)
    url = f"/apis/batch/v1/namespaces/{k8s_api.namespace}/jobs/{job_name(run.id)}"
    async with k8s_api.emulator.delete(url) as resp:
        assert resp.status == 200

    await asyncio.to_thread(executor.tick)

    lost = await _run(executor, run.id)
    assert lost["state"] == "failed"
    assert "disappeared" in lost["exit_reason"]


async def test_a_check_while_the_job_is_being_created_leaves_the_run_queued(
    k8s_api, executor, data_dir, monkeypatch
):
    # The server's periodic check runs in its own thread: here it comes right after the run is
    # recorded, before its Job exists (a slow API makes that window wide).
    checked: list[str] = []
    record = executor.store.add

    def record_then_check(run):
        record(run)
        executor.tick()
        checked.append(executor.store.get(run.id).state)

    monkeypatch.setattr(executor.store, "add", record_then_check)

    run = await _submit(executor, data_dir)

    assert checked == ["queued"]
    assert run.state == "queued", run.exit_reason
    assert k8s_api.emulator.get_object(JOBS, k8s_api.namespace, job_name(run.id)) is not None
    monkeypatch.undo()
    await _play_job_controller(k8s_api, run.id, {"active": 1})
    await asyncio.to_thread(executor.tick)
    assert (await _run(executor, run.id))["state"] == "running"


@pytest.mark.parametrize(
    ("status", "reason", "message"),
    [
        (404, "NotFound", 'namespaces "datalabs" not found'),
        (
            403,
            "Forbidden",
            'jobs.batch is forbidden: User "system:serviceaccount:datalabs:jupyter" cannot '
            'create resource "jobs" in API group "batch" in the namespace "datalabs"',
        ),
    ],
)
async def test_a_refused_job_gives_a_failed_run_with_the_reason(
    k8s_api, executor, data_dir, status, reason, message
):
    k8s_api.emulator.refuse(
        "POST", JOBS, k8s_api.namespace, status=status, reason=reason, message=message
    )

    run = await _submit(executor, data_dir)

    shown = await _run(executor, run.id)
    assert shown["state"] == "failed"
    assert message in shown["exit_reason"]
    assert shown["exit_reason"].startswith(
        f"could not create the run's Job in namespace 'datalabs': {status} "
    )
    assert shown["exit_reason"].endswith(f": {message}")
    # Not lost: the user finds it in their list.
    listed = await asyncio.to_thread(executor.store.list, "ada")
    assert [r.id for r in listed] == [run.id]
    assert k8s_api.emulator.list_objects(JOBS, k8s_api.namespace) == []


async def test_the_local_executor_and_the_cli_leave_kubernetes_runs_alone(
    k8s_api, executor, data_dir, settings, cli
):
    running = await _submit(executor, data_dir, user="alice")
    queued = await _submit(executor, data_dir, user="alice")
    await _play_job_controller(k8s_api, running.id, {"active": 1})
    await asyncio.to_thread(executor.tick)
    # Long past the local executor's grace for a run without a supervisor.
    executor.store.update(running.id, started=time.time() - 3600)

    assert local.reconcile(executor.store) == []
    assert local.dispatch(executor.store, settings) == []
    refused = await asyncio.to_thread(cli, "cancel", running.id)

    assert refused.returncode == 1
    assert "is a Kubernetes Job" in refused.stderr
    assert (await _run(executor, running.id, "alice"))["state"] == "running"
    assert (await _run(executor, queued.id, "alice"))["state"] == "queued"
    assert k8s_api.emulator.get_object(JOBS, k8s_api.namespace, job_name(running.id))


async def test_an_api_error_while_following_leaves_runs_as_they_are(k8s_api, executor, data_dir):
    run = await _submit(executor, data_dir)
    await _play_job_controller(k8s_api, run.id, {"active": 1})
    k8s_api.emulator.refuse(
        "GET", JOBS, None, status=403, reason="Forbidden", message="jobs.batch is forbidden"
    )

    await asyncio.to_thread(executor.tick)

    # A missing permission or an API outage is not the run's failure: retried next tick.
    assert (await _run(executor, run.id))["state"] == "queued"


async def test_workspace_files_are_copied_to_the_input_claim(executor, data_dir, tmp_path):
    workspace = tmp_path / "workspace"
    (workspace / "notes").mkdir(parents=True)
    (workspace / "sources.csv").write_text("ra,dec\n1,2\n")
    (workspace / "notes" / "a.txt").write_text("a\n")
    inputs = {
        **INPUTS,
        "catalogue": {"class": "File", "path": str(workspace / "sources.csv")},
        "more": [{"class": "Directory", "path": str(workspace / "notes")}],
    }

    run = await asyncio.to_thread(executor.submit, _request(data_dir, inputs), "ada")

    staged = Path(executor.k8s.input_dir) / run.id
    job = json.loads((staged / "job.json").read_text())
    base = f"/calrissian/input-data/{run.id}/inputs"
    assert job["catalogue"] == {"class": "File", "path": f"{base}/0/sources.csv"}
    assert job["more"] == [{"class": "Directory", "path": f"{base}/1/notes"}]
    assert (staged / "inputs" / "0" / "sources.csv").read_text() == "ra,dec\n1,2\n"
    assert (staged / "inputs" / "1" / "notes" / "a.txt").read_text() == "a\n"
    # Archive inputs are not copied, and the user still sees what they asked for.
    assert job["table"] == INPUTS["table"]
    assert run.inputs == inputs


async def test_an_unreachable_api_gives_a_failed_run_with_the_reason(settings, data_dir, tmp_path):
    # Imported here: importing the plugin module at the top would keep pytest from rewriting
    # its asserts (it is loaded through pytest_plugins).
    from tests.k8s_fixtures import write_kubeconfig

    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}", "datalabs")
    k8s = KubernetesSettings(
        namespace="datalabs",
        input_dir=str(tmp_path / "input-claim"),
        archive_volumes=(ARCHIVE,),
        kubeconfig=str(kubeconfig),
        request_timeout=5,
    )
    ex = KubernetesExecutor(settings, k8s, RunStore(settings.db_path))
    try:
        run = await asyncio.to_thread(ex.submit, _request(data_dir), "ada")
        shown = await _run(ex, run.id)
    finally:
        ex.close()

    assert shown["state"] == "failed"
    assert shown["exit_reason"].startswith(
        "could not create the run's Job in namespace 'datalabs': ClientConnectorError"
    )
    assert f"127.0.0.1:{port}" in shown["exit_reason"]


async def test_a_cluster_runs_steps_logs_and_outputs_reach_the_run_folder_as_a_local_runs(
    k8s_api, executor, data_dir
):
    """The runs viewer reads a cluster run as a local one: step states and events from the
    Job's cwltool log (followed while it grows), each step's log with its pod's log text, and
    the outputs copied from the read-only output claim into the run folder."""
    run = await _submit(executor, data_dir)
    results = Path(executor.k8s.output_dir) / run.id
    results.mkdir(parents=True)
    log = results / "cwltool.log"
    log.write_text("INFO [workflow ] start\nINFO [step draw] start\nINFO [job draw] /tmp/x$ pyth")
    await _play_job_controller(k8s_api, run.id, {"active": 1})
    await asyncio.to_thread(executor.tick)
    live = await _run(executor, run.id)
    assert live["state"] == "running"
    assert [(s["name"], s["state"]) for s in live["steps"]] == [("draw", "running")]

    # the line cut short is read once it is whole; the step ends; Calrissian wrote the pod's log
    with log.open("a") as f:
        f.write("on3 plot.py\nINFO [step draw] completed success\n")
        f.write("INFO [workflow ] completed success\nINFO Final process status is success\n")
    (results / "steps").mkdir()
    (results / "steps" / "draw.log").write_text(
        "2026-12-03T19:00:00Z - draw-pod - plotted 4 points of temperature against time\n"
    )
    (results / "outputs").mkdir()
    (results / "outputs" / "summary.json").write_text('{"time": {}}')
    where = f"/calrissian/output-data/{run.id}/outputs/summary.json"
    (results / "output.json").write_text(
        json.dumps({"summary": {"class": "File", "location": f"file://{where}", "path": where}})
    )
    await _play_job_controller(
        k8s_api, run.id, {"active": 0, "conditions": [{"type": "Complete", "status": "True"}]}
    )
    await asyncio.to_thread(executor.tick)

    done = await _run(executor, run.id)
    assert done["state"] == "success"
    assert [(s["name"], s["state"]) for s in done["steps"]] == [("draw", "success")]
    rundir = Path(run.rundir)
    events = [json.loads(line) for line in (rundir / "events.jsonl").read_text().splitlines()]
    assert [(e["kind"], e.get("step"), e.get("state")) for e in events if e.get("step")] == [
        ("step", "draw", "running"),
        ("step", "draw", "success"),
    ]
    step_log = (rundir / "steps" / "draw.log").read_text()
    assert "[job draw] /tmp/x$ python3 plot.py" in step_log
    assert "plotted 4 points of temperature against time" in step_log
    assert (rundir / "cwltool.log").read_text().count("Final process status is success") == 1
    copy = rundir / "outputs" / "summary.json"
    assert copy.read_text() == '{"time": {}}'
    assert done["outputs"]["summary"]["path"] == str(copy)
    assert done["outputs"]["summary"]["location"] == f"file://{copy}"
