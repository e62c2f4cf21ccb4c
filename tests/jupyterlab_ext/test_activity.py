"""A session with a pipeline run under way is not idle: the hub's idle culler must see activity.

jupyter-server reports its last activity at ``/api/status`` (which itself counts as none);
jupyterhub-singleuser sends the same figure to the hub, where jupyterhub-idle-culler reads it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import requests

from tests.jupyterlab_ext.conftest import REPO, TOKENS


def last_activity(server) -> datetime:
    r = requests.get(
        f"{server.url}/api/status",
        headers={"Authorization": f"token {TOKENS['alice']}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return datetime.fromisoformat(r.json()["last_activity"].replace("Z", "+00:00"))


def test_a_running_pipeline_keeps_the_session_active(start_server, tmp_path: Path):
    pipelines = tmp_path / "catalogue" / "test" / "pipelines"
    pipelines.mkdir(parents=True)
    gate = tmp_path / "gate"
    (pipelines / "wait.cwl").write_text(
        "cwlVersion: v1.2\nclass: CommandLineTool\nlabel: Wait for a file\n"
        "baseCommand: [sh, -c, 'while [ ! -e \"$0\" ]; do sleep 0.1; done']\n"
        "inputs: {gate: {type: string, inputBinding: {position: 1}}}\noutputs: []\n"
    )
    server = start_server(
        catalogue_dirs=[str(REPO / "config" / "catalogue"), str(tmp_path / "catalogue")]
    )
    try:
        r = server.post("runs", {"pipeline": "test/wait", "inputs": {"gate": str(gate)}})
        assert r.status_code == 201, r.text
        run_id = r.json()["id"]
        submitted = datetime.now(UTC)
        # No request reaches the session from here on, but the run goes on: activity moves.
        deadline = time.monotonic() + 60
        while last_activity(server) <= submitted:
            assert time.monotonic() < deadline, "no activity reported while the run is under way"
            time.sleep(0.2)
        assert server.get(f"runs/{run_id}").json()["state"] == "running"
    finally:
        gate.touch()
