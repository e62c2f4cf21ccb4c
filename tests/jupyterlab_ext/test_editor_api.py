"""The Pipeline Editor's REST API (``editor/...``) against a real jupyter-server and cwltool."""

from __future__ import annotations

import getpass
import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.pipelines.samples import COUNT, HEAD, UPPER

pytestmark = pytest.mark.slow


WORKFLOW = """\
# Counts the lines of a text file (this comment must survive a save).
cwlVersion: v1.2
class: Workflow
label: Count
inputs:
  src: File  # the text to count
outputs:
  result:
    type: File
    outputSource: count/counted
steps:
  count:
    run: tools/count.cwl
    in:
      file: src
    out: [counted]
"""


@pytest.fixture
def workspace(server):
    tools = server.root / "tools"
    tools.mkdir()
    (tools / "count.cwl").write_text(COUNT)
    (tools / "upper.cwl").write_text(UPPER)
    (tools / "head.cwl").write_text(HEAD)
    (server.root / "wf.cwl").write_text(WORKFLOW)
    hidden = server.root / ".hidden"
    hidden.mkdir()
    (hidden / "secret.cwl").write_text(COUNT)
    return server


def put(server, path, body, user="alice"):
    return requests.put(
        server.api("editor/graph"),
        params={"path": path},
        data=json.dumps(body),
        headers={"Authorization": f"token {_token(user)}"},
        timeout=60,
    )


def _token(user):
    from tests.jupyterlab_ext.conftest import TOKENS

    return TOKENS[user]


def graph_of(server, path="wf.cwl"):
    response = server.get("editor/graph", params={"path": path})
    assert response.status_code == 200, response.text
    return response.json()["graph"]


def node(graph, node_id):
    return next(n for n in graph["nodes"] if n["id"] == node_id)


def cwltool_validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cwltool", "--validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_unauthenticated_requests_are_refused(workspace):
    assert workspace.get("editor/graph", params={"path": "wf.cwl"}, user=None).status_code == 403
    assert workspace.get("editor/palette", user=None).status_code == 403
    assert workspace.post("editor/check-connection", {}, user=None).status_code == 403


def test_open_a_workflow_as_a_graph(workspace):
    graph = graph_of(workspace)
    kinds = {n["id"]: n["kind"] for n in graph["nodes"]}
    assert kinds == {"src": "input", "result": "output", "count": "step"}
    assert {
        (e["source"], e["source_port"], e["target"], e["target_port"]) for e in graph["edges"]
    } == {
        ("src", "src", "count", "file"),
        ("count", "counted", "result", "result"),
    }
    count = node(graph, "count")
    assert [(p["id"], p["type_label"]) for p in count["inputs"]] == [("file", "File")]
    assert [(p["id"], p["type_label"]) for p in count["outputs"]] == [("counted", "File")]
    # Every node has a place on the canvas, inputs left of steps left of outputs.
    xs = {n["id"]: n["position"][0] for n in graph["nodes"]}
    assert xs["src"] < xs["count"] < xs["result"]


def test_documents_that_cannot_be_opened_say_why(workspace):
    missing = workspace.get("editor/graph", params={"path": "nothing.cwl"})
    assert missing.status_code == 404 and "nothing.cwl" in missing.json()["message"]

    (workspace.root / "broken.cwl").write_text("class: Workflow\ninputs: [unclosed\n")
    broken = workspace.get("editor/graph", params={"path": "broken.cwl"})
    assert broken.status_code == 400
    assert "not valid YAML" in broken.json()["message"]

    tool = workspace.get("editor/graph", params={"path": "tools/count.cwl"})
    assert tool.status_code == 400 and "not a Workflow" in tool.json()["message"]

    # draft-3 (and no cwlVersion): not edited as if it were v1.x, but the way to upgrade it
    (workspace.root / "old.cwl").write_text(
        WORKFLOW.replace("cwlVersion: v1.2", "cwlVersion: draft-3")
    )
    old = workspace.get("editor/graph", params={"path": "old.cwl"})
    assert old.status_code == 400
    assert old.json()["message"].startswith("old.cwl is CWL draft-3, not CWL v1.x")
    assert "cwl-upgrader --v1-only --dir upgraded old.cwl" in old.json()["message"]

    assert workspace.get("editor/graph").status_code == 400


def test_paths_outside_the_workspace_are_refused(workspace, tmp_path):
    outside = tmp_path / "outside.cwl"
    outside.write_text(WORKFLOW)
    (workspace.root / "link.cwl").symlink_to(outside)
    for path in ("../outside.cwl", "link.cwl", "tools/../../outside.cwl"):
        response = workspace.get("editor/graph", params={"path": path})
        assert response.status_code == 403, path
        assert "outside your workspace" in response.json()["message"]

    graph = graph_of(workspace)
    assert put(workspace, "../written.cwl", {"graph": graph}).status_code == 403
    assert not (tmp_path / "written.cwl").exists()

    added = workspace.post(
        "editor/add-step", {"path": "wf.cwl", "graph": graph, "tool": "../outside.cwl"}
    )
    assert added.status_code == 403
    published = workspace.post("editor/publish", {"path": "../outside.cwl", "label": "x"})
    assert published.status_code == 403


def test_build_save_and_validate_a_workflow(workspace):
    graph = graph_of(workspace)
    added = workspace.post(
        "editor/add-step",
        {"path": "wf.cwl", "graph": graph, "tool": "tools/upper.cwl", "position": [300, 200]},
    )
    assert added.status_code == 200, added.text
    assert added.json()["step"] == "upper"
    graph = added.json()["graph"]
    upper = node(graph, "upper")
    assert upper["position"] == [300, 200]
    assert [p["id"] for p in upper["inputs"]] == ["text"]

    # Connect the workflow input to the new step, as the canvas does.
    check = workspace.post(
        "editor/check-connection",
        {
            "graph": graph,
            "source": "src",
            "source_port": "src",
            "target": "upper",
            "target_port": "text",
        },
    ).json()
    assert check == {"allowed": True, "reason": None, "warning": None}
    graph["edges"].append(
        {"source": "src", "source_port": "src", "target": "upper", "target_port": "text"}
    )
    next(p for p in upper["inputs"] if p["id"] == "text")["declared"] = True

    saved = put(workspace, "wf.cwl", {"graph": graph})
    assert saved.status_code == 200, saved.text
    assert saved.json()["valid"] is True and saved.json()["problems"] == []
    assert {n["id"] for n in saved.json()["graph"]["nodes"]} == {"src", "result", "count", "upper"}

    text = (workspace.root / "wf.cwl").read_text()
    assert "# Counts the lines of a text file" in text and "# the text to count" in text
    assert "run: tools/upper.cwl" in text
    result = cwltool_validate(workspace.root / "wf.cwl")
    assert result.returncode == 0, result.stderr
    # Reopened, the step is there with its link.
    again = graph_of(workspace)
    assert {"source": "src", "source_port": "src", "target": "upper", "target_port": "text"} in (
        again["edges"]
    )


# Written in a style the YAML writer does not use itself: block sequences not indented under
# their key, a flow mapping with spaces inside the braces, a blank line.
PUBLIC_STYLE = """\
#!/usr/bin/env cwl-runner
cwlVersion: v1.2
class: Workflow
requirements:
- class: StepInputExpressionRequirement   # not used, kept
hints: { ResourceRequirement: { coresMin: 1 } }

inputs:
  src: File  # the text to count
outputs:
  result:
    type: File
    outputSource: count/counted
steps:
  count:
    run: tools/count.cwl
    in:
      file: src
    out:
    - counted
"""


def test_open_and_save_without_an_edit_leaves_the_file_as_it_was(workspace):
    (workspace.root / "public.cwl").write_text(PUBLIC_STYLE)
    graph = graph_of(workspace, "public.cwl")
    assert all(n["position"] is not None for n in graph["nodes"])  # placed for the canvas
    saved = put(workspace, "public.cwl", {"graph": graph})
    assert saved.status_code == 200, saved.text
    assert saved.json()["valid"] is True
    assert (workspace.root / "public.cwl").read_text() == PUBLIC_STYLE

    # One node moved on the canvas: its position is the only thing written.
    node(graph, "count")["position"] = [500, 60]
    assert put(workspace, "public.cwl", {"graph": graph}).json()["valid"] is True
    text = (workspace.root / "public.cwl").read_text()
    added = [line for line in text.splitlines() if line not in PUBLIC_STYLE.splitlines()]
    assert added == [
        "$namespaces:",
        "  dl: https://datalabs.example/cwl#",
        "    dl:position:",
        "      x: 500",
        "      y: 60",
    ]
    assert all(line in text.splitlines() for line in PUBLIC_STYLE.splitlines())
    assert node(graph_of(workspace, "public.cwl"), "count")["position"] == [500, 60]


def test_a_new_file_can_be_saved_from_a_graph(workspace):
    graph = graph_of(workspace)
    saved = put(workspace, "copies/new.cwl", {"graph": graph})
    assert saved.status_code == 404  # no such folder
    (workspace.root / "copies").mkdir()
    # Without its step, the output's source is gone: cwltool says so, naming that output.
    graph["nodes"] = [n for n in graph["nodes"] if n["kind"] != "step"]
    graph["edges"] = [e for e in graph["edges"] if e["target"] == "result"]
    saved = put(workspace, "copies/new.cwl", {"graph": graph})
    assert saved.status_code == 200, saved.text
    assert (workspace.root / "copies" / "new.cwl").is_file()
    problems = saved.json()["problems"]
    assert saved.json()["valid"] is False and problems
    assert any(p["node"] == "result" for p in problems), problems


def test_a_link_of_the_wrong_type_is_refused_with_its_reason(workspace):
    graph = graph_of(workspace)
    graph = workspace.post(
        "editor/add-step", {"path": "wf.cwl", "graph": graph, "tool": "tools/head.cwl"}
    ).json()["graph"]
    verdict = workspace.post(
        "editor/check-connection",
        {
            "graph": graph,
            "source": "count",
            "source_port": "counted",
            "target": "head",
            "target_port": "lines",
        },
    ).json()
    assert verdict["allowed"] is False
    assert verdict["reason"] == "'count/counted' gives File but 'head/lines' takes int"

    # Saved anyway (the JSON edited by hand), cwltool refuses it and the problem points at the
    # step, its port and the link into it.
    graph["edges"].append(
        {"source": "count", "source_port": "counted", "target": "head", "target_port": "lines"}
    )
    for p in node(graph, "head")["inputs"]:
        p["declared"] = True
    saved = put(workspace, "wf.cwl", {"graph": graph}).json()
    assert saved["valid"] is False
    located = [p for p in saved["problems"] if p["node"] == "head"]
    assert located, saved["problems"]
    assert any(
        e["source"] == "count" and e["target_port"] == "lines" for p in located for e in p["edges"]
    ), located

    bad = workspace.post("editor/check-connection", {"graph": graph, "source": "count"})
    assert bad.status_code == 400 and "target_port" in bad.json()["message"]


def test_palette_lists_catalogue_and_workspace_tools(workspace):
    tools = workspace.get("editor/palette").json()["tools"]
    by_key = {t["key"]: t for t in tools}
    assert "pipeline:esasky/bright-sources" in by_key
    count = by_key["path:tools/count.cwl"]
    assert count["label"] == "Count lines" and count["class"] == "CommandLineTool"
    assert count["inputs"] == [{"id": "file", "type_label": "File"}]
    assert by_key["path:wf.cwl"]["class"] == "Workflow"
    assert not any(".hidden" in k for k in by_key)

    # A catalogue pipeline becomes a step too.
    graph = graph_of(workspace)
    added = workspace.post(
        "editor/add-step",
        {"path": "wf.cwl", "graph": graph, "pipeline": "esasky/bright-sources"},
    )
    assert added.status_code == 200, added.text
    step = node(added.json()["graph"], added.json()["step"])
    assert step["run"].endswith("bright-sources.cwl")
    missing = workspace.post(
        "editor/add-step", {"path": "wf.cwl", "graph": graph, "pipeline": "esasky/nothing"}
    )
    assert missing.status_code == 404


def test_publish_puts_the_workflow_in_the_users_catalogue(workspace):
    published = workspace.post(
        "editor/publish",
        {
            "path": "wf.cwl",
            "name": "line-count",
            "label": "Line counter",
            "doc": "Counts the lines of a text file.",
            "keywords": "lines, text",
            "author": "Alice Astronomer",
        },
    )
    assert published.status_code == 201, published.text
    mission = getpass.getuser()
    pipeline = published.json()["pipeline"]
    assert pipeline["id"] == f"{mission}/line-count"
    target = workspace.root / ".datalabs" / "catalogue" / mission / "pipelines" / "line-count.cwl"
    assert target.is_file()
    # Self-contained: it still validates when the workspace's tools are gone.
    (workspace.root / "tools" / "count.cwl").unlink()
    assert cwltool_validate(target).returncode == 0

    found = workspace.get("pipelines", params={"q": "line counter"}).json()["pipelines"]
    assert [p["id"] for p in found] == [f"{mission}/line-count"]
    assert found[0]["keywords"] == ["lines", "text"]
    assert found[0]["authors"] == ["Alice Astronomer"]
    assert found[0]["doc"] == "Counts the lines of a text file."

    no_label = workspace.post("editor/publish", {"path": "wf.cwl", "name": "x"})
    assert no_label.status_code == 400 and "label" in no_label.json()["message"]
    bad_name = workspace.post("editor/publish", {"path": "wf.cwl", "name": "../x", "label": "x"})
    assert bad_name.status_code == 400 and "cannot be a pipeline name" in bad_name.json()["message"]


def test_run_a_saved_workflow_from_its_draft(workspace, wait_run):
    staged = workspace.post("editor/run-draft", {"path": "wf.cwl"})
    assert staged.status_code == 201, staged.text
    pipeline = staged.json()
    assert pipeline["id"] == f"{getpass.getuser()}-drafts/wf"
    assert pipeline["label"] == "Count (draft)"
    assert [i["id"] for i in pipeline["inputs"]] == ["src"]

    (workspace.root / "text.txt").write_text("one\ntwo\nthree\n")
    run = workspace.post("runs", {"pipeline": pipeline["id"], "inputs": {"src": "text.txt"}}).json()
    done = wait_run(workspace, run["id"])
    assert done["state"] == "success", done
    assert [(s["name"], s["state"]) for s in done["steps"]] == [("count", "success")]

    assert workspace.post("editor/run-draft", {"path": "../wf.cwl"}).status_code == 403


# --- EO application packages ---------------------------------------------------------------


def _changed(before: str, after: str) -> list[str]:
    import difflib

    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]


def test_an_eo_application_package_opens_saves_validates_publishes_and_runs(
    start_server, tmp_path, wait_run
):
    import shutil

    from tests.jupyterlab_ext.conftest import REPO
    from tests.pipelines.samples import APP_PACKAGE, APP_PACKAGE_CATALOG

    # The same package in a mission's catalogue too, as an EO platform would publish it.
    eo = tmp_path / "eo-catalogue" / "eo" / "pipelines"
    eo.mkdir(parents=True)
    shutil.copy(APP_PACKAGE, eo / "water-bodies.cwl")
    server = start_server(
        catalogue_dirs=[str(REPO / "config" / "catalogue"), str(tmp_path / "eo-catalogue")]
    )
    text = APP_PACKAGE.read_text()
    (server.root / "water-bodies.cwl").write_text(text)
    shutil.copytree(APP_PACKAGE_CATALOG, server.root / "catalog")

    graph = graph_of(server, "water-bodies.cwl")
    assert graph["process"] == "water-bodies"
    assert {n["id"] for n in graph["nodes"] if n["kind"] == "step"} == {"node_items", "node_detect"}
    saved = put(server, "water-bodies.cwl", {"graph": graph})
    assert saved.status_code == 200, saved.text
    assert saved.json()["valid"] is True, saved.json()["problems"]
    assert (server.root / "water-bodies.cwl").read_text() == text

    node(graph, "node_detect")["position"] = [500, 60]
    saved = put(server, "water-bodies.cwl", {"graph": graph})
    assert saved.json()["valid"] is True, saved.json()["problems"]
    moved = (server.root / "water-bodies.cwl").read_text()
    assert _changed(text, moved) == [
        "+  dl: https://datalabs.example/cwl#",
        "+        dl:position:",
        "+          x: 500",
        "+          y: 60",
    ]
    assert (
        cwltool_validate(Path(f"{server.root / 'water-bodies.cwl'}#water-bodies")).returncode == 0
    )

    published = server.post(
        "editor/publish",
        {"path": "water-bodies.cwl", "name": "water-bodies", "label": "Water bodies"},
    )
    assert published.status_code == 201, published.text
    mine = published.json()["pipeline"]
    assert mine["id"] == f"{getpass.getuser()}/water-bodies"
    assert [i["id"] for i in mine["inputs"]] == ["stac_catalog", "threshold"]

    for pipeline in (mine["id"], "eo/water-bodies"):
        launched = server.post(
            "runs", {"pipeline": pipeline, "inputs": {"stac_catalog": "catalog"}}
        )
        assert launched.status_code == 201, launched.text
        done = wait_run(server, launched.json()["id"])
        assert done["state"] == "success", done
        assert sorted(s["name"] for s in done["steps"]) == ["node_detect", "node_items"]
        result = Path(done["outputs"]["water_bodies"]["path"])
        catalog = json.loads((result / "catalog.json").read_text())
        assert [link["href"] for link in catalog["links"]] == [
            "./S2A_10TFK_20210713.json",
            "./S2B_10TFK_20210718.json",
        ]


def test_a_package_with_several_workflows_answers_with_the_choice(workspace):
    from tests.pipelines.samples import two_workflow_package

    text = two_workflow_package()
    (workspace.root / "two.cwl").write_text(text)
    ask = workspace.get("editor/graph", params={"path": "two.cwl"})
    assert ask.status_code == 409
    assert ask.json()["processes"] == ["water-bodies", "water-bodies-twice"]
    assert "water-bodies, water-bodies-twice" in ask.json()["message"]

    chosen = workspace.get(
        "editor/graph", params={"path": "two.cwl", "process": "water-bodies-twice"}
    )
    assert chosen.status_code == 200, chosen.text
    graph = chosen.json()["graph"]
    assert [n["id"] for n in graph["nodes"] if n["kind"] == "step"] == ["once"]
    saved = put(workspace, "two.cwl", {"graph": graph})
    assert saved.json()["valid"] is True, saved.json()["problems"]
    assert (workspace.root / "two.cwl").read_text() == text

    missing = workspace.get("editor/graph", params={"path": "two.cwl", "process": "nothing"})
    assert missing.status_code == 400 and "no process 'nothing'" in missing.json()["message"]
    unnamed = workspace.post("editor/publish", {"path": "two.cwl", "label": "Two"})
    assert unnamed.status_code == 409 and "processes" in unnamed.json()
    named = workspace.post(
        "editor/publish", {"path": "two.cwl", "label": "Twice", "process": "water-bodies-twice"}
    )
    assert named.status_code == 201, named.text
    assert [i["id"] for i in named.json()["pipeline"]["inputs"]] == ["stac_catalog"]
