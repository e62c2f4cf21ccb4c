"""CWL a user writes cannot make the server read files outside their workspace.

The Pipeline Editor's REST API on a real jupyter-server: each document is written into the
workspace (as the editor or a terminal would) and then opened, saved, published or staged
for a run. cwltool and the editor follow ``$include``, ``$import``, ``run`` and default
``location`` references; the server refuses any that leave the workspace, the mounted volumes
and the catalogue, with a 400 naming the document, the field and the reference.
"""

from __future__ import annotations

import json
import secrets

import pytest
import requests

from tests.jupyterlab_ext.conftest import TOKENS

SECRET = "HostFile" + secrets.token_hex(8)

TOOL = """cwlVersion: v1.2
class: CommandLineTool
baseCommand: [echo, hi]
inputs: []
outputs: []
"""


@pytest.fixture(scope="module")
def host_file(tmp_path_factory):
    """A file outside the workspace, standing for /etc/passwd or another user's data."""
    path = tmp_path_factory.mktemp("host") / "secret.txt"
    path.write_text(SECRET + "\n")
    return path


def workflow(step_run: str = "tool.cwl", extra: str = "") -> str:
    return (
        "cwlVersion: v1.2\nclass: Workflow\nlabel: Attack\n"
        f"{extra}inputs: []\noutputs: []\n"
        f"steps:\n  s1:\n    run: {step_run}\n    in: []\n    out: []\n"
    )


def attacks(host_file) -> dict[str, tuple[str, str]]:
    """name -> (document text, the field the refusal must name)."""
    tool_outside = host_file.with_name("tool.cwl")
    tool_outside.write_text(TOOL)
    return {
        "include-doc": (workflow(extra=f"doc: {{$include: {host_file}}}\n"), "doc.$include"),
        "import-run": (workflow(step_run=f"{{$import: {tool_outside}}}"), "$import"),
        "run-outside": (workflow(step_run=str(tool_outside)), "steps.s1.run"),
        "run-url": (workflow(step_run="http://127.0.0.1:8081/hub/api/users"), "steps.s1.run"),
        "default-location": (
            workflow().replace(
                "inputs: []",
                f"inputs:\n  f: {{type: File, default: {{class: File, location: {host_file}}}}}",
            ),
            "location",
        ),
    }


def post(server, path, body):
    return server.post(path, body)


def assert_refused(response, field: str) -> None:
    assert response.status_code == 400, response.text[:1000]
    message = response.json()["message"]
    assert field in message, message
    assert "outside your workspace" in message or "URL" in message, message
    assert SECRET not in response.text


@pytest.mark.parametrize(
    "attack", ["include-doc", "import-run", "run-outside", "run-url", "default-location"]
)
@pytest.mark.parametrize("action", ["publish", "run-draft", "graph"])
def test_references_outside_the_workspace_are_refused(server, host_file, attack, action):
    text, field = attacks(host_file)[attack]
    (server.root / "tool.cwl").write_text(TOOL)
    name = f"{attack}-{action}.cwl"
    (server.root / name).write_text(text)
    if action == "publish":
        r = server.post("editor/publish", {"path": name, "label": "Attack", "name": attack})
    elif action == "run-draft":
        r = server.post("editor/run-draft", {"path": name})
    else:
        r = server.get("editor/graph", params={"path": name})
    assert_refused(r, field)
    listing = server.get("pipelines")
    assert SECRET not in listing.text
    assert attack not in [p["id"].split("/")[-1] for p in listing.json()["pipelines"]]


@pytest.mark.parametrize("where", ["extras", "run"])
def test_saving_a_graph_that_references_a_host_file_is_refused(server, host_file, where):
    (server.root / "tool.cwl").write_text(TOOL)
    (server.root / "saved.cwl").write_text(workflow())
    graph = server.get("editor/graph", params={"path": "saved.cwl"}).json()["graph"]
    # The graph JSON is the client's: it can carry any field and any step file.
    if where == "extras":
        graph["extras"]["doc"] = {"$include": str(host_file)}
        field = "$include"
    else:
        outside = host_file.with_name("tool.cwl")
        outside.write_text(TOOL)
        graph["nodes"][0]["run"] = str(outside)
        field = "steps.s1.run"
    r = requests.put(
        server.api("editor/graph"),
        params={"path": "saved.cwl"},
        data=json.dumps({"graph": graph}),
        headers={"Authorization": f"token {TOKENS['alice']}"},
        timeout=60,
    )
    assert_refused(r, field)


def test_a_tool_outside_the_workspace_cannot_be_added_as_a_step(server, host_file):
    (server.root / "tool.cwl").write_text(TOOL)
    (server.root / "base.cwl").write_text(workflow())
    (server.root / "sneaky-tool.cwl").write_text(
        TOOL.replace("inputs: []", f"inputs: []\ndoc: {{$include: {host_file}}}")
    )
    graph = server.get("editor/graph", params={"path": "base.cwl"}).json()["graph"]
    r = server.post(
        "editor/add-step", {"path": "base.cwl", "graph": graph, "tool": "sneaky-tool.cwl"}
    )
    assert_refused(r, "$include")


def test_references_inside_the_workspace_still_work(server):
    (server.root / "tool.cwl").write_text(TOOL)
    (server.root / "fine.cwl").write_text(workflow())
    r = server.post("editor/publish", {"path": "fine.cwl", "label": "Fine", "name": "fine"})
    assert r.status_code == 201, r.text


def test_a_graph_nested_too_deeply_is_a_400_not_a_500(server):
    # 900 levels parse, but writing them back as CWL would exhaust Python's stack.
    (server.root / "tool.cwl").write_text(TOOL)
    (server.root / "deep.cwl").write_text(workflow())
    graph = server.get("editor/graph", params={"path": "deep.cwl"}).json()["graph"]
    graph["extras"]["doc"] = json.loads("[" * 900 + "]" * 900)
    r = requests.put(
        server.api("editor/graph"),
        params={"path": "deep.cwl"},
        data=json.dumps({"graph": graph}),
        headers={"Authorization": f"token {TOKENS['alice']}"},
        timeout=60,
    )
    assert r.status_code == 400, r.text[:500]
    assert "nested deeper" in r.json()["message"]
    assert (server.root / "deep.cwl").read_text() == workflow()
