"""Fixtures of the ``k8s`` tests: a real control plane (tests/cluster.py) for the session.

- ``cluster``: the running ``Cluster`` (etcd, kube-apiserver with RBAC and PodSecurity,
  controller-manager, scheduler, a kwok node), started once per test session.
- ``kubelet_node``: a real node (tests/kubelet_node.py: kubelet, containerd, runc) added to
  that cluster for the session, with the planetary-lab, rclone sidecar and Calrissian images
  of ``make images`` loaded; its name. Started only by the tests that ask for it.
- ``hub_namespace``: a fresh namespace for one test, with the hub's identity
  (``datalabs-hub``) allowed to manage pods in it as z2jh's hub role allows, and
  KubeSpawner/kubernetes_asyncio pointed at the cluster as that identity.
- ``make_kube_spawner(cls, user, groups, **traits)``: a spawner aimed at that namespace.
- ``kube_identity``: ``await use(kubeconfig)`` points KubeSpawner at another identity.
- ``restricted_namespace(cluster)`` and ``kube_spawner(cls, namespace, ...)``: the same, as
  plain functions, for tests that make their own namespace (the chart's).

Every test here is marked ``k8s``. When the binaries are missing the fixture fails with the
command that builds them (`make cluster`, `make images`): a missing cluster is never a pass or a
skip.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from jupyterhub.objects import Hub
from kubernetes_asyncio.client import Configuration
from kubernetes_asyncio.config import kube_config
from kubespawner import KubeSpawner

from datalabs_pipelines.executors.kubernetes import CALRISSIAN_IMAGE
from datalabs_volumes.mount.kubernetes import SIDECAR_IMAGE
from tests.cluster import Cluster, running_cluster
from tests.k8s_fixtures import MockUser, _forget_kubespawner_clients
from tests.kubelet_node import running_kubelet_node

_namespaces = itertools.count(1)

#: What z2jh's hub Role grants the hub in the user namespace (pods, PVCs, secrets, services,
#: events), the rights KubeSpawner needs and no more.
HUB_RULES = [
    {
        "apiGroups": [""],
        "resources": ["pods", "persistentvolumeclaims", "secrets", "services"],
        "verbs": ["get", "watch", "list", "create", "delete"],
    },
    {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "watch", "list"]},
]


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.k8s)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Cluster:
    with running_cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


#: The image the real node runs in these tests (config/images/planetary-lab/image.toml).
LAB_IMAGE = "datalabs/planetary-lab:1.0"


@pytest.fixture(scope="session")
def kubelet_node(cluster) -> str:
    with running_kubelet_node(
        cluster,
        images=(LAB_IMAGE, SIDECAR_IMAGE, CALRISSIAN_IMAGE),
        network_policies=True,
    ) as node:
        yield node


def restricted_namespace(cluster: Cluster) -> str:
    """A fresh namespace that enforces Pod Security "restricted"."""
    name = f"datalabs-test-{next(_namespaces)}"
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
            },
        }
    )
    return name


@pytest.fixture
def kube_identity(monkeypatch):
    """``use(kubeconfig)``: KubeSpawner and kubernetes_asyncio act with that kubeconfig's
    identity for the rest of the test (their process-wide caches reset on the way out)."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    saved = Configuration.get_default_copy()

    async def use(kubeconfig: Path) -> None:
        await _forget_kubespawner_clients()
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        # kubernetes_asyncio reads KUBECONFIG once, at import
        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))

    yield use
    # the reflectors and clients belong to this test's event loop, which is closed by now;
    # the next test's fixture forgets them before it starts
    Configuration.set_default(saved)


@pytest_asyncio.fixture
async def hub_namespace(cluster: Cluster, kube_identity) -> AsyncIterator[str]:
    name = restricted_namespace(cluster)
    cluster.grant(name, "hub", HUB_RULES)
    await kube_identity(cluster.kubeconfig("datalabs-hub", name))
    try:
        yield name
    finally:
        try:
            await KubeSpawner._stop_all_reflectors()
        finally:
            await _forget_kubespawner_clients()
            cluster.request("DELETE", f"/api/v1/namespaces/{name}")


def kube_spawner(cls, namespace: str, user: str = "alice", groups=(), **traits):
    """A spawner of ``cls`` for ``user`` aimed at ``namespace`` of the test cluster."""
    return cls(
        user=MockUser(user, groups=groups),
        hub=Hub(),
        api_token="not-a-real-token",
        oauth_client_id=f"jupyterhub-user-{user}",
        namespace=namespace,
        start_timeout=60,
        http_timeout=5,
        **traits,
    )


@pytest.fixture
def make_kube_spawner(hub_namespace):
    def make(cls, user: str = "alice", groups=(), **traits):
        return kube_spawner(cls, hub_namespace, user, groups, **traits)

    return make
