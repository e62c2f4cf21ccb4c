"""Jobs sent to ``POST runs`` cannot read or write outside the user's workspace and volumes.

A real jupyter-server with the demo catalogue; the pipeline is ``esasky/bright-sources``
(one File input, ``catalogue``). Each refusal is a 400 naming the input and the field.
"""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest
import requests

from tests.jupyterlab_ext.conftest import TOKENS

CSV = "ra,dec,magnitude,name\n10.68,41.27,3.4,M31\n"
PIPELINE = "esasky/bright-sources"


def launch(server, catalogue, user="alice"):
    return server.post("runs", {"pipeline": PIPELINE, "inputs": {"catalogue": catalogue}}, user)


def assert_refused(response, field: str, words: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    problems = [p for p in body["problems"] if p["input"] == "catalogue"]
    assert problems, body
    assert field in problems[0]["message"] and words in problems[0]["message"], body


def test_a_basename_cannot_place_a_file_outside_the_run_folder(server, tmp_path):
    escape = tmp_path / "escaped.txt"
    depth = "../" * 12
    literal = {"class": "File", "contents": CSV, "basename": f"{depth}{escape.relative_to('/')}"}
    assert_refused(launch(server, literal), "basename", "not a plain file name")
    assert server.get("runs").json()["runs"] == []
    assert not escape.exists()


@pytest.mark.parametrize("where", ["other-user", "archive-root"])
def test_secondary_files_outside_the_workspace_are_refused(server, tmp_path, where):
    (server.root / "sources.csv").write_text(CSV)
    # Another user's workspace, or an archive root nobody attached: both outside alice's.
    outside = tmp_path / ("bob-workspace" if where == "other-user" else "archive") / "secret.txt"
    outside.parent.mkdir()
    outside.write_text("not alice's\n")
    job = {
        "class": "File",
        "path": "sources.csv",
        "secondaryFiles": [{"class": "File", "location": outside.as_uri()}],
    }
    assert_refused(launch(server, job), "secondaryFiles[0].location", "outside your workspace")
    assert server.get("runs").json()["runs"] == []


def test_a_location_cannot_hide_behind_a_path_inside_the_workspace(server, tmp_path):
    (server.root / "sources.csv").write_text(CSV)
    outside = tmp_path / "secret.csv"
    outside.write_text(CSV)
    job = {"class": "File", "path": "sources.csv", "location": str(outside)}
    assert_refused(launch(server, job), "location", "outside your workspace")


def test_a_directory_listing_outside_the_workspace_is_refused(server, tmp_path):
    (server.root / "sources.csv").write_text(CSV)
    outside = tmp_path / "elsewhere.csv"
    outside.write_text(CSV)
    job = {
        "class": "File",
        "path": "sources.csv",
        "secondaryFiles": [
            {
                "class": "Directory",
                "basename": "d",
                "listing": [{"class": "File", "path": str(outside)}],
            }
        ],
    }
    assert_refused(launch(server, job), "secondaryFiles[0].listing[0].path", "outside")


def test_a_deeply_nested_body_is_a_400_not_a_500(server):
    body = "[" * 100_000 + "]" * 100_000
    r = requests.post(
        server.api("runs"),
        data=body,
        headers={"Authorization": f"token {TOKENS['alice']}"},
        timeout=60,
    )
    assert r.status_code == 400, r.text[:500]
    assert "message" in r.json()


def own_pipeline(server, name: str, text: str) -> str:
    """A pipeline written straight into the user's own catalogue folder (in the workspace),
    as a terminal could, bypassing the editor's publish check; its id."""
    user = getpass.getuser()
    folder = Path(server.root) / ".datalabs" / "catalogue" / user / "pipelines"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.cwl").write_text(text)
    return f"{user}/{name}"


def test_a_users_own_pipeline_cannot_include_a_host_file(server, tmp_path):
    secret = tmp_path / "host-secret.txt"
    secret.write_text("HostSecret-1234\n")
    pid = own_pipeline(
        server,
        "leak",
        "cwlVersion: v1.2\nclass: CommandLineTool\nlabel: Leak\n"
        f"doc: {{$include: {secret}}}\nbaseCommand: [echo]\ninputs: []\noutputs: []\n",
    )
    listing = server.get("pipelines")
    assert "HostSecret-1234" not in listing.text
    problems = [p for p in listing.json()["problems"] if p["path"].endswith("leak.cwl")]
    assert problems and "$include" in problems[0]["reason"], listing.json()["problems"]
    shown = server.get(f"pipelines/{pid}")
    assert shown.status_code == 404 and "HostSecret-1234" not in shown.text
    r = server.post("runs", {"pipeline": pid, "inputs": {}})
    assert r.status_code in (400, 404) and "HostSecret-1234" not in r.text
    assert server.get("runs").json()["runs"] == []


def test_a_users_own_pipeline_cannot_run_a_tool_outside_the_workspace(server, tmp_path):
    tool = tmp_path / "tool.cwl"
    tool.write_text(
        "cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: [echo, hi]\n"
        "inputs: []\noutputs: []\n"
    )
    pid = own_pipeline(
        server,
        "outside",
        "cwlVersion: v1.2\nclass: Workflow\nlabel: Outside\ninputs: []\noutputs: []\n"
        f"steps:\n  s1: {{run: {tool}, in: [], out: []}}\n",
    )
    r = server.post("runs", {"pipeline": pid, "inputs": {}})
    assert r.status_code in (400, 404), r.text
    assert server.get("runs").json()["runs"] == []
