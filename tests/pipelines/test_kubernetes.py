"""The Calrissian Job builder: whole manifests, validated against the Kubernetes schema."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest

from datalabs_pipelines.executors.kubernetes import (
    ENTRY_COMMAND,
    ArchiveVolume,
    CalrissianJob,
    InputNotReadable,
    job_name,
    make_calrissian_job,
    mebibytes,
    restrict_step_pod,
    step_resources,
    user_folder,
    volumes_for_inputs,
)

K8S_VERSION = "1.30"


def _spec(**overrides) -> CalrissianJob:
    values = dict(
        run_id="0123456789abcdef",
        user="alice@example.org",
        namespace="datalabs",
        pipeline_path="/calrissian/input-data/0123456789abcdef/pds4-table-plot.cwl",
        job_path="/calrissian/input-data/0123456789abcdef/job.json",
        archive_volumes=(
            ArchiveVolume(
                id="psa-rosetta", claim_name="psa-rosetta", mount_path="/data/psa-rosetta"
            ),
            ArchiveVolume(
                id="spice-juice",
                claim_name="spice",
                mount_path="/data/spice-juice",
                sub_path="juice",
            ),
        ),
    )
    values.update(overrides)
    return CalrissianJob(**values)


def test_job_is_valid_kubernetes_in_strict_mode():
    manifest = make_calrissian_job(_spec())
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def test_job_without_archives_or_provenance_is_valid_too():
    manifest = make_calrissian_job(
        _spec(archive_volumes=(), provenance=False, active_deadline_seconds=3600)
    )
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    assert manifest["spec"]["activeDeadlineSeconds"] == 3600
    assert "--provenance" not in manifest["spec"]["template"]["spec"]["containers"][0]["args"]


def test_the_whole_job():
    labels = {
        "app.kubernetes.io/name": "datalabs-pipeline-run",
        "app.kubernetes.io/component": "calrissian",
        "datalabs.io/run-id": "0123456789abcdef",
        "datalabs.io/user": "alice-example.org",
        "datalabs.io/owner": user_folder("alice@example.org"),
    }
    out = "/calrissian/output-data/0123456789abcdef"
    folder = user_folder("alice@example.org")
    assert make_calrissian_job(_spec()) == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "datalabs-run-0123456789abcdef",
            "namespace": "datalabs",
            "labels": labels,
        },
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 604800,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": "calrissian",
                    "restartPolicy": "Never",
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 1000,
                        "runAsGroup": 100,
                        "fsGroup": 100,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "calrissian",
                            "image": "datalabs/calrissian:0.1.0",
                            "command": list(ENTRY_COMMAND),
                            "args": [
                                "--max-ram",
                                "8G",
                                "--max-cores",
                                "4",
                                "--tmp-outdir-prefix",
                                "/calrissian/tmpout/",
                                "--tmpdir-prefix",
                                "/calrissian/tmpout/",
                                "--outdir",
                                f"{out}/outputs",
                                "--stdout",
                                f"{out}/output.json",
                                "--stderr",
                                f"{out}/cwltool.log",
                                "--usage-report",
                                f"{out}/usage.json",
                                "--tool-logs-basepath",
                                f"{out}/steps",
                                "--disable-color",
                                "--provenance",
                                f"{out}/provenance",
                                "/calrissian/input-data/0123456789abcdef/pds4-table-plot.cwl",
                                "/calrissian/input-data/0123456789abcdef/job.json",
                            ],
                            "env": [
                                {
                                    "name": "CALRISSIAN_POD_NAME",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                                },
                                {"name": "DATALABS_RUN_ID", "value": "0123456789abcdef"},
                                {
                                    "name": "DATALABS_STEP_LABELS",
                                    "value": json.dumps(
                                        {
                                            **labels,
                                            "app.kubernetes.io/component": "step",
                                        },
                                        sort_keys=True,
                                    ),
                                },
                                {"name": "DATALABS_STEP_MAX_CORES", "value": "4"},
                                {"name": "DATALABS_STEP_MAX_RAM", "value": "8G"},
                            ],
                            "resources": {
                                "requests": {"cpu": "250m", "memory": "512Mi"},
                                "limits": {"memory": "2Gi"},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [
                                {
                                    "name": "input-data",
                                    "mountPath": "/calrissian/input-data",
                                    "readOnly": True,
                                    "subPath": folder,
                                },
                                {
                                    "name": "tmpout",
                                    "mountPath": "/calrissian/tmpout",
                                    "subPath": folder,
                                },
                                {
                                    "name": "output-data",
                                    "mountPath": "/calrissian/output-data",
                                    "subPath": folder,
                                },
                                {
                                    "name": "archive-psa-rosetta",
                                    "mountPath": "/data/psa-rosetta",
                                    "readOnly": True,
                                },
                                {
                                    "name": "archive-spice-juice",
                                    "mountPath": "/data/spice-juice",
                                    "readOnly": True,
                                    "subPath": "juice",
                                },
                            ],
                        }
                    ],
                    "volumes": [
                        {
                            "name": "input-data",
                            "persistentVolumeClaim": {"claimName": "calrissian-input-data"},
                        },
                        {
                            "name": "tmpout",
                            "persistentVolumeClaim": {"claimName": "calrissian-tmpout"},
                        },
                        {
                            "name": "output-data",
                            "persistentVolumeClaim": {"claimName": "calrissian-output-data"},
                        },
                        {
                            "name": "archive-psa-rosetta",
                            "persistentVolumeClaim": {"claimName": "psa-rosetta", "readOnly": True},
                        },
                        {
                            "name": "archive-spice-juice",
                            "persistentVolumeClaim": {"claimName": "spice", "readOnly": True},
                        },
                    ],
                },
            },
        },
    }


def test_strict_validation_catches_a_mistake():
    manifest = make_calrissian_job(_spec())
    manifest["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


@pytest.mark.parametrize("run_id", ["ABC_def", "x" * 100, "../../x"])
def test_names_and_labels_are_always_valid(run_id):
    manifest = make_calrissian_job(_spec(run_id=run_id, user="Anonymous Io"))
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    assert len(job_name(run_id)) <= 63


def test_default_container_and_its_init_image():
    manifest = make_calrissian_job(_spec(default_container="datalabs/planetary-lab:0.1"))
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[args.index("--default-container") + 1] == "datalabs/planetary-lab:0.1"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CALRISSIAN_INIT_IMAGE"] == "datalabs/planetary-lab:0.1"


def test_user_folders_never_collide():
    names = ["alice@x.org", "alice-x-org", "Alice@x.org", "a" * 300]
    folders = [user_folder(n) for n in names]
    assert len(set(folders)) == len(folders)
    assert all(len(f) <= 63 and f == f.lower() for f in folders)


ARCHIVES = (
    ArchiveVolume("psa", "datalabs-archive", "/data/psa", "psa"),
    ArchiveVolume("psa-rosetta", "datalabs-archive", "/data/psa-rosetta", "psa-rosetta"),
    ArchiveVolume("spice-juice", "datalabs-archive", "/data/spice-juice", "spice-juice"),
)
RESTRICTED = "/data/rosetta-restricted"


def test_only_the_volumes_the_inputs_need():
    job = {
        "n": 3,
        "table": {"class": "File", "path": "/data/psa-rosetta/bundle/x.xml"},
        "staged": {"class": "File", "path": "/calrissian/input-data/r1/inputs/0/a.csv"},
    }
    assert volumes_for_inputs(job, ARCHIVES, ["/calrissian/input-data/r1"]) == (ARCHIVES[1],)


@pytest.mark.parametrize(
    "value",
    [
        {"class": "File", "path": f"{RESTRICTED}/cal/flat.fits"},
        {"class": "File", "location": f"file://{RESTRICTED}/cal/flat.fits"},
        {"class": "Directory", "path": RESTRICTED},
        {"class": "File", "path": "/data/psa-rosetta/../rosetta-restricted/cal/flat.fits"},
        {
            "class": "File",
            "path": "/data/psa-rosetta/bundle/x.xml",
            "secondaryFiles": [{"class": "File", "path": f"{RESTRICTED}/cal/flat.lblx"}],
        },
        {
            "class": "Directory",
            "path": "/data/spice-juice",
            "listing": [{"class": "File", "path": f"{RESTRICTED}/cal/flat.fits"}],
        },
        [{"class": "File", "path": "/data/psa/a.xml"}, {"class": "File", "path": RESTRICTED}],
        {"calib": {"class": "File", "path": f"{RESTRICTED}/cal/flat.fits"}, "n": 1},
        [[{"frames": [{"class": "Directory", "path": f"{RESTRICTED}/raw"}]}]],
        {"class": "File", "path": "relative/x.xml"},
        {"class": "File", "location": "http://example.org/x.xml"},
    ],
    ids=[
        "file",
        "file-url",
        "directory-root",
        "dotdot",
        "secondary",
        "listing",
        "array",
        "record",
        "nested",
        "relative",
        "http",
    ],
)
def test_bob_is_refused_a_path_on_no_volume_he_may_read(value):
    job = {"table": {"class": "File", "path": "/data/psa-rosetta/bundle/x.xml"}, "x": value}
    with pytest.raises(InputNotReadable, match=r"input 'x"):
        volumes_for_inputs(job, ARCHIVES, ["/calrissian/input-data/r1"])


def test_the_deepest_volume_takes_the_file():
    job = {"a": {"class": "File", "path": "/data/psa-rosetta/x"}}
    assert volumes_for_inputs(job, ARCHIVES) == (ARCHIVES[1],)


def test_step_resources_are_capped_by_the_run_ceiling():
    assert mebibytes("8G") == 7629 and mebibytes("4Gi") == 4096 and mebibytes(2**20) == 1
    assert step_resources({"cores": 8, "ram": 65536}, 2, mebibytes("4Gi")) == {
        "requests": {"cpu": "2000m", "memory": "4096Mi"},
        "limits": {"cpu": "2000m", "memory": "4096Mi"},
    }
    assert step_resources({"cores": 0.5, "ram": 256}, 2, 4096) == {
        "requests": {"cpu": "500m", "memory": "256Mi"},
        "limits": {"cpu": "500m", "memory": "256Mi"},
    }
    assert step_resources({}, 2, 4096) == {}
    with pytest.raises(ValueError, match="memory quantity"):
        mebibytes("lots")


def test_a_step_pod_made_restricted():
    calrissian_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "plot-pod-x", "labels": {"a": "b"}},
        "spec": {
            "initContainers": [{"name": "plot-init", "image": "alpine:3.10"}],
            "containers": [{"name": "plot-container", "image": "x", "resources": {}}],
            "securityContext": {"runAsUser": 0, "runAsGroup": 0},
            "restartPolicy": "Never",
        },
    }
    res = step_resources({"cores": 1, "ram": 512}, 4, 8192)
    pod = restrict_step_pod(calrissian_pod, {"datalabs.io/run-id": "r1"}, res)
    assert pod["metadata"]["labels"] == {"a": "b", "datalabs.io/run-id": "r1"}
    assert pod["spec"]["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 100,
        "fsGroup": 100,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["spec"]["automountServiceAccountToken"] is False
    for c in pod["spec"]["initContainers"] + pod["spec"]["containers"]:
        assert c["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        }
    assert pod["spec"]["containers"][0]["resources"] == res
    assert calrissian_pod["spec"]["securityContext"] == {"runAsUser": 0, "runAsGroup": 0}


def test_the_runs_node_pool_and_pull_policy_reach_the_job_and_its_steps():
    """An operator's node selector and tolerations put the Job's pod and, through the
    environment calrissian_entry reads, every step pod on the pipelines' nodes."""
    toleration = {"key": "pipelines", "operator": "Exists", "effect": "NoSchedule"}
    job = make_calrissian_job(
        _spec(
            node_selector={"datalabs.io/pool": "pipelines"},
            tolerations=(toleration,),
            image_pull_policy="Never",
        )
    )
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"datalabs.io/pool": "pipelines"}
    assert pod["tolerations"] == [toleration]
    assert pod["containers"][0]["imagePullPolicy"] == "Never"
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    placement = json.loads(env["DATALABS_STEP_PLACEMENT"])
    step = restrict_step_pod(
        {"metadata": {}, "spec": {"nodeSelector": {"from": "calrissian"}, "containers": []}},
        {},
        None,
        placement,
    )
    assert step["spec"]["nodeSelector"] == {"datalabs.io/pool": "pipelines"}
    assert step["spec"]["tolerations"] == [toleration]
    # none asked: neither the Job nor its steps are placed, nor is a pull policy set
    plain = make_calrissian_job(_spec())["spec"]["template"]["spec"]
    assert "nodeSelector" not in plain and "tolerations" not in plain
    assert "imagePullPolicy" not in plain["containers"][0]
    assert "DATALABS_STEP_PLACEMENT" not in {e["name"] for e in plain["containers"][0]["env"]}


def test_calrissians_log_files_get_their_folders_before_it_starts(tmp_path):
    """Calrissian's ``tee`` of its output object and log opens the files before cwltool makes
    the run's folder; the entry makes their folders first (as the Job's arguments name them)."""
    from datalabs_pipelines.executors.calrissian_entry import make_log_folders

    run = tmp_path / "output-data" / "0123456789abcdef"
    args = make_calrissian_job(_spec(output_mount=str(tmp_path / "output-data")))["spec"][
        "template"
    ]["spec"]["containers"][0]["args"]
    assert f"{run}/output.json" in args and f"{run}/cwltool.log" in args
    make_log_folders(args)
    assert run.is_dir()
    make_log_folders([f"--stderr={tmp_path}/other/err.log", "--stdout"])
    assert (tmp_path / "other").is_dir()
