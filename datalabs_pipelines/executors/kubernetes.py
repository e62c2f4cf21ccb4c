"""The Kubernetes executor's pure part: a Calrissian Job per run.

Calrissian is cwltool on Kubernetes: its own pod runs the workflow engine and starts one pod per
step. It shares files with the step pods through ReadWriteMany volumes (inputs, temporary
outputs, outputs) and mounts into each step pod the persistent volumes of its own pod that hold
the step's inputs, which is why the user's archive volumes are attached to the Calrissian pod
(read-only) at the same paths as in the user's session.

:func:`make_calrissian_job` takes plain values and returns the Job manifest as a dict; it does no
I/O. Submitting the Job and following it is the caller's business (see docs/pipelines.md for
what the cluster needs: service account and role, the three RWX claims, the archive claims).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

CALRISSIAN_IMAGE = "ghcr.io/duke-gcb/calrissian/calrissian:0.18.1"

_DNS_LABEL = re.compile(r"[^a-z0-9-]+")


def _label_value(value: str) -> str:
    """A Kubernetes label value (63 chars of ``[A-Za-z0-9_.-]``, alphanumeric at both ends)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", value)[:63].strip("-_.")
    return cleaned or "none"


def _dns_name(value: str) -> str:
    return _DNS_LABEL.sub("-", value.lower()).strip("-")[:63].strip("-") or "x"


@dataclass(frozen=True)
class ArchiveVolume:
    """A hosted archive volume the user may read, as a PersistentVolumeClaim."""

    id: str
    claim_name: str
    #: Where the session sees it (e.g. ``/data/psa-rosetta``): inputs keep the same paths.
    mount_path: str
    sub_path: str | None = None


@dataclass(frozen=True)
class CalrissianJob:
    """Everything that varies between runs of the Kubernetes executor."""

    run_id: str
    user: str
    namespace: str
    #: Workflow and job files, as paths on the input claim (mounted at ``input_mount``).
    pipeline_path: str
    job_path: str
    archive_volumes: tuple[ArchiveVolume, ...] = ()
    image: str = CALRISSIAN_IMAGE
    service_account: str = "calrissian"
    input_claim: str = "calrissian-input-data"
    tmpout_claim: str = "calrissian-tmpout"
    output_claim: str = "calrissian-output-data"
    input_mount: str = "/calrissian/input-data"
    tmpout_mount: str = "/calrissian/tmpout"
    output_mount: str = "/calrissian/output-data"
    #: Limits over all step pods of the run at once (Calrissian schedules within them).
    max_ram: str = "8G"
    max_cores: int = 4
    provenance: bool = True
    ttl_seconds_after_finished: int = 7 * 24 * 3600
    active_deadline_seconds: int | None = None
    extra_labels: dict[str, str] = field(default_factory=dict)


def job_name(run_id: str) -> str:
    """The Job's name for a run (stable, so the Job can be found again after a restart)."""
    return _dns_name(f"datalabs-run-{run_id}")


def make_calrissian_job(spec: CalrissianJob) -> dict[str, Any]:
    """A ``batch/v1`` Job that runs one pipeline with Calrissian."""
    outdir = f"{spec.output_mount}/{spec.run_id}"
    labels = {
        "app.kubernetes.io/name": "datalabs-pipeline-run",
        "app.kubernetes.io/component": "calrissian",
        "datalabs.io/run-id": _label_value(spec.run_id),
        "datalabs.io/user": _label_value(spec.user),
        **spec.extra_labels,
    }
    args = [
        "--max-ram",
        spec.max_ram,
        "--max-cores",
        str(spec.max_cores),
        "--tmp-outdir-prefix",
        f"{spec.tmpout_mount}/",
        "--outdir",
        f"{outdir}/outputs",
        "--stdout",
        f"{outdir}/output.json",
        "--stderr",
        f"{outdir}/cwltool.log",
        "--usage-report",
        f"{outdir}/usage.json",
        "--disable-color",
    ]
    if spec.provenance:
        args += ["--provenance", f"{outdir}/provenance"]
    args += [spec.pipeline_path, spec.job_path]

    volumes: list[dict[str, Any]] = [
        {"name": "input-data", "persistentVolumeClaim": {"claimName": spec.input_claim}},
        {"name": "tmpout", "persistentVolumeClaim": {"claimName": spec.tmpout_claim}},
        {"name": "output-data", "persistentVolumeClaim": {"claimName": spec.output_claim}},
    ]
    mounts: list[dict[str, Any]] = [
        # The workflow and job are read only; outputs are written to the other two.
        {"name": "input-data", "mountPath": spec.input_mount, "readOnly": True},
        {"name": "tmpout", "mountPath": spec.tmpout_mount},
        {"name": "output-data", "mountPath": spec.output_mount},
    ]
    for volume in spec.archive_volumes:
        name = _dns_name(f"archive-{volume.id}")
        volumes.append(
            {
                "name": name,
                "persistentVolumeClaim": {"claimName": volume.claim_name, "readOnly": True},
            }
        )
        mount: dict[str, Any] = {"name": name, "mountPath": volume.mount_path, "readOnly": True}
        if volume.sub_path:
            mount["subPath"] = volume.sub_path
        mounts.append(mount)

    job_spec: dict[str, Any] = {
        # A failed workflow is a result, not something to retry.
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": spec.ttl_seconds_after_finished,
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "serviceAccountName": spec.service_account,
                "restartPolicy": "Never",
                "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 100},
                "containers": [
                    {
                        "name": "calrissian",
                        "image": spec.image,
                        "command": ["calrissian"],
                        "args": args,
                        "env": [
                            # Calrissian finds its own pod (and so its volumes) by this name.
                            {
                                "name": "CALRISSIAN_POD_NAME",
                                "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                            },
                            {"name": "DATALABS_RUN_ID", "value": spec.run_id},
                        ],
                        "resources": {
                            "requests": {"cpu": "250m", "memory": "512Mi"},
                            "limits": {"memory": "2Gi"},
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": mounts,
                    }
                ],
                "volumes": volumes,
            },
        },
    }
    if spec.active_deadline_seconds:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(spec.run_id),
            "namespace": spec.namespace,
            "labels": labels,
        },
        "spec": job_spec,
    }
