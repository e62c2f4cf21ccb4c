"""Pure builders for hosted volumes in a Kubernetes pod: plain values in, API dicts out.

Like kubespawner's ``objects.py``: no client, no cluster, so the output can be compared whole and
validated against the Kubernetes OpenAPI schema in tests.
"""

from __future__ import annotations

import posixpath
from typing import Any

from ..models import ChosenVolume

#: Pod volume names are DNS labels; ids are at most 59 characters, so the prefix fits.
VOLUME_NAME_PREFIX = "dlv-"


class UnmountableVolume(ValueError):
    """The volume's source cannot be expressed in a pod on this deployment."""


def pod_volume(chosen: ChosenVolume, archive_claim: str = "") -> dict[str, Any]:
    """The ``volumes[]`` entry for a hosted volume: NFS or PVC, always read-only.

    ``local`` sources are folders of the operator's archive; on Kubernetes they live in the
    claim ``archive_claim`` (a subPath each). Without one they cannot be mounted.
    """
    name = VOLUME_NAME_PREFIX + chosen.id
    src = chosen.source
    if src.type == "nfs":
        return {"name": name, "nfs": {"server": src.server, "path": src.path, "readOnly": True}}
    if src.type == "pvc":
        return {"name": name, "persistentVolumeClaim": {"claimName": src.claim, "readOnly": True}}
    if not archive_claim:
        raise UnmountableVolume(
            f"Volume '{chosen.id}' is a local folder ({src.path}); on Kubernetes the operator "
            "must set DatalabsKubeSpawner.archive_claim to the claim that holds local volumes."
        )
    return {"name": name, "persistentVolumeClaim": {"claimName": archive_claim, "readOnly": True}}


def pod_volume_mount(chosen: ChosenVolume, mount_root: str) -> dict[str, Any]:
    """The ``volumeMounts[]`` entry: ``<mount_root>/<folder>``, read-only, with its subPath."""
    mount: dict[str, Any] = {
        "name": VOLUME_NAME_PREFIX + chosen.id,
        "mountPath": posixpath.join(mount_root, chosen.volume.folder),
        "readOnly": True,
    }
    src = chosen.source
    sub_path = src.sub_path if src.type == "pvc" else src.path if src.type == "local" else ""
    if sub_path:
        mount["subPath"] = sub_path
    return mount


def merge_named(
    operator: list[dict[str, Any]] | dict[str, dict[str, Any]],
    ours: dict[str, dict[str, Any]],
    prefix: str,
) -> dict[str, dict[str, Any]]:
    """Operator volumes (list or dict form) plus ours, as KubeSpawner's dict form.

    Keys starting with ``prefix`` are ours from an earlier start and are replaced, so a spawner
    object reused for a restart never accumulates volumes; the operator's are kept as they are.
    """
    if isinstance(operator, dict):
        merged = {k: v for k, v in operator.items() if not k.startswith(prefix)}
    else:
        merged = {f"operator-{i:03d}": v for i, v in enumerate(operator)}
    clash = {str(v.get("name")) for v in merged.values()} & {str(v["name"]) for v in ours.values()}
    if clash:
        raise UnmountableVolume(
            f"The operator's volumes already use the name(s) {', '.join(sorted(clash))}"
        )
    merged.update(ours)
    return merged


def session_volumes(
    chosen: list[ChosenVolume] | tuple[ChosenVolume, ...],
    mount_root: str,
    archive_claim: str = "",
    key_prefix: str = "datalabs-",
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """``(volumes, volume_mounts)`` in KubeSpawner's dict form for the chosen volumes."""
    volumes = {key_prefix + c.id: pod_volume(c, archive_claim) for c in chosen}
    mounts = {key_prefix + c.id: pod_volume_mount(c, mount_root) for c in chosen}
    return volumes, mounts
