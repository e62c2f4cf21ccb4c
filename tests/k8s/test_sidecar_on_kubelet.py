"""The rclone sidecar and hot attach for real: a session with the sidecar on the kubelet node.

A real JupyterHub (``hub_on_kubelet_config.py`` with ``sidecar``) spawns alice's planetary-lab
with ``DatalabsKubeSpawner`` and the hub's broker, in a namespace labelled as the chart's
session namespaces are (enforce "privileged", warn and audit "restricted") with the chart's
session pod policy in force. Containerd and runc run both containers: the privileged sidecar
(rc guard, rclone, the hub-only bind API) and her JupyterLab. Alice attaches an archive volume
through her own session's API; the broker authorizes it and the sidecar binds the folder
read-only into the shared (Bidirectional) folder, where her JupyterLab lists it and cannot
write. A volume she may not read, and a request with bob's token, are refused, and nothing
appears.
"""

from __future__ import annotations

import secrets

import pytest
import requests

from datalabs_volumes.mount.kubernetes import SIDECAR_IMAGE, SIDECAR_NAME
from tests.cluster import Cluster
from tests.helpers import write
from tests.k8s.conftest import HUB_RULES, LAB_IMAGE
from tests.k8s.test_kubelet_node import hub_on_kubelet
from tests.k8s.test_rclone_sidecar_on_cluster import SESSION_LABELS, session_policy
from tests.kubelet_node import KUBELET_NODE

pytestmark = pytest.mark.k8s


def session_namespace_on(cluster: Cluster, name: str, archive) -> list[str]:
    """The session namespace (chart labels, z2jh's hub Role, the archive claim bound to
    ``archive``, the chart's session pod policy); the paths of what to delete afterwards."""
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": SESSION_LABELS},
        }
    )
    rbac = {"apiVersion": "rbac.authorization.k8s.io/v1"}
    meta = {"name": "hub", "namespace": name}
    cluster.apply({**rbac, "kind": "Role", "metadata": meta, "rules": HUB_RULES})
    cluster.apply(
        {
            **rbac,
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "hub"},
            "subjects": [{"kind": "User", "name": "datalabs-hub"}],
        }
    )
    cluster.bound_volume(name, "datalabs-archive", path=str(archive))
    return [
        f"/api/v1/namespaces/{name}",
        f"/api/v1/persistentvolumes/{name}-datalabs-archive",
        *session_policy(cluster, name),
    ]


def test_hot_attach_through_the_sidecar_on_the_real_kubelet(
    cluster: Cluster, kubelet_node, tmp_path
):
    archive = tmp_path / "archive"
    write(archive, "psa/hello.txt", "from the archive\n")
    write(archive, "secret/plans.txt", "not for alice\n")
    for path in (tmp_path, archive, archive / "secret"):
        path.chmod(0o755)
    # writable by anyone on the host: only the read-only bind keeps the session from writing
    (archive / "psa").chmod(0o777)
    catalogue = tmp_path / "catalogue"
    write(
        catalogue,
        "rosetta/datalabs/planetary.yaml",
        f"title: Planetary\nkind: notebook\nimage: {LAB_IMAGE}\ndefault_url: /lab\n",
    )
    write(
        catalogue,
        "rosetta/volumes/psa.yaml",
        "id: psa\ntitle: PSA\nsource: {type: pvc, claim: datalabs-archive, subPath: psa}\n",
    )
    write(
        catalogue,
        "rosetta/volumes/secret.yaml",
        "id: secret\ntitle: Secret\n"
        "source: {type: pvc, claim: datalabs-archive, subPath: secret}\n"
        "access: {groups: [rosetta-team]}\n",
    )
    namespace = f"datalabs-kubelet-sessions-{secrets.token_hex(3)}"
    to_delete = session_namespace_on(cluster, namespace, archive)
    try:
        with hub_on_kubelet(
            cluster,
            namespace,
            catalogue,
            tmp_path / "hub",
            sidecar=True,
        ) as hub:
            for user in ("alice", "bob"):
                r = hub.api("POST", f"users/{user}")
                assert r.status_code in (201, 409), r.text
            r = hub.api("POST", "users/alice/server", json={"profile": "planetary", "volumes": []})
            assert r.status_code in (201, 202), r.text
            hub.wait_ready("alice", timeout=300)

            # both containers run on the node: the sidecar (a native sidecar) and her server
            status, answer = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods")
            assert status == 200, answer
            [pod] = answer["items"]
            assert pod["spec"]["nodeName"] == KUBELET_NODE
            [sidecar] = pod["status"]["initContainerStatuses"]
            assert sidecar["name"] == SIDECAR_NAME and sidecar["image"].endswith(SIDECAR_IMAGE)
            assert "running" in sidecar["state"] and sidecar["started"], sidecar
            assert sidecar["containerID"].startswith("containerd://"), sidecar
            [lab] = pod["status"]["containerStatuses"]
            assert "running" in lab["state"] and lab["ready"], lab

            # her JupyterLab answers through the proxy and the hub's OAuth
            r = hub.server("alice", "GET", "api/contents/data/remote_storage")
            assert r.status_code == 200, r.text
            assert r.json()["content"] == []

            # hot attach, asked through her own session: broker, then the pod's sidecar
            r = hub.server("alice", "POST", "datalabs/api/volumes/psa/attach", json={})
            assert r.status_code == 200, r.text
            path = r.json()["path"]
            assert path == "data/remote_storage/psa", r.json()
            r = hub.server("alice", "GET", f"api/contents/{path}")
            assert r.status_code == 200, r.text
            assert [item["name"] for item in r.json()["content"]] == ["hello.txt"]
            r = hub.server("alice", "GET", f"api/contents/{path}/hello.txt")
            assert r.json()["content"] == "from the archive\n"
            # read-only in her container, although the archive folder is writable by all
            r = hub.server(
                "alice",
                "PUT",
                f"api/contents/{path}/notes.txt",
                json={"type": "file", "format": "text", "content": "hello"},
            )
            assert r.status_code >= 400, r.text
            assert sorted(p.name for p in (archive / "psa").iterdir()) == ["hello.txt"]

            # a volume she may not read: refused by the broker, nothing bound
            r = hub.server("alice", "POST", "datalabs/api/volumes/secret/attach", json={})
            assert r.status_code == 403, r.text
            # bob's own token on the broker, for alice's session: refused too
            r = hub.api("POST", "users/bob/tokens", json={"expires_in": 600})
            assert r.status_code == 201, r.text
            bob = {"Authorization": f"token {r.json()['token']}"}
            for vid in ("psa", "secret"):
                url = f"{hub.url}/hub/datalabs/v1/users/alice/volumes/{vid}/attach"
                r = requests.post(url, headers=bob, json={}, timeout=30)
                assert r.status_code == 403, r.text
            r = hub.server("alice", "GET", "api/contents/data/remote_storage")
            assert [item["name"] for item in r.json()["content"]] == ["psa"]

            # stopping: the hub has the sidecar unbind first, so the kubelet can remove the
            # shared folder (the bind outlives the sidecar on the node) and the pod goes
            hub.stop_server("alice", timeout=120)
            status, answer = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods")
            assert status == 200 and answer["items"] == [], answer
            assert (archive / "psa" / "hello.txt").read_text() == "from the archive\n"
    finally:
        for path in to_delete:
            cluster.request("DELETE", path)
