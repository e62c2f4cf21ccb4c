"""Pods run for real: the image built by ``make images`` on the kubelet node (containerd, runc).

The namespaces enforce Pod Security "restricted"; pods come from the planetary-lab image built
here from Debian packages and PyPI, imported into containerd without a registry
(``imagePullPolicy: Never``).

- A plain pod: what the container prints is read back through the API server's pod log
  endpoint, which the API server fetches from the kubelet.
- A session: a real JupyterHub (``hub_on_kubelet_config.py``) whose ``DatalabsKubeSpawner``
  has only z2jh's hub rights starts alice's JupyterLab on the node; her server answers through
  configurable-http-proxy and the hub's OAuth and lists the archive volume under ``data/``;
  her session's own Data and Pipelines APIs list the catalogue the spawner mounted from the
  ConfigMap the chart would have made.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from datalabs_volumes.mount.kubernetes import SIDECAR_IMAGE
from tests.cluster import Cluster
from tests.e2e.hubprocess import Hub
from tests.helpers import free_port, write
from tests.k8s.conftest import HUB_RULES, LAB_IMAGE, restricted_namespace
from tests.kubelet_node import (
    KUBELET_NODE,
    kubelet_node_ip,
    node_log,
    on_kubelet_node,
    service_rules,
    service_rules_now,
)

pytestmark = pytest.mark.k8s

#: A container's settings that Pod Security "restricted" admits.
RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


#: A pipeline of the session's catalogue.
COUNT_LINES = """\
cwlVersion: v1.2
class: CommandLineTool
label: Count lines
baseCommand: [wc, -l]
inputs:
  table: {type: File, inputBinding: {position: 1}}
outputs:
  count: {type: stdout}
"""


def lab_pod(name: str, command: list[str], **spec) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": on_kubelet_node(
            {
                "automountServiceAccountToken": False,
                "securityContext": {
                    "runAsNonRoot": True,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": "lab",
                        "image": LAB_IMAGE,
                        "imagePullPolicy": "Never",
                        "command": command,
                        "securityContext": RESTRICTED,
                    }
                ],
                **spec,
            }
        ),
    }


def finished(cluster: Cluster, namespace: str, name: str):
    def check():
        status, pod = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
        assert status == 200, pod
        return pod if pod["status"].get("phase") in ("Succeeded", "Failed") else None

    return check


def wait_finished(cluster: Cluster, namespace: str, name: str) -> dict:
    """The pod once it has ended; on a timeout, the node's logs say why."""
    try:
        return cluster.wait_for(f"pod {name} finished", finished(cluster, namespace, name), 180)
    except TimeoutError as e:
        raise AssertionError(f"{e}\n{node_log(cluster)}") from None


def test_a_pod_of_the_built_image_runs_on_the_real_kubelet(cluster: Cluster, kubelet_node):
    namespace = restricted_namespace(cluster)
    probe = (
        "import os, jupyterlab, datalabs_spawner, jupyterlab_ext; "
        "print('uid', os.getuid(), 'jupyterlab', jupyterlab.__version__, "
        "'pid', os.getpid(), 'host', os.uname().nodename)"
    )
    pod = lab_pod("probe", ["python", "-c", probe], restartPolicy="Never")
    cluster.apply({**pod, "metadata": {"name": "probe", "namespace": namespace}})
    try:
        got = wait_finished(cluster, namespace, "probe")
        assert got["spec"]["nodeName"] == KUBELET_NODE
        assert got["status"]["phase"] == "Succeeded", got["status"]
        [state] = got["status"]["containerStatuses"]
        assert state["state"]["terminated"]["exitCode"] == 0
        # a real container ID from containerd (kwok reports none)
        assert state["containerID"].startswith("containerd://")
        status, log = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods/probe/log")
        assert status == 200, log
        # jupyterlab and the datalabs packages are importable as the image's user (uid 1000),
        # in a PID namespace of its own (the process is not the host's), named after the pod
        words = log.split()
        assert words[:2] == ["uid", "1000"], log
        assert words[2] == "jupyterlab" and words[3].startswith("4."), log
        assert int(words[5]) < 100, log
        assert words[7] == "probe", log
    finally:
        cluster.request("DELETE", f"/api/v1/namespaces/{namespace}")


def test_the_sidecar_image_runs_rclone_and_the_rc_guard_on_the_real_kubelet(
    cluster: Cluster, kubelet_node
):
    # root in its container as in the chart's sessions (FUSE), so not in a "restricted" namespace
    name = f"sidecar-{secrets.token_hex(3)}"
    # fusermount3 (Debian's fuse3): rclone's unmount of a FUSE mount and the cleanup of stale
    # ones (fusermount3 -uz) need it; the mount itself is shown in test_sidecar_on_kubelet.py
    script = "rclone version && python3 -m datalabs_volumes.mount.rcguard --help && fusermount3 -V"
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": on_kubelet_node(
                {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "containers": [
                        {
                            "name": "rclone",
                            "image": SIDECAR_IMAGE,
                            "imagePullPolicy": "Never",
                            "command": ["sh", "-c", script],
                        }
                    ],
                }
            ),
        }
    )
    try:
        got = wait_finished(cluster, "default", name)
        assert got["status"]["phase"] == "Succeeded", got["status"]
        status, log = cluster.request("GET", f"/api/v1/namespaces/default/pods/{name}/log")
        assert status == 200, log
        assert log.startswith("rclone v1.75.2"), log
        assert "--mount-root" in log and "--refuse-endpoint" in log, log
        assert "fusermount3 version: 3." in log, log
    finally:
        cluster.request("DELETE", f"/api/v1/namespaces/default/pods/{name}")


def test_service_rules_send_each_clusterip_to_its_ready_pods_on_this_node():
    """The router's rules, from the API's objects alone (no cluster): ready endpoints on this
    node's /24 only, chosen at random among several, ports by name; headless Services, pods
    elsewhere and pods not ready get nothing."""
    subnet = ipaddress.ip_network("10.88.7.0/24")

    def service(name, cluster_ip, *ports):
        meta = {"name": name, "namespace": "ns"}
        return {"metadata": meta, "spec": {"clusterIP": cluster_ip, "ports": list(ports)}}

    def endpoints(name, ports, *addresses, ready=True):
        return {
            "metadata": {
                "name": f"{name}-x",
                "namespace": "ns",
                "labels": {"kubernetes.io/service-name": name},
            },
            "addressType": "IPv4",
            "ports": ports,
            "endpoints": [{"addresses": [a], "conditions": {"ready": ready}} for a in addresses],
        }

    services = [
        service("web", "10.96.3.4", {"name": "http", "port": 80, "protocol": "TCP"}),
        service("dns", "10.96.0.10", {"name": "dns", "port": 53, "protocol": "UDP"}),
        service("headless", "None", {"name": "http", "port": 80}),
    ]
    slices = [
        endpoints("web", [{"name": "http", "port": 8080}], "10.88.7.5", "10.88.7.2"),
        # not ready, and on another node: no rule
        endpoints("web", [{"name": "http", "port": 8080}], "10.88.7.9", ready=False),
        endpoints("web", [{"name": "http", "port": 8080}], "10.88.8.3"),
        endpoints("dns", [{"name": "dns", "port": 5353, "protocol": "UDP"}], "10.88.7.3"),
        endpoints("headless", [{"name": "http", "port": 80}], "10.88.7.4"),
    ]
    assert service_rules(services, slices, subnet, "SVC", "HAIR") == [
        '-A SVC -d 10.96.0.10/32 -p udp --dport 53 -m comment --comment "ns/dns:dns" '
        "-j DNAT --to-destination 10.88.7.3:5353",
        '-A SVC -d 10.96.3.4/32 -p tcp --dport 80 -m comment --comment "ns/web:http" '
        "-m statistic --mode random --probability 0.50000 -j DNAT --to-destination 10.88.7.2:8080",
        '-A SVC -d 10.96.3.4/32 -p tcp --dport 80 -m comment --comment "ns/web:http" '
        "-j DNAT --to-destination 10.88.7.5:8080",
        "-A HAIR -s 10.88.7.2/32 -d 10.88.7.2/32 -m conntrack --ctstate DNAT -j MASQUERADE",
        "-A HAIR -s 10.88.7.3/32 -d 10.88.7.3/32 -m conntrack --ctstate DNAT -j MASQUERADE",
        "-A HAIR -s 10.88.7.5/32 -d 10.88.7.5/32 -m conntrack --ctstate DNAT -j MASQUERADE",
    ]


#: A server on 8080 answering with its pod's name, which also calls its own Service (hairpin).
ECHO_SERVER = """\
import http.server, os, socket, threading, time, urllib.request


class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("echo " + socket.gethostname()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


threading.Thread(
    target=http.server.ThreadingHTTPServer(("", 8080), Echo).serve_forever, daemon=True
).start()
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(os.environ["ECHO_URL"], timeout=2) as r:
            print("hairpin:", r.read().decode(), flush=True)
            break
    except OSError:
        time.sleep(0.5)
threading.Event().wait()
"""

#: Calls the Service until it answers, then a Service without endpoints (refused at once).
ECHO_CLIENT = """\
import os, time, urllib.request

deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(os.environ["ECHO_URL"], timeout=2) as r:
            print("client:", r.read().decode(), flush=True)
            break
    except OSError:
        time.sleep(0.5)
start = time.monotonic()
try:
    urllib.request.urlopen(os.environ["NOBODY_URL"], timeout=10)
    print("nobody: answered")
except OSError as e:
    print("nobody:", type(getattr(e, "reason", e)).__name__, round(time.monotonic() - start))
"""


def test_a_service_reaches_its_pod_on_the_real_kubelet(cluster: Cluster, kubelet_node):
    """A pod reaches another pod by its Service's ClusterIP (the node's ServiceRouter, in
    place of kube-proxy), a pod reaches itself through its own Service, a Service without
    a ready pod is refused at once, and the rules go when the Service goes."""
    namespace = restricted_namespace(cluster)
    try:
        addresses = {}
        for name, selector in (("echo", {"app": "echo"}), ("nobody", {"app": "nobody"})):
            service = cluster.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {
                        "selector": selector,
                        "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
                    },
                }
            )
            addresses[name] = f"http://{service['spec']['clusterIP']}/"
        env = [
            {"name": "ECHO_URL", "value": addresses["echo"]},
            {"name": "NOBODY_URL", "value": addresses["nobody"]},
        ]
        server = lab_pod("echo", ["python", "-c", ECHO_SERVER])
        server["metadata"] = {"name": "echo", "namespace": namespace, "labels": {"app": "echo"}}
        server["spec"]["containers"][0]["env"] = env
        client = lab_pod("client", ["python", "-c", ECHO_CLIENT], restartPolicy="Never")
        client["metadata"]["namespace"] = namespace
        client["spec"]["containers"][0]["env"] = env
        cluster.apply(server)
        cluster.apply(client)
        got = wait_finished(cluster, namespace, "client")

        def log(pod: str) -> str:
            return cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods/{pod}/log")[1]

        rules = "\n".join(service_rules_now(cluster))
        assert got["status"]["phase"] == "Succeeded", (got["status"], log("client"), rules)
        lines = log("client").splitlines()
        assert "client: echo echo" in lines, (lines, rules)
        # refused by the node (a TCP reset), not left to time out
        assert "nobody: ConnectionRefusedError 0" in lines, lines
        cluster.wait_for(
            "the echo pod's call of its own Service", lambda: "hairpin:" in log("echo")
        )
        assert "hairpin: echo echo" in log("echo").splitlines()
        assert f"{namespace}/echo:http" in rules, rules
        cluster.request("DELETE", f"/api/v1/namespaces/{namespace}/services/echo")
        cluster.wait_for(
            "the echo Service's rules gone",
            lambda: not any(f"{namespace}/echo:" in r for r in service_rules_now(cluster)),
            timeout=30,
        )
    finally:
        cluster.request("DELETE", f"/api/v1/namespaces/{namespace}")


@pytest.fixture
def archive(tmp_path):
    """An archive folder with ``psa/hello.txt``; ``psa`` is writable by anyone on the host, so
    only a read-only mount keeps a session from writing there."""
    root = tmp_path / "archive"
    (root / "psa").mkdir(parents=True)
    (root / "psa" / "hello.txt").write_text("from the archive\n")
    for path in (tmp_path, root):
        path.chmod(0o755)
    (root / "psa").chmod(0o777)
    (root / "psa" / "hello.txt").chmod(0o644)
    return root


def hub_namespace_on(cluster: Cluster, archive: Path) -> str:
    """A "restricted" namespace where the hub's identity has z2jh's hub rights, with the
    archive claims bound to ``archive``."""
    namespace = restricted_namespace(cluster)
    cluster.grant(namespace, "hub", HUB_RULES)
    for claim in ("archive", "datalabs-archive"):
        cluster.bound_volume(namespace, claim, path=str(archive))
    return namespace


def catalogue_configmap(cluster: Cluster, namespace: str, catalogue: Path) -> list[dict]:
    """The catalogue's files as the chart ships them: the ConfigMap ``datalabs-catalogue``
    (keys with "/" as "__"); returns the chart's item list for the hub's config."""
    files = sorted(str(p.relative_to(catalogue)) for p in catalogue.rglob("*") if p.is_file())
    items = [{"key": f.replace("/", "__"), "path": f} for f in files]
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "datalabs-catalogue", "namespace": namespace},
            "data": {i["key"]: (catalogue / i["path"]).read_text() for i in items},
        }
    )
    return items


@contextlib.contextmanager
def hub_on_kubelet(
    cluster: Cluster, namespace: str, catalogue: Path, state: Path, **extra
) -> Iterator[Hub]:
    """A real JupyterHub spawning with ``DatalabsKubeSpawner`` onto the kubelet node;
    ``extra``: more settings for hub_on_kubelet_config.py (``sidecar=True``). The sessions'
    catalogue is ``catalogue`` as a ConfigMap, made here as the chart makes it."""
    node_ip = kubelet_node_ip(cluster)
    placed = on_kubelet_node({})
    port, token = free_port(), secrets.token_hex(16)
    settings = {
        "port": port,
        "hub_port": free_port(),
        "proxy_api_port": free_port(),
        "node_ip": node_ip,
        "state": str(state),
        "token": token,
        "namespace": namespace,
        "catalogue": str(catalogue),
        "catalogue_items": catalogue_configmap(cluster, namespace, catalogue),
        "node_selector": placed["nodeSelector"],
        "tolerations": placed["tolerations"],
        **extra,
    }
    env = {
        **os.environ,
        "DATALABS_TEST_HUB": json.dumps(settings),
        "KUBECONFIG": str(cluster.kubeconfig("datalabs-hub", namespace)),
    }
    env.pop("KUBERNETES_SERVICE_HOST", None)
    state.mkdir()
    log = state / "hub.log"
    config = Path(__file__).with_name("hub_on_kubelet_config.py")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(config)],
            cwd=state,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    hub = Hub(f"http://127.0.0.1:{port}", token, "", state, log)
    try:

        def hub_up():
            assert proc.poll() is None, log.read_text()
            try:
                return hub.api("GET", "").status_code == 200
            except requests.ConnectionError:
                return False

        cluster.wait_for("the hub answering", hub_up, 60)
        yield hub
    finally:
        # the hub stops its servers (cleanup_servers): KubeSpawner deletes alice's pod
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_alices_jupyterlab_on_the_real_kubelet_answers_through_the_hub(
    cluster: Cluster, kubelet_node, tmp_path, archive
):
    namespace = hub_namespace_on(cluster, archive)
    catalogue = tmp_path / "catalogue"
    write(
        catalogue,
        "rosetta/datalabs/planetary.yaml",
        f"title: Planetary\nkind: notebook\nimage: {LAB_IMAGE}\ndefault_url: /lab\n",
    )
    write(
        catalogue,
        "rosetta/volumes/psa.yaml",
        "id: psa\ntitle: PSA\nsource: {type: pvc, claim: archive, subPath: psa}\n",
    )
    write(
        catalogue,
        "rosetta/volumes/secret.yaml",
        "id: secret\ntitle: Secret\nsource: {type: pvc, claim: archive, subPath: secret}\n"
        "access: {groups: [rosetta-team]}\n",
    )
    write(catalogue, "rosetta/pipelines/count.cwl", COUNT_LINES)
    try:
        with hub_on_kubelet(cluster, namespace, catalogue, tmp_path / "hub") as hub:
            r = hub.api("POST", "users/alice")
            assert r.status_code in (201, 409), r.text
            options = {"profile": "planetary", "volumes": ["psa"]}
            containers = set()
            for _round in range(2):  # started, stopped, started again: the volume is back
                r = hub.api("POST", "users/alice/server", json=options)
                assert r.status_code in (201, 202), r.text
                hub.wait_ready("alice", timeout=240)
                status, answer = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods")
                [pod] = answer["items"]
                assert pod["spec"]["nodeName"] == KUBELET_NODE
                [state] = pod["status"]["containerStatuses"]
                assert state["containerID"].startswith("containerd://") and state["ready"], state
                containers.add(state["containerID"])
                # JupyterLab in the pod, through the proxy and the hub's OAuth: data/psa is there
                r = hub.server("alice", "GET", "api/contents/data")
                assert r.status_code == 200, r.text
                assert [item["name"] for item in r.json()["content"]] == ["psa"]
                r = hub.server("alice", "GET", "api/contents/data/psa")
                assert [item["name"] for item in r.json()["content"]] == ["hello.txt"]
                r = hub.server("alice", "GET", "api/contents/data/psa/hello.txt")
                assert r.json()["content"] == "from the archive\n"
                # read-only in the container, although the folder itself is writable by all
                r = hub.server(
                    "alice",
                    "PUT",
                    "api/contents/data/psa/notes.txt",
                    json={"type": "file", "format": "text", "content": "hello"},
                )
                assert r.status_code >= 400, r.text
                assert not (archive / "psa" / "notes.txt").exists()
                # her session's own Data panel lists the catalogue's volume she may read, as
                # attached (the restricted one is not hers, and the broker refuses it), and
                # its Pipelines panel the catalogue's pipeline
                r = hub.server("alice", "GET", "datalabs/api/volumes")
                assert r.status_code == 200, r.text
                listed = {v["id"]: v for v in r.json()}
                assert list(listed) == ["psa"], r.json()
                assert listed["psa"]["mounted"] and listed["psa"]["path"] == "data/psa", listed
                r = hub.server("alice", "POST", "datalabs/api/volumes/secret/attach", json={})
                assert r.status_code == 403, r.text
                r = hub.server("alice", "GET", "datalabs/api/pipelines")
                assert r.status_code == 200, r.text
                assert [p["id"] for p in r.json()["pipelines"]] == ["rosetta/count"], r.json()
                hub.stop_server("alice", timeout=120)
            assert len(containers) == 2
    finally:
        cluster.request("DELETE", f"/api/v1/namespaces/{namespace}")
