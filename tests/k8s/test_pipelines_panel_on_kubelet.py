"""The whole user path of a cluster run, on the real kubelet node: alice's Pipelines panel to a
Calrissian Job and back to her runs viewer.

A real JupyterHub (tests/k8s/hub_on_kubelet_config.py with ``runs``, configured as the chart's
``runs.enabled``) spawns alice's JupyterLab pod on the node with her user folders of the work
claims and the archive volume ``psa-rosetta``. Her session gets the run request the Pipelines
panel sends (``POST <her server>/datalabs/api/runs``: the demo pipeline ``rosetta/csv-plot`` and a
table on the archive volume) and, being configured with ``executor = "kubernetes"``, asks the
hub's run broker with her own token; the broker checks the run and creates the Calrissian Job,
whose step pod runs on the node. Then, through her session's API as the runs viewer reads it:
the run ends ``success``, the step ``draw`` has its state, its event and its log (the step
pod's own log text), and the outputs are in her run folder where the viewer opens them.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import requests

from datalabs_pipelines.executors.kubernetes import user_folder
from tests.cluster import Cluster
from tests.helpers import write
from tests.k8s.conftest import LAB_IMAGE
from tests.k8s.pipeline_runs import WORK_CLAIMS, grant_broker
from tests.k8s.test_kubelet_node import hub_namespace_on, hub_on_kubelet
from tests.kubelet_node import node_log

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[2]
TABLE = "time,temperature,note\n0,150,a\n1,165,b\n2,180,c\n3,171,d\n"
#: The session and the steps run as the image's user, uid 1000 in group 100; host folders get
#: no fsGroup, so alice's work folders are made theirs.
LAB_UID, LAB_GID = 1000, 100
HOME = "/home/jovyan"


def _catalogue(root: Path) -> Path:
    catalogue = root / "catalogue"
    write(
        catalogue,
        "rosetta/datalabs/planetary.yaml",
        f"title: Planetary\nkind: notebook\nimage: {LAB_IMAGE}\ndefault_url: /lab\n",
    )
    write(
        catalogue,
        "rosetta/volumes/psa-rosetta.yaml",
        "id: psa-rosetta\ntitle: PSA Rosetta\nsource: {type: local, path: psa-rosetta}\n",
    )
    demo = REPO / "config/catalogue/rosetta/pipelines"
    write(catalogue, "rosetta/pipelines/csv-plot.cwl", (demo / "csv-plot.cwl").read_text())
    shutil.copytree(demo / "tools", catalogue / "rosetta/pipelines/tools")
    return catalogue


def _diagnosis(cluster: Cluster, namespace: str, hub, outputs: Path) -> str:
    parts = []
    _, pods = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods")
    for pod in pods.get("items") or []:
        name = pod["metadata"]["name"]
        parts.append(f"--- pod {name}: {json.dumps(pod.get('status'))[:1500]}")
        _, log = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}/log")
        parts.append(str(log)[-3000:])
    for path in sorted(outputs.rglob("*.log")) if outputs.exists() else []:
        parts.append(f"--- {path}\n{path.read_text()[-3000:]}")
    parts.append(f"--- hub log\n{hub.log.read_text()[-4000:]}")
    parts.append(node_log(cluster))
    return "\n".join(parts)


def test_a_run_from_the_pipelines_panel_runs_on_the_cluster_and_comes_back_to_the_viewer(
    cluster: Cluster, kubelet_node, tmp_path
):
    archive, work = tmp_path / "archive", tmp_path / "work"
    write(archive, "psa-rosetta/tables/temperatures.csv", TABLE)
    for path in (tmp_path, archive, archive / "psa-rosetta", archive / "psa-rosetta/tables"):
        path.chmod(0o755)
    folder = user_folder("alice")
    for claim in WORK_CLAIMS:
        (work / claim / folder).mkdir(parents=True)
        os.chown(work / claim / folder, LAB_UID, LAB_GID)
    work.chmod(0o755)
    namespace = hub_namespace_on(cluster, archive)
    grant_broker(cluster, namespace)  # the chart adds them to the hub's Role
    for claim in WORK_CLAIMS:
        cluster.bound_volume(namespace, claim, "ReadWriteMany", path=str(work / claim))
    runs = {"input_dir": str(work / "calrissian-input-data"), "archive_dir": str(archive)}
    results = work / "calrissian-output-data" / folder
    try:
        with hub_on_kubelet(
            cluster, namespace, _catalogue(tmp_path), tmp_path / "hub", runs=runs
        ) as hub:
            r = hub.api("POST", "users/alice")
            assert r.status_code in (201, 409), r.text
            r = hub.api(
                "POST",
                "users/alice/server",
                json={"profile": "planetary", "volumes": ["psa-rosetta"]},
            )
            assert r.status_code in (201, 202), r.text
            hub.wait_ready("alice", timeout=240)
            # Alice's own credentials, as her browser's: her session records her runs as hers
            # and asks the broker for her.
            r = hub.api("POST", "users/alice/tokens", json={"note": "the Pipelines panel"})
            assert r.status_code == 201, r.text
            alice = {"Authorization": f"token {r.json()['token']}"}

            def session(method: str, path: str, **kw) -> requests.Response:
                kw.setdefault("timeout", 30)
                return requests.request(method, f"{hub.url}/user/alice/{path}", headers=alice, **kw)

            # What the Pipelines panel sends: the pipeline and a table picked on the volume.
            r = session(
                "POST",
                "datalabs/api/runs",
                json={
                    "pipeline": "rosetta/csv-plot",
                    "inputs": {
                        "table": {
                            "class": "File",
                            "path": "data/psa-rosetta/tables/temperatures.csv",
                        },
                        "x_column": "time",
                        "y_column": "temperature",
                    },
                },
            )
            assert r.status_code == 201, r.text
            run_id = r.json()["id"]

            def ended():
                r = session("GET", f"datalabs/api/runs/{run_id}")
                assert r.status_code == 200, r.text
                run = r.json()
                return run if run["state"] in ("success", "failed", "cancelled") else None

            try:
                run = cluster.wait_for("alice's run to end", ended, timeout=240)
            except TimeoutError as e:
                raise AssertionError(
                    f"{e}\n{_diagnosis(cluster, namespace, hub, results)}"
                ) from None
            assert run["state"] == "success", (
                f"{json.dumps(run)}\n{_diagnosis(cluster, namespace, hub, results)}"
            )

            # The Job ran in the cluster and wrote into alice's folder of the output claim.
            assert (results / run_id / "output.json").is_file()

            # The runs viewer: the step's state, its event on the live stream, its log.
            steps = {s["name"]: s for s in run["steps"]}
            assert list(steps) == ["draw"], run["steps"]
            assert steps["draw"]["state"] == "success", steps
            r = session("GET", f"datalabs/api/runs/{run_id}/events")
            assert r.status_code == 200, r.text
            events = [
                json.loads(line[len("data: ") :])
                for line in r.text.splitlines()
                if line.startswith("data: ")
            ]
            assert {"kind": "step", "step": "draw", "state": "success"} in [
                {k: e.get(k) for k in ("kind", "step", "state")} for e in events
            ], events
            assert events[-1] == {"state": "success"}, events
            r = session("GET", f"datalabs/api/runs/{run_id}/log", params={"step": "draw"})
            assert r.status_code == 200, r.text
            # the step pod's own log text (the tool's stderr), as Calrissian read it
            assert "plotted 4 points of temperature against time" in r.text, r.text
            r = session("GET", f"datalabs/api/runs/{run_id}/log")
            assert "Final process status is success" in r.text, r.text

            # The outputs, where the viewer opens them: her run folder in her workspace.
            summary = run["outputs"]["summary"]
            assert summary["path"].startswith(HOME + "/"), summary
            r = session("GET", "api/contents/" + summary["path"][len(HOME) + 1 :])
            assert r.status_code == 200, r.text
            assert json.loads(r.json()["content"]) == {
                "time": {"min": 0.0, "max": 3.0, "mean": 1.5, "count": 4},
                "temperature": {"min": 150.0, "max": 180.0, "mean": 166.5, "count": 4},
            }
            plot = run["outputs"]["plot"]["path"]
            r = session("GET", "api/contents/" + plot[len(HOME) + 1 :])
            assert "<polyline" in r.json()["content"], r.text
            hub.stop_server("alice", timeout=120)
    finally:
        cluster.request("DELETE", f"/api/v1/namespaces/{namespace}")
        for claim in WORK_CLAIMS:
            cluster.request("DELETE", f"/api/v1/persistentvolumes/{namespace}-{claim}")
