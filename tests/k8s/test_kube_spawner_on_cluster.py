"""DatalabsKubeSpawner against a real API server (tests/cluster.py), not the emulator.

The hub's identity has only the rights z2jh's hub Role gives it, the namespace enforces Pod
Security "restricted", and the node is kwok's: pods are scheduled and reported running, no
container runs (so the server is never reached; KubeSpawner's start ends when the pod runs).
"""

from __future__ import annotations

import asyncio

import pytest
from tornado import web

from datalabs_spawner.spawner import DatalabsKubeSpawner
from tests.cluster import NODE_NAME, Cluster
from tests.helpers import datalab_yaml, write

pytestmark = pytest.mark.k8s


@pytest.fixture
def catalogue_dir(tmp_path):
    cat = tmp_path / "catalogue"
    write(cat, "rosetta/datalabs/planetary.yaml", datalab_yaml("Planetary", "default_url: /lab\n"))
    write(
        cat,
        "rosetta/volumes/psa.yaml",
        "id: psa\ntitle: PSA\nsource: {type: pvc, claim: archive, subPath: psa}\n",
    )
    write(
        cat,
        "juice/volumes/spice.yaml",
        "id: spice\ntitle: SPICE\nsource: {type: local, path: juice/spice}\n",
    )
    write(
        cat,
        "rosetta/volumes/secret.yaml",
        "id: secret\ntitle: Secret\nsource: {type: pvc, claim: archive, subPath: secret}\n"
        "access: {groups: [rosetta-team]}\n",
    )
    return cat


def spawner_for(make_kube_spawner, catalogue_dir, user="alice", groups=()):
    return make_kube_spawner(
        DatalabsKubeSpawner,
        user=user,
        groups=groups,
        catalogue_dirs=[str(catalogue_dir)],
        catalogue_refresh_seconds=0,
        archive_claim="datalabs-archive",
        # This namespace enforces "restricted", which the privileged rclone sidecar cannot
        # meet: these pods go without it (test_rclone_sidecar_on_cluster.py has it on).
        rclone_sidecar=False,
    )


def pods(cluster: Cluster, namespace: str) -> list[dict]:
    status, answer = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods")
    assert status == 200, answer
    return answer["items"]


async def test_alice_spawns_with_two_volumes_on_a_real_api_server(
    cluster: Cluster, hub_namespace, make_kube_spawner, catalogue_dir
):
    for claim in ("archive", "datalabs-archive"):
        cluster.bound_volume(hub_namespace, claim)
    spawner = spawner_for(make_kube_spawner, catalogue_dir)
    spawner.user_options = {"profile": "planetary", "volumes": ["psa", "spice"]}
    for round_ in range(2):
        async with asyncio.timeout(90):
            url = await spawner.start()
        assert url.startswith("http://"), url
        [pod] = pods(cluster, hub_namespace)
        # created by KubeSpawner through the real API (Pod Security "restricted" admitted it),
        # scheduled by the real scheduler, reported running by the node
        assert pod["spec"]["nodeName"] == NODE_NAME
        assert pod["status"]["phase"] == "Running"
        spec = pod["spec"]
        assert spec["automountServiceAccountToken"] is False
        [container] = spec["containers"]
        assert not any(
            m["mountPath"].startswith("/var/run/secrets/kubernetes.io")
            for m in container["volumeMounts"]
        ), container["volumeMounts"]
        by_name = {v["name"]: v for v in spec["volumes"]}
        assert by_name["dlv-psa"]["persistentVolumeClaim"] == {
            "claimName": "archive",
            "readOnly": True,
        }
        assert by_name["dlv-spice"]["persistentVolumeClaim"] == {
            "claimName": "datalabs-archive",
            "readOnly": True,
        }
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["dlv-psa"]["readOnly"] is True and mounts["dlv-psa"]["subPath"] == "psa"
        assert mounts["dlv-spice"]["readOnly"] is True
        # a restart brings the same volumes back
        assert sorted(k for k in by_name if k.startswith("dlv-")) == ["dlv-psa", "dlv-spice"]
        async with asyncio.timeout(60):
            await spawner.stop(now=True)
        assert pods(cluster, hub_namespace) == [], round_


async def test_bob_is_refused_the_restricted_volume_before_any_pod_exists(
    cluster: Cluster, hub_namespace, make_kube_spawner, catalogue_dir
):
    spawner = spawner_for(make_kube_spawner, catalogue_dir, user="bob")
    spawner.user_options = {"profile": "planetary", "volumes": ["psa", "secret"]}
    with pytest.raises(web.HTTPError) as err:
        await spawner.start()
    assert err.value.status_code == 403
    assert "Volume 'secret'" in str(err.value)
    assert pods(cluster, hub_namespace) == []


def test_the_namespaces_default_service_account_may_not_touch_pods_jobs_or_secrets(
    cluster: Cluster, hub_namespace
):
    # A user pod gets no token (above); even a token of the namespace's own service account,
    # were one handed out, is refused everything a session could abuse.
    token = cluster.service_account_token(hub_namespace, "default")
    for method, path in [
        ("GET", f"/api/v1/namespaces/{hub_namespace}/pods"),
        ("GET", f"/api/v1/namespaces/{hub_namespace}/secrets"),
        ("POST", f"/apis/batch/v1/namespaces/{hub_namespace}/jobs"),
    ]:
        status, answer = cluster.request(
            method, path, {} if method == "POST" else None, token=token
        )
        assert status == 403, (method, path, answer)
