"""A run's Job and its step pods on the real API server: the right volumes, and accepted.

The Job is built for alice's run, whose inputs are a File with a secondary file on
``psa-rosetta``, the root of ``spice-juice`` as a Directory and a staged workspace file; the
three demo volumes are folders of one archive claim. The API server (Pod Security
"restricted") must accept the Job, the Job controller's pod must run on the node, and the step
pods the real Calrissian builds from that pod (read back from the API server) must be accepted
too, each volume under its own name with the volume's folder plus the file's path as subPath.
Without the fixes, the same step pods are refused (the second test shows which way).
"""

from __future__ import annotations

import pytest

from datalabs_pipelines.executors.kubernetes import (
    CalrissianJob,
    job_name,
    make_calrissian_job,
    user_folder,
    volumes_for_inputs,
)
from tests.cluster import Cluster
from tests.k8s.pipeline_runs import (
    ARCHIVES,
    calrissian_step_pods,
    run_namespace,
    wait_pod_running,
)

RUN = "0a1b2c3d4e5f6789"
STAGED = f"/calrissian/input-data/{RUN}"
JOB = {
    "table": {
        "class": "File",
        "path": "/data/psa-rosetta/bundle/x.xml",
        "secondaryFiles": [{"class": "File", "path": "/data/psa-rosetta/bundle/x.lblx"}],
    },
    "kernels": {"class": "Directory", "path": "/data/spice-juice"},
    "notes": [{"class": "File", "path": f"{STAGED}/inputs/0/notes.txt"}],
}
DATALAB_IMAGE = "datalabs/planetary-lab:0.1"
BROKER_FOLDER = f".datalabs-broker-alice/{RUN}"


@pytest.fixture
def namespace(cluster: Cluster):
    name = run_namespace(cluster)
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "calrissian", "namespace": name},
        }
    )
    yield name
    cluster.request("DELETE", f"/api/v1/namespaces/{name}")


def _job(namespace: str) -> dict:
    return make_calrissian_job(
        CalrissianJob(
            run_id=RUN,
            user="alice",
            namespace=namespace,
            pipeline_path=f"{STAGED}/pipeline/plot.cwl",
            job_path=f"{STAGED}/job.json",
            archive_volumes=volumes_for_inputs(JOB, ARCHIVES, staged=[STAGED]),
            default_container=DATALAB_IMAGE,
            max_ram="4Gi",
            max_cores=2,
            active_deadline_seconds=3600,
            job_sub_path=BROKER_FOLDER,
        )
    )


def _job_pod(cluster: Cluster, namespace: str) -> dict:
    def created():
        _, pods = cluster.request(
            "GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector=job-name={job_name(RUN)}"
        )
        return pods["items"][0] if pods.get("items") else None

    pod = cluster.wait_for("the Job's pod (made by the Job controller)", created)
    return wait_pod_running(cluster, namespace, pod["metadata"]["name"])


STEPS = [
    {
        "name": "plot",
        "image": DATALAB_IMAGE,
        "outdir": "/calrissian/tmpout/abcd1234",
        "inputs": [
            ["/data/psa-rosetta/bundle/x.xml", "/var/lib/cwl/stg1/x.xml"],
            ["/data/psa-rosetta/bundle/x.lblx", "/var/lib/cwl/stg1/x.lblx"],
            ["/data/spice-juice", "/var/lib/cwl/stg2/spice-juice"],
            [f"{STAGED}/inputs/0/notes.txt", "/var/lib/cwl/stg3/notes.txt"],
            ["/calrissian/job/pipeline/plot.py", "/var/lib/cwl/stg4/plot.py"],
        ],
        "resources": {"cores": 1, "ram": 1024, "tmpdirSize": 1024, "outdirSize": 1024},
    }
]


def test_the_job_and_calrissians_step_pods_are_accepted_with_the_right_volumes(
    cluster: Cluster, namespace: str
):
    job = _job(namespace)
    status, answer = cluster.request(
        "POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", job, user="admin"
    )
    assert status == 201, answer
    assert answer["spec"]["activeDeadlineSeconds"] == 3600
    args = answer["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--default-container") + 1] == DATALAB_IMAGE

    pod = _job_pod(cluster, namespace)
    folder = user_folder("alice")
    mounts = {m["mountPath"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}
    # Only the volumes the inputs need, each its own folder of the claim, read-only.
    assert {p: (m.get("subPath"), m.get("readOnly")) for p, m in mounts.items()} == {
        "/calrissian/input-data": (folder, True),
        "/calrissian/job": (BROKER_FOLDER, True),
        "/calrissian/tmpout": (folder, None),
        "/calrissian/output-data": (folder, None),
        "/data/psa-rosetta": ("psa-rosetta", True),
        "/data/spice-juice": ("spice-juice", True),
        "/var/run/secrets/kubernetes.io/serviceaccount": (None, True),
    }

    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    (step,) = calrissian_step_pods(pod, STEPS, env)
    status, created = cluster.request("POST", f"/api/v1/namespaces/{namespace}/pods", step)
    assert status == 201, created
    wait_pod_running(cluster, namespace, created["metadata"]["name"])

    spec = created["spec"]
    names = [v["name"] for v in spec["volumes"]]
    assert len(names) == len(set(names)), names
    step_mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert {
        p: (m["name"], m.get("subPath"), m.get("readOnly")) for p, m in step_mounts.items()
    } == {
        "/var/spool/cwl": ("tmpout", f"{folder}/abcd1234", None),  # writable
        "/tmp": ("tmpdir", None, None),
        "/var/lib/cwl/stg1/x.xml": ("archive-psa-rosetta", "psa-rosetta/bundle/x.xml", True),
        "/var/lib/cwl/stg1/x.lblx": ("archive-psa-rosetta", "psa-rosetta/bundle/x.lblx", True),
        "/var/lib/cwl/stg2/spice-juice": ("archive-spice-juice", "spice-juice", True),
        "/var/lib/cwl/stg3/notes.txt": (
            "input-data",
            f"{folder}/{RUN}/inputs/0/notes.txt",
            True,
        ),
        # the pipeline's own file, from the broker's folder: the same claim, declared once
        "/var/lib/cwl/stg4/plot.py": ("input-data", f"{BROKER_FOLDER}/pipeline/plot.py", True),
    }
    claims = {v["name"]: v.get("persistentVolumeClaim") for v in spec["volumes"]}
    assert claims["archive-psa-rosetta"] == {"claimName": "datalabs-archive", "readOnly": True}
    assert "archive-rosetta-restricted" not in claims
    # The run's labels (cancel finds the pod by them), no token, the step's own resources.
    assert created["metadata"]["labels"]["datalabs.io/run-id"] == RUN
    assert spec["automountServiceAccountToken"] is False
    assert spec["containers"][0]["resources"] == {
        "requests": {"cpu": "1", "memory": "1Gi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }


def test_calrissians_own_step_pods_are_refused_without_the_fixes(cluster: Cluster, namespace: str):
    """Why the fixes: unpatched, one claim for two volumes gives two volumes of one name, and
    the pod does not meet Pod Security "restricted"."""
    status, answer = cluster.request(
        "POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", _job(namespace)
    )
    assert status == 201, answer
    pod = _job_pod(cluster, namespace)
    (step,) = calrissian_step_pods(pod, STEPS, {}, patched=False)
    names = [v["name"] for v in step["spec"]["volumes"]]
    assert names.count("datalabs-archive") == 2, names
    status, refused = cluster.request("POST", f"/api/v1/namespaces/{namespace}/pods", step)
    assert status in (403, 422), refused
