"""Fixtures of the ``k8s`` tests: a real control plane (tests/cluster.py) for the session.

- ``cluster``: the running ``Cluster`` (etcd, kube-apiserver with RBAC and PodSecurity,
  controller-manager, scheduler, a kwok node), started once per test session.
- ``hub_namespace``: a fresh namespace for one test, with the hub's identity
  (``datalabs-hub``) allowed to manage pods in it as z2jh's hub role allows, and
  KubeSpawner/kubernetes_asyncio pointed at the cluster as that identity.
- ``make_kube_spawner(cls, user, groups, **traits)``: a spawner aimed at that namespace.

Every test here is marked ``k8s``. When the binaries are missing the fixture fails with the
command that builds them (`make cluster`): a missing cluster is never a pass or a skip.
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

from tests.cluster import Cluster, running_cluster
from tests.k8s_fixtures import MockUser, _forget_kubespawner_clients

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


@pytest_asyncio.fixture
async def hub_namespace(cluster: Cluster, monkeypatch) -> AsyncIterator[str]:
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
    cluster.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "hub", "namespace": name},
            "rules": HUB_RULES,
        }
    )
    cluster.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "hub", "namespace": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "hub"},
            "subjects": [{"kind": "User", "name": "datalabs-hub"}],
        }
    )
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    saved = Configuration.get_default_copy()
    await _forget_kubespawner_clients()
    kubeconfig = cluster.kubeconfig("datalabs-hub", name)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    try:
        yield name
    finally:
        try:
            await KubeSpawner._stop_all_reflectors()
        finally:
            await _forget_kubespawner_clients()
            Configuration.set_default(saved)
            cluster.request("DELETE", f"/api/v1/namespaces/{name}")


@pytest.fixture
def make_kube_spawner(hub_namespace):
    def make(cls, user: str = "alice", groups=(), **traits):
        u = MockUser(user, groups=groups)
        return cls(
            user=u,
            hub=Hub(),
            api_token="not-a-real-token",
            oauth_client_id=f"jupyterhub-user-{user}",
            namespace=hub_namespace,
            start_timeout=60,
            http_timeout=5,
            **traits,
        )

    return make
