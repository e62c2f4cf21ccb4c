"""A pipeline run for real: the broker's Calrissian Job and its step pod on the kubelet node.

The demo pipeline ``rosetta/csv-plot`` (one step: a CSV table of an archive volume in, a plot
and a summary out) is submitted through the run broker's own function
(:meth:`RunBroker.submit`, what ``POST /hub/datalabs/v1/users/<user>/runs`` calls; the hub is
left out to keep the test short) as alice, acting as the hub's identity with the broker's
rights. The Job runs in the Calrissian image of ``make images`` (``imagePullPolicy: Never``),
with alice's run identity; Calrissian reaches the API server with its pod's token through the
``kubernetes`` service (tests/kubelet_node.py) and creates the step pod, which runs on the node
in the default container (the planetary-lab image), reads the table in place from the archive
claim and writes into alice's folder of the output claim. The claims are host folders
(hostPath PersistentVolumes the test makes); the node is tainted, so the broker's
``node_selector`` and ``tolerations`` put the Job's pod and the step pods there.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import ssl
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from datalabs_pipelines.catalogue import load_pipeline
from datalabs_pipelines.executors.kubernetes import (
    BROKER_RULES,
    CALRISSIAN_IMAGE,
    RUN_LABEL,
    STEP_LABEL,
    job_name,
    run_service_account,
    user_folder,
)
from datalabs_spawner.run_broker import RunBroker, RunBrokerSettings
from datalabs_volumes.access import Who, readable
from datalabs_volumes.models import Volume, VolumeSource
from tests.cluster import Cluster
from tests.helpers import write
from tests.k8s.conftest import LAB_IMAGE, restricted_namespace
from tests.k8s.pipeline_runs import ARCHIVE_CLAIM, WORK_CLAIMS, job_pods
from tests.kubelet_node import KUBELET_NODE, node_log, on_kubelet_node

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[2]
RUN = "ca11ab1e00c0ffee"
TABLE = "time,temperature,note\n0,150,a\n1,165,b\n2,180,c\n3,171,d\n"
#: The pipeline's step runs as the image's user, uid 1000 in group 100 (Pod Security
#: "restricted"); host folders get no fsGroup, so alice's work folders are made theirs.
STEP_UID, STEP_GID = 1000, 100


def _namespace(cluster: Cluster, archive: Path, work: Path) -> tuple[str, list[str]]:
    """A restricted namespace with the broker's Role for the hub, the archive claim and the
    three work claims on host folders; the API paths to delete afterwards."""
    name = restricted_namespace(cluster)
    meta = {"name": "hub-runs", "namespace": name}
    rbac = {"apiVersion": "rbac.authorization.k8s.io/v1"}
    cluster.apply({**rbac, "kind": "Role", "metadata": meta, "rules": BROKER_RULES})
    cluster.apply(
        {
            **rbac,
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "hub-runs",
            },
            "subjects": [{"kind": "User", "name": "datalabs-hub"}],
        }
    )
    cluster.bound_volume(name, ARCHIVE_CLAIM, "ReadOnlyMany", path=str(archive))
    for claim in WORK_CLAIMS:
        cluster.bound_volume(name, claim, "ReadWriteMany", path=str(work / claim))
    return name, [
        f"/api/v1/namespaces/{name}",
        *(f"/api/v1/persistentvolumes/{name}-{c}" for c in (ARCHIVE_CLAIM, *WORK_CLAIMS)),
    ]


class _RunPods:
    """Every pod of the run as a watch last saw it, deleted ones included: Calrissian deletes
    each step pod as soon as it is done, which polling could miss on a fast run."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.pods: dict[str, dict] = {}
        api = urlparse(cluster.api_url)
        context = ssl.create_default_context(cafile=str(cluster.ca))
        self.connection = http.client.HTTPSConnection(
            api.hostname, api.port, context=context, timeout=330
        )
        self.connection.request(
            "GET",
            f"/api/v1/namespaces/{namespace}/pods?watch=true&timeoutSeconds=300"
            f"&labelSelector={RUN_LABEL}%3D{RUN}",
            headers={"Authorization": f"Bearer {cluster.tokens['admin']}"},
        )
        # answered once the watch is in place, before the run starts
        self.response = self.connection.getresponse()
        assert self.response.status == 200, self.response.read()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        # ends when close() shuts the socket down under the reader's feet
        with contextlib.suppress(OSError, ValueError, AttributeError):
            for line in self.response:
                pod = json.loads(line)["object"]
                self.pods[pod["metadata"]["name"]] = pod

    def close(self) -> None:
        # Closing the response would wait for the reader's lock (until the watch times out);
        # shutting the socket down wakes the reader at once.
        if self.connection.sock is not None:
            with contextlib.suppress(OSError):
                self.connection.sock.shutdown(socket.SHUT_RDWR)
        self.reader.join(timeout=30)
        self.connection.close()


def _diagnosis(cluster: Cluster, namespace: str, outputs: Path) -> str:
    """What went wrong, for a failure message: the pods, Calrissian's log, cwltool's log."""
    parts = []
    for pod in job_pods(cluster, namespace, RUN):
        name = pod["metadata"]["name"]
        parts.append(f"--- pod {name}: {json.dumps(pod.get('status'))[:2000]}")
        _, log = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}/log")
        parts.append(str(log)[-4000:])
    log_file = outputs / "cwltool.log"
    if log_file.exists():
        parts.append(f"--- cwltool.log\n{log_file.read_text()[-4000:]}")
    parts.append(node_log(cluster))
    return "\n".join(parts)


async def test_a_demo_pipeline_runs_through_the_broker_on_the_real_kubelet(
    cluster: Cluster, kubelet_node, tmp_path
):
    archive, work = tmp_path / "archive", tmp_path / "work"
    write(archive, "psa-rosetta/tables/temperatures.csv", TABLE)
    folder = user_folder("alice")
    for claim in WORK_CLAIMS:
        (work / claim / folder).mkdir(parents=True)
        os.chown(work / claim / folder, STEP_UID, STEP_GID)
    namespace, to_delete = _namespace(cluster, archive, work)
    placement = on_kubelet_node({})
    broker = RunBroker(
        RunBrokerSettings(
            namespace=namespace,
            input_dir=str(work / "calrissian-input-data"),
            archive_dir=str(archive),
            image=CALRISSIAN_IMAGE,
            image_pull_policy="Never",
            node_selector=placement["nodeSelector"],
            tolerations=tuple(placement["tolerations"]),
            max_ram="1Gi",
            max_cores=1,
            max_time_limit=600,
            kubeconfig=str(cluster.kubeconfig("datalabs-hub", namespace)),
        )
    )
    pipeline = load_pipeline(REPO / "config/catalogue/rosetta/pipelines/csv-plot.cwl", "rosetta")
    volumes = {
        "psa-rosetta": Volume(
            "psa-rosetta", "PSA", "Rosetta", VolumeSource("local", path="psa-rosetta")
        )
    }
    inputs = {
        "table": {
            "class": "File",
            "path": "/data/psa-rosetta/tables/temperatures.csv",
            "format": "http://edamontology.org/format_3752",
        },
        "x_column": "time",
        "y_column": "temperature",
    }
    outputs = work / "calrissian-output-data" / folder / RUN
    watch = _RunPods(cluster, namespace)
    try:
        started = time.monotonic()
        answer = await broker.submit(
            "alice", RUN, pipeline, inputs, readable(volumes, Who("alice")), LAB_IMAGE
        )
        assert answer["volumes"] == ["psa-rosetta"], answer

        def ended():
            status, job = cluster.request(
                "GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/{job_name(RUN)}"
            )
            assert status == 200, job
            done = [
                c["type"]
                for c in (job.get("status") or {}).get("conditions") or []
                if c["type"] in ("Complete", "Failed") and c["status"] == "True"
            ]
            return done[0] if done else None

        try:
            cluster.wait_for("the run's Job to end", ended, timeout=180)
        except TimeoutError as e:
            raise AssertionError(f"{e}\n{_diagnosis(cluster, namespace, outputs)}") from None
        elapsed = time.monotonic() - started
        state = await broker.status("alice", RUN)
        assert state["state"] == "success", _diagnosis(cluster, namespace, outputs)
        print(f"run ended success in {elapsed:.1f} s")

        # The Job's pod and the step pod Calrissian made, both run by the real node.
        def both_seen():
            pods = list(watch.pods.values())
            return pods if len(pods) >= 2 else None

        pods = cluster.wait_for("the Job's and the step's pod in the watch", both_seen, 30)
        calrissian = [p for p in pods if p["metadata"]["labels"].get(STEP_LABEL) is None]
        steps = [p for p in pods if p["metadata"]["labels"].get(STEP_LABEL) is not None]
        assert len(calrissian) == 1 and len(steps) == 1, sorted(watch.pods)
        job_pod, step = calrissian[0], steps[0]
        assert job_pod["spec"]["serviceAccountName"] == run_service_account("alice")
        assert job_pod["spec"]["containers"][0]["image"] == CALRISSIAN_IMAGE
        assert step["metadata"]["labels"][STEP_LABEL] == "draw"
        assert step["spec"]["containers"][0]["image"] == LAB_IMAGE
        assert step["spec"]["automountServiceAccountToken"] is False
        for pod in (job_pod, step):
            assert pod["spec"].get("nodeName") == KUBELET_NODE, pod["metadata"]["name"]

        # The outputs, in alice's folder of the output claim, from the table read in place.
        summary = json.loads((outputs / "outputs" / "summary.json").read_text())
        assert summary == {
            "time": {"min": 0.0, "max": 3.0, "mean": 1.5, "count": 4},
            "temperature": {"min": 150.0, "max": 180.0, "mean": 166.5, "count": 4},
        }
        assert "<polyline" in (outputs / "outputs" / "plot.svg").read_text()
        result = json.loads((outputs / "output.json").read_text())
        assert result["summary"]["location"] == (
            f"file:///calrissian/output-data/{RUN}/outputs/summary.json"
        )
        # nothing of the run outside alice's folders
        for claim in WORK_CLAIMS:
            assert [p.name for p in (work / claim).iterdir() if p.name != folder] in (
                [],
                [f".datalabs-broker-{folder}"],
            )
    finally:
        watch.close()
        for path in to_delete:
            cluster.request("DELETE", path)
