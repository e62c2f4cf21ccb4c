"""The chart's hub and proxy images (config/images/hub, config/images/proxy) at work on the real
kubelet node.

The chart is rendered (``helm template``, the demo catalogue) and its own objects go into a
namespace enforcing Pod Security "restricted": the hub's config and catalogue ConfigMaps, its
Secret, the ServiceAccounts and the hub's Role and RoleBinding. One pod then runs the chart's
hub container and its proxy container side by side, each as the chart's Deployment writes it
(image, arguments, environment, security settings, mounts), so the hub starts with the chart's
rendered ``jupyterhub_config.py``: the ``datalabs`` spawner (DatalabsKubeSpawner) and the
broker's handlers are imported from the image's datalabs wheel, and the hub registers its route
with configurable-http-proxy over the proxy's API. Without cluster DNS or Services on the test
node, the Service names the chart's config uses (``datalabs-hub``, ``datalabs-proxy-api``) are
the pod's own host aliases; the database is an emptyDir instead of the claim.

From the host, through the pod's address: the proxy's API lists the hub's route, with the
chart's token only, and ``/hub/api`` answers through the proxy.
"""

from __future__ import annotations

import base64
import copy
import secrets
from pathlib import Path

import pytest
import requests
import yaml

from tests.cluster import Cluster
from tests.k8s.conftest import restricted_namespace
from tests.k8s.test_chart import CHART, demo_values, helm
from tests.kubelet_node import KUBELET_NODE, _image_builder, node_log, on_kubelet_node

pytestmark = pytest.mark.k8s

HUB_IMAGE = "datalabs/hub:0.1.0"
PROXY_IMAGE = "datalabs/proxy:0.1.0"
#: What the chart makes that the pod uses (its Deployments' pods are replaced by the one below).
USED_KINDS = {"ConfigMap", "Secret", "ServiceAccount", "Role", "RoleBinding"}


@pytest.fixture(scope="module")
def chart_images(cluster: Cluster, kubelet_node) -> None:
    """The hub and proxy images of ``make images``, loaded into the real node's containerd."""
    builder = _image_builder()
    built = builder.built_archives()
    missing = [name for name in (HUB_IMAGE, PROXY_IMAGE) if name not in built]
    assert not missing, f"images {missing} are not built: run `make images`"
    socket = cluster.root / "node" / "containerd.sock"
    builder.import_archives(socket, [built[HUB_IMAGE], built[PROXY_IMAGE]])


def rendered_chart(cluster: Cluster, tmp_path: Path) -> dict[tuple[str, str], dict]:
    values = demo_values(tmp_path / "values.json")
    done = helm(cluster, "template", "datalabs", str(CHART), "-f", str(values))
    assert done.returncode == 0, done.stderr
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(done.stdout) if d}


def hub_and_proxy_pod(objects: dict[tuple[str, str], dict], name: str) -> dict:
    """The chart's hub container and proxy container in one pod on the real node."""
    hub_pod = copy.deepcopy(objects[("Deployment", "datalabs-hub")]["spec"]["template"]["spec"])
    proxy_pod = objects[("Deployment", "datalabs-proxy")]["spec"]["template"]["spec"]
    [hub] = hub_pod["containers"]
    [proxy] = copy.deepcopy(proxy_pod["containers"])
    # the proxy's identity is the pod's in the chart (65534); here it shares the hub's pod
    proxy["securityContext"] = {
        **proxy["securityContext"],
        "runAsUser": proxy_pod["securityContext"]["runAsUser"],
        "runAsGroup": proxy_pod["securityContext"]["runAsGroup"],
    }
    volumes = [v for v in hub_pod["volumes"] if v["name"] != "db"]
    volumes.append({"name": "db", "emptyDir": {}})
    spec = {
        **hub_pod,
        "containers": [hub, proxy],
        "volumes": volumes,
        # what cluster DNS and the Services would resolve: both are in this pod
        "hostAliases": [{"ip": "127.0.0.1", "hostnames": ["datalabs-hub", "datalabs-proxy-api"]}],
        "restartPolicy": "Never",
    }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def test_the_chart_hub_answers_through_the_chart_proxy_on_the_real_kubelet(
    cluster: Cluster, kubelet_node, chart_images, tmp_path
):
    objects = rendered_chart(cluster, tmp_path)
    images = {
        name: obj["spec"]["template"]["spec"]["containers"][0]["image"]
        for (kind, name), obj in objects.items()
        if kind == "Deployment"
    }
    # the images the chart names are the ones make images builds
    assert images == {"datalabs-hub": HUB_IMAGE, "datalabs-proxy": PROXY_IMAGE}, images
    namespace = restricted_namespace(cluster)
    name = f"hub-{secrets.token_hex(3)}"
    try:
        for (kind, _name), obj in objects.items():
            if kind in USED_KINDS:
                cluster.apply({**obj, "metadata": {**obj["metadata"], "namespace": namespace}})
        pod = hub_and_proxy_pod(objects, name)
        pod["spec"] = on_kubelet_node(pod["spec"])
        pod["metadata"]["namespace"] = namespace
        cluster.apply(pod)
        secret = objects[("Secret", "datalabs-hub")]
        token = (
            secret.get("stringData", {}).get("proxy-token")
            or base64.b64decode(secret["data"]["proxy-token"]).decode()
        )

        def pod_state():
            status, got = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
            assert status == 200, got
            assert got["status"].get("phase") not in ("Succeeded", "Failed"), got["status"]
            # neither the hub nor the proxy has ended (restartPolicy Never: it stays ended)
            for state in got["status"].get("containerStatuses") or []:
                assert "terminated" not in state["state"], state
            return got if got["status"].get("podIP") else None

        try:
            got = cluster.wait_for("the hub's pod with an address", pod_state, 120)
        except (TimeoutError, AssertionError) as e:
            raise AssertionError(f"{e}\n{node_log(cluster)}") from None
        assert got["spec"]["nodeName"] == KUBELET_NODE
        ip = got["status"]["podIP"]

        def logs() -> str:
            parts = []
            for container in ("hub", "proxy"):
                _, text = cluster.request(
                    "GET", f"/api/v1/namespaces/{namespace}/pods/{name}/log?container={container}"
                )
                parts.append(f"--- {container}:\n{text}")
            return "\n".join(parts)

        def hub_route():
            pod_state()
            try:
                r = requests.get(
                    f"http://{ip}:8001/api/routes",
                    headers={"Authorization": f"token {token}"},
                    timeout=5,
                )
            except requests.ConnectionError:
                return None
            if r.status_code != 200:
                return None
            # the proxy's own default route has no data; the hub's says {"hub": true}
            route = r.json().get("/", {})
            return r.json() if route.get("hub") else None

        try:
            routes = cluster.wait_for("the hub's route in the proxy", hub_route, 120)
        except (TimeoutError, AssertionError) as e:
            raise AssertionError(f"{e}\n{logs()}") from None
        # the hub registered itself at the address the chart's config names (hub_connect_url)
        assert routes["/"]["target"] == "http://datalabs-hub:8081", routes
        # the proxy's API wants the chart's token
        r = requests.get(f"http://{ip}:8001/api/routes", timeout=5)
        assert r.status_code == 403, r.text
        wrong = {"Authorization": "token " + "x" * len(token)}
        r = requests.get(f"http://{ip}:8001/api/routes", headers=wrong, timeout=5)
        assert r.status_code == 403, r.text

        # the hub's API, from the host through the proxy's public port
        r = requests.get(f"http://{ip}:8000/hub/api", timeout=10)
        assert r.status_code == 200, f"{r.status_code} {r.text}\n{logs()}"
        version = r.json()["version"]
        # it is the hub of this pod (the version it logged on start), and its spawner is
        # Datalabs' Kubernetes spawner, from the image's wheel
        hub_log = logs()
        assert f"Running JupyterHub version {version}" in hub_log, hub_log
        assert "Using Spawner: datalabs_spawner.spawner.DatalabsKubeSpawner" in hub_log, hub_log
        # both run as the chart says, not as root
        status, got = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
        states = {s["name"]: s for s in got["status"]["containerStatuses"]}
        assert set(states) == {"hub", "proxy"}, states
        for state in states.values():
            assert state["containerID"].startswith("containerd://"), state
            assert state["restartCount"] == 0, (state, hub_log)
    finally:
        cluster.request("DELETE", f"/api/v1/namespaces/{namespace}")
