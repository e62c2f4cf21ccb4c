"""The chart with pipeline runs on (``runs.enabled``), installed on the real test cluster.

Every object is accepted under Pod Security "restricted"; the hub's own service-account token
(the chart's Role) lets the broker create alice's run with her run identity, whose Job's pod is
admitted and runs on the node; the cleanup CronJob's pod is admitted too, and its command,
run here on folders laid out as the work claims are, removes run folders older than the
retention and keeps the rest. The chart's admission policy lets a run identity create its own
user's step pods and nothing else a pod could reach.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from traitlets.config import Config

from datalabs_pipelines.catalogue import Catalogue
from datalabs_pipelines.executors.kubernetes import (
    OWNER_LABEL,
    restrict_step_pod,
    run_identity,
    run_service_account,
    user_folder,
)
from datalabs_spawner.run_broker import DatalabsRunBroker, RunBroker, RunBrokerSettings
from datalabs_volumes.catalogue import VolumeCatalogue
from tests.cluster import Cluster
from tests.k8s.conftest import restricted_namespace
from tests.k8s.pipeline_runs import WORK_CLAIMS, job_pods, wait_pod_running
from tests.k8s.test_chart import CATALOGUE, CHART, demo_values, helm

RUN = "c4a77c4a77000001"


@pytest.fixture(scope="module")
def release(cluster: Cluster, tmp_path_factory):
    namespace = restricted_namespace(cluster)
    cluster.bound_volume(namespace, "datalabs-hub-db", "ReadWriteOnce", make_claim=False)
    for claim in WORK_CLAIMS:
        cluster.bound_volume(namespace, claim, "ReadWriteMany", "/srv/work", make_claim=False)
    values_file = demo_values(tmp_path_factory.mktemp("chart") / "values.json")
    values = json.loads(values_file.read_text())
    values["runs"] = {"enabled": True, "retentionDays": 3}
    values_file.write_text(json.dumps(values))
    done = helm(cluster, "install", "datalabs", str(CHART), "-n", namespace, "-f", str(values_file))
    assert done.returncode == 0, done.stderr
    yield namespace
    helm(cluster, "uninstall", "datalabs", "-n", namespace)
    cluster.request("DELETE", f"/api/v1/namespaces/{namespace}")


def test_the_runs_objects_are_accepted_and_the_hub_mounts_the_input_claim(
    cluster: Cluster, release
):
    for claim in WORK_CLAIMS:
        status, answer = cluster.request(
            "GET", f"/api/v1/namespaces/{release}/persistentvolumeclaims/{claim}"
        )
        assert status == 200 and answer["spec"]["accessModes"] == ["ReadWriteMany"], claim
    status, cron = cluster.request(
        "GET", f"/apis/batch/v1/namespaces/{release}/cronjobs/datalabs-runs-cleanup"
    )
    assert status == 200, cron

    def hub_running():
        _, pods = cluster.request(
            "GET",
            f"/api/v1/namespaces/{release}/pods?labelSelector=app.kubernetes.io/component=hub",
        )
        running = [p for p in pods["items"] if p["status"].get("phase") == "Running"]
        return running[0] if running else None

    hub = cluster.wait_for("the hub running", hub_running, timeout=90)
    mounts = {m["mountPath"]: m for m in hub["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["/srv/archive"]["readOnly"] is True
    assert "readOnly" not in mounts["/srv/calrissian/input-data"]

    # The cleanup pod, as the CronJob controller makes it at its hour, meets "restricted". It
    # runs as the namespace's default account, which the controller-manager makes a moment
    # after the namespace: a pod asked for before it is refused and the Job controller backs
    # off for tens of seconds, so wait for the account first.
    cluster.wait_for(
        "the namespace's default service account",
        lambda: (
            cluster.request("GET", f"/api/v1/namespaces/{release}/serviceaccounts/default")[0]
            == 200
        ),
    )
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "cleanup-now", "namespace": release},
        "spec": cron["spec"]["jobTemplate"]["spec"],
    }
    cluster.apply(job)

    def cleanup_pod():
        _, pods = cluster.request(
            "GET", f"/api/v1/namespaces/{release}/pods?labelSelector=job-name=cleanup-now"
        )
        return pods["items"][0] if pods["items"] else None

    try:
        pod = cluster.wait_for("the cleanup Job's pod", cleanup_pod, timeout=120)
    except TimeoutError as timeout:
        _, events = cluster.request("GET", f"/api/v1/namespaces/{release}/events")
        _, got = cluster.request("GET", f"/apis/batch/v1/namespaces/{release}/jobs/cleanup-now")
        messages = [(e.get("reason"), e.get("message")) for e in events["items"]]
        raise AssertionError(
            f"no cleanup pod; Job: {got.get('status')}; events: {messages}"
        ) from timeout
    wait_pod_running(cluster, release, pod["metadata"]["name"])


def test_the_cleanup_command_removes_only_old_run_folders(cluster: Cluster, release, tmp_path):
    _, cron = cluster.request(
        "GET", f"/apis/batch/v1/namespaces/{release}/cronjobs/datalabs-runs-cleanup"
    )
    container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    old = time.time() - 5 * 86400  # retentionDays is 3
    folder = user_folder("alice")
    for claim in WORK_CLAIMS:
        for run, mtime in (("old-run", old), ("new-run", None)):
            path = tmp_path / claim / folder / run
            path.mkdir(parents=True)
            (path / "out.txt").write_text("x")
            if mtime:
                os.utime(path, (mtime, mtime))
        os.utime(tmp_path / claim / folder, (old, old))  # the user's folder itself stays
    argv = [a.replace("/work/", f"{tmp_path}/") for a in container["command"]]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    for claim in WORK_CLAIMS:
        assert sorted(p.name for p in (tmp_path / claim / folder).iterdir()) == ["new-run"]


async def test_the_hubs_own_token_lets_the_broker_run_alices_pipeline(
    cluster: Cluster, release, tmp_path
):
    token = cluster.service_account_token(release, "datalabs-hub")
    archive = tmp_path / "archive" / "psa-rosetta" / "bundle"
    archive.mkdir(parents=True)
    (archive / "table.xml").write_text("<Product_Observational/>")
    broker = RunBroker(
        RunBrokerSettings(
            namespace=release,
            input_dir=str(tmp_path / "input-data"),
            archive_dir=str(tmp_path / "archive"),
            data_mount_root="/home/jovyan/data",
            kubeconfig=str(cluster.kubeconfig("chart-hub", release, token=token)),
        )
    )
    pipeline = Catalogue([CATALOGUE]).get("rosetta/pds4-table-plot")
    volumes = VolumeCatalogue([CATALOGUE])
    volumes.refresh()
    answer = await broker.submit(
        "alice",
        RUN,
        pipeline,
        {"product": {"class": "File", "path": "/home/jovyan/data/psa-rosetta/bundle/table.xml"}},
        volumes.readable_by("alice", ["rosetta-team"]),
        "datalabs/planetary-lab:0.1",
    )
    assert answer["service_account"] == run_service_account("alice")
    assert answer["volumes"] == ["psa-rosetta"]
    (pod,) = cluster.wait_for("the run's pod", lambda: job_pods(cluster, release, RUN))
    pod = wait_pod_running(cluster, release, pod["metadata"]["name"])
    assert pod["spec"]["serviceAccountName"] == run_service_account("alice")
    broker_folder = f".datalabs-broker-{user_folder('alice')}"
    assert (Path(tmp_path) / "input-data" / broker_folder / RUN / "job.json").is_file()
    await broker.cancel("alice", RUN)
    cluster.wait_for("the run gone", lambda: not job_pods(cluster, release, RUN))


def _pod(owner: str, volumes: list, mounts: list) -> dict:
    """A pod as a run identity would create it (restricted, with the given volumes)."""
    return restrict_step_pod(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"generateName": "probe-"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {"name": "step", "image": "datalabs/planetary-lab:0.1", "volumeMounts": mounts}
                ],
                "volumes": volumes,
            },
        },
        {OWNER_LABEL: owner},
    )


def _claim(name: str, claim: str, read_only: bool = False) -> dict:
    return {"name": name, "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}}


async def test_the_run_identity_may_create_only_its_users_step_pods(
    cluster: Cluster, release, tmp_path
):
    """RBAC gives a run identity pods in general; the chart's admission policy narrows that
    to step pods of its own user (checked with dry runs: admission runs, nothing is kept)."""
    # carol: the module's other test made alice's identity already
    account = run_service_account("carol")
    for obj in run_identity("carol", release, ["psa-rosetta", "spice-juice"]):
        cluster.apply(obj)
    token = cluster.service_account_token(release, account)
    mine, bobs = user_folder("carol"), user_folder("bob")
    work = [_claim("input-data", "calrissian-input-data"), _claim("tmpout", "calrissian-tmpout")]
    archive = [_claim("archive-psa", "datalabs-archive", read_only=True)]
    good = _pod(
        mine,
        [*work, *archive, {"name": "tmpdir", "emptyDir": {}}],
        [
            {"name": "input-data", "mountPath": "/in", "subPath": f"{mine}/r1/x", "readOnly": True},
            {"name": "input-data", "mountPath": "/job", "subPath": f".datalabs-broker-{mine}/r1"},
            {"name": "tmpout", "mountPath": "/out", "subPath": f"{mine}/abc"},
            {
                "name": "archive-psa",
                "mountPath": "/a",
                "subPath": "psa-rosetta/x",
                "readOnly": True,
            },
            {"name": "tmpdir", "mountPath": "/tmp"},
        ],
    )
    bad = {
        "labelled as bob's": _pod(bobs, [], []),
        "bob's input folder": _pod(
            mine, work[:1], [{"name": "input-data", "mountPath": "/in", "subPath": f"{bobs}/r1"}]
        ),
        "the whole input claim": _pod(mine, work[:1], [{"name": "input-data", "mountPath": "/in"}]),
        "the whole archive claim": _pod(
            mine, archive, [{"name": "archive-psa", "mountPath": "/a", "readOnly": True}]
        ),
        "a volume carol may not read": _pod(
            mine,
            archive,
            [
                {
                    "name": "archive-psa",
                    "mountPath": "/a",
                    "subPath": "rosetta-restricted/cal",
                    "readOnly": True,
                }
            ],
        ),
        "a folder named like a readable one": _pod(
            mine,
            archive,
            [
                {
                    "name": "archive-psa",
                    "mountPath": "/a",
                    "subPath": "psa-rosetta2",
                    "readOnly": True,
                }
            ],
        ),
        "an archive folder writable": _pod(
            mine, archive, [{"name": "archive-psa", "mountPath": "/a", "subPath": "psa-rosetta"}]
        ),
        "the hub's database": _pod(
            mine,
            [_claim("db", "datalabs-hub-db")],
            [{"name": "db", "mountPath": "/db"}],
        ),
    }
    path = f"/api/v1/namespaces/{release}/pods?dryRun=All"

    def policy_in_force():
        return all(
            cluster.request("POST", path, bad[what], token=token)[0] in (403, 422)
            for what in ("labelled as bob's", "a volume carol may not read")
        )

    # the API server picks new policies and parameters up within a moment
    cluster.wait_for("the run-pod policy in force", policy_in_force)
    status, answer = cluster.request("POST", path, good, token=token)
    assert status == 201, answer
    why = {
        "labelled as bob's": "labelled as its own user's",
        "bob's input folder": "only their user's folders",
        "the whole input claim": "only their user's folders",
        "a volume carol may not read": "archive volumes their user may read",
        "a folder named like a readable one": "archive volumes their user may read",
        "the whole archive claim": "never the whole claim",
        "an archive folder writable": "never the whole claim",
        "the hub's database": "the work claims and the archive claim only",
    }
    assert set(why) == set(bad)
    for what, pod in bad.items():
        status, answer = cluster.request("POST", path, pod, token=token)
        assert status in (403, 422), (what, status, answer)
        assert "ValidatingAdmissionPolicy" in answer["message"], (what, answer)
        assert why[what] in answer["message"], (what, answer["message"])


def test_the_runs_image_pull_policy_and_node_pool_reach_the_broker(cluster: Cluster):
    """``runs.image.pullPolicy``, ``runs.nodeSelector`` and ``runs.tolerations`` become the run
    broker's options: the rendered hub config's ``DatalabsRunBroker`` lines, loaded as the hub
    loads them, give the broker these settings (and the defaults give none)."""
    toleration = {"key": "pipelines", "operator": "Exists", "effect": "NoSchedule"}

    def broker_settings(*args: str) -> RunBrokerSettings:
        on = ("--set", "runs.enabled=true")
        done = helm(cluster, "template", "datalabs", str(CHART), *on, *args)
        assert done.returncode == 0, done.stderr
        [hub_config] = [
            d
            for d in yaml.safe_load_all(done.stdout)
            if d and d["kind"] == "ConfigMap" and d["metadata"]["name"] == "datalabs-hub-config"
        ]
        lines = [
            line.strip()
            for line in hub_config["data"]["jupyterhub_config.py"].splitlines()
            if line.strip().startswith("c.DatalabsRunBroker.")
        ]
        config = Config()
        exec("\n".join(lines), {"c": config})  # the chart's own rendered config
        return DatalabsRunBroker(config=config).broker().settings

    settings = broker_settings(
        "--set",
        "runs.image.pullPolicy=Never",
        "--set-json",
        'runs.nodeSelector={"datalabs.io/pool": "pipelines"}',
        "--set-json",
        f"runs.tolerations={json.dumps([toleration])}",
    )
    assert settings.image == "datalabs/calrissian:0.1.0"
    assert settings.image_pull_policy == "Never"
    assert settings.node_selector == {"datalabs.io/pool": "pipelines"}
    assert settings.tolerations == (toleration,)
    default = broker_settings()
    assert (default.image_pull_policy, default.node_selector, default.tolerations) == ("", {}, ())
