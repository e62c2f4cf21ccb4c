"""Cluster runs submitted by the broker, on the real API server (RBAC, Pod Security, kwok).

The broker acts as the hub's identity (``datalabs-hub``, with the Role the chart gives it for
runs); it checks the job with the launcher's checks against folders standing for the hub's
view of the input and archive claims, makes the user's run identity on demand and creates the
Job as that identity. What a user holds never creates a Job: neither the run identity's token
nor a user pod's. bob's runs naming the restricted volume, in every input shape, are refused
with nothing created. Cancel removes the Job and a step pod a killed Calrissian left behind.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datalabs_pipelines.catalogue import load_pipeline
from datalabs_pipelines.executors.kubernetes import (
    RUN_ROLE_RULES,
    job_name,
    restrict_step_pod,
    run_service_account,
    user_folder,
)
from datalabs_spawner.run_broker import RunBroker, RunBrokerSettings, RunRefused
from datalabs_volumes.access import Who, readable
from datalabs_volumes.models import Access, Volume, VolumeSource
from tests.cluster import Cluster
from tests.k8s.pipeline_runs import broker_namespace, job_pods, wait_pod_running

RUN = "00c0ffee00c0ffee"
TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: ls
inputs:
  table:
    type: File
    secondaryFiles: [{pattern: ^.lblx, required: false}]
  kernels: Directory?
  frames: File[]?
  calib:
    type:
      - "null"
      - type: record
        fields:
          flat: File
outputs: []
"""
ENTRIES = {
    v.id: v
    for v in (
        Volume("psa-rosetta", "PSA", "Rosetta", VolumeSource("local", path="psa-rosetta")),
        Volume("spice-juice", "SPICE", "JUICE", VolumeSource("local", path="spice-juice")),
        Volume(
            "rosetta-restricted",
            "Team",
            "Rosetta",
            VolumeSource("local", path="rosetta-restricted"),
            access=Access(groups=("rosetta-team",)),
        ),
    )
}
ALICE = readable(ENTRIES, Who("alice", ("rosetta-team",)))
BOB = readable(ENTRIES, Who("bob"))
TABLE = {
    "class": "File",
    "path": "/data/psa-rosetta/bundle/x.xml",
    "secondaryFiles": [{"class": "File", "path": "/data/psa-rosetta/bundle/x.lblx"}],
}


@pytest.fixture
def namespace(cluster: Cluster):
    yield from broker_namespace(cluster)


@pytest.fixture
def claims(tmp_path: Path) -> tuple[Path, Path]:
    """The hub's view of the input claim and of the archive claim, with the demo files."""
    inputs, archive = tmp_path / "input-data", tmp_path / "archive"
    for rel in (
        "psa-rosetta/bundle/x.xml",
        "psa-rosetta/bundle/x.lblx",
        "spice-juice/kernels/a.bsp",
        "rosetta-restricted/cal/flat.fits",
        "rosetta-restricted/cal/x.lblx",
    ):
        (archive / rel).parent.mkdir(parents=True, exist_ok=True)
        (archive / rel).write_text(rel)
    inputs.mkdir()
    return inputs, archive


@pytest.fixture
def pipeline(tmp_path: Path):
    folder = tmp_path / "catalogue" / "rosetta" / "pipelines"
    folder.mkdir(parents=True)
    (folder / "inspect.cwl").write_text(TOOL)
    return load_pipeline(folder / "inspect.cwl", "rosetta")


@pytest.fixture
def broker(cluster: Cluster, namespace: str, claims) -> RunBroker:
    inputs, archive = claims
    return RunBroker(
        RunBrokerSettings(
            namespace=namespace,
            input_dir=str(inputs),
            archive_dir=str(archive),
            max_ram="4Gi",
            max_cores=2,
            max_time_limit=7200,
            kubeconfig=str(cluster.kubeconfig("datalabs-hub", namespace)),
        )
    )


def _stage(claims, user: str, run_id: str) -> str:
    """What the session does first: its workspace file, in its folder of the input claim."""
    staged = claims[0] / user_folder(user) / run_id / "inputs" / "0" / "frame.fits"
    staged.parent.mkdir(parents=True)
    staged.write_text("frame")
    return f"/calrissian/input-data/{run_id}/inputs/0/frame.fits"


async def _alice_run(broker, pipeline, claims) -> dict:
    frame = _stage(claims, "alice", RUN)
    inputs = {
        "table": TABLE,
        "kernels": {"class": "Directory", "path": "/data/spice-juice"},
        "frames": [{"class": "File", "path": frame}],
    }
    return await broker.submit(
        "alice", RUN, pipeline, inputs, ALICE, "datalabs/planetary-lab:0.1", time_limit=600
    )


async def _alice_run_again(broker, pipeline) -> dict:
    return await broker.submit("alice", RUN, pipeline, {"table": TABLE}, ALICE)


async def test_the_broker_creates_alices_run_with_her_own_identity(
    cluster: Cluster, namespace, broker, pipeline, claims
):
    answer = await _alice_run(broker, pipeline, claims)
    account = run_service_account("alice")
    assert answer["service_account"] == account
    assert answer["volumes"] == ["psa-rosetta", "spice-juice"]

    status, job = cluster.request(
        "GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/{job_name(RUN)}"
    )
    assert status == 200, job
    spec = job["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == account
    assert job["spec"]["activeDeadlineSeconds"] == 600
    assert sorted(v["name"] for v in spec["volumes"] if v["name"].startswith("archive-")) == [
        "archive-psa-rosetta",
        "archive-spice-juice",
    ]
    # The job the Job reads is the one the broker checked, with the Job's paths, in the
    # broker's own folder of the claim, mounted read-only; nothing is written into alice's.
    broker_folder = f".datalabs-broker-{user_folder('alice')}/{RUN}"
    written = json.loads((claims[0] / broker_folder / "job.json").read_text())
    assert written["table"]["path"] == "/data/psa-rosetta/bundle/x.xml"
    assert written["frames"][0]["path"] == f"/calrissian/input-data/{RUN}/inputs/0/frame.fits"
    assert (claims[0] / broker_folder / "pipeline" / "inspect.cwl").is_file()
    assert sorted(p.name for p in (claims[0] / user_folder("alice") / RUN).iterdir()) == ["inputs"]
    args = spec["containers"][0]["args"]
    assert args[-2:] == ["/calrissian/job/pipeline/inspect.cwl", "/calrissian/job/job.json"]
    job_mount = next(
        m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == "/calrissian/job"
    )
    assert job_mount == {
        "name": "input-data",
        "mountPath": "/calrissian/job",
        "readOnly": True,
        "subPath": broker_folder,
    }

    # The same run id again is refused, and leaves the run's files as they were.
    with pytest.raises(RunRefused) as again:
        await _alice_run_again(broker, pipeline)
    assert again.value.status == 409
    assert json.loads((claims[0] / broker_folder / "job.json").read_text()) == written

    status, role = cluster.request(
        "GET", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles/{account}"
    )
    assert status == 200 and role["rules"] == RUN_ROLE_RULES, role
    status, params = cluster.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/{account}")
    assert status == 200, params
    assert params["data"]["archive-folders"].split("\n") == [
        "psa-rosetta",
        "spice-juice",
        "rosetta-restricted",
    ]
    (pod,) = cluster.wait_for("the Job's pod", lambda: job_pods(cluster, namespace, RUN))
    wait_pod_running(cluster, namespace, pod["metadata"]["name"])

    # The run identity runs step pods and can do nothing else.
    token = cluster.service_account_token(namespace, account)
    status, refused = cluster.request(
        "POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", job, token=token
    )
    assert status == 403, refused
    # configmaps: its own admission-policy parameters are not its to change
    for path in ("secrets", "persistentvolumeclaims", "serviceaccounts", "configmaps"):
        status, _ = cluster.request("GET", f"/api/v1/namespaces/{namespace}/{path}", token=token)
        assert status == 403, path
    status, pods = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods", token=token)
    assert status == 200, pods


def test_a_user_pods_credentials_get_403_for_create_jobs(cluster: Cluster, namespace):
    """A user pod runs as the namespace's default account (where a token is mounted at all:
    the spawner mounts none); that token may not create Jobs. Without a token the API server
    does not know the caller (401: anonymous requests are off)."""
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "mine"}}
    path = f"/apis/batch/v1/namespaces/{namespace}/jobs"
    token = cluster.service_account_token(namespace, "default")
    status, answer = cluster.request("POST", path, job, token=token)
    assert status == 403, answer
    assert 'cannot create resource "jobs"' in answer["message"]
    status, answer = cluster.request("POST", path, job, token="not-a-token")
    assert status == 401, answer


RESTRICTED_FILE = {"class": "File", "path": "/data/rosetta-restricted/cal/flat.fits"}


@pytest.mark.parametrize(
    "inputs",
    [
        {"table": RESTRICTED_FILE},
        {
            "table": {
                **RESTRICTED_FILE,
                "path": "/data/psa-rosetta/../rosetta-restricted/cal/flat.fits",
            }
        },
        {"table": {"class": "File", "location": "file:///data/rosetta-restricted/cal/flat.fits"}},
        {"table": TABLE, "kernels": {"class": "Directory", "path": "/data/rosetta-restricted"}},
        {
            "table": {
                **TABLE,
                "secondaryFiles": [
                    {"class": "File", "path": "/data/rosetta-restricted/cal/x.lblx"}
                ],
            }
        },
        {"table": TABLE, "frames": [TABLE, RESTRICTED_FILE]},
        {"table": TABLE, "calib": {"flat": RESTRICTED_FILE}},
        {
            "table": TABLE,
            "kernels": {
                "class": "Directory",
                "path": "/data/spice-juice",
                "listing": [RESTRICTED_FILE],
            },
        },
    ],
    ids=["file", "dotdot", "location", "directory", "secondary", "array", "record", "listing"],
)
async def test_bobs_run_naming_the_restricted_volume_is_refused_before_any_object(
    cluster: Cluster, namespace, broker, pipeline, claims, inputs
):
    with pytest.raises(RunRefused) as refused:
        await broker.submit("bob", RUN, pipeline, inputs, BOB, "datalabs/planetary-lab:0.1")
    assert refused.value.status in (400, 403)
    assert "rosetta-restricted" in refused.value.message or "outside" in refused.value.message
    for path in (
        f"/apis/batch/v1/namespaces/{namespace}/jobs",
        f"/api/v1/namespaces/{namespace}/pods",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles",
    ):
        status, answer = cluster.request("GET", path)
        names = [o["metadata"]["name"] for o in answer["items"]]
        assert status == 200 and names in ([], ["hub-runs"]), (path, names)
    _, accounts = cluster.request("GET", f"/api/v1/namespaces/{namespace}/serviceaccounts")
    assert [a["metadata"]["name"] for a in accounts["items"]] in ([], ["default"])
    assert not (claims[0] / user_folder("bob")).exists()


def _left_step_pod(job_pod: dict, name: str) -> dict:
    """A step pod as Calrissian makes it for the run (the labels it is given, restricted)."""
    env = {e["name"]: e.get("value") for e in job_pod["spec"]["containers"][0]["env"]}
    return restrict_step_pod(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "step", "image": "datalabs/planetary-lab:0.1"}],
            },
        },
        json.loads(env["DATALABS_STEP_LABELS"]),
    )


async def test_cancel_removes_the_job_and_a_step_pod_a_killed_calrissian_left(
    cluster: Cluster, namespace, broker, pipeline, claims
):
    await _alice_run(broker, pipeline, claims)
    (job_pod,) = cluster.wait_for("the Job's pod", lambda: job_pods(cluster, namespace, RUN))
    job_pod = wait_pod_running(cluster, namespace, job_pod["metadata"]["name"])
    # Calrissian (as the run identity) started a step, then was killed (OOM, lost node): the
    # step pod has no owner, so deleting the Job alone would leave it running.
    token = cluster.service_account_token(namespace, run_service_account("alice"))
    status, step = cluster.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/pods",
        _left_step_pod(job_pod, "plot-pod-left"),
        token=token,
    )
    assert status == 201, step
    assert not step["metadata"].get("ownerReferences")
    status, _ = cluster.request(
        "DELETE",
        f"/api/v1/namespaces/{namespace}/pods/{job_pod['metadata']['name']}?gracePeriodSeconds=0",
    )
    assert status == 200
    wait_pod_running(cluster, namespace, "plot-pod-left")

    # Somebody else's cancel is "no such run" and removes nothing.
    with pytest.raises(RunRefused) as refused:
        await broker.cancel("bob", RUN)
    assert refused.value.status == 404
    assert any(p["metadata"]["name"] == "plot-pod-left" for p in job_pods(cluster, namespace, RUN))

    answer = await broker.cancel("alice", RUN)
    assert answer["job_deleted"] is True and answer["pods_deleted"] >= 1

    def all_gone():
        status, _ = cluster.request(
            "GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/{job_name(RUN)}"
        )
        return status == 404 and not job_pods(cluster, namespace, RUN)

    cluster.wait_for("no Job and no pod of the run left", all_gone)
    with pytest.raises(RunRefused):
        await broker.status("alice", RUN)


async def test_a_symlink_alice_plants_in_her_folder_redirects_nothing(
    cluster: Cluster, namespace, broker, pipeline, claims, tmp_path
):
    """alice's session can write anything in her folder of the input claim, symlinks
    included; the broker (the hub) writes only into its own folder, so a link there to a hub
    file changes nothing."""
    victim = tmp_path / "hub-file"
    victim.write_text("the hub's")
    staged = claims[0] / user_folder("alice") / RUN
    staged.mkdir(parents=True)
    for name in ("job.json", "pipeline"):
        (staged / name).symlink_to(victim)
    await broker.submit("alice", RUN, pipeline, {"table": TABLE}, ALICE)
    assert victim.read_text() == "the hub's"
    assert (claims[0] / f".datalabs-broker-{user_folder('alice')}" / RUN / "job.json").is_file()
