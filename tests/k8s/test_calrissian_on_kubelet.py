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

import json
import time
from pathlib import Path

import pytest

from datalabs_pipelines.catalogue import load_pipeline
from datalabs_pipelines.executors.kubernetes import (
    CALRISSIAN_IMAGE,
    RUN_LABEL,
    STEP_LABEL,
    run_service_account,
    user_folder,
)
from datalabs_volumes.access import Who, readable
from datalabs_volumes.models import Volume, VolumeSource
from tests.cluster import Cluster
from tests.helpers import write
from tests.k8s.conftest import LAB_IMAGE
from tests.k8s.kubelet_runs import KubeletRuns, RunPods, diagnosis
from tests.k8s.pipeline_runs import WORK_CLAIMS
from tests.kubelet_node import KUBELET_NODE

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[2]
RUN = "ca11ab1e00c0ffee"
TABLE = "time,temperature,note\n0,150,a\n1,165,b\n2,180,c\n3,171,d\n"


async def test_a_demo_pipeline_runs_through_the_broker_on_the_real_kubelet(
    cluster: Cluster, kubelet_node, tmp_path
):
    archive, work = tmp_path / "archive", tmp_path / "work"
    write(archive, "psa-rosetta/tables/temperatures.csv", TABLE)
    folder = user_folder("alice")
    runs = KubeletRuns(cluster, archive, work)
    runs.user_folders("alice")
    namespace, broker = runs.namespace, runs.broker
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
    watch = RunPods(cluster, namespace, f"{RUN_LABEL}={RUN}")
    try:
        started = time.monotonic()
        answer = await broker.submit(
            "alice", RUN, pipeline, inputs, readable(volumes, Who("alice")), LAB_IMAGE
        )
        assert answer["volumes"] == ["psa-rosetta"], answer

        try:
            cluster.wait_for("the run's Job to end", lambda: runs.job_end(RUN), timeout=180)
        except TimeoutError as e:
            raise AssertionError(f"{e}\n{diagnosis(cluster, namespace, RUN, outputs)}") from None
        elapsed = time.monotonic() - started
        state = await broker.status("alice", RUN)
        assert state["state"] == "success", diagnosis(cluster, namespace, RUN, outputs)
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
        runs.close()
