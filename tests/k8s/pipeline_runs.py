"""Helpers of the pipeline-run tests on the test cluster: claims, archive volumes, step pods.

- ``run_namespace(cluster)``: a restricted namespace with the archive claim (ReadOnlyMany) and
  the three work claims (ReadWriteMany) bound, as the chart and docs/pipelines.md lay them out.
- ``ARCHIVES``: the demo catalogue's ``local`` volumes as folders of that one archive claim.
- ``calrissian_step_pods(job_pod, steps, env)``: the step pods the real Calrissian builds from
  the Job's pod (read back from the API server), through ``tests/k8s/calrissian_steps.py`` in
  ``.venv-calrissian``.
- ``wait_pod_running(cluster, namespace, name)``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datalabs_pipelines.executors.kubernetes import BROKER_RULES, ArchiveVolume
from tests.cluster import Cluster
from tests.k8s.conftest import restricted_namespace

REPO = Path(__file__).resolve().parents[2]
CALRISSIAN_PYTHON = REPO / ".venv-calrissian" / "bin" / "python"
ARCHIVE_CLAIM = "datalabs-archive"
WORK_CLAIMS = ("calrissian-input-data", "calrissian-tmpout", "calrissian-output-data")
#: The demo catalogue's local volumes, each a folder of the one archive claim.
ARCHIVES = tuple(
    ArchiveVolume(vid, ARCHIVE_CLAIM, f"/data/{vid}", vid)
    for vid in ("psa-rosetta", "spice-juice", "rosetta-restricted")
)
RESTRICTED = "rosetta-restricted"
#: What bob may read: everything but the restricted volume.
BOB_ARCHIVES = tuple(a for a in ARCHIVES if a.id != RESTRICTED)


def run_namespace(cluster: Cluster) -> str:
    name = restricted_namespace(cluster)
    cluster.bound_volume(name, ARCHIVE_CLAIM, "ReadOnlyMany")
    for claim in WORK_CLAIMS:
        cluster.bound_volume(name, claim, "ReadWriteMany", path="/srv/work")
    return name


def grant_broker(cluster: Cluster, namespace: str) -> None:
    """Give the hub (user ``datalabs-hub``) the broker's rights (``BROKER_RULES``) in
    ``namespace``, as the chart's Role and RoleBinding do."""
    cluster.grant(namespace, "hub-runs", BROKER_RULES)


def broker_namespace(cluster: Cluster) -> Iterator[str]:
    """A run namespace where the hub (user ``datalabs-hub``) has the broker's rights
    (``BROKER_RULES``); deleted at the end. For fixtures: ``yield from broker_namespace(c)``."""
    name = run_namespace(cluster)
    grant_broker(cluster, name)
    yield name
    cluster.request("DELETE", f"/api/v1/namespaces/{name}")


def calrissian_step_pods(
    job_pod: dict[str, Any], steps: list[dict[str, Any]], env: dict[str, str], patched=True
) -> list[dict[str, Any]]:
    if not os.access(CALRISSIAN_PYTHON, os.X_OK):
        raise RuntimeError(
            f"{CALRISSIAN_PYTHON} is missing: run `make calrissian-venv` (Calrissian from PyPI "
            "in a venv of its own)"
        )
    done = subprocess.run(
        [str(CALRISSIAN_PYTHON), str(REPO / "tests/k8s/calrissian_steps.py")],
        input=json.dumps({"pod": job_pod, "steps": steps, "env": env, "patched": patched}),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"calrissian_steps.py failed:\n{done.stderr}")
    return json.loads(done.stdout)


def wait_pod_running(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    def running():
        _, got = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
        return got if (got.get("status") or {}).get("phase") == "Running" else None

    return cluster.wait_for(f"pod {namespace}/{name} Running", running)


def job_pods(cluster: Cluster, namespace: str, run_id: str) -> list[dict[str, Any]]:
    """Every pod labelled as part of the run (the Job's and the steps')."""
    status, answer = cluster.request(
        "GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector=datalabs.io/run-id={run_id}"
    )
    assert status == 200, answer
    return answer["items"]
