"""The Kubernetes executor's pure part: a Calrissian Job per run, and its step pods.

Calrissian is cwltool on Kubernetes: its own pod runs the workflow engine and starts one pod per
step. It shares files with the step pods through ReadWriteMany volumes (inputs, temporary
outputs, outputs) and mounts into each step pod the persistent volumes of its own pod that hold
the step's inputs (the same claim, with the subPath of its own mount plus the file's path below
it), which is why the archive volumes a run's inputs need are attached to the Calrissian pod
(read-only, each with its own folder of the claim as subPath) at the same paths as in the
user's session.

Pure: :func:`make_calrissian_job` takes plain values and returns the Job manifest as a dict;
:func:`volumes_for_inputs` picks the archive volumes a job's inputs need (and refuses a path on
none of the volumes the user may read); :func:`restrict_step_pod` is what
:mod:`.calrissian_entry` does to every step pod Calrissian builds (unique volume names, Pod
Security "restricted", no API token, the run's labels, requests and limits under the run's
ceiling). Submitting the Job and following it is the caller's business (see docs/pipelines.md).
"""

from __future__ import annotations

import copy
import hashlib
import json
import posixpath
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

#: The run Jobs' image as ``make images`` builds it (config/images/calrissian/image.toml).
CALRISSIAN_IMAGE = "datalabs/calrissian:0.1.0"
#: The Job's command: Calrissian behind Datalabs' fixes to its step pods. The Calrissian image
#: holds Calrissian from PyPI and the modules this entry imports (nothing but Calrissian, the
#: standard library and this module).
ENTRY_COMMAND = ("python3", "-m", "datalabs_pipelines.executors.calrissian_entry")
#: Environment of the Calrissian container that :mod:`.calrissian_entry` reads.
ENV_STEP_LABELS = "DATALABS_STEP_LABELS"
ENV_MAX_CORES = "DATALABS_STEP_MAX_CORES"
ENV_MAX_RAM = "DATALABS_STEP_MAX_RAM"
#: Where step pods may run (``{"nodeSelector": ..., "tolerations": [...]}``, JSON): the run's
#: node pool, as for the Job's own pod (Calrissian 0.18.1 has no tolerations option).
ENV_PLACEMENT = "DATALABS_STEP_PLACEMENT"
#: The label every pod of a run carries (the Job's, and each step pod): cancel deletes by it.
RUN_LABEL = "datalabs.io/run-id"
USER_LABEL = "datalabs.io/user"
#: On each step pod: the CWL step (cwltool's job name) it runs, for the run's step states.
STEP_LABEL = "datalabs.io/step"
#: The owner's :func:`user_folder` (unique per user, unlike the cleaned-up user name): what the
#: broker checks before it cancels or reports a run.
OWNER_LABEL = "datalabs.io/owner"
#: On each user's run-policy parameters (a ConfigMap): what the chart's admission policy reads.
RUN_PARAMS_LABEL = "datalabs.io/run-params"
#: What a run's identity may do: exactly what Calrissian does with its step pods (create,
#: follow, read the log of, delete). No Jobs, no secrets, no claims, no other resource.
RUN_ROLE_RULES = [
    {
        "apiGroups": [""],
        "resources": ["pods"],
        "verbs": ["create", "get", "list", "watch", "delete"],
    },
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
]
#: What Pod Security "restricted" asks of every pod and container.
POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 100,
    "fsGroup": 100,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}

_DNS_LABEL = re.compile(r"[^a-z0-9-]+")


def label_value(value: str) -> str:
    """A Kubernetes label value (63 chars of ``[A-Za-z0-9_.-]``, alphanumeric at both ends)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", value)[:63].strip("-_.")
    return cleaned or "none"


def _dns_name(value: str) -> str:
    return _DNS_LABEL.sub("-", value.lower()).strip("-")[:63].strip("-") or "x"


def user_folder(user: str) -> str:
    """The user's own folder on the shared work claims (inputs, tmpout, outputs).

    A readable name plus a hash of the exact user name, so that two names that clean up alike
    (``alice@x.org``, ``alice-x-org``) never share a folder.
    """
    digest = hashlib.sha256(user.encode()).hexdigest()[:10]
    return f"{_dns_name(user)[:40].strip('-')}-{digest}"


#: The folder of a run's results (on the output claim) where Calrissian writes each step pod's
#: log text, ``<step>.log``.
TOOL_LOGS_DIR = "steps"


@dataclass(frozen=True)
class ArchiveVolume:
    """A hosted archive volume the user may read, as a PersistentVolumeClaim."""

    id: str
    claim_name: str
    #: Where the session sees it (e.g. ``/data/psa-rosetta``): inputs keep the same paths.
    mount_path: str
    #: The volume's folder inside the claim (a ``local`` source's path, a ``pvc`` source's
    #: subPath); None: the whole claim is the volume.
    sub_path: str | None = None

    @property
    def volume_name(self) -> str:
        """The pod volume's name: unique per volume, even when several share one claim."""
        return _dns_name(f"archive-{self.id}")


class InputNotReadable(ValueError):
    """An input names a path on none of the volumes the user may read (nor the run's own
    staged files); the message names the input and the path."""


def _is_within(path: str, root: str) -> bool:
    root = posixpath.normpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")


def input_paths(value: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """``(field, path)`` for every path a job value names: Files and Directories at any depth,
    in arrays and records, their ``secondaryFiles`` and ``listing`` included."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield from input_paths(item, f"{where}[{i}]")
        return
    if not isinstance(value, dict):
        return
    if value.get("class") in ("File", "Directory"):
        for key in ("path", "location"):
            raw = value.get(key)
            if isinstance(raw, str) and raw:
                yield f"{where}.{key}", raw
        for key in ("secondaryFiles", "listing"):
            yield from input_paths(value.get(key), f"{where}.{key}")
        return
    for key, item in value.items():
        yield from input_paths(item, f"{where}.{key}" if where else str(key))


def _local(raw: str) -> str | None:
    """A path or ``file:`` URL as an absolute, normalised path; None for anything else."""
    if "://" in raw or raw.startswith("file:"):
        url = urlparse(raw)
        if url.scheme != "file":
            return None
        raw = unquote(url.path)
    if not raw.startswith("/") or "\x00" in raw:
        return None
    return posixpath.normpath(raw)


def volumes_for_inputs(
    job: dict[str, Any], readable: Sequence[ArchiveVolume], staged: Sequence[str] = ()
) -> tuple[ArchiveVolume, ...]:
    """The volumes of ``readable`` that the job's inputs lie on, in ``readable``'s order.

    Every path must lie under one of ``staged`` (the run's own folder on the input claim) or
    on a volume of ``readable`` (the deepest mount path wins, so ``/data/psa`` never takes a
    file of ``/data/psa-rosetta``); anything else, a volume the user may not read included, is
    :class:`InputNotReadable`, before any object is made.
    """
    needed: set[str] = set()
    for where, raw in input_paths(job):
        path = _local(raw)
        if path is not None and any(_is_within(path, root) for root in staged):
            continue
        matches = [v for v in readable if path is not None and _is_within(path, v.mount_path)]
        if not matches:
            raise InputNotReadable(
                f"input '{where}': {raw!r} is not on a volume you may read (nor one of the "
                "run's staged files)"
            )
        needed.add(max(matches, key=lambda v: len(v.mount_path)).id)
    return tuple(v for v in readable if v.id in needed)


#: What the broker (the hub's identity) needs in the runs' namespace on top of spawning: the
#: Jobs, the users' run identities, and every right it grants them (RBAC lets no identity grant
#: a right it does not hold); pods are also what cancel deletes. The chart's hub Role has these.
BROKER_RULES = [
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "delete"]},
    {
        "apiGroups": [""],
        "resources": ["pods"],
        "verbs": ["create", "get", "list", "watch", "delete"],
    },
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["create", "get"]},
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get", "update"]},
    {
        "apiGroups": ["rbac.authorization.k8s.io"],
        "resources": ["roles", "rolebindings"],
        "verbs": ["create", "get", "update"],
    },
]


@dataclass(frozen=True)
class CalrissianJob:
    """Everything that varies between runs of the Kubernetes executor."""

    run_id: str
    user: str
    namespace: str
    #: Workflow and job files, as paths on the input claim (mounted at ``input_mount``).
    pipeline_path: str
    job_path: str
    #: Only the volumes the run's inputs need (:func:`volumes_for_inputs`).
    archive_volumes: tuple[ArchiveVolume, ...] = ()
    image: str = CALRISSIAN_IMAGE
    #: The image of every step without a DockerRequirement (Calrissian's
    #: ``--default-container``): the session's datalab image, or the pipeline's own.
    default_container: str = ""
    service_account: str = "calrissian"
    input_claim: str = "calrissian-input-data"
    tmpout_claim: str = "calrissian-tmpout"
    output_claim: str = "calrissian-output-data"
    input_mount: str = "/calrissian/input-data"
    #: The folder of the input claim holding the workflow and job the broker wrote (out of the
    #: user's reach), mounted read-only at ``job_mount``; empty: none (the session staged them).
    job_sub_path: str = ""
    job_mount: str = "/calrissian/job"
    tmpout_mount: str = "/calrissian/tmpout"
    output_mount: str = "/calrissian/output-data"
    #: The user's folder on the three work claims (default: :func:`user_folder` of ``user``);
    #: the Job and its step pods see nothing else of them.
    work_folder: str = ""
    #: The run's ceiling: all step pods at once (Calrissian schedules within it), and so any one
    #: step's requests and limits.
    max_ram: str = "8G"
    max_cores: int = 4
    provenance: bool = True
    ttl_seconds_after_finished: int = 7 * 24 * 3600
    #: The run's time limit: the Job (and so Calrissian and its steps) is stopped after it.
    active_deadline_seconds: int | None = None
    extra_labels: dict[str, str] = field(default_factory=dict)
    #: The Calrissian container's ``imagePullPolicy``; empty: the cluster's default.
    image_pull_policy: str = ""
    #: Where the Job's pod and every step pod may run (the pipelines' node pool).
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()


def job_name(run_id: str) -> str:
    """The Job's name for a run (stable, so the Job can be found again after a restart)."""
    return _dns_name(f"datalabs-run-{run_id}")


def run_labels(run_id: str, user: str) -> dict[str, str]:
    """The labels of every object of a run: its Job, the Job's pod and each step pod."""
    return {
        "app.kubernetes.io/name": "datalabs-pipeline-run",
        RUN_LABEL: label_value(run_id),
        USER_LABEL: label_value(user),
        OWNER_LABEL: user_folder(user),
    }


def run_service_account(user: str) -> str:
    """The name of the user's run identity (its service account, Role and RoleBinding)."""
    return f"datalabs-runs-{user_folder(user)}"


def run_identity(
    user: str, namespace: str, archive_folders: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """The user's run identity: the parameters of the chart's admission policy for it (a
    ConfigMap naming the archive folders the user may read), a service account the user's
    Calrissian pods run as, and a Role bound to it allowing :data:`RUN_ROLE_RULES` in
    ``namespace`` and nothing else. The ConfigMap comes first: no token exists before it.

    RBAC cannot narrow a rule to pods with a label or volume; the chart's admission policy
    does (docs/security.md), and no user code holds this token (step pods get none; the
    Calrissian pod runs only Calrissian)."""
    name = run_service_account(user)
    labels = {
        "app.kubernetes.io/name": "datalabs-pipeline-run",
        USER_LABEL: label_value(user),
        OWNER_LABEL: user_folder(user),
    }
    meta = {"name": name, "namespace": namespace, "labels": labels}
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {**meta, "labels": {**labels, RUN_PARAMS_LABEL: "true"}},
            "data": {"archive-folders": "\n".join(f.strip("/") for f in archive_folders)},
        },
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": dict(meta)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": dict(meta),
            "rules": copy.deepcopy(RUN_ROLE_RULES),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": dict(meta),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    ]


def step_placement(
    node_selector: dict[str, str], tolerations: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """The pod spec fields that put a run's pods on its nodes (empty: anywhere)."""
    out: dict[str, Any] = {}
    if node_selector:
        out["nodeSelector"] = dict(node_selector)
    if tolerations:
        out["tolerations"] = [dict(t) for t in tolerations]
    return out


def make_calrissian_job(spec: CalrissianJob) -> dict[str, Any]:
    """A ``batch/v1`` Job that runs one pipeline with Calrissian."""
    outdir = f"{spec.output_mount}/{spec.run_id}"
    step_labels = {**run_labels(spec.run_id, spec.user), "app.kubernetes.io/component": "step"}
    labels = {
        **run_labels(spec.run_id, spec.user),
        "app.kubernetes.io/component": "calrissian",
        **spec.extra_labels,
    }
    args = [
        "--max-ram",
        spec.max_ram,
        "--max-cores",
        str(spec.max_cores),
        "--tmp-outdir-prefix",
        f"{spec.tmpout_mount}/",
        # cwltool writes File and Directory literals (``contents``, no file) under its tmpdir;
        # on the pod's own /tmp Calrissian could not hand them to a step pod (no claim there).
        "--tmpdir-prefix",
        f"{spec.tmpout_mount}/",
        "--outdir",
        f"{outdir}/outputs",
        "--stdout",
        f"{outdir}/output.json",
        "--stderr",
        f"{outdir}/cwltool.log",
        "--usage-report",
        f"{outdir}/usage.json",
        # Each step pod's log text, which Calrissian reads from the API server while the pod
        # runs and writes here when the step ends (``<step>.log``): the session shows it as the
        # step's log, since Calrissian deletes the pod (and its log) at once.
        "--tool-logs-basepath",
        f"{outdir}/{TOOL_LOGS_DIR}",
        "--disable-color",
    ]
    if spec.default_container:
        args += ["--default-container", spec.default_container]
    if spec.provenance:
        args += ["--provenance", f"{outdir}/provenance"]
    args += [spec.pipeline_path, spec.job_path]

    folder = spec.work_folder or user_folder(spec.user)
    volumes: list[dict[str, Any]] = [
        {"name": "input-data", "persistentVolumeClaim": {"claimName": spec.input_claim}},
        {"name": "tmpout", "persistentVolumeClaim": {"claimName": spec.tmpout_claim}},
        {"name": "output-data", "persistentVolumeClaim": {"claimName": spec.output_claim}},
    ]
    # Each work claim through the user's own folder: Calrissian gives step pods the subPath of
    # its own mount plus the file's path, so steps stay inside that folder too.
    mounts: list[dict[str, Any]] = [
        # The workflow and job are read only; outputs are written to the other two.
        {"name": "input-data", "mountPath": spec.input_mount, "readOnly": True, "subPath": folder},
        {"name": "tmpout", "mountPath": spec.tmpout_mount, "subPath": folder},
        {"name": "output-data", "mountPath": spec.output_mount, "subPath": folder},
    ]
    if spec.job_sub_path:
        mounts.append(
            {
                "name": "input-data",
                "mountPath": spec.job_mount,
                "readOnly": True,
                "subPath": spec.job_sub_path,
            }
        )
    for volume in spec.archive_volumes:
        volumes.append(
            {
                "name": volume.volume_name,
                "persistentVolumeClaim": {"claimName": volume.claim_name, "readOnly": True},
            }
        )
        mount: dict[str, Any] = {
            "name": volume.volume_name,
            "mountPath": volume.mount_path,
            "readOnly": True,
        }
        if volume.sub_path:
            mount["subPath"] = volume.sub_path.strip("/")
        mounts.append(mount)

    env: list[dict[str, Any]] = [
        # Calrissian finds its own pod (and so its volumes) by this name.
        {"name": "CALRISSIAN_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "DATALABS_RUN_ID", "value": spec.run_id},
        # In the Job's environment, not a labels file on the input claim: the user can write
        # there, and must not relabel their step pods as someone else's.
        {"name": ENV_STEP_LABELS, "value": json.dumps(step_labels, sort_keys=True)},
        {"name": ENV_MAX_CORES, "value": str(spec.max_cores)},
        {"name": ENV_MAX_RAM, "value": spec.max_ram},
    ]
    placement = step_placement(spec.node_selector, spec.tolerations)
    if placement:
        env.append({"name": ENV_PLACEMENT, "value": json.dumps(placement, sort_keys=True)})
    if spec.default_container:
        # Calrissian's init container (mkdir of output folders) otherwise pulls alpine:3.10.
        env.append({"name": "CALRISSIAN_INIT_IMAGE", "value": spec.default_container})
    job_spec: dict[str, Any] = {
        # A failed workflow is a result, not something to retry.
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": spec.ttl_seconds_after_finished,
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "serviceAccountName": spec.service_account,
                "restartPolicy": "Never",
                "securityContext": copy.deepcopy(POD_SECURITY),
                "containers": [
                    {
                        "name": "calrissian",
                        "image": spec.image,
                        "command": list(ENTRY_COMMAND),
                        "args": args,
                        "env": env,
                        "resources": {
                            "requests": {"cpu": "250m", "memory": "512Mi"},
                            "limits": {"memory": "2Gi"},
                        },
                        "securityContext": copy.deepcopy(CONTAINER_SECURITY),
                        "volumeMounts": mounts,
                    }
                ],
                "volumes": volumes,
                **copy.deepcopy(placement),
            },
        },
    }
    if spec.image_pull_policy:
        job_spec["template"]["spec"]["containers"][0]["imagePullPolicy"] = spec.image_pull_policy
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


def session_work_volumes(
    user: str,
    input_claim: str = "calrissian-input-data",
    output_claim: str = "calrissian-output-data",
    input_mount: str = "/calrissian/input-data",
    output_mount: str = "/calrissian/output-data",
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """``(volumes, volume_mounts)`` (KubeSpawner's dict form) of a user's session for cluster
    runs: the user's own folder of the input claim (read-write: the session stages workspace
    files there) and of the output claim (read-only: the session reads results), never the
    claims' other folders."""
    folder = user_folder(user)
    volumes: dict[str, dict[str, Any]] = {
        "datalabs-run-inputs": {
            "name": "datalabs-run-inputs",
            "persistentVolumeClaim": {"claimName": input_claim},
        },
        "datalabs-run-outputs": {
            "name": "datalabs-run-outputs",
            "persistentVolumeClaim": {"claimName": output_claim, "readOnly": True},
        },
    }
    mounts: dict[str, dict[str, Any]] = {
        "datalabs-run-inputs": {
            "name": "datalabs-run-inputs",
            "mountPath": input_mount,
            "subPath": folder,
        },
        "datalabs-run-outputs": {
            "name": "datalabs-run-outputs",
            "mountPath": output_mount,
            "subPath": folder,
            "readOnly": True,
        },
    }
    return volumes, mounts


# -- Step pods: what calrissian_entry does to each pod Calrissian builds ----------------------

_QUANTITY = re.compile(r"^([0-9.]+)([KMGTPE]i?|[kmgtpe])?$")
_UNITS = {
    None: 1,
    "k": 1000,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}


def mebibytes(quantity: str | int | float) -> int:
    """A memory quantity (``8G``, ``512Mi``, bytes) in MiB, as CWL's ``ramMin`` counts."""
    match = _QUANTITY.match(str(quantity).strip())
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"not a memory quantity: {quantity!r} (e.g. 8G or 512Mi)")
    return int(float(match.group(1)) * _UNITS[match.group(2)] // 1024**2)


def step_resources(
    cwl: dict[str, Any], max_cores: float, max_ram_mib: int
) -> dict[str, dict[str, str]]:
    """A step pod's requests and limits from its CWL ``ResourceRequirement`` (cwltool's
    ``cores`` and ``ram`` in MiB), each at most the run's ceiling.

    Limits equal requests: a step gets what it declared, and one step that runs away cannot
    take the node from the others (Calrissian itself sets requests only).
    """
    out: dict[str, str] = {}
    cores = cwl.get("cores")
    if isinstance(cores, int | float) and cores > 0:
        out["cpu"] = f"{round(min(float(cores), float(max_cores)) * 1000)}m"
    ram = cwl.get("ram")
    if isinstance(ram, int | float) and ram > 0:
        out["memory"] = f"{int(min(float(ram), float(max_ram_mib)))}Mi"
    return {"requests": dict(out), "limits": dict(out)} if out else {}


def restrict_step_pod(
    pod: dict[str, Any],
    labels: dict[str, str],
    resources: dict[str, dict[str, str]] | None = None,
    placement: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A step pod as Calrissian built it, made fit for the run's namespace.

    - Pod Security "restricted": Calrissian sets only ``runAsUser``/``runAsGroup`` (from its
      own process), which the admission refuses; every container and init container drops all
      capabilities, and the pod runs as non-root with the runtime's seccomp profile.
    - No API token: a step is user code and never needs one.
    - The run's labels (so that cancel finds pods a killed Calrissian left behind).
    - Requests and limits from :func:`step_resources`, when given.
    - The run's node selector and tolerations (:func:`step_placement`), when given: they
      replace Calrissian's (it sets a node selector only from a file the user could write).
    """
    out = json.loads(json.dumps(pod))
    metadata = out.setdefault("metadata", {})
    metadata["labels"] = {**(metadata.get("labels") or {}), **labels}
    spec = out.setdefault("spec", {})
    security = copy.deepcopy(POD_SECURITY)
    given = spec.get("securityContext") or {}
    for key in ("runAsUser", "runAsGroup"):
        if isinstance(given.get(key), int) and given[key] > 0:
            security[key] = given[key]
    spec["securityContext"] = security
    spec["automountServiceAccountToken"] = False
    for key in ("containers", "initContainers"):
        for container in spec.get(key) or []:
            container["securityContext"] = copy.deepcopy(CONTAINER_SECURITY)
    if resources is not None:
        for container in spec.get("containers") or []:
            container["resources"] = resources
    if placement:
        spec.update(copy.deepcopy(placement))
    return out
