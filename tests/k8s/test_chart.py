"""The Helm chart (config/kubernetes/chart): `helm lint`, then `helm install` on the real test
cluster, in a namespace enforcing Pod Security "restricted", with the demo catalogue.

The node is kwok's: the chart's pods are scheduled and reported running, no container runs. So
these tests prove what the API server decides (every object accepted, Pod Security admits each
pod, RBAC gives each identity what it needs and no more), not that the hub answers.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from jupyterhub.app import JupyterHub
from kubespawner import KubeSpawner
from traitlets.config import Config

from datalabs_spawner.spawner import DatalabsKubeSpawner
from tests.cluster import BIN_DIR, NODE_NAME, Cluster
from tests.k8s.conftest import kube_spawner, restricted_namespace
from tests.k8s_fixtures import _forget_kubespawner_clients

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "config/kubernetes/chart"
CATALOGUE = REPO / "config/catalogue"


def helm(cluster: Cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN_DIR / "helm"), *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig("admin")),
            "HOME": str(cluster.root),
        },
    )


def demo_values(path: Path) -> Path:
    """Values with the demo catalogue's datalabs and volumes and a host-folder archive."""
    files = {
        str(f.relative_to(CATALOGUE)): f.read_text()
        for f in sorted(CATALOGUE.rglob("*.yaml"))
        if f.parent.name in ("datalabs", "volumes")
    }
    values = {
        "catalogue": {"files": files},
        "archive": {"volume": {"hostPath": {"path": "/srv/archive"}}},
        "hub": {"image": {"pullPolicy": "Never"}},
        "proxy": {"image": {"pullPolicy": "Never"}},
    }
    path.write_text(json.dumps(values))
    return path


@pytest.fixture(scope="module")
def release(cluster: Cluster, tmp_path_factory):
    namespace = restricted_namespace(cluster)
    # no provisioner here: a volume waits for the hub's database claim
    cluster.bound_volume(namespace, "datalabs-hub-db", "ReadWriteOnce", make_claim=False)
    values = demo_values(tmp_path_factory.mktemp("chart") / "values.json")
    done = helm(cluster, "install", "datalabs", str(CHART), "-n", namespace, "-f", str(values))
    assert done.returncode == 0, done.stderr
    yield namespace
    helm(cluster, "uninstall", "datalabs", "-n", namespace)
    cluster.request("DELETE", f"/api/v1/namespaces/{namespace}")


def test_helm_lint_is_clean(cluster: Cluster):
    done = helm(cluster, "lint", "--strict", str(CHART))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


def test_the_hub_and_proxy_run_under_pod_security_restricted(cluster: Cluster, release):
    def pods_running():
        _, answer = cluster.request("GET", f"/api/v1/namespaces/{release}/pods")
        running = {
            p["metadata"]["labels"].get("app.kubernetes.io/component"): p
            for p in answer["items"]
            if p["status"].get("phase") == "Running"
        }
        return running if {"hub", "proxy"} <= set(running) else None

    running = cluster.wait_for("the hub and the proxy running", pods_running, timeout=90)
    for component, pod in running.items():
        assert pod["spec"]["nodeName"] == NODE_NAME, component
    # the proxy has no identity to present to the API server
    assert running["proxy"]["spec"]["automountServiceAccountToken"] is False
    _, events = cluster.request("GET", f"/api/v1/namespaces/{release}/events")
    refused = [e["message"] for e in events["items"] if "PodSecurity" in e.get("message", "")]
    assert refused == []


def test_every_object_of_the_chart_is_in_the_cluster(cluster: Cluster, release):
    expect = {
        f"/api/v1/namespaces/{release}/configmaps/datalabs-catalogue",
        f"/api/v1/namespaces/{release}/configmaps/datalabs-hub-config",
        f"/api/v1/namespaces/{release}/secrets/datalabs-hub",
        f"/api/v1/namespaces/{release}/persistentvolumeclaims/datalabs-archive",
        f"/api/v1/namespaces/{release}/services/datalabs-hub",
        f"/api/v1/namespaces/{release}/services/datalabs-proxy-public",
        f"/api/v1/namespaces/{release}/services/datalabs-proxy-api",
        f"/apis/networking.k8s.io/v1/namespaces/{release}/networkpolicies/datalabs-singleuser",
        f"/apis/networking.k8s.io/v1/namespaces/{release}/networkpolicies/datalabs-hub",
        f"/apis/networking.k8s.io/v1/namespaces/{release}/networkpolicies/datalabs-proxy",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{release}/roles/datalabs-hub",
    }
    missing = {path for path in expect if cluster.request("GET", path)[0] != 200}
    assert missing == set()
    _, catalogue = cluster.request(
        "GET", f"/api/v1/namespaces/{release}/configmaps/datalabs-catalogue"
    )
    assert "rosetta__volumes__psa-rosetta.yaml" in catalogue["data"]
    _, claim = cluster.request(
        "GET", f"/api/v1/namespaces/{release}/persistentvolumeclaims/datalabs-archive"
    )
    assert claim["spec"]["accessModes"] == ["ReadOnlyMany"]


def test_the_hubs_identity_may_run_sessions_and_nothing_more(cluster: Cluster, release):
    token = cluster.service_account_token(release, "datalabs-hub")
    allowed = [("GET", f"/api/v1/namespaces/{release}/pods")]
    refused = [
        ("GET", f"/api/v1/namespaces/{release}/secrets"),
        ("GET", f"/api/v1/namespaces/{release}/configmaps"),
        ("POST", f"/apis/batch/v1/namespaces/{release}/jobs"),
        ("GET", "/api/v1/namespaces/default/pods"),
        ("GET", "/api/v1/nodes"),
        ("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{release}/rolebindings"),
    ]
    for method, path in allowed:
        assert cluster.request(method, path, token=token)[0] == 200, path
    for method, path in refused:
        status, answer = cluster.request(
            method, path, {} if method == "POST" else None, token=token
        )
        assert status == 403, (method, path, answer)


async def test_the_hubs_identity_spawns_alice_with_the_demo_catalogue(
    cluster: Cluster, release, kube_identity, tmp_path
):
    token = cluster.service_account_token(release, "datalabs-hub")
    await kube_identity(cluster.kubeconfig("chart-hub", release, token=token))
    # the catalogue the chart delivered to the hub, as the hub's pod would see it
    _, catalogue = cluster.request(
        "GET", f"/api/v1/namespaces/{release}/configmaps/datalabs-catalogue"
    )
    for key, text in catalogue["data"].items():
        path = tmp_path / "catalogue" / key.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    spawner = kube_spawner(
        DatalabsKubeSpawner,
        release,
        catalogue_dirs=[str(tmp_path / "catalogue")],
        catalogue_refresh_seconds=0,
        archive_claim="datalabs-archive",
        # this namespace enforces "restricted": no privileged sidecar (the chart's Role with
        # the sidecar on: tests/k8s/test_rclone_sidecar_on_cluster.py)
        rclone_sidecar=False,
    )
    spawner.user_options = {"profile": "planetary-lab", "volumes": ["psa-rosetta", "spice-juice"]}
    try:
        async with asyncio.timeout(90):
            await spawner.start()
        _, pod = cluster.request("GET", f"/api/v1/namespaces/{release}/pods/{spawner.pod_name}")
        assert pod["status"]["phase"] == "Running"
        mounts = {m["name"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}
        assert mounts["dlv-psa-rosetta"]["readOnly"] is True
        assert mounts["dlv-psa-rosetta"]["subPath"] == "psa-rosetta"
        async with asyncio.timeout(60):
            await spawner.stop(now=True)
    finally:
        await KubeSpawner._stop_all_reflectors()
        await _forget_kubespawner_clients()


def test_connections_reach_exactly_the_private_storage_the_operator_allows(
    cluster: Cluster, tmp_path
):
    """``singleuser.connectionAllowedNetworks`` reaches the spawner (which gives it to the
    session and the sidecar's guard) and opens the sessions' NetworkPolicy to exactly those
    networks, although they lie in the denied private ranges: before, an operator could only
    set the spawner's option through ``hub.extraConfig``, and the NetworkPolicy still
    dropped the traffic to the storage it allowed."""
    storage = ["10.20.0.5/32", "192.168.7.0/24"]
    values = tmp_path / "values.json"
    values.write_text(json.dumps({"singleuser": {"connectionAllowedNetworks": storage}}))
    done = helm(cluster, "template", "datalabs", str(CHART), "-f", str(values))
    assert done.returncode == 0, done.stderr
    objects = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(done.stdout) if d}

    # the hub's config, run as JupyterHub runs it (the Secret's files stubbed)
    config = Config()
    code = objects[("ConfigMap", "datalabs-hub-config")]["data"]["jupyterhub_config.py"]
    exec(code, {"get_config": lambda: config, "open": lambda *a, **k: io.StringIO("x")})
    assert config.DatalabsKubeSpawner.connection_allowed_networks == storage

    policy = objects[("NetworkPolicy", "datalabs-singleuser")]
    blocks = [[to.get("ipBlock") for to in rule.get("to", [])] for rule in policy["spec"]["egress"]]
    assert [{"cidr": cidr} for cidr in storage] in blocks, blocks
    # the rest of the private ranges stays denied
    [everything] = [b for b in blocks if b and b[0] and b[0]["cidr"] == "0.0.0.0/0"]
    assert "10.0.0.0/8" in everything[0]["except"]
    # and the API server takes the policy as it is rendered
    namespace = restricted_namespace(cluster)
    try:
        cluster.apply({**policy, "metadata": {**policy["metadata"], "namespace": namespace}})
    finally:
        cluster.request("DELETE", f"/api/v1/namespaces/{namespace}")


def test_the_cookie_secret_is_one_jupyterhub_reads_as_hex(cluster: Cluster, release, tmp_path):
    _, secret = cluster.request("GET", f"/api/v1/namespaces/{release}/secrets/datalabs-hub")
    text = base64.b64decode(secret["data"]["cookie-secret"]).decode()
    # the chart mounts its secrets with mode 0400; JupyterHub refuses a file others may read
    path = tmp_path / "cookie-secret"
    path.write_text(text)
    path.chmod(0o400)
    hub = JupyterHub(cookie_secret_file=str(path))
    logged = io.StringIO()
    handler = logging.StreamHandler(logged)
    hub.log.addHandler(handler)
    try:
        hub.init_secrets()
    finally:
        hub.log.removeHandler(handler)
    assert "Old base64" not in logged.getvalue()
    assert hub.cookie_secret == bytes.fromhex(text)
    assert len(hub.cookie_secret) == 32


def rendered(tmp_path: Path, *args: str) -> list[dict]:
    """The chart's objects as `helm template` renders them with these arguments (no cluster)."""
    done = subprocess.run(
        [str(BIN_DIR / "helm"), "template", "datalabs", str(CHART), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def hub_config(objects: list[dict], environ: dict[str, str]) -> Config:
    """The rendered jupyterhub_config.py run as the hub runs it, in a pod with this
    environment (the secret files read as placeholders)."""
    [config_map] = [
        d
        for d in objects
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "datalabs-hub-config"
    ]
    config = Config()
    saved = dict(os.environ)
    os.environ.update(environ)
    try:
        exec(  # the chart's own rendered config
            config_map["data"]["jupyterhub_config.py"],
            {"get_config": lambda: config, "open": lambda path: io.StringIO(f"secret of {path}")},
        )
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return config


def test_placement_values_reach_the_hub_the_proxy_and_the_sessions(tmp_path: Path):
    """hub/proxy/singleuser.nodeSelector and .tolerations place the hub's and the proxy's pods
    and become the spawner's node_selector and tolerations; the defaults place nothing."""
    pool = {"datalabs.test/kubelet": "real"}
    taint = {"key": "datalabs.test/kubelet", "operator": "Equal", "value": "real"}
    taint["effect"] = "NoSchedule"
    values = tmp_path / "values.json"
    placed = {"nodeSelector": pool, "tolerations": [taint]}
    values.write_text(json.dumps({"hub": placed, "proxy": placed, "singleuser": placed}))

    def placement(objects: list[dict]) -> dict:
        pods = {
            d["metadata"]["name"]: d["spec"]["template"]["spec"]
            for d in objects
            if d["kind"] == "Deployment"
        }
        spawner = hub_config(objects, {}).DatalabsKubeSpawner
        return {
            **{
                name: (spec.get("nodeSelector"), spec.get("tolerations"))
                for name, spec in pods.items()
            },
            "sessions": (spawner.node_selector, spawner.tolerations),
        }

    assert placement(rendered(tmp_path, "-f", str(values))) == {
        "datalabs-hub": (pool, [taint]),
        "datalabs-proxy": (pool, [taint]),
        "sessions": (pool, [taint]),
    }
    assert placement(rendered(tmp_path)) == {
        "datalabs-hub": (None, None),
        "datalabs-proxy": (None, None),
        "sessions": ({}, []),
    }


def test_the_hub_finds_itself_and_the_proxy_without_cluster_dns(tmp_path: Path, monkeypatch):
    """In a pod made after the Services, the hub's own URL (which sessions get) and the proxy's
    API URL are the Services' addresses from Kubernetes' environment variables; without those
    variables, the Services' DNS names."""
    objects = rendered(tmp_path)
    environ = {
        "DATALABS_HUB_SERVICE_HOST": "10.96.0.21",
        "DATALABS_HUB_SERVICE_PORT": "8081",
        "DATALABS_PROXY_API_SERVICE_HOST": "10.96.0.22",
        "DATALABS_PROXY_API_SERVICE_PORT": "8001",
    }
    config = hub_config(objects, environ)
    assert config.JupyterHub.hub_connect_url == "http://10.96.0.21:8081"
    assert config.ConfigurableHTTPProxy.api_url == "http://10.96.0.22:8001"
    # the same names the Services have in the chart
    services = {d["metadata"]["name"] for d in objects if d["kind"] == "Service"}
    assert {"datalabs-hub", "datalabs-proxy-api"} <= services
    for name in environ:
        monkeypatch.delenv(name, raising=False)
    config = hub_config(objects, {})
    assert config.JupyterHub.hub_connect_url == "http://datalabs-hub:8081"
    assert config.ConfigurableHTTPProxy.api_url == "http://datalabs-proxy-api:8001"
