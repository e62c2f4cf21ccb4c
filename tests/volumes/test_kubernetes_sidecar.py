"""The rclone sidecar for remote storage on Kubernetes: whole objects, and the official schema
(kubernetes-validate, strict), with the canary secret nowhere in the pod."""

import json

import kubernetes_validate

from datalabs_volumes.mount.kubernetes import (
    SIDECAR_IMAGE,
    rclone_config_secret,
    rclone_sidecar,
    remote_storage_user_mounts,
    remote_storage_volumes,
)
from tests.servers import CANARY

K8S = "1.30"


def pod():
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "jupyter-alice", "namespace": "datalabs"},
        "spec": {
            "initContainers": [
                rclone_sidecar(SIDECAR_IMAGE, "datalabs-rclone-alice", "datalabs-rc-alice")
            ],
            "containers": [
                {
                    "name": "notebook",
                    "image": "datalabs/planetary-lab:1.0",
                    "volumeMounts": remote_storage_user_mounts(),
                }
            ],
            "volumes": remote_storage_volumes("datalabs-rclone-alice"),
        },
    }


def test_the_pod_with_the_sidecar_is_valid_kubernetes():
    kubernetes_validate.validate(pod(), K8S, strict=True)


def test_mounts_propagate_from_the_sidecar_to_the_user_container_only():
    spec = pod()["spec"]
    sidecar = spec["initContainers"][0]
    assert sidecar["restartPolicy"] == "Always"  # a native sidecar: up before, down after
    assert sidecar["volumeMounts"][0] == {
        "name": "datalabs-remote",
        "mountPath": "/mnt/datalabs",
        "mountPropagation": "Bidirectional",
    }
    assert sidecar["securityContext"] == {"privileged": True}
    user = spec["containers"][0]
    assert user["volumeMounts"] == [
        {
            "name": "datalabs-remote",
            "mountPath": "/home/jovyan/data/remote",
            "mountPropagation": "HostToContainer",
            "readOnly": True,
        },
        {"name": "datalabs-rc", "mountPath": "/run/datalabs-rc"},
    ]
    assert "securityContext" not in user
    # The config Secret is mounted in the sidecar only.
    assert all(m["name"] != "datalabs-rclone-config" for m in user["volumeMounts"])
    assert {
        "name": "datalabs-rclone-config",
        "secret": {
            "secretName": "datalabs-rclone-alice",
            # only the config: the session's Secret also holds what only the user container needs
            "items": [{"key": "rclone.conf", "path": "rclone.conf"}],
            "defaultMode": 0o400,
        },
    } in spec["volumes"]


def test_secrets_are_referenced_never_written_into_the_pod():
    env = pod()["spec"]["initContainers"][0]["env"]
    assert env[1] == {
        "name": "RCLONE_RC_PASS",
        "valueFrom": {"secretKeyRef": {"name": "datalabs-rc-alice", "key": "rc-password"}},
    }
    args = pod()["spec"]["initContainers"][0]["args"]
    assert not any("pass" in a.lower() for a in args)
    secret = rclone_config_secret(
        "datalabs-rclone-alice", "datalabs", f"[dav]\ntype = webdav\npass = {CANARY}\n"
    )
    kubernetes_validate.validate(secret, K8S, strict=True)
    assert CANARY not in json.dumps(pod())


def test_the_sidecar_serves_rclone_through_the_guard_only():
    sidecar = rclone_sidecar(
        "datalabs/rclone-sidecar:0.1",
        "cfg",
        "rc",
        allowed_networks=("10.1.0.0/16",),
        refused_endpoints=("10.1.0.7:8081",),
    )
    assert sidecar["command"] == ["python3", "-m", "datalabs_volumes.mount.rcguard"]
    args = sidecar["args"]
    # The shared socket is the guard's; rclone's own is in the sidecar's private /tmp.
    assert args[args.index("--listen") + 1] == "/run/datalabs-rc/rc.sock"
    assert args[args.index("--runtime-dir") + 1] == "/tmp/datalabs-rclone"
    assert args[args.index("--mount-root") + 1] == "/mnt/datalabs"
    assert args[args.index("--allow-network") + 1] == "10.1.0.0/16"
    assert args[args.index("--refuse-endpoint") + 1] == "10.1.0.7:8081"
    assert "rcd" not in args
