"""Pytest fixtures that point KubeSpawner (and kubernetes_asyncio) at the API emulator.

Fixtures
- ``k8s_api``: a running ``KubeAPIEmulator`` on 127.0.0.1, a kubeconfig for it in ``tmp_path``
  exported as ``KUBECONFIG``; yields a ``K8sAPI`` (``.url``, ``.emulator``, ``.namespace``,
  ``.play_kubelet()``, ``.start_kubelet()``, ``.make_spawner()``, ``.core_v1()``).

Enable it with ``pytest_plugins = ["tests.k8s_fixtures"]`` in a test module or in
``tests/conftest.py`` (importing the fixture by name trips ruff's F811 in every test using it).

KubeSpawner keeps process-wide state that outlives one test and one event loop, so the fixture
resets all of it on the way in and out: the class-level reflectors, the API clients cached per
loop (``kubespawner.clients._client_cache``), the ``lru_cache`` of ``load_config`` (else a later
test on a recycled port would silently reuse an older emulator's configuration),
kubernetes_asyncio's default ``Configuration`` and its kubeconfig location, which it reads from
``KUBECONFIG`` only once, at import.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from jupyterhub.objects import Hub, Server
from kubernetes_asyncio.client import ApiClient, Configuration, CoreV1Api
from kubernetes_asyncio.config import kube_config
from kubespawner import KubeSpawner
from kubespawner import clients as kubespawner_clients

from tests.k8s_emulator import KubeAPIEmulator, Obj, running_emulator

SpawnerT = TypeVar("SpawnerT", bound=KubeSpawner)

NAMESPACE = "datalabs"


class MockUser:
    """The part of ``jupyterhub.user.User`` a spawner reads, for spawners made outside a hub.

    ``groups`` holds objects with a ``name``, like the ORM groups of a real user.
    """

    def __init__(self, name: str, id: int = 1, groups: Iterable[str] = ()) -> None:
        self.name = name
        self.escaped_name = name
        self.id = id
        self.groups = [SimpleNamespace(name=group) for group in groups]
        self.server = Server(base_url=f"/user/{name}/")

    @property
    def url(self) -> str:
        return self.server.base_url


def write_kubeconfig(path: Path, url: str, namespace: str) -> Path:
    """Write a kubeconfig whose only context talks to ``url`` without credentials."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": url}}],
        "users": [{"name": "emulator", "user": {}}],
        "contexts": [
            {
                "name": "emulator",
                "context": {"cluster": "emulator", "user": "emulator", "namespace": namespace},
            }
        ],
        "current-context": "emulator",
    }
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML, which kubeconfig loaders read
    return path


@dataclass
class K8sAPI:
    """What the ``k8s_api`` fixture yields."""

    url: str
    emulator: KubeAPIEmulator
    kubeconfig: Path
    namespace: str = NAMESPACE
    _kubelets: list[asyncio.Task[Obj]] = field(default_factory=list)

    def spawner_traits(self) -> dict[str, Any]:
        """KubeSpawner traits that aim it at the emulator and keep every wait short.

        They must be given to the constructor: KubeSpawner configures its API client in
        ``__init__``, so setting ``k8s_api_host`` afterwards has no effect.
        """
        return {
            "k8s_api_host": self.url,
            "k8s_api_verify_ssl": False,
            "namespace": self.namespace,
            "start_timeout": 10,
            "http_timeout": 5,
            "k8s_api_request_timeout": 3,
            "k8s_api_request_retry_timeout": 10,
        }

    def make_spawner(
        self, cls: type[SpawnerT] = KubeSpawner, user: str | Any = "ada", **traits: Any
    ) -> SpawnerT:
        """A spawner of ``cls`` aimed at the emulator; ``traits`` override the defaults.

        ``user`` is a name (for a ``MockUser``) or a user object, e.g. from ``hub_user``.
        """
        user = MockUser(user) if isinstance(user, str) else user
        kwargs: dict[str, Any] = {
            "user": user,
            "hub": Hub(),
            "api_token": "not-a-real-token",
            "oauth_client_id": f"jupyterhub-user-{user.name}",
            **self.spawner_traits(),
            **traits,
        }
        return cls(**kwargs)

    async def play_kubelet(
        self, name: str, namespace: str | None = None, *, pod_ip: str = "127.0.0.1"
    ) -> Obj:
        """Wait for the pod, then make it Running with ``pod_ip`` (see the emulator's method)."""
        return await self.emulator.play_kubelet(name, namespace or self.namespace, pod_ip=pod_ip)

    def start_kubelet(
        self, name: str, namespace: str | None = None, *, pod_ip: str = "127.0.0.1"
    ) -> asyncio.Task[Obj]:
        """Play the kubelet in the background, for a ``spawner.start()`` that waits for it.

        The fixture cancels the task at teardown if it is still waiting.
        """
        task = asyncio.create_task(self.play_kubelet(name, namespace, pod_ip=pod_ip))
        self._kubelets.append(task)
        return task

    @contextlib.asynccontextmanager
    async def core_v1(self) -> AsyncIterator[CoreV1Api]:
        """A kubernetes_asyncio ``CoreV1Api`` of its own (not KubeSpawner's shared one)."""
        configuration = Configuration(host=self.url)
        async with ApiClient(configuration) as api_client:
            yield CoreV1Api(api_client)

    async def _cancel_kubelets(self) -> None:
        for task in self._kubelets:
            task.cancel()
        await asyncio.gather(*self._kubelets, return_exceptions=True)


async def _forget_kubespawner_clients() -> None:
    for client in list(kubespawner_clients._client_cache.values()):
        await client.api_client.close()
    kubespawner_clients._client_cache.clear()
    kubespawner_clients.load_config.cache_clear()


@pytest_asyncio.fixture
async def k8s_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[K8sAPI]:
    """A running Kubernetes API emulator that KubeSpawner and kubernetes_asyncio will use."""
    # KubeSpawner tries the in-cluster configuration first; it must not find one.
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    saved_configuration = Configuration.get_default_copy()
    await _forget_kubespawner_clients()
    errors: list[Exception] = []
    async with running_emulator() as (emulator, url):
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", url, NAMESPACE)
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        # kubernetes_asyncio reads KUBECONFIG once, when it is imported: long before this test.
        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
        api = K8sAPI(url=url, emulator=emulator, kubeconfig=kubeconfig)
        try:
            yield api
        finally:
            try:
                await api._cancel_kubelets()
                await KubeSpawner._stop_all_reflectors()
            finally:
                await _forget_kubespawner_clients()
                Configuration.set_default(saved_configuration)
                errors = emulator.unexpected_errors()
    if errors:
        pytest.fail(f"the Kubernetes API emulator failed to serve requests: {errors!r}")
