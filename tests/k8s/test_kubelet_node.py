"""Pods run for real: the image built by ``make images`` on the kubelet node (containerd, runc).

The namespace enforces Pod Security "restricted"; the pod comes from the planetary-lab image
built here from Debian packages and PyPI, imported into containerd without a registry
(``imagePullPolicy: Never``). What the container prints is read back through the API server's
pod log endpoint, which the API server fetches from the kubelet.
"""

from __future__ import annotations

import pytest

from tests.cluster import Cluster
from tests.k8s.conftest import LAB_IMAGE, restricted_namespace
from tests.kubelet_node import KUBELET_NODE, on_kubelet_node

pytestmark = pytest.mark.k8s

#: A container's settings that Pod Security "restricted" admits.
RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


def lab_pod(name: str, command: list[str], **spec) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": on_kubelet_node(
            {
                "automountServiceAccountToken": False,
                "securityContext": {
                    "runAsNonRoot": True,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": "lab",
                        "image": LAB_IMAGE,
                        "imagePullPolicy": "Never",
                        "command": command,
                        "securityContext": RESTRICTED,
                    }
                ],
                **spec,
            }
        ),
    }


def finished(cluster: Cluster, namespace: str, name: str):
    def check():
        status, pod = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
        assert status == 200, pod
        return pod if pod["status"].get("phase") in ("Succeeded", "Failed") else None

    return check


def test_a_pod_of_the_built_image_runs_on_the_real_kubelet(cluster: Cluster, kubelet_node):
    namespace = restricted_namespace(cluster)
    probe = (
        "import os, jupyterlab, datalabs_spawner, jupyterlab_ext; "
        "print('uid', os.getuid(), 'jupyterlab', jupyterlab.__version__, "
        "'pid', os.getpid(), 'host', os.uname().nodename)"
    )
    pod = lab_pod("probe", ["python", "-c", probe], restartPolicy="Never")
    cluster.apply({**pod, "metadata": {"name": "probe", "namespace": namespace}})
    try:
        got = cluster.wait_for("the probe pod finished", finished(cluster, namespace, "probe"), 180)
        assert got["spec"]["nodeName"] == KUBELET_NODE
        assert got["status"]["phase"] == "Succeeded", got["status"]
        [state] = got["status"]["containerStatuses"]
        assert state["state"]["terminated"]["exitCode"] == 0
        # a real container ID from containerd (kwok reports none)
        assert state["containerID"].startswith("containerd://")
        status, log = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods/probe/log")
        assert status == 200, log
        # jupyterlab and the datalabs packages are importable as the image's user (uid 1000),
        # in a PID namespace of its own (the process is not the host's), named after the pod
        words = log.split()
        assert words[:2] == ["uid", "1000"], log
        assert words[2] == "jupyterlab" and words[3].startswith("4."), log
        assert int(words[5]) < 100, log
        assert words[7] == "probe", log
    finally:
        cluster.request("DELETE", f"/api/v1/namespaces/{namespace}")
