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

import contextlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet

from datalabs_volumes import contract
from datalabs_volumes.mount.kubernetes import SIDECAR_IMAGE, SIDECAR_NAME
from datalabs_volumes.mount.local import mount_points
from tests.cluster import Cluster
from tests.e2e.hubprocess import Hub
from tests.helpers import write
from tests.k8s.conftest import HUB_RULES, LAB_IMAGE
from tests.k8s.test_kubelet_node import hub_on_kubelet
from tests.k8s.test_rclone_sidecar_on_cluster import SESSION_LABELS, session_policy
from tests.kubelet_node import KUBELET_NODE, kubelet_node_ip
from tests.servers import CANARY, rclone_serve

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
    cluster.grant(name, "hub", HUB_RULES)
    cluster.bound_volume(name, "datalabs-archive", path=str(archive))
    return [
        f"/api/v1/namespaces/{name}",
        f"/api/v1/persistentvolumes/{name}-datalabs-archive",
        *session_policy(cluster, name),
    ]


@dataclass
class SidecarSession:
    """Alice's running session with the sidecar: the hub, her pod, the archive folder."""

    hub: Hub
    namespace: str
    pod: dict
    archive: Path


@contextlib.contextmanager
def alice_with_the_sidecar(
    cluster: Cluster, tmp_path: Path, **hub_settings
) -> Iterator[SidecarSession]:
    """A real hub (``hub_settings``: more for hub_on_kubelet_config.py) in a fresh session
    namespace, alice's planetary-lab started with the sidecar on the real node (both
    containers checked running), bob a user too. The archive has ``psa`` (anyone's) and
    ``secret`` (rosetta-team's); everything is deleted at the end."""
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
            cluster, namespace, catalogue, tmp_path / "hub", sidecar=True, **hub_settings
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
            yield SidecarSession(hub, namespace, pod, archive)
    finally:
        for path in to_delete:
            cluster.request("DELETE", path)


def test_hot_attach_through_the_sidecar_on_the_real_kubelet(
    cluster: Cluster, kubelet_node, tmp_path
):
    with alice_with_the_sidecar(cluster, tmp_path) as session:
        hub, namespace, archive = session.hub, session.namespace, session.archive
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


def pod_mounts(pod_uid: str, process: str) -> list[list[str]]:
    """The mounts (mountinfo lines, split) that a process of the pod sees: the first process
    in the pod's cgroup whose command line holds ``process`` (``rcd``: the sidecar's rclone;
    ``jupyterhub-singleuser``: her server). Read on the node, since exec is not served here."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cgroups = (proc / "cgroup").read_text()
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if f"pod{pod_uid}" not in cgroups or process.encode() not in b" ".join(argv):
                continue
            return [line.split() for line in (proc / "mountinfo").read_text().splitlines()]
        except OSError:
            continue
    raise AssertionError(f"no process {process!r} in pod {pod_uid}")


def fuse_mount_at(mounts: list[list[str]], point: str) -> list[str] | None:
    """The mountinfo line of the FUSE mount at ``point`` (mount point, field 5), or None."""
    found = [m for m in mounts if m[4] == point and m[m.index("-") + 1].startswith("fuse")]
    return found[-1] if found else None


def test_alices_webdav_connection_mounted_by_the_sidecar_on_the_real_kubelet(
    cluster: Cluster, kubelet_node, tmp_path
):
    """Alice's own WebDAV storage (a real ``rclone serve webdav`` on the node's bridge
    address, the one private address the hub lets connections reach) is created, tested,
    attached and detached through her session's API; the sidecar's rclone mounts it with FUSE
    into the shared folder, where her JupyterLab reads it; bob cannot touch it, and the
    password is nowhere in the pod spec, the logs or the answers."""
    node_ip = kubelet_node_ip(cluster)
    files = tmp_path / "dav"
    write(files, "hello.txt", "hello from webdav\n")
    answers = []
    with (
        rclone_serve("webdav", files, tmp_path / "dav-state", host=node_ip) as dav,
        alice_with_the_sidecar(
            cluster,
            tmp_path,
            credentials_master_key=Fernet.generate_key().decode(),
            connection_allowed_networks=[f"{node_ip}/32"],
        ) as session,
    ):
        hub, pod = session.hub, session.pod
        api = "datalabs/api/"
        shared = next(
            e["value"]
            for e in pod["spec"]["containers"][0]["env"]
            if e["name"] == contract.CONNECTIONS_DIR
        )
        point = f"{shared}/my-dav"
        # the sidecar refuses what the session refuses: the hub's API, although the hub
        # listens on the node address the connections may reach
        refused = json.loads(
            next(
                e["value"]
                for e in pod["spec"]["containers"][0]["env"]
                if e["name"] == contract.REFUSED_ENDPOINTS
            )
        )
        assert [e for e in refused if e.startswith(f"{node_ip}:")], refused
        args = pod["spec"]["initContainers"][0]["args"]
        assert [a for i, a in enumerate(args) if args[i - 1] == "--refuse-endpoint"] == refused

        # made (and tested by the sidecar's rclone) through her session's Data panel API
        connection = {"name": "my-dav", "backend": "webdav", "options": dav.options()}
        r = hub.server("alice", "POST", api + "connections", json=connection)
        answers.append(r.text)
        assert r.status_code == 201, r.text
        assert r.json()["options"]["pass"] == "********", r.text

        r = hub.server("alice", "POST", api + "connections/my-dav/attach", json={})
        answers.append(r.text)
        assert r.status_code == 200, r.text
        attached = r.json()
        assert attached["attached"] is True and attached["read_only"] is True, attached
        assert attached["mount"] == "data/remote_storage/my-dav", attached
        assert attached["health"]["state"] == "ok", attached
        # her JupyterLab reads the remote's file through the mount
        r = hub.server("alice", "GET", "api/contents/data/remote_storage/my-dav/hello.txt")
        assert r.status_code == 200, r.text
        assert r.json()["content"] == "hello from webdav\n"
        # read-only: nothing written to the remote
        r = hub.server(
            "alice",
            "PUT",
            "api/contents/data/remote_storage/my-dav/notes.txt",
            json={"type": "file", "format": "text", "content": "hello"},
        )
        assert r.status_code >= 400, r.text
        assert sorted(p.name for p in files.iterdir()) == ["hello.txt"]
        # a FUSE mount of the sidecar's rclone (root, allow_other), seen in both containers
        uid = pod["metadata"]["uid"]
        in_sidecar = fuse_mount_at(pod_mounts(uid, "rcd"), point)
        assert in_sidecar is not None and "fuse.rclone" in in_sidecar, in_sidecar
        assert "allow_other" in in_sidecar[-1] and "user_id=0" in in_sidecar[-1], in_sidecar
        assert fuse_mount_at(pod_mounts(uid, "jupyterhub-singleuser"), point) is not None
        r = hub.server("alice", "GET", api + "connections")
        answers.append(r.text)
        assert {c["name"]: c["attached"] for c in r.json()} == {"my-dav": True}, r.text

        # bob's own token: not on her server, not on her connections at the broker
        r = hub.api("POST", "users/bob/tokens", json={"expires_in": 600})
        assert r.status_code == 201, r.text
        bob = {"Authorization": f"token {r.json()['token']}"}
        for method, path in (
            ("GET", f"user/alice/{api}connections"),
            ("POST", f"user/alice/{api}connections/my-dav/detach"),
            ("DELETE", f"user/alice/{api}connections/my-dav"),
            ("GET", "hub/datalabs/v1/users/alice/connections"),
            ("POST", "hub/datalabs/v1/users/alice/connections/my-dav/detach"),
        ):
            r = requests.request(method, f"{hub.url}/{path}", headers=bob, timeout=30)
            answers.append(r.text)
            assert r.status_code == 403, (path, r.status_code, r.text)
        r = hub.server("alice", "GET", "api/contents/data/remote_storage/my-dav/hello.txt")
        assert r.json()["content"] == "hello from webdav\n"

        # detached: gone in both containers, and from the folder her JupyterLab lists
        r = hub.server("alice", "POST", api + "connections/my-dav/detach", json={})
        answers.append(r.text)
        assert r.status_code == 200 and r.json()["attached"] is False, r.text
        assert fuse_mount_at(pod_mounts(uid, "rcd"), point) is None
        assert fuse_mount_at(pod_mounts(uid, "jupyterhub-singleuser"), point) is None
        r = hub.server("alice", "GET", "api/contents/data/remote_storage")
        assert r.status_code == 200 and r.json()["content"] == [], r.text

        # the password: not in the pod spec, the containers' logs, the hub's log, an answer
        status, spec = cluster.request(
            "GET", f"/api/v1/namespaces/{session.namespace}/pods/{pod['metadata']['name']}"
        )
        assert status == 200 and CANARY not in json.dumps(spec)
        for container in (SIDECAR_NAME, "notebook"):
            status, log = cluster.request(
                "GET",
                f"/api/v1/namespaces/{session.namespace}/pods/{pod['metadata']['name']}"
                f"/log?container={container}",
            )
            assert status == 200 and log, (container, log)
            assert CANARY not in log, container
        assert not [a for a in answers if CANARY in a]

        # attached again and the server stopped with it: the sidecar unmounts on its way out,
        # so the kubelet can remove the shared folder, the pod goes and no mount is left
        r = hub.server("alice", "POST", api + "connections/my-dav/attach", json={})
        assert r.status_code == 200, r.text
        assert fuse_mount_at(pod_mounts(uid, "rcd"), point) is not None
        hub.stop_server("alice", timeout=120)
        status, answer = cluster.request("GET", f"/api/v1/namespaces/{session.namespace}/pods")
        assert status == 200 and answer["items"] == [], answer
        assert [m for m in mount_points() if uid in str(m)] == []
        assert sorted(p.name for p in files.iterdir()) == ["hello.txt"]
        assert CANARY.encode() not in hub.log.read_bytes()
