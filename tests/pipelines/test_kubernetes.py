"""The Calrissian Job builder: whole manifests, validated against the Kubernetes schema."""

from __future__ import annotations

import kubernetes_validate
import pytest

from datalabs_pipelines.executors.kubernetes import (
    ArchiveVolume,
    CalrissianJob,
    job_name,
    make_calrissian_job,
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
    }
    out = "/calrissian/output-data/0123456789abcdef"
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
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 100},
                    "containers": [
                        {
                            "name": "calrissian",
                            "image": "ghcr.io/duke-gcb/calrissian/calrissian:0.18.1",
                            "command": ["calrissian"],
                            "args": [
                                "--max-ram",
                                "8G",
                                "--max-cores",
                                "4",
                                "--tmp-outdir-prefix",
                                "/calrissian/tmpout/",
                                "--outdir",
                                f"{out}/outputs",
                                "--stdout",
                                f"{out}/output.json",
                                "--stderr",
                                f"{out}/cwltool.log",
                                "--usage-report",
                                f"{out}/usage.json",
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
                                },
                                {"name": "tmpout", "mountPath": "/calrissian/tmpout"},
                                {"name": "output-data", "mountPath": "/calrissian/output-data"},
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
