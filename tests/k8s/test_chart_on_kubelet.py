"""The chart installed for real: `helm install` with the hub, the proxy and the sessions on the
real kubelet node, and alice's JupyterLab answering through the chart's proxy.

The release is the demo one (tests/k8s/test_chart.py ``demo_values``) in a namespace enforcing
Pod Security "restricted", with these test values:

- placement: ``hub``, ``proxy`` and ``singleuser`` ``nodeSelector``/``tolerations`` put every
  pod of the release on the real node (tests/kubelet_node.py ``on_kubelet_node``);
- the archive: a host folder with the demo archive (config/sample-data/make_sample_data.py)
  behind the chart's ReadOnlyMany PersistentVolume; the hub's database claim bound to a host
  folder of the test (no provisioner here);
- logging in: ``hub.authenticatorClass: shared-password`` with a random password and alice and
  bob allowed, set through ``hub.extraConfig`` (so the password is in the release's ConfigMap:
  fine for a test, not for a deployment);
- ``c.DatalabsKubeSpawner.cpu_guarantee = 0.1`` (``hub.extraConfig``): the demo datalab's CPU
  limit is 2 with no guarantee, so Kubernetes would request 2 CPUs, more than the 2-core test
  node has left beside the hub and the proxy;
- ``singleuser.rcloneSidecar.enabled: false``: the namespace enforces "restricted", which the
  privileged sidecar cannot pass (the sidecar on the real node: test_sidecar_on_kubelet.py).

Nothing is patched after the install: the hub finds the proxy's API and itself (the address
sessions call back) by the Services' environment variables, and the node sends those ClusterIPs
to the pods behind them (tests/kubelet_node.py ``ServiceRouter``, in place of kube-proxy). The
chart's NetworkPolicies are in force (the node runs kube-network-policies).

From the host, through the proxy pod's address (the host reaches pod addresses on the node's
bridge): alice logs in on the hub's login page, starts planetary-lab with the psa-rosetta volume
on the spawn form, and her JupyterLab lists ``data/psa-rosetta`` and reads a file of it; bob's
form with the restricted volume is refused before any pod of his exists.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import secrets
import time
from pathlib import Path

import pytest
import requests

from tests.cluster import Cluster
from tests.k8s.conftest import LAB_IMAGE, restricted_namespace
from tests.k8s.test_chart import CHART, demo_values, helm
from tests.k8s.test_hub_images_on_kubelet import chart_images  # noqa: F401 - a fixture
from tests.kubelet_node import KUBELET_NODE, TAINT, node_log, service_rules_now

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[2]
#: Every pod of the release, and alice's session, on the real node.
PLACED = {
    "nodeSelector": {"kubernetes.io/hostname": KUBELET_NODE},
    "tolerations": [{**TAINT, "operator": "Equal"}],
}


def sample_archive(folder: Path) -> Path:
    """The demo archive, as config/sample-data/make_sample_data.py writes it."""
    spec = importlib.util.spec_from_file_location(
        "make_sample_data", REPO / "config/sample-data/make_sample_data.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.make_sample_data(folder)
    return folder


def chart_values(path: Path, archive: Path, password: str) -> Path:
    values = json.loads(demo_values(path).read_text())
    values["hub"].update(
        PLACED,
        authenticatorClass="shared-password",
        extraConfig="\n".join(
            [
                f"c.SharedPasswordAuthenticator.user_password = {password!r}",
                'c.Authenticator.allowed_users = {"alice", "bob"}',
                # The demo datalab has a CPU limit of 2 and no guarantee, so Kubernetes would
                # request 2 CPUs, all this 2-core node has (the hub and the proxy request some)
                "c.DatalabsKubeSpawner.cpu_guarantee = 0.1",
                # planetary-lab starts in 20-60 s on this shared 2-core machine
                "c.DatalabsKubeSpawner.start_timeout = 300",
                "c.DatalabsKubeSpawner.http_timeout = 240",
            ]
        ),
    )
    values["proxy"].update(PLACED)
    values["singleuser"] = {**PLACED, "rcloneSidecar": {"enabled": False}}
    values["archive"]["volume"] = {"hostPath": {"path": str(archive)}}
    path.write_text(json.dumps(values))
    return path


def pods_of(cluster: Cluster, namespace: str) -> dict[str, dict]:
    status, answer = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods")
    assert status == 200, answer
    return {p["metadata"]["name"]: p for p in answer["items"]}


def diagnosis(cluster: Cluster, namespace: str) -> str:
    """Every pod's state and log (all containers, the previous run's too), the node's
    Service rules and the ends of the kubelet's and containerd's logs."""
    parts = []
    for name, pod in pods_of(cluster, namespace).items():
        parts.append(f"=== pod {name} on {pod['spec'].get('nodeName')}: {pod['status']}")
        for container in pod["spec"]["containers"]:
            for previous in ("false", "true"):
                status, text = cluster.request(
                    "GET",
                    f"/api/v1/namespaces/{namespace}/pods/{name}/log"
                    f"?container={container['name']}&previous={previous}&tailLines=80",
                )
                if status == 200 and text:
                    which = "previous run" if previous == "true" else "log"
                    parts.append(f"--- {container['name']} ({which}):\n{text}")
    _, events = cluster.request("GET", f"/api/v1/namespaces/{namespace}/events")
    for event in (events or {}).get("items", [])[-30:]:
        obj = event["involvedObject"]
        parts.append(f"event {obj['kind']}/{obj['name']}: {event['reason']}: {event['message']}")
    parts.append("=== service rules:\n" + "\n".join(service_rules_now(cluster)))
    parts.append(node_log(cluster))
    return "\n".join(parts)


def poll(what: str, check, timeout: float, every: float = 1.0):
    """``check()``'s first truthy answer, asked every ``every`` seconds (HTTP calls to the hub,
    which logs each: cluster.wait_for's 0.2 s would flood its log)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout} s (last: {last!r})")


def log_in(url: str, user: str, password: str) -> requests.Session:
    """A browser's session of ``user`` on the hub's login page."""
    s = requests.Session()
    s.get(f"{url}/hub/login", timeout=30)
    r = s.post(
        f"{url}/hub/login",
        timeout=60,
        data={"username": user, "password": password, "_xsrf": s.cookies.get("_xsrf")},
    )
    assert r.status_code == 200 and "/hub/login" not in r.url, (r.status_code, r.url)
    return s


def test_alice_spawns_through_the_installed_chart_on_the_real_kubelet(
    cluster: Cluster,
    kubelet_node,
    chart_images,  # noqa: F811 - the fixture imported above
    tmp_path,
):
    namespace = restricted_namespace(cluster)
    archive = sample_archive(tmp_path / "archive")
    db = tmp_path / "hub-db"
    db.mkdir()
    # the hub runs as 1000; a host folder gets no fsGroup
    os.chown(db, 1000, 1000)
    cluster.bound_volume(namespace, "datalabs-hub-db", "ReadWriteOnce", str(db), make_claim=False)
    password = secrets.token_urlsafe(12)
    values = chart_values(tmp_path / "values.json", archive, password)
    started = time.monotonic()
    installed = False
    try:
        done = helm(cluster, "install", "datalabs", str(CHART), "-n", namespace, "-f", str(values))
        assert done.returncode == 0, done.stderr
        installed = True
        try:
            _alice_and_bob(cluster, namespace, archive, password)
        except (AssertionError, TimeoutError, KeyError, requests.RequestException) as e:
            raise AssertionError(f"{e}\n{diagnosis(cluster, namespace)}") from None
        print(f"install to alice's files: {time.monotonic() - started:.0f} s")
    finally:
        cleanup = time.monotonic()
        if installed:
            helm(cluster, "uninstall", "datalabs", "-n", namespace)
        # alice's pod is the hub's, not the release's; every pod goes at once with a second of
        # grace (`helm uninstall --wait`, then the namespace's deletion, took 132 s here)
        cluster.request(
            "DELETE",
            f"/api/v1/namespaces/{namespace}/pods",
            {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 1},
        )
        cluster.request("DELETE", f"/api/v1/namespaces/{namespace}")
        cluster.request("DELETE", f"/api/v1/persistentvolumes/{namespace}-datalabs-hub-db")
        # the node as it was: no pod of this release left on it
        cluster.wait_for(
            f"the pods of {namespace} gone from the node",
            lambda: not pods_of(cluster, namespace),
            timeout=120,
        )
        print(f"uninstall and namespace gone: {time.monotonic() - cleanup:.0f} s")


def _alice_and_bob(cluster: Cluster, namespace: str, archive: Path, password: str) -> None:
    def running() -> dict | None:
        pods = pods_of(cluster, namespace)
        by_component = {
            p["metadata"]["labels"].get("app.kubernetes.io/component"): p for p in pods.values()
        }
        ready = {
            component: pod
            for component, pod in by_component.items()
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in pod["status"].get("conditions") or []
            )
        }
        return ready if {"hub", "proxy"} <= set(ready) else None

    pods = cluster.wait_for("the chart's hub and proxy ready", running, timeout=300)
    for component in ("hub", "proxy"):
        pod = pods[component]
        assert pod["spec"]["nodeName"] == KUBELET_NODE, (component, pod["spec"]["nodeName"])
        [state] = pod["status"]["containerStatuses"]
        assert state["containerID"].startswith("containerd://"), state
    proxy_ip = pods["proxy"]["status"]["podIP"]
    url = f"http://{proxy_ip}:8000"

    # The hub registered itself in the proxy at its Service's ClusterIP (hub_connect_url, from
    # the Service's environment variables), through the proxy API's Service.
    _, hub_service = cluster.request("GET", f"/api/v1/namespaces/{namespace}/services/datalabs-hub")
    _, secret = cluster.request("GET", f"/api/v1/namespaces/{namespace}/secrets/datalabs-hub")
    token = base64.b64decode(secret["data"]["proxy-token"]).decode()

    def routes() -> dict | None:
        r = requests.get(
            f"http://{proxy_ip}:8001/api/routes",
            headers={"Authorization": f"token {token}"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        return r.json() if r.json().get("/", {}).get("hub") else None

    hub_route = poll("the hub's route in the proxy", routes, timeout=120)["/"]
    assert hub_route["target"] == f"http://{hub_service['spec']['clusterIP']}:8081", hub_route

    # The hub's Service leads to it once the node's rules have its ready endpoint: a moment
    # after the pod is Ready (EndpointSlice controller, then the router), as with kube-proxy;
    # until then the proxy answers 503 (the Service address is refused). A user would retry.
    def hub_answers() -> bool:
        return requests.get(f"{url}/hub/api", timeout=10).status_code == 200

    poll("the hub answering through the proxy", hub_answers, timeout=60)

    # bob may not read the restricted volume: refused on the form, and no pod of his exists
    bob = log_in(url, "bob", password)
    form = bob.get(f"{url}/hub/spawn", timeout=60)
    assert 'value="psa-rosetta"' in form.text and "rosetta-restricted" not in form.text
    r = bob.post(
        f"{url}/hub/spawn",
        timeout=60,
        data={
            "_xsrf": bob.cookies.get("_xsrf"),
            "profile": "planetary-lab",
            "volumes": ["psa-rosetta", "rosetta-restricted"],
        },
    )
    assert "rosetta-restricted" in r.text and "may not read it" in r.text, r.text[-2000:]
    assert not [name for name in pods_of(cluster, namespace) if "bob" in name]

    # alice starts planetary-lab with psa-rosetta on the spawn form
    alice = log_in(url, "alice", password)
    form = alice.get(f"{url}/hub/spawn", timeout=60)
    assert 'value="planetary-lab"' in form.text, form.text[-2000:]
    r = alice.post(
        f"{url}/hub/spawn",
        timeout=60,
        data={
            "_xsrf": alice.cookies.get("_xsrf"),
            "profile": "planetary-lab",
            "volumes": ["psa-rosetta"],
        },
    )
    assert r.status_code == 200, (r.status_code, r.text[-2000:])
    # the hub's API takes her cookie with the hub's XSRF token
    xsrf = {"X-XSRFToken": alice.cookies.get("_xsrf")}

    def alice_ready() -> dict | None:
        r = alice.get(f"{url}/hub/api/users/alice", headers=xsrf, timeout=30)
        assert r.status_code == 200, (r.status_code, r.text)
        server = r.json()["servers"].get("")
        assert server or r.json()["pending"], r.json()
        return server if server and server["ready"] else None

    server = poll("alice's server ready", alice_ready, timeout=400)
    [pod] = [p for name, p in pods_of(cluster, namespace).items() if "alice" in name]
    assert pod["spec"]["nodeName"] == KUBELET_NODE
    [lab] = pod["status"]["containerStatuses"]
    assert lab["image"].endswith(LAB_IMAGE) and lab["containerID"].startswith("containerd://")
    assert server["url"] == "/user/alice/", server

    # her JupyterLab, through the chart's proxy and the hub's OAuth (the browser's redirects)
    r = alice.get(f"{url}/user/alice/lab", timeout=120)
    assert r.status_code == 200 and "/user/alice/lab" in r.url, (r.status_code, r.url)
    r = alice.get(f"{url}/user/alice/api/contents/data", timeout=60)
    assert r.status_code == 200, (r.status_code, r.text)
    assert [item["name"] for item in r.json()["content"]] == ["psa-rosetta"], r.json()
    r = alice.get(f"{url}/user/alice/api/contents/data/psa-rosetta", timeout=60)
    assert r.status_code == 200, (r.status_code, r.text)
    listed = {item["name"]: item for item in r.json()["content"]}
    on_host = {p.name for p in (archive / "psa-rosetta").iterdir()}
    assert set(listed) == on_host, (listed, on_host)
    [label] = sorted(n for n, item in listed.items() if item["type"] == "file")[:1]
    r = alice.get(f"{url}/user/alice/api/contents/data/psa-rosetta/{label}", timeout=60)
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.json()["content"] == (archive / "psa-rosetta" / label).read_text(), label
    # the proxy sends her to her own pod
    table = routes()
    assert table.get("/user/alice", {}).get("target") == f"http://{pod['status']['podIP']}:8888", (
        table
    )
