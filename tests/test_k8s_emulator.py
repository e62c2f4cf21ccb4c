"""The Kubernetes API emulator runs the plain KubeSpawner lifecycle and serves lists and watches
the way KubeSpawner's reflectors and kubernetes_asyncio expect."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from kubernetes_asyncio.client import (
    ApiClient,
    ApiException,
    Configuration,
    CoreV1Api,
    VersionApi,
)
from kubernetes_asyncio.config import load_kube_config
from kubernetes_asyncio.watch import Watch

from tests.k8s_emulator import KubeAPIEmulator, running_emulator

if TYPE_CHECKING:
    from collections.abc import Callable

    from jupyterhub.user import User

    from tests.k8s_fixtures import K8sAPI

# Registered as a plugin rather than imported, so that pytest rewrites its asserts.
pytest_plugins = ["tests.k8s_fixtures"]


def pod(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": [{"name": "notebook", "image": "quay.io/jupyter/base-notebook"}]},
    }


async def watch_events(
    list_method: Any, *, timeout_seconds: int, **kwargs: Any
) -> list[tuple[str, str]]:
    """(type, name) of every event of one watch, which only the server's timeout can end."""
    events = []
    async with Watch().stream(list_method, timeout_seconds=timeout_seconds, **kwargs) as stream:
        async for event in stream:
            events.append((event["type"], event["object"].metadata.name))
    return events


# --- KubeSpawner ------------------------------------------------------------------------------


async def test_kubespawner_start_poll_stop(
    k8s_api: K8sAPI, caplog: pytest.LogCaptureFixture
) -> None:
    spawner = k8s_api.make_spawner(user="ada")
    ns, name = k8s_api.namespace, spawner.pod_name
    async with asyncio.timeout(20):
        assert await spawner.poll() == 1  # no pod yet

        kubelet = k8s_api.start_kubelet(name)
        url = await spawner.start()
        assert url == "http://127.0.0.1:8888"
        assert kubelet.done()

        stored = k8s_api.emulator.get_pod(ns, name)
        assert stored is not None
        assert stored["status"]["phase"] == "Running"
        assert stored["metadata"]["labels"]["hub.jupyter.org/username"] == "ada"
        assert stored["spec"]["containers"][0]["name"] == "notebook"
        assert spawner.pod_id == stored["metadata"]["uid"]
        assert await spawner.poll() is None

        await spawner.stop()
        assert k8s_api.emulator.get_pod(ns, name) is None
        assert k8s_api.emulator.list_pods(ns) == []
        assert await spawner.poll() == 1

    # A reflector whose watch fails falls back to relisting and the lifecycle still passes, only
    # slower: its logged errors are the only sign.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_kubespawner_poll_reports_exit_code_and_removes_pod(
    k8s_api: K8sAPI, hub_user: Callable[..., User]
) -> None:
    spawner = k8s_api.make_spawner(user=hub_user("grace", ["astronomers"]))  # a real hub User
    ns, name = k8s_api.namespace, spawner.pod_name
    async with asyncio.timeout(20):
        k8s_api.start_kubelet(name)
        await spawner.start()

        await k8s_api.emulator.play_exit(name, ns, exit_code=3)
        while (status := await spawner.poll()) is None:
            await asyncio.sleep(0.05)  # until the reflector has seen the exit
        assert status == 3
        assert k8s_api.emulator.get_pod(ns, name) is None  # delete_stopped_pods


async def test_kubespawner_event_reflector_gets_only_pod_events(k8s_api: K8sAPI) -> None:
    spawner = k8s_api.make_spawner(user="hedy")
    ns, name = k8s_api.namespace, spawner.pod_name
    async with asyncio.timeout(20), k8s_api.core_v1() as api:
        k8s_api.start_kubelet(name)
        await spawner.start()
        for event_name, kind in (("scheduled", "Pod"), ("node-noise", "Node")):
            event = {
                "metadata": {"name": event_name},
                "involvedObject": {"kind": kind, "name": name, "namespace": ns},
                "type": "Normal",
                "reason": event_name,
                "message": f"{event_name} for {kind}",
                "lastTimestamp": "2025-01-01T00:00:00Z",
            }
            await api.create_namespaced_event(ns, event)
        while not spawner.events:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # time for a wrongly delivered Node event to arrive too
        assert [e["message"] for e in spawner.events] == ["scheduled for Pod"]
        await spawner.stop()


# --- server-side fields -----------------------------------------------------------------------


async def test_create_fills_fields_the_server_owns(k8s_api: K8sAPI) -> None:
    ns = k8s_api.namespace
    async with k8s_api.core_v1() as api:
        body = pod("")
        body["metadata"] = {"generateName": "jupyter-", "labels": {"a": "b"}}
        body["status"] = {"phase": "Running"}
        first = await api.create_namespaced_pod(ns, body)
        second = await api.create_namespaced_pod(ns, pod("second"))

        assert first.metadata.name.startswith("jupyter-") and first.metadata.name != "jupyter-"
        assert first.metadata.namespace == ns
        assert first.metadata.uid and first.metadata.uid != second.metadata.uid
        assert first.metadata.creation_timestamp is not None
        assert first.status.phase == "Pending"  # a client cannot claim a status
        assert int(second.metadata.resource_version) > int(first.metadata.resource_version)

        raw = await api.read_namespaced_pod("second", ns, _preload_content=False)
        assert k8s_api.emulator.get_pod(ns, "second") == json.loads(await raw.read())

        with pytest.raises(ApiException) as conflict:
            await api.create_namespaced_pod(ns, pod("second"))
        assert conflict.value.status == 409
        with pytest.raises(ApiException) as mismatch:
            await api.create_namespaced_pod(
                ns, dict(pod("third"), metadata={"name": "third", "namespace": "elsewhere"})
            )
        assert mismatch.value.status == 400
        with pytest.raises(ApiException) as undeclared:
            await api.list_namespaced_config_map(ns)
        assert undeclared.value.status == 404

        secret = await api.create_namespaced_secret(
            ns, {"metadata": {"name": "rclone"}, "stringData": {"pass": "s3cr3t"}}
        )
        assert base64.b64decode(secret.data["pass"]) == b"s3cr3t"
        assert secret.string_data is None


async def test_deleting_an_owner_collects_its_dependents(k8s_api: K8sAPI) -> None:
    ns = k8s_api.namespace
    async with k8s_api.core_v1() as api:
        owner = await api.create_namespaced_pod(ns, pod("owner"))
        ref = {"apiVersion": "v1", "kind": "Pod", "name": "owner", "uid": owner.metadata.uid}
        service = {"metadata": {"name": "owned", "ownerReferences": [ref]}, "spec": {}}
        await api.create_namespaced_service(ns, service)
        await api.create_namespaced_service(ns, {"metadata": {"name": "free"}, "spec": {}})

        await api.delete_namespaced_pod("owner", ns)

    names = [s["metadata"]["name"] for s in k8s_api.emulator.list_objects("v1/services", ns)]
    assert names == ["free"]


# --- label selectors --------------------------------------------------------------------------

SELECTIONS = {
    "tier=web": {"web-prod", "web-dev"},
    "tier=web,env=prod": {"web-prod"},
    "tier==web, env!=prod": {"web-dev"},
    "tier!=web": {"db"},
    "env": {"web-prod", "web-dev"},
    "!env": {"db"},
    "env in (dev,test)": {"web-dev"},
    "tier notin (db),env": {"web-prod", "web-dev"},
    "": {"web-prod", "web-dev", "db"},
}


async def create_labelled_pods(api: CoreV1Api, ns: str) -> None:
    await api.create_namespaced_pod(ns, pod("web-prod", {"tier": "web", "env": "prod"}))
    await api.create_namespaced_pod(ns, pod("web-dev", {"tier": "web", "env": "dev"}))
    await api.create_namespaced_pod(ns, pod("db", {"tier": "db"}))
    await api.create_namespaced_pod("elsewhere", pod("web-other", {"tier": "web", "env": "prod"}))


@pytest.mark.parametrize("selector", SELECTIONS)
async def test_list_filters_by_label_selector(k8s_api: K8sAPI, selector: str) -> None:
    async with k8s_api.core_v1() as api:
        await create_labelled_pods(api, k8s_api.namespace)
        pods = await api.list_namespaced_pod(k8s_api.namespace, label_selector=selector)
    assert {p.metadata.name for p in pods.items} == SELECTIONS[selector]
    emulator_view = k8s_api.emulator.list_pods(k8s_api.namespace, selector)
    assert {p["metadata"]["name"] for p in emulator_view} == SELECTIONS[selector]


async def test_list_across_namespaces_and_bad_selectors(k8s_api: K8sAPI) -> None:
    async with k8s_api.core_v1() as api:
        await create_labelled_pods(api, k8s_api.namespace)
        pods = await api.list_pod_for_all_namespaces(label_selector="tier=web,env=prod")
        assert {(p.metadata.namespace, p.metadata.name) for p in pods.items} == {
            (k8s_api.namespace, "web-prod"),
            ("elsewhere", "web-other"),
        }
        with pytest.raises(ApiException) as bad:
            await api.list_namespaced_pod(k8s_api.namespace, label_selector="tier=(web")
        assert bad.value.status == 400


# --- watches ----------------------------------------------------------------------------------


async def test_watch_follows_label_selector_and_ends_at_timeout(k8s_api: K8sAPI) -> None:
    ns = k8s_api.namespace
    async with asyncio.timeout(10), k8s_api.core_v1() as api:
        version = (await api.list_namespaced_pod(ns)).metadata.resource_version
        started = time.monotonic()
        watching = asyncio.create_task(
            watch_events(
                api.list_namespaced_pod,
                namespace=ns,
                label_selector="tier=web",
                resource_version=version,
                timeout_seconds=1,
            )
        )
        await api.create_namespaced_pod(ns, pod("web", {"tier": "web"}))
        await api.create_namespaced_pod(ns, pod("db", {"tier": "db"}))
        await api.patch_namespaced_pod("db", ns, {"metadata": {"labels": {"tier": "web"}}})
        await api.patch_namespaced_pod("web", ns, {"metadata": {"labels": {"tier": "db"}}})
        await api.delete_namespaced_pod("db", ns)
        await api.delete_namespaced_pod("web", ns)
        events = await watching
        elapsed = time.monotonic() - started
    assert events == [
        ("ADDED", "web"),
        ("ADDED", "db"),  # patched into the selection
        ("DELETED", "web"),  # patched out of it
        ("DELETED", "db"),
    ]
    assert 0.9 <= elapsed < 3


async def test_watch_without_events_ends_at_timeout(k8s_api: K8sAPI) -> None:
    async with asyncio.timeout(10), k8s_api.core_v1() as api:
        started = time.monotonic()
        events = await watch_events(
            api.list_namespaced_pod, namespace=k8s_api.namespace, timeout_seconds=1
        )
        elapsed = time.monotonic() - started
    assert events == []
    assert 0.9 <= elapsed < 3


async def test_watch_true_spelled_like_kubernetes_asyncio_is_a_watch(k8s_api: K8sAPI) -> None:
    async with k8s_api.core_v1() as api:
        await api.create_namespaced_pod(k8s_api.namespace, pod("p"))
    path = f"/api/v1/namespaces/{k8s_api.namespace}/pods"
    params = {"watch": "True", "timeoutSeconds": "1"}
    async with asyncio.timeout(10), aiohttp.ClientSession(k8s_api.url) as http:
        async with http.get(path, params=params) as resp:
            lines = (await resp.text()).splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["ADDED"]  # an event, not a PodList


async def test_watch_resumes_from_a_resource_version(k8s_api: K8sAPI) -> None:
    ns = k8s_api.namespace
    async with asyncio.timeout(10), k8s_api.core_v1() as api:
        await api.create_namespaced_pod(ns, pod("old"))
        version = (await api.list_namespaced_pod(ns)).metadata.resource_version
        await api.create_namespaced_pod(ns, pod("new"))
        await api.delete_namespaced_pod("old", ns)

        resumed = await watch_events(
            api.list_namespaced_pod, namespace=ns, resource_version=version, timeout_seconds=1
        )
        fresh = await watch_events(api.list_namespaced_pod, namespace=ns, timeout_seconds=1)
    assert resumed == [("ADDED", "new"), ("DELETED", "old")]
    assert fresh == [("ADDED", "new")]


async def test_watch_from_a_forgotten_version_is_expired() -> None:
    async with asyncio.timeout(10), running_emulator(KubeAPIEmulator(journal_size=2)) as (_, url):
        async with ApiClient(Configuration(host=url)) as api_client:
            api = CoreV1Api(api_client)
            for name in ("a", "b", "c", "d"):
                await api.create_namespaced_pod("ns", pod(name))
            with pytest.raises(ApiException) as expired:
                await watch_events(
                    api.list_namespaced_pod, namespace="ns", resource_version="1", timeout_seconds=1
                )
    assert expired.value.status == 410


# --- the fixture itself -----------------------------------------------------------------------


async def test_kubeconfig_points_at_the_emulator(k8s_api: K8sAPI) -> None:
    assert os.environ["KUBECONFIG"] == str(k8s_api.kubeconfig)
    configuration = Configuration()
    await load_kube_config(
        client_configuration=configuration
    )  # the default location, as KubeSpawner
    assert configuration.host == k8s_api.url
    async with ApiClient(configuration) as api_client:
        version = await VersionApi(api_client).get_code()
    assert version.major == "1"


async def test_stopping_the_server_ends_open_watches() -> None:
    async with asyncio.timeout(10):
        async with running_emulator() as (_, url):
            http = aiohttp.ClientSession(url)
            resp = await http.get("/api/v1/namespaces/ns/pods", params={"watch": "true"})
            started = time.monotonic()
        stopped_in = time.monotonic() - started
        assert await resp.read() == b""  # the stream ended cleanly, with no event
        resp.release()
        await http.close()
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession(url) as again:
                await again.get("/version")
    assert stopped_in < 3
