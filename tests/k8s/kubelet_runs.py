"""Cluster runs for real on the kubelet node: what the tests and tools that run Calrissian Jobs
through the run broker share (tests/k8s/test_calrissian_on_kubelet.py, the conformance tests
of tests/k8s/conformance_runs.py, benchmarks/cluster_pipeline.py).

- ``KubeletRuns(cluster, archive, work)``: a restricted namespace with the broker's Role for
  the hub, the archive claim on the host folder ``archive`` and the three work claims under
  ``work`` (hostPath PersistentVolumes), and a :class:`RunBroker` placed on the real node;
  ``user_folders(user)`` makes a user's work folders theirs (the step's uid); ``close()``
  deletes what it made.
- ``job_end(cluster, namespace, run_id)``: ``"Complete"``, ``"Failed"`` or ``None``.
- ``RunPods(cluster, namespace, selector)``: every pod of a label selector as a watch saw it.
- ``diagnosis(cluster, namespace, run_id, outputs)``: pods, Calrissian's and cwltool's logs.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import ssl
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from datalabs_pipelines.executors.kubernetes import (
    CALRISSIAN_IMAGE,
    job_name,
    user_folder,
)
from datalabs_spawner.run_broker import RunBroker, RunBrokerSettings
from tests.cluster import Cluster
from tests.k8s.conftest import restricted_namespace
from tests.k8s.pipeline_runs import ARCHIVE_CLAIM, WORK_CLAIMS, grant_broker, job_pods
from tests.kubelet_node import node_log, on_kubelet_node

#: The pipelines' steps run as the image's user, uid 1000 in group 100 (Pod Security
#: "restricted"); host folders get no fsGroup, so a user's work folders are made theirs.
STEP_UID, STEP_GID = 1000, 100
OUTPUT_CLAIM = "calrissian-output-data"


class KubeletRuns:
    """A namespace with the archive and work claims on host folders and a broker for it."""

    def __init__(
        self,
        cluster: Cluster,
        archive: Path,
        work: Path,
        *,
        max_ram: str = "1Gi",
        max_cores: int = 1,
        max_time_limit: int = 600,
    ) -> None:
        self.cluster, self.archive, self.work = cluster, archive, work
        self.namespace = restricted_namespace(cluster)
        self._to_delete = [
            f"/api/v1/namespaces/{self.namespace}",
            *(
                f"/api/v1/persistentvolumes/{self.namespace}-{c}"
                for c in (ARCHIVE_CLAIM, *WORK_CLAIMS)
            ),
        ]
        grant_broker(cluster, self.namespace)
        cluster.bound_volume(self.namespace, ARCHIVE_CLAIM, "ReadOnlyMany", path=str(archive))
        for claim in WORK_CLAIMS:
            (work / claim).mkdir(parents=True, exist_ok=True)
            cluster.bound_volume(self.namespace, claim, "ReadWriteMany", path=str(work / claim))
        placement = on_kubelet_node({})
        self.broker = RunBroker(
            RunBrokerSettings(
                namespace=self.namespace,
                input_dir=str(work / "calrissian-input-data"),
                archive_dir=str(archive),
                image=CALRISSIAN_IMAGE,
                image_pull_policy="Never",
                node_selector=placement["nodeSelector"],
                tolerations=tuple(placement["tolerations"]),
                max_ram=max_ram,
                max_cores=max_cores,
                max_time_limit=max_time_limit,
                kubeconfig=str(cluster.kubeconfig("datalabs-hub", self.namespace)),
            )
        )

    def user_folders(self, user: str) -> None:
        """The user's folder of each work claim, owned by the steps' uid."""
        folder = user_folder(user)
        for claim in WORK_CLAIMS:
            path = self.work / claim / folder
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, STEP_UID, STEP_GID)

    def outputs(self, user: str, run_id: str) -> Path:
        """Where the run's output folder lies on the host."""
        return self.work / OUTPUT_CLAIM / user_folder(user) / run_id

    def job_end(self, run_id: str) -> str | None:
        return job_end(self.cluster, self.namespace, run_id)

    def close(self) -> None:
        for path in self._to_delete:
            self.cluster.request("DELETE", path)


def job_end(cluster: Cluster, namespace: str, run_id: str) -> str | None:
    """The run's Job's final condition (``Complete`` or ``Failed``), ``None`` while it runs."""
    status, job = cluster.request(
        "GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/{job_name(run_id)}"
    )
    assert status == 200, job
    done = [
        c["type"]
        for c in (job.get("status") or {}).get("conditions") or []
        if c["type"] in ("Complete", "Failed") and c["status"] == "True"
    ]
    return done[0] if done else None


class RunPods:
    """Every pod of a label selector as a watch last saw it, deleted ones included: Calrissian
    deletes each step pod as soon as it is done, which polling could miss on a fast run."""

    def __init__(self, cluster: Cluster, namespace: str, selector: str, timeout: int = 300):
        self.pods: dict[str, dict] = {}
        api = urlparse(cluster.api_url)
        context = ssl.create_default_context(cafile=str(cluster.ca))
        self.connection = http.client.HTTPSConnection(
            api.hostname, api.port, context=context, timeout=timeout + 30
        )
        self.connection.request(
            "GET",
            f"/api/v1/namespaces/{namespace}/pods?watch=true&timeoutSeconds={timeout}"
            f"&labelSelector={quote(selector)}",
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


def diagnosis(
    cluster: Cluster, namespace: str, run_id: str, outputs: Path, node: bool = True
) -> str:
    """What went wrong, for a failure message: the pods, Calrissian's log, cwltool's log."""
    parts = []
    for pod in job_pods(cluster, namespace, run_id):
        name = pod["metadata"]["name"]
        parts.append(f"--- pod {name}: {json.dumps(pod.get('status'))[:2000]}")
        _, log = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}/log")
        parts.append(str(log)[-4000:])
    log_file = outputs / "cwltool.log"
    if log_file.exists():
        parts.append(f"--- cwltool.log\n{log_file.read_text()[-4000:]}")
    if node:
        parts.append(node_log(cluster))
    return "\n".join(parts)


def pod_times(pod: dict[str, Any]) -> dict[str, str]:
    """A pod's timestamps: created, scheduled, started (containers running), finished."""
    status = pod.get("status") or {}
    conditions = {c["type"]: c.get("lastTransitionTime") for c in status.get("conditions") or []}
    out = {"created": pod["metadata"].get("creationTimestamp", "")}
    if conditions.get("PodScheduled"):
        out["scheduled"] = conditions["PodScheduled"]
    states = [s.get("state") or {} for s in status.get("containerStatuses") or []]
    started = [s[k]["startedAt"] for s in states for k in ("running", "terminated") if k in s]
    if started:
        out["started"] = min(started)
    finished = [s["terminated"].get("finishedAt") for s in states if "terminated" in s]
    if finished and all(finished):
        out["finished"] = max(finished)
    return out
