"""The test cluster is a real one: its API server enforces RBAC and Pod Security.

These guard the harness itself: every other ``k8s`` test relies on a refusal here meaning what
a production cluster would refuse.
"""

from __future__ import annotations

import pytest

from tests.cluster import NODE_NAME, Cluster

pytestmark = pytest.mark.k8s


def pod(name: str, **container_extra) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "example/x:1", **container_extra}]},
    }


def test_an_identity_without_a_role_is_refused_pods_jobs_and_secrets(cluster: Cluster):
    for method, path, body in [
        ("GET", "/api/v1/namespaces/default/pods", None),
        ("GET", "/api/v1/namespaces/default/secrets", None),
        ("POST", "/apis/batch/v1/namespaces/default/jobs", {"kind": "Job"}),
    ]:
        status, answer = cluster.request(method, path, body, user="mallory")
        assert status == 403, (method, path, answer)
    status, _ = cluster.request("GET", "/api/v1/namespaces/default/pods", user="admin")
    assert status == 200


def test_pod_security_restricted_refuses_a_privileged_pod(cluster: Cluster, hub_namespace):
    status, answer = cluster.request(
        "POST",
        f"/api/v1/namespaces/{hub_namespace}/pods",
        pod("privileged", securityContext={"privileged": True}),
    )
    assert status == 403, answer
    assert "violates PodSecurity" in answer["message"]


def test_a_pod_is_scheduled_to_the_node_and_reported_running(cluster: Cluster):
    name = "scheduled"
    cluster.apply({**pod(name), "metadata": {"name": name, "namespace": "default"}})
    try:

        def running():
            _, got = cluster.request("GET", f"/api/v1/namespaces/default/pods/{name}")
            return got if got.get("status", {}).get("phase") == "Running" else None

        got = cluster.wait_for("the pod running", running)
        assert got["spec"]["nodeName"] == NODE_NAME
    finally:
        cluster.request("DELETE", f"/api/v1/namespaces/default/pods/{name}?gracePeriodSeconds=0")
