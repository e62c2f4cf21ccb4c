"""A session for cluster runs (``DatalabsKubeSpawner.run_work_claims``) on the real API server:
the user's own folder of the input claim (read-write) and of the output claim (read-only),
never the claims' other folders; the pod is admitted under Pod Security "restricted"."""

from __future__ import annotations

import asyncio

import pytest

from datalabs_pipelines.executors.kubernetes import user_folder
from datalabs_spawner.spawner import DatalabsKubeSpawner
from tests.cluster import Cluster
from tests.helpers import datalab_yaml, write

pytestmark = pytest.mark.k8s


async def test_a_session_mounts_only_its_users_folders_of_the_work_claims(
    cluster: Cluster, hub_namespace, make_kube_spawner, tmp_path
):
    catalogue = tmp_path / "catalogue"
    write(catalogue, "rosetta/datalabs/planetary.yaml", datalab_yaml("Planetary"))
    for claim in ("calrissian-input-data", "calrissian-output-data"):
        cluster.bound_volume(hub_namespace, claim, "ReadWriteMany", path="/srv/work")
    spawner = make_kube_spawner(
        DatalabsKubeSpawner,
        user="alice",
        catalogue_dirs=[str(catalogue)],
        catalogue_refresh_seconds=0,
        run_work_claims=True,
        # The namespace enforces "restricted", which the privileged rclone sidecar cannot meet.
        rclone_sidecar=False,
    )
    spawner.user_options = {"profile": "planetary", "volumes": []}
    for _ in range(2):  # a restart keeps exactly one of each
        async with asyncio.timeout(90):
            await spawner.start()
        _, pod = cluster.request(
            "GET", f"/api/v1/namespaces/{hub_namespace}/pods/{spawner.pod_name}"
        )
        assert pod["status"]["phase"] == "Running"
        mounts = [
            (m["mountPath"], m.get("subPath"), bool(m.get("readOnly")))
            for m in pod["spec"]["containers"][0]["volumeMounts"]
            if m["mountPath"].startswith("/calrissian/")
        ]
        assert sorted(mounts) == [
            ("/calrissian/input-data", user_folder("alice"), False),
            ("/calrissian/output-data", user_folder("alice"), True),
        ]
        claims = {
            v["persistentVolumeClaim"]["claimName"]: v["persistentVolumeClaim"].get("readOnly")
            for v in pod["spec"]["volumes"]
            if "persistentVolumeClaim" in v
        }
        assert claims == {"calrissian-input-data": None, "calrissian-output-data": True}
        async with asyncio.timeout(60):
            await spawner.stop(now=True)
