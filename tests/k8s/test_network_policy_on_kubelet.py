"""The chart's NetworkPolicies enforced on the real kubelet node (kube-network-policies).

The policies are rendered from the chart (``helm template``) and created in a namespace; small
pods of the planetary-lab image stand in for the chart's parts, each wearing the labels the
chart or KubeSpawner gives the real one:

- alice's session: the session label, listening on the session port (8888);
- bob's session: the session label, trying to connect to alice's port, to the node (the kubelet's
  port on the node's IP) and to a listener in the ranges sessions are denied on the API server's
  port, 6443 (a pod of another namespace: in this test cluster the API server itself listens on
  the host's 127.0.0.1, which no pod reaches with or without a policy);
- the hub: the chart's hub labels, trying the same connections; the chart allows it alice's
  port and the API server's, not the kubelet.

The same pods in a namespace without the policies connect both ways: the refusals come from the
policies, not from a network that does not work.

A pod tries its connections over and over (a fresh TCP connection each time, two seconds to
answer) and prints each outcome with the time it started; only the tries made after the agent
has judged a packet of each probing pod knowing the pod are judged (before that, a new pod's
traffic may be judged as if from nowhere, as on any cluster while the agent catches up).
"""

from __future__ import annotations

import json
import time

import pytest
import yaml
from kubespawner import KubeSpawner

from tests.cluster import Cluster
from tests.k8s.conftest import restricted_namespace
from tests.k8s.test_chart import CHART, demo_values, helm
from tests.k8s.test_kubelet_node import lab_pod
from tests.kubelet_node import agent_log, node_log

pytestmark = pytest.mark.k8s

SESSION_PORT = 8888
API_PORT = 6443

#: Tries TCP connections to ``name=ip:port`` targets, round after round, printing each outcome.
PROBE = """
import json, socket, sys, time
targets = [(a.split("=")[0], a.split("=")[1].rsplit(":", 1)) for a in sys.argv[1:]]
while True:
    for name, (ip, port) in targets:
        started = time.time()
        try:
            socket.create_connection((ip, int(port)), timeout=2).close()
            result = "open"
        except socket.timeout:
            result = "timeout"
        except OSError as e:
            result = e.strerror or str(e)
        print(json.dumps({"t": started, "target": name, "result": result}), flush=True)
    time.sleep(0.5)
"""


def rendered_chart(cluster: Cluster, namespace: str, tmp_path) -> list[dict]:
    values = demo_values(tmp_path / "values.json")
    done = helm(cluster, "template", "datalabs", str(CHART), "-n", namespace, "-f", str(values))
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def component_labels(objects: list[dict], component: str) -> dict[str, str]:
    """The pod labels of the chart's Deployment of ``component`` (hub, proxy)."""
    [deployment] = [
        o
        for o in objects
        if o["kind"] == "Deployment"
        and o["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
        == component
    ]
    return deployment["spec"]["template"]["metadata"]["labels"]


def session_labels() -> dict[str, str]:
    """The label KubeSpawner (and so DatalabsKubeSpawner) gives every user pod."""
    return {"component": KubeSpawner.component_label.default_value}


def start_pod(
    cluster: Cluster, namespace: str, name: str, labels: dict, command: list[str]
) -> None:
    pod = lab_pod(name, command)
    pod["metadata"] = {"name": name, "namespace": namespace, "labels": labels}
    cluster.apply(pod)


def running_ip(cluster: Cluster, namespace: str, name: str) -> str:
    def check():
        status, pod = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
        assert status == 200, pod
        phase = pod["status"].get("phase")
        assert phase in ("Pending", "Running"), pod["status"]
        ready = pod["status"].get("containerStatuses", [{}])[0].get("ready")
        return pod["status"].get("podIP") if phase == "Running" and ready else None

    try:
        return cluster.wait_for(f"pod {namespace}/{name} running", check, 180)
    except TimeoutError as e:
        raise AssertionError(f"{e}\n{node_log(cluster)}") from None


def listener(port: int) -> list[str]:
    return ["python3", "-m", "http.server", "--bind", "0.0.0.0", str(port)]


def prober(targets: dict[str, str]) -> list[str]:
    return ["python3", "-c", PROBE, *(f"{name}={addr}" for name, addr in targets.items())]


def known_to_the_agent(cluster: Cluster, pods: list[tuple[str, str]]) -> bool:
    """Whether the agent has judged a packet of each pod knowing the pod by its IP (from then
    on its decisions about that pod are the policies')."""
    log = agent_log(cluster)
    return all(f'srcPod="{namespace}/{name}"' in log for namespace, name in pods)


def outcomes(cluster: Cluster, namespace: str, name: str, since: float) -> dict[str, list[str]]:
    """What the prober ``name`` saw per target, in the tries started after ``since``."""
    status, log = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}/log")
    assert status == 200, log
    # the client decodes a log that happens to be JSON (one line, or none: null)
    text = log if isinstance(log, str) else json.dumps(log) if log is not None else ""
    seen: dict[str, list[str]] = {}
    for line in text.splitlines():
        entry = json.loads(line)
        if entry["t"] > since:
            seen.setdefault(entry["target"], []).append(entry["result"])
    return seen


def judged(cluster: Cluster, namespace: str, name: str, since: float, targets: int) -> dict:
    """Outcomes once each of the prober's ``targets`` was tried at least three times."""

    def enough():
        seen = outcomes(cluster, namespace, name, since)
        return seen if len(seen) == targets and all(len(r) >= 3 for r in seen.values()) else None

    return cluster.wait_for(f"three tries of each target by {namespace}/{name}", enough, 120)


def test_sessions_reach_neither_other_sessions_nor_the_node_nor_the_api_servers_ranges(
    cluster: Cluster, kubelet_node, tmp_path
):
    enforced = restricted_namespace(cluster)
    control = restricted_namespace(cluster)
    elsewhere = restricted_namespace(cluster)
    try:
        objects = rendered_chart(cluster, enforced, tmp_path)
        policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
        assert {p["metadata"]["name"] for p in policies} >= {"datalabs-singleuser", "datalabs-hub"}
        for policy in policies:
            cluster.apply({**policy, "metadata": {**policy["metadata"], "namespace": enforced}})
        hub = component_labels(objects, "hub")

        # a listener in the denied private ranges, on the API server's port
        start_pod(cluster, elsewhere, "api-stand-in", {}, listener(API_PORT))
        for namespace in (enforced, control):
            start_pod(cluster, namespace, "alice", session_labels(), listener(SESSION_PORT))
        api = f"{running_ip(cluster, elsewhere, 'api-stand-in')}:{API_PORT}"
        status, node = cluster.request("GET", f"/api/v1/nodes/{kubelet_node}")
        assert status == 200, node
        [node_ip] = [a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"]
        kubelet = f"{node_ip}:{node['status']['daemonEndpoints']['kubeletEndpoint']['Port']}"
        alice = {
            ns: f"{running_ip(cluster, ns, 'alice')}:{SESSION_PORT}" for ns in (enforced, control)
        }
        probers = {
            (enforced, "bob"): session_labels(),
            (enforced, "hub"): hub,
            (control, "bob"): session_labels(),
        }
        for (namespace, name), labels in probers.items():
            targets = {"alice": alice[namespace], "api": api, "node": kubelet}
            start_pod(cluster, namespace, name, labels, prober(targets))
        for key in probers:
            running_ip(cluster, *key)
        cluster.wait_for(
            "the agent knowing the probing pods",
            lambda: known_to_the_agent(cluster, list(probers)),
        )
        since = time.time()

        bob = judged(cluster, enforced, "bob", since, 3)
        by_hub = judged(cluster, enforced, "hub", since, 3)
        unpoliced = judged(cluster, control, "bob", since, 3)
    finally:
        for namespace in (enforced, control, elsewhere):
            cluster.request("DELETE", f"/api/v1/namespaces/{namespace}")
    # without policies bob reaches all three: the network works
    assert unpoliced == {target: ["open"] * len(unpoliced[target]) for target in unpoliced}
    # with them his packets are dropped: another session, the node and the API server's ranges
    assert bob == {target: ["timeout"] * len(bob[target]) for target in bob}
    # what the chart allows still passes: the hub reaches the session and the API server
    assert set(by_hub["alice"]) == {"open"}, by_hub
    assert set(by_hub["api"]) == {"open"}, by_hub
    assert set(by_hub["node"]) == {"timeout"}, by_hub
