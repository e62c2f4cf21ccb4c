"""Hot attach on Kubernetes: the broker's two calls (``authorize_volume`` then ``hot_attach``, as
``datalabs_spawner.broker`` makes them) on a DatalabsKubeSpawner whose pod ran through the API
emulator, against a real sidecar: the rc guard with its hub-only bind API and a real rclone,
started as the pod starts it, with the token the spawner put in the pod's Secret, binding a
real archive folder read-only (as root) into the shared folder.

On the test cluster's kwok node no container runs, so the sidecar cannot run there; here the
pod's address is 127.0.0.1 (the emulator's kubelet says so) and the sidecar listens there, on a
free port instead of the pod's fixed one (other tests may run on this machine).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import urllib.error
import urllib.request

import pytest

from datalabs_spawner.kube_session import HUB_TOKEN_ITEM, RC_PASSWORD_ITEM
from datalabs_spawner.spawner import DatalabsKubeSpawner
from datalabs_volumes.access import AccessError
from datalabs_volumes.mount.local import is_mount_point
from datalabs_volumes.mount.rclone import RcClient, RcloneError
from tests.helpers import datalab_yaml, free_port, write
from tests.volumes.test_rcguard import Sidecar

pytestmark = [pytest.mark.root, pytest.mark.slow]
pytest_plugins = ["tests.k8s_fixtures"]


@pytest.fixture
def catalogue_dir(tmp_path):
    cat = tmp_path / "catalogue"
    write(cat, "rosetta/datalabs/planetary.yaml", datalab_yaml("Planetary", "default_url: /lab\n"))
    write(
        cat,
        "rosetta/volumes/psa.yaml",
        "id: psa\ntitle: PSA\nsource: {type: local, path: rosetta/psa}\n",
    )
    write(
        cat,
        "rosetta/volumes/secret.yaml",
        "id: secret\ntitle: Secret\nsource: {type: local, path: rosetta/secret}\n"
        "access: {groups: [rosetta-team]}\n",
    )
    write(
        cat,
        "juice/volumes/elsewhere.yaml",
        "id: elsewhere\ntitle: Elsewhere\nsource: {type: pvc, claim: other, subPath: x}\n",
    )
    return cat


def post(url: str, body: dict, token: str = "") -> tuple[int, dict]:
    """A request as the user's own code could make it to the sidecar's bind port."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


async def test_the_broker_has_the_sidecar_bind_only_what_it_authorized(
    k8s_api, catalogue_dir, tmp_path
):
    if os.geteuid() != 0:
        pytest.fail("this test bind-mounts: run it as root (CI does)")
    archive = tmp_path / "archive"
    write(archive, "rosetta/psa/readme.txt", "PSA\n")
    write(archive, "rosetta/secret/plans.txt", "secret\n")
    (tmp_path / "sidecar-own.txt").write_text("the sidecar's own file\n")

    from tests.k8s_fixtures import MockUser

    def spawner_for(user: str, groups=()):
        made = k8s_api.make_spawner(
            DatalabsKubeSpawner,
            user=MockUser(user, groups=groups),
            catalogue_dirs=[str(catalogue_dir)],
            catalogue_refresh_seconds=0,
            archive_claim="datalabs-archive",
        )
        made.user_options = {"profile": "planetary", "volumes": []}
        return made

    alice = spawner_for("alice")
    home = tmp_path / "home"
    shared = home / "data" / "remote_storage"
    alice.data_mount_root = str(home / "data")
    kubelet = k8s_api.start_kubelet(alice.pod_name)
    async with asyncio.timeout(30):
        await alice.start()
        await kubelet
    # The sidecar gets the token through secretKeyRef; here, from the Secret the spawner made.
    async with k8s_api.core_v1() as api:
        secret = await api.read_namespaced_secret(alice.session_secret_name, k8s_api.namespace)
    token = base64.b64decode(secret.data[HUB_TOKEN_ITEM]).decode()
    rc_password = base64.b64decode(secret.data[RC_PASSWORD_ITEM]).decode()
    port = free_port()
    sidecar = Sidecar(
        tmp_path,
        root=shared,
        extra_args=("--archive-root", str(archive), "--hub-listen", f"127.0.0.1:{port}"),
        extra_env={"DATALABS_HUB_BIND_TOKEN": token, "RCLONE_RC_PASS": rc_password},
    )
    sidecar.client = RcClient(sidecar.socket, "datalabs", rc_password)
    alice.hub_bind_port = port
    bind_url = f"http://127.0.0.1:{port}/datalabs/v1/bind"
    try:
        await sidecar.ready()
        # the broker: authorize, then ask the sidecar
        mounted = await alice.hot_attach(alice.authorize_volume("psa"))
        target = shared / "psa"
        assert mounted.target == target and is_mount_point(target)
        assert (target / "readme.txt").read_text() == "PSA\n"
        with pytest.raises(OSError) as err:
            (target / "new.txt").write_text("x")
        assert err.value.errno == 30  # EROFS: read-only
        assert alice.volume_path("psa") == "data/remote_storage/psa"

        # refused by the broker before any request: not hers, or not in the archive claim
        with pytest.raises(AccessError) as refused:
            await alice.hot_attach(alice.authorize_volume("secret"))
        assert refused.value.status == 403
        with pytest.raises(AccessError) as refused:
            await alice.hot_attach(alice.authorize_volume("elsewhere"))
        assert refused.value.status == 409
        assert not (shared / "secret").exists() and not (shared / "elsewhere").exists()

        # the user's own code: the rc socket has no bind call; the bind port wants the token
        with pytest.raises(RcloneError) as denied:
            await sidecar.client.call("datalabs/v1/bind", {"folder": "x", "source": "rosetta"})
        assert denied.value.status == 403
        body = {"folder": "secret", "source": "rosetta/secret"}
        assert post(bind_url, body)[0] == 401
        assert post(bind_url, body, rc_password)[0] == 401
        assert not (shared / "secret").exists()
        # and the token holder gets only archive folders, only into the shared folder
        for bad, status in [
            ({"folder": "own", "source": "../sidecar-own.txt"}, 403),
            ({"folder": "etc", "source": "/../../etc"}, 403),
            ({"folder": "../escape", "source": "rosetta/psa"}, 400),
            ({"folder": "psa", "source": "rosetta/psa"}, 409),
        ]:
            assert post(bind_url, bad, token)[0] == status, bad
        assert sorted(p.name for p in shared.iterdir()) == ["psa"]

        await alice.hot_detach("psa")
        assert not is_mount_point(target)
        with pytest.raises(AccessError) as refused:
            await alice.hot_detach("secret")
        assert refused.value.status == 403  # not "not attached": nothing said about access

        # stopping has the sidecar unbind first: on a node the bind outlives the sidecar in
        # the shared folder, and the kubelet could not remove it (the pod stays Terminating)
        await alice.hot_attach(alice.authorize_volume("psa"))
        assert is_mount_point(target)
        async with asyncio.timeout(30):
            await alice.stop(now=True)
        assert not is_mount_point(target)
    finally:
        if is_mount_point(shared / "psa"):
            subprocess.run(["umount", "-l", str(shared / "psa")], check=False)
        sidecar.stop()
        async with asyncio.timeout(30):
            await alice.stop(now=True)
