"""The rclone sidecar and the session's Secret, wired in by DatalabsKubeSpawner, on a real API
server (tests/cluster.py): what the pod spec holds, what the Secret holds, who mounts it.

The session namespace enforces Pod Security "privileged" (the sidecar needs it) and warns and
audits at "restricted"; the user container alone is checked against "restricted" by the real
API server with a server-side dry run in a namespace that enforces it.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import subprocess
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import yaml
from kubespawner import KubeSpawner

from datalabs_spawner.kube_session import HUB_TOKEN_ITEM, KEY_ITEM, SESSION_SECRET_VOLUME
from datalabs_spawner.spawner import DatalabsKubeSpawner
from datalabs_volumes import contract
from datalabs_volumes.credentials import user_key
from datalabs_volumes.mount.kubernetes import (
    ARCHIVE_VOLUME,
    RCLONE_CONFIG_VOLUME,
    REMOTE_VOLUME,
    SIDECAR_NAME,
)
from tests.cluster import BIN_DIR, NODE_NAME, Cluster
from tests.helpers import datalab_yaml, write
from tests.k8s.conftest import HUB_RULES, kube_spawner, restricted_namespace
from tests.k8s.test_chart import CHART
from tests.k8s_fixtures import _forget_kubespawner_clients

pytestmark = pytest.mark.k8s

MASTER_KEY = "m" * 44
SESSION_LABELS = {
    "pod-security.kubernetes.io/enforce": "privileged",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/audit": "restricted",
}
_count = iter(range(1, 1000))


async def _session_namespace(cluster: Cluster, kube_identity, rules) -> AsyncIterator[str]:
    """A namespace labelled as docs/kubernetes-sessions.md tells operators to, with ``rules``
    as the hub's Role there; KubeSpawner acts as the hub."""
    name = f"datalabs-sessions-{next(_count)}"
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": SESSION_LABELS},
        }
    )
    cluster.grant(name, "hub", rules)
    policy = session_policy(cluster, name)
    await kube_identity(cluster.kubeconfig("datalabs-hub", name))
    try:
        yield name
    finally:
        try:
            await KubeSpawner._stop_all_reflectors()
        finally:
            await _forget_kubespawner_clients()
            cluster.request("DELETE", f"/api/v1/namespaces/{name}")
            for path in policy:
                cluster.request("DELETE", path)


def helm_template(namespace: str, template: str) -> list[dict]:
    done = subprocess.run(
        [str(BIN_DIR / "helm"), "template", "datalabs", str(CHART), "-n", namespace,
         "--show-only", template],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def session_policy(cluster: Cluster, namespace: str) -> list[str]:
    """The chart's session pod policy for ``namespace``, applied and in force; its paths."""
    paths = []
    for obj in helm_template(namespace, "templates/session-policy.yaml"):
        plural = {
            "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
            "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings",
        }[obj["kind"]]
        collection = f"/apis/{obj['apiVersion']}/{plural}"
        status, answer = cluster.request("POST", collection, obj)
        assert status == 201, answer
        paths.append(f"{collection}/{obj['metadata']['name']}")
    # In force once a privileged pod that is not the sidecar is refused (policies and
    # bindings reach the admission plugin asynchronously).
    probe = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe"},
        "spec": {
            "automountServiceAccountToken": False,
            "containers": [{"name": "c", "image": "x", "securityContext": {"privileged": True}}],
        },
    }

    def refused():
        status, _ = cluster.request(
            "POST", f"/api/v1/namespaces/{namespace}/pods?dryRun=All", probe
        )
        return status == 403

    cluster.wait_for("the session pod policy in force", refused, timeout=60)
    return paths


@pytest_asyncio.fixture
async def session_namespace(cluster: Cluster, kube_identity) -> AsyncIterator[str]:
    """With z2jh's hub Role."""
    async for name in _session_namespace(cluster, kube_identity, HUB_RULES):
        yield name


@pytest_asyncio.fixture
async def chart_session_namespace(cluster: Cluster, kube_identity) -> AsyncIterator[str]:
    """With the rules of the chart's own hub Role (``helm template``), and nothing more."""
    [role] = [d for d in helm_template("default", "templates/hub-rbac.yaml") if d["kind"] == "Role"]
    async for name in _session_namespace(cluster, kube_identity, role["rules"]):
        yield name


@pytest.fixture
def catalogue_dir(tmp_path):
    cat = tmp_path / "catalogue"
    write(cat, "rosetta/datalabs/planetary.yaml", datalab_yaml("Planetary", "default_url: /lab\n"))
    write(
        cat,
        "rosetta/volumes/psa.yaml",
        "id: psa\ntitle: PSA\nsource: {type: pvc, claim: archive, subPath: psa}\n",
    )
    return cat


def spawner(namespace: str, catalogue_dir, user: str):
    made = kube_spawner(
        DatalabsKubeSpawner,
        namespace,
        user,
        catalogue_dirs=[str(catalogue_dir)],
        catalogue_refresh_seconds=0,
        credentials_master_key=MASTER_KEY,
        connection_allowed_networks=["10.20.0.0/16"],
        archive_claim="datalabs-archive",
    )
    made.user_options = {"profile": "planetary", "volumes": ["psa"]}
    return made


def get(cluster: Cluster, path: str) -> tuple[int, dict]:
    return cluster.request("GET", path)


def user_pods(cluster: Cluster, namespace: str) -> dict[str, dict]:
    status, answer = get(cluster, f"/api/v1/namespaces/{namespace}/pods")
    assert status == 200, answer
    return {p["metadata"]["name"]: p for p in answer["items"]}


def secret_volumes(pod: dict) -> dict[str, dict]:
    """Pod volume name -> its ``secret`` source, for every Secret the pod names."""
    return {v["name"]: v["secret"] for v in pod["spec"]["volumes"] if "secret" in v}


def named_secrets(pod: dict) -> set[str]:
    """Every Secret a pod refers to, as a volume or through secretKeyRef."""
    names = {s["secretName"] for s in secret_volumes(pod).values()}
    for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
        for e in c.get("env", []):
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                names.add(ref["name"])
    return names


async def test_alices_pod_gets_the_sidecar_and_her_key_only_through_her_secret(
    cluster: Cluster, session_namespace, catalogue_dir
):
    ns = session_namespace
    for claim in ("archive", "datalabs-archive"):
        cluster.bound_volume(ns, claim)
    alice = spawner(ns, catalogue_dir, "alice")
    bob = spawner(ns, catalogue_dir, "bob")
    async with asyncio.timeout(90):
        await alice.start()
        await bob.start()
    pods = user_pods(cluster, ns)
    pod, bobs_pod = pods[alice.pod_name], pods[bob.pod_name]
    # accepted by the real API server, scheduled, reported running
    assert pod["spec"]["nodeName"] == NODE_NAME and pod["status"]["phase"] == "Running"
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False

    # the sidecar: a native sidecar (init container that keeps running), privileged
    [sidecar] = spec["initContainers"]
    assert sidecar["name"] == SIDECAR_NAME and sidecar["restartPolicy"] == "Always"
    assert sidecar["securityContext"]["privileged"] is True
    shared_dir = alice.connections_mount_root
    sidecar_mounts = {m["name"]: m for m in sidecar["volumeMounts"]}
    assert sidecar_mounts[REMOTE_VOLUME]["mountPropagation"] == "Bidirectional"
    assert sidecar_mounts[REMOTE_VOLUME]["mountPath"] == shared_dir

    # the user container: restricted settings, volumes read-only, shared folder HostToContainer
    [container] = spec["containers"]
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert not any(
        m.startswith("/var/run/secrets/kubernetes.io")
        for m in (x["mountPath"] for x in container["volumeMounts"])
    )
    assert mounts["dlv-psa"]["readOnly"] is True
    assert mounts[REMOTE_VOLUME] == {
        "name": REMOTE_VOLUME,
        "mountPath": shared_dir,
        "mountPropagation": "HostToContainer",
        "readOnly": True,
    }
    env = {e["name"]: e for e in container["env"]}
    assert env[contract.CONNECTIONS_DIR]["value"] == shared_dir
    assert env[contract.RCLONE_SOCKET]["value"].startswith(
        sidecar_mounts["datalabs-rc"]["mountPath"]
    )
    assert contract.CREDENTIALS_KEY not in env

    # her key: in her Secret, mounted in her user container only, nowhere in any pod spec
    key = user_key(MASTER_KEY, "alice")
    assert key not in json.dumps(pods)
    secret_name = alice.session_secret_name
    status, secret = get(cluster, f"/api/v1/namespaces/{ns}/secrets/{secret_name}")
    assert status == 200, secret
    assert base64.b64decode(secret["data"][KEY_ITEM]).decode() == key
    volumes = secret_volumes(pod)
    assert volumes[SESSION_SECRET_VOLUME]["secretName"] == secret_name
    assert KEY_ITEM in {i["key"] for i in volumes[SESSION_SECRET_VOLUME]["items"]}
    assert mounts[SESSION_SECRET_VOLUME]["readOnly"] is True
    assert SESSION_SECRET_VOLUME not in sidecar_mounts  # the sidecar never sees the key
    assert [i["key"] for i in volumes[RCLONE_CONFIG_VOLUME]["items"]] == ["rclone.conf"]
    assert env[contract.CREDENTIALS_KEY_FILE]["value"].startswith(
        mounts[SESSION_SECRET_VOLUME]["mountPath"] + "/"
    )

    # hot attach: the archive claim and the hub's bind token are the sidecar's alone
    assert sidecar_mounts[ARCHIVE_VOLUME]["readOnly"] is True
    assert ARCHIVE_VOLUME not in mounts
    token_refs = [
        e["valueFrom"]["secretKeyRef"]
        for e in sidecar["env"]
        if e["name"] == "DATALABS_HUB_BIND_TOKEN"
    ]
    assert token_refs == [{"name": secret_name, "key": HUB_TOKEN_ITEM}]
    assert HUB_TOKEN_ITEM not in {i["key"] for i in volumes[SESSION_SECRET_VOLUME]["items"]}
    hub_token = base64.b64decode(secret["data"][HUB_TOKEN_ITEM]).decode()
    assert len(hub_token) >= 32 and hub_token not in json.dumps(pods)
    assert alice.get_state()["datalabs_hub_token"] == hub_token

    # bob: his own Secret with his own key; neither pod names the other's Secret
    assert named_secrets(pod) == {secret_name}
    assert named_secrets(bobs_pod) == {bob.session_secret_name} != {secret_name}
    status, bobs = get(cluster, f"/api/v1/namespaces/{ns}/secrets/{bob.session_secret_name}")
    assert status == 200
    assert base64.b64decode(bobs["data"][KEY_ITEM]).decode() == user_key(MASTER_KEY, "bob")

    # the user container alone passes "restricted", judged by the API server itself
    strict = restricted_namespace(cluster)
    try:
        alone = copy.deepcopy(pod)
        alone["metadata"] = {"name": pod["metadata"]["name"], "namespace": strict}
        alone.pop("status")
        alone["spec"].pop("initContainers")
        alone["spec"].pop("nodeName")
        status, answer = cluster.request(
            "POST", f"/api/v1/namespaces/{strict}/pods?dryRun=All", alone
        )
        assert status == 201, answer
        # and the sidecar is what "restricted" would refuse (so the namespace must allow it)
        status, answer = cluster.request(
            "POST",
            f"/api/v1/namespaces/{strict}/pods?dryRun=All",
            {**alone, "spec": {**alone["spec"], "initContainers": spec["initContainers"]}},
        )
        assert status == 403 and SIDECAR_NAME in answer["message"], answer
    finally:
        cluster.request("DELETE", f"/api/v1/namespaces/{strict}")

    # stopping removes her Secret (and only hers)
    async with asyncio.timeout(60):
        await alice.stop(now=True)
    assert get(cluster, f"/api/v1/namespaces/{ns}/secrets/{secret_name}")[0] == 404
    assert get(cluster, f"/api/v1/namespaces/{ns}/secrets/{bob.session_secret_name}")[0] == 200
    async with asyncio.timeout(60):
        await bob.stop(now=True)
    assert get(cluster, f"/api/v1/namespaces/{ns}/secrets/{bob.session_secret_name}")[0] == 404
    assert user_pods(cluster, ns) == {}


async def test_with_the_charts_hub_role_a_restart_gets_a_new_secret_and_off_means_off(
    cluster: Cluster, chart_session_namespace, catalogue_dir
):
    ns = chart_session_namespace
    for claim in ("archive", "datalabs-archive"):
        cluster.bound_volume(ns, claim)
    alice = spawner(ns, catalogue_dir, "alice")
    async with asyncio.timeout(90):
        await alice.start()
    path = f"/api/v1/namespaces/{ns}/secrets/{alice.session_secret_name}"
    first = get(cluster, path)[1]["metadata"]["uid"]
    async with asyncio.timeout(60):
        await alice.stop(now=True)
        await alice.start()
    assert get(cluster, path)[1]["metadata"]["uid"] != first
    [pod] = user_pods(cluster, ns).values()
    assert len(pod["spec"]["initContainers"]) == 1  # not one more per restart
    async with asyncio.timeout(60):
        await alice.stop(now=True)
        alice.rclone_sidecar = False
        await alice.start()
    [pod] = user_pods(cluster, ns).values()
    assert "initContainers" not in pod["spec"]
    assert named_secrets(pod) == set()
    [container] = pod["spec"]["containers"]
    names = {e["name"] for e in container["env"]}
    assert not names & {contract.RCLONE_SOCKET, contract.CREDENTIALS_KEY_FILE}
    assert get(cluster, path)[0] == 404
    async with asyncio.timeout(60):
        await alice.stop(now=True)


async def test_the_charts_session_policy_lets_only_the_sidecar_be_privileged(
    cluster: Cluster, session_namespace, catalogue_dir
):
    # Pod Security enforces only "privileged" here; the chart's admission policy (in force in
    # every namespace of this file, which alice's and bob's pods pass) refuses the rest.
    ns = session_namespace
    for claim in ("archive", "datalabs-archive"):
        cluster.bound_volume(ns, claim)
    alice = spawner(ns, catalogue_dir, "alice")
    async with asyncio.timeout(90):
        await alice.start()
    [pod] = user_pods(cluster, ns).values()
    good = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "copy"}, "spec": pod["spec"]}
    good["spec"] = {k: v for k, v in pod["spec"].items() if k != "nodeName"}

    def changed(edit) -> dict:
        bad = copy.deepcopy(good)
        edit(bad["spec"])
        return bad

    def as_hub(body: dict) -> tuple[int, dict]:
        return cluster.request(
            "POST", f"/api/v1/namespaces/{ns}/pods?dryRun=All", body, user="datalabs-hub"
        )

    assert as_hub(good)[0] == 201
    cases = {
        "sidecar runs a shell": lambda s: s["initContainers"][0].update(command=["sh", "-c", "id"]),
        "sidecar has another image": lambda s: s["initContainers"][0].update(image="debian"),
        "another privileged init container": lambda s: s["initContainers"].append(
            {**s["initContainers"][0], "name": "other"}
        ),
        "user container privileged": lambda s: s["containers"][0]["securityContext"].update(
            privileged=True, allowPrivilegeEscalation=True
        ),
        "user container adds a capability": lambda s: s["containers"][0]["securityContext"].update(
            capabilities={"drop": ["ALL"], "add": ["SYS_ADMIN"]}
        ),
        "a hostPath volume": lambda s: s["volumes"].append(
            {"name": "host", "hostPath": {"path": "/"}}
        ),
        "the host's network": lambda s: s.update(hostNetwork=True),
    }
    for case, edit in cases.items():
        status, answer = as_hub(changed(edit))
        assert status == 403, (case, answer)
        assert "Datalabs session policy" in answer["message"], (case, answer)
    async with asyncio.timeout(60):
        await alice.stop(now=True)
