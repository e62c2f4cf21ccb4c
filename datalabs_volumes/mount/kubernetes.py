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


# -- Remote storage: the rclone sidecar ------------------------------------------------------

#: The emptyDir the sidecar mounts connections into and the user container sees them through.
REMOTE_VOLUME = "datalabs-remote"
#: The emptyDir holding the rc socket (and nothing else), shared by both containers.
RC_SOCKET_VOLUME = "datalabs-rc"
#: The Secret volume with the session's rclone config; mounted in the sidecar only.
RCLONE_CONFIG_VOLUME = "datalabs-rclone-config"
SIDECAR_NAME = "datalabs-rclone"
#: The archive claim in the sidecar (hot attach binds its folders), and where it is mounted.
ARCHIVE_VOLUME = "datalabs-archive"
ARCHIVE_ROOT = "/srv/datalabs-archive"
#: The sidecar's hub-only bind API (:mod:`.hubbind`; the same values, without its imports).
HUB_BIND_PORT = 8099
HUB_TOKEN_ENV = "DATALABS_HUB_BIND_TOKEN"


#: The sidecar image: rclone behind the rc guard (``config/images/rclone-sidecar/Dockerfile``).
SIDECAR_IMAGE = "datalabs/rclone-sidecar:0.1"


def rclone_sidecar(
    image: str,
    config_secret: str,
    rc_secret: str,
    rc_password_key: str = "rc-password",
    mount_root: str = "/mnt/datalabs",
    socket_dir: str = "/run/datalabs-rc",
    resources: dict[str, Any] | None = None,
    allowed_networks: tuple[str, ...] = (),
    archive_claim: str = "",
    hub_token_key: str = "",
    refused_endpoints: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The rclone sidecar: a native sidecar (an init container that keeps running).

    It runs the rc guard (:mod:`.rcguard`), which starts ``rclone rcd`` on a socket private to
    the sidecar and serves the shared socket with only the calls a session makes: the user's
    code, which can reach that socket as the user's server does, cannot dump secrets, run
    rclone commands or reach the privileged sidecar's own files. Connections are mounted under
    ``mount_root`` in the shared emptyDir with Bidirectional propagation, so mounts made after
    the pod started reach the user container (hot attach); Kubernetes allows Bidirectional
    only in privileged containers. The starting rclone config comes from the Secret
    ``config_secret`` (mounted here only, never in the user container; the guard works on a
    private copy) and the rc password from ``rc_secret`` through ``secretKeyRef``: the pod
    spec names the Secrets, it never holds a value. ``allowed_networks``: the private or
    loopback ranges connections may reach (the spawner's ``connection_allowed_networks``);
    ``refused_endpoints``: what they never reach even there (the spawner's
    ``refused_endpoints()``: its ``connection_refused_endpoints`` and the hub's API).

    With ``archive_claim`` and ``hub_token_key`` the sidecar also serves the hub-only bind API
    of hot attach (:mod:`.hubbind`) on port ``HUB_BIND_PORT``: the archive claim is mounted
    here read-only (pod volume ``ARCHIVE_VOLUME``), and the token comes from ``rc_secret``'s
    key ``hub_token_key``, which no other container is given.
    """
    args = [
        "--listen",
        posixpath.join(socket_dir, "rc.sock"),
        "--mount-root",
        mount_root,
        "--config",
        "/etc/datalabs-rclone/rclone.conf",
        "--runtime-dir",
        "/tmp/datalabs-rclone",
    ]
    for network in allowed_networks:
        args += ["--allow-network", network]
    for endpoint in refused_endpoints:
        args += ["--refuse-endpoint", endpoint]
    if archive_claim and hub_token_key:
        args += ["--archive-root", ARCHIVE_ROOT, "--hub-listen", f":{HUB_BIND_PORT}"]
    container: dict[str, Any] = {
        "name": SIDECAR_NAME,
        "image": image,
        "restartPolicy": "Always",
        "command": ["python3", "-m", "datalabs_volumes.mount.rcguard"],
        "args": args,
        "env": [
            {"name": "RCLONE_RC_USER", "value": "datalabs"},
            {
                "name": "RCLONE_RC_PASS",
                "valueFrom": {"secretKeyRef": {"name": rc_secret, "key": rc_password_key}},
            },
        ],
        "securityContext": {"privileged": True},
        "volumeMounts": [
            {"name": REMOTE_VOLUME, "mountPath": mount_root, "mountPropagation": "Bidirectional"},
            {"name": RC_SOCKET_VOLUME, "mountPath": socket_dir},
            {"name": RCLONE_CONFIG_VOLUME, "mountPath": "/etc/datalabs-rclone", "readOnly": True},
        ],
        # Before the user's server starts, the guard must answer on its socket (it opens the
        # socket only once its rclone answers).
        "startupProbe": {
            "exec": {"command": ["test", "-S", posixpath.join(socket_dir, "rc.sock")]},
            "periodSeconds": 1,
            "failureThreshold": 30,
        },
    }
    if archive_claim and hub_token_key:
        container["env"].append(
            {
                "name": HUB_TOKEN_ENV,
                "valueFrom": {"secretKeyRef": {"name": rc_secret, "key": hub_token_key}},
            }
        )
        container["volumeMounts"].append(
            {"name": ARCHIVE_VOLUME, "mountPath": ARCHIVE_ROOT, "readOnly": True}
        )
        container["ports"] = [{"name": "datalabs-bind", "containerPort": HUB_BIND_PORT}]
    if resources:
        container["resources"] = resources
    return container


def archive_volume(archive_claim: str) -> dict[str, Any]:
    """The archive claim as the sidecar's pod volume (read-only), for hot attach."""
    return {
        "name": ARCHIVE_VOLUME,
        "persistentVolumeClaim": {"claimName": archive_claim, "readOnly": True},
    }


def remote_storage_volumes(config_secret: str) -> list[dict[str, Any]]:
    """The pod volumes the sidecar needs: the shared mount folder, the socket, the config."""
    return [
        {"name": REMOTE_VOLUME, "emptyDir": {}},
        {"name": RC_SOCKET_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        {
            "name": RCLONE_CONFIG_VOLUME,
            # Only the config: the Secret may hold values meant for the user container alone.
            "secret": {
                "secretName": config_secret,
                "items": [{"key": "rclone.conf", "path": "rclone.conf"}],
                "defaultMode": 0o400,
            },
        },
    ]


def remote_storage_user_mounts(
    connections_root: str = "/home/jovyan/data/remote", socket_dir: str = "/run/datalabs-rc"
) -> list[dict[str, Any]]:
    """The user container's side: connections appear under ``connections_root``.

    HostToContainer: mounts the sidecar makes later propagate in, but nothing propagates back,
    so the user container needs no privilege.
    """
    return [
        {
            "name": REMOTE_VOLUME,
            "mountPath": connections_root,
            "mountPropagation": "HostToContainer",
            "readOnly": True,
        },
        {"name": RC_SOCKET_VOLUME, "mountPath": socket_dir},
    ]


def rclone_config_secret(name: str, namespace: str, config_text: str) -> dict[str, Any]:
    """The Secret holding a session's rclone config (rendered from the user's connections)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "datalabs"}},
        "type": "Opaque",
        "stringData": {"rclone.conf": config_text},
    }
