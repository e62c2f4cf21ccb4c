"""The run broker's REST API on a real hub, creating Jobs on the real test cluster.

The embedded hub (``config/jupyterhub_config.py``) runs with its cluster-runs block on
(``DATALABS_RUNS_KUBECONFIG``: the hub identity's kubeconfig), the demo catalogue and a small
archive. alice, with a token of her own as her session has, runs the demo pipeline
``rosetta/pds4-table-plot`` on a product of ``psa-rosetta``; the Job is made with her run
identity and her time limit, its state and pods are reported, and cancel removes it. bob's
request naming the restricted volume, another user's token, a malformed body and an unknown
pipeline are refused, and none of them creates anything.
"""

from __future__ import annotations

import pytest
import requests

from datalabs_pipelines.catalogue import Catalogue
from datalabs_pipelines.executors.kubernetes import (
    ArchiveVolume,
    job_name,
    run_service_account,
    user_folder,
)
from datalabs_pipelines.executors.kubernetes_executor import KubernetesExecutor, KubernetesSettings
from datalabs_pipelines.executors.local import RunRequest
from datalabs_pipelines.settings import Settings
from tests.cluster import Cluster
from tests.e2e.hubprocess import REPO, running_hub
from tests.k8s.pipeline_runs import (
    broker_namespace,
    calrissian_step_pods,
    job_pods,
    wait_pod_running,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RUN = "feedface00000001"
PRODUCT = "/data/psa-rosetta/bundle/data_calibrated/table.xml"


@pytest.fixture
def namespace(cluster: Cluster):
    yield from broker_namespace(cluster)


@pytest.fixture
def hub(cluster: Cluster, namespace: str, tmp_path, monkeypatch):
    archive = tmp_path / "archive"
    for rel in ("psa-rosetta/bundle/data_calibrated/table.xml", "rosetta-restricted/cal/f.fits"):
        (archive / rel).parent.mkdir(parents=True, exist_ok=True)
        (archive / rel).write_text("<Product_Observational/>")
    monkeypatch.setenv(
        "DATALABS_RUNS_KUBECONFIG", str(cluster.kubeconfig("datalabs-hub", namespace))
    )
    monkeypatch.setenv("DATALABS_RUNS_NAMESPACE", namespace)
    state = tmp_path / "hub"
    state.mkdir()
    with running_hub(state, archive) as running:
        yield running


def _token(hub, user: str) -> str:
    r = hub.api("POST", f"users/{user}/tokens", json={"note": "run broker test"})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def _runs(hub, user: str, token: str, method: str, path: str = "", **kw) -> requests.Response:
    return requests.request(
        method,
        f"{hub.url}/hub/datalabs/v1/users/{user}/runs{path}",
        headers={"Authorization": f"token {token}"},
        timeout=60,
        **kw,
    )


def _nothing_created(cluster: Cluster, namespace: str) -> None:
    for path in (
        f"/apis/batch/v1/namespaces/{namespace}/jobs",
        f"/api/v1/namespaces/{namespace}/pods",
    ):
        status, answer = cluster.request("GET", path)
        assert status == 200 and answer["items"] == [], (path, answer)


def test_alice_runs_cancels_and_bob_is_refused_through_the_hub(
    cluster: Cluster, namespace: str, hub
):
    alice, bob = _token(hub, "alice"), _token(hub, "bob")
    product = {"class": "File", "path": PRODUCT}

    # Refusals first: none of them may leave anything on the cluster.
    r = _runs(hub, "bob", bob, "POST", data="{not json")
    assert r.status_code == 400, r.text
    r = _runs(hub, "alice", bob, "POST", json={"run_id": RUN, "pipeline": "x"})
    assert r.status_code == 403, r.text
    r = _runs(hub, "bob", bob, "POST", json={"run_id": RUN, "pipeline": "rosetta/nope"})
    assert r.status_code == 404, r.text
    r = _runs(
        hub,
        "bob",
        bob,
        "POST",
        json={
            "run_id": RUN,
            "pipeline": "rosetta/pds4-table-plot",
            "inputs": {"product": {"class": "File", "path": "/data/rosetta-restricted/cal/f.fits"}},
        },
    )
    assert r.status_code in (400, 403), r.text
    assert "product" in r.json()["message"]
    _nothing_created(cluster, namespace)

    r = _runs(
        hub,
        "alice",
        alice,
        "POST",
        json={
            "run_id": RUN,
            "pipeline": "rosetta/pds4-table-plot",
            "inputs": {"product": product},
            "time_limit": 900,
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["volumes"] == ["psa-rosetta"]
    status, job = cluster.request(
        "GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/{job_name(RUN)}"
    )
    assert status == 200, job
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == run_service_account("alice")
    assert job["spec"]["activeDeadlineSeconds"] == 900

    def running():
        got = _runs(hub, "alice", alice, "GET", f"/{RUN}").json()
        return got if got.get("state") == "running" and got.get("pods") else None

    state = cluster.wait_for("the run reported running", running)
    assert [p["component"] for p in state["pods"]] == ["calrissian"]
    assert _runs(hub, "bob", bob, "GET", f"/{RUN}").status_code == 404

    r = _runs(hub, "alice", alice, "POST", f"/{RUN}/cancel")
    assert r.status_code == 200, r.text

    def gone():
        status, _ = cluster.request(
            "GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/{job_name(RUN)}"
        )
        return status == 404 and not job_pods(cluster, namespace, RUN)

    cluster.wait_for("no Job and no pod left", gone)


def test_a_sessions_runs_go_through_the_broker_and_report_step_states(
    cluster: Cluster, namespace: str, hub, tmp_path
):
    """The session's ``kubernetes`` executor as a hub session has it (``k8s_submit =
    "broker"``): it stages in its own folder of the input claim, the broker makes the Job, the
    periodic check records the run's state and its step pods' states, cancel goes through
    the broker. The session holds no Kubernetes credential at all."""
    token = _token(hub, "alice")
    executor = KubernetesExecutor(
        Settings(home=tmp_path / "session", user="alice"),
        KubernetesSettings(
            namespace=namespace,
            # the session's mount of its own folder of the input claim
            input_dir=str(hub.state / "calrissian-input-data" / user_folder("alice")),
            output_dir=str(tmp_path / "output-claim"),
            archive_volumes=(
                ArchiveVolume("psa-rosetta", "datalabs-archive", "/data/psa-rosetta"),
            ),
            broker_url=f"{hub.url}/hub/datalabs/v1/",
            broker_token=token,
            kubeconfig=str(tmp_path / "no-such-kubeconfig"),
            request_timeout=30,
        ),
    )
    try:
        pipeline = Catalogue([REPO / "config" / "catalogue"]).get("rosetta/pds4-table-plot")
        assert pipeline is not None
        run = executor.submit(
            RunRequest(
                pipeline=pipeline.id,
                pipeline_path=pipeline.uri,
                inputs={"product": {"class": "File", "path": PRODUCT}},
            )
        )
        assert run.state == "queued", run.exit_reason
        status, job = cluster.request(
            "GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/{job_name(run.id)}"
        )
        assert status == 200, job
        assert job["spec"]["template"]["spec"]["serviceAccountName"] == run_service_account("alice")

        def state(expected):
            def check():
                executor.tick()
                return executor.store.get(run.id).state == expected

            return check

        cluster.wait_for("the run running", state("running"))

        # A step as the real Calrissian builds it, created with the run identity's token.
        (job_pod,) = job_pods(cluster, namespace, run.id)
        env = {e["name"]: e.get("value") for e in job_pod["spec"]["containers"][0]["env"]}
        (step,) = calrissian_step_pods(
            job_pod,
            [
                {
                    "name": "extract",
                    "image": "datalabs/planetary-lab:0.1",
                    "outdir": "/calrissian/tmpout/x1",
                    "inputs": [[PRODUCT, "/var/lib/cwl/stg1/table.xml"]],
                    "resources": {"cores": 1, "ram": 256},
                }
            ],
            env,
        )
        account = run_service_account("alice")
        status, created = cluster.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/pods",
            step,
            token=cluster.service_account_token(namespace, account),
        )
        assert status == 201, created
        wait_pod_running(cluster, namespace, created["metadata"]["name"])

        def step_running():
            executor.tick()
            steps = executor.store.get(run.id).steps
            return [(s.name, s.state) for s in steps] == [("extract", "running")]

        cluster.wait_for("the step's state in the run store", step_running)

        cancelled = executor.cancel("alice", run.id)
        assert cancelled.state == "cancelled"

        def gone():
            status, _ = cluster.request(
                "GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/{job_name(run.id)}"
            )
            return status == 404 and not job_pods(cluster, namespace, run.id)

        cluster.wait_for("no Job and no pod left", gone)
    finally:
        executor.close()
