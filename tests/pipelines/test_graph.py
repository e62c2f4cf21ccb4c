"""The Pipeline Editor's model: CWL -> graph -> CWL, edits, type rules, validation."""

from __future__ import annotations

import difflib
import json
import multiprocessing
import re
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from datalabs_pipelines import graph as G
from tests.pipelines.cwl_roundtrip import is_workflow, meaning, roundtrip

REPO = Path(__file__).resolve().parents[2]
CONFORMANCE = REPO.parent / "shared" / "cwl-v1.2" / "tests"

TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: cat
inputs:
  f: {type: File, inputBinding: {position: 1}}
  n: {type: int?, inputBinding: {prefix: -n}}
  fs: {type: "File[]?"}
outputs:
  out: {type: stdout}
  many: {type: "File[]", outputBinding: {glob: "*.txt"}}
"""

WORKFLOW = """\
#!/usr/bin/env cwl-runner
# A two-step workflow.
cwlVersion: v1.2
class: Workflow
$namespaces:
  s: https://schema.org/
s:author:
  - s:name: Jane Doe   # the author
s:license: https://spdx.org/licenses/BSD-3-Clause
label: demo
doc: Demo workflow.
hints:
  ResourceRequirement: {coresMin: 1}
requirements:
  ScatterFeatureRequirement: {}
  MultipleInputFeatureRequirement: {}
inputs:
  a: File     # the main input
  many: File[]
  k: int
outputs:
  o:
    type: File
    outputSource: s1/out
steps:
  s1:
    run: tool.cwl
    in:
      f: a
    out: [out, many]
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "tool.cwl").write_text(TOOL)
    (tmp_path / "wf.cwl").write_text(WORKFLOW)
    return tmp_path


def _plain(text: str) -> Any:
    return YAML(typ="safe", pure=False).load(text)


def _keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [str(k) for k in value] + [k for v in value.values() for k in _keys(v)]
    if isinstance(value, list):
        return [k for v in value for k in _keys(v)]
    return []


def _parents(value: Any, names: set[str], parent: str | None = None) -> list[str | None]:
    """The key above every key in ``names``."""
    found: list[str | None] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k in names:
                found.append(parent)
            found += _parents(v, names, str(k))
    elif isinstance(value, list):
        for v in value:
            found += _parents(v, names, parent)
    return found


# --- the conformance suite -----------------------------------------------------------------


@pytest.mark.slow
def test_round_trip_keeps_the_meaning_of_every_conformance_workflow(tmp_path_factory, capsys):
    """Every Workflow of the CWL v1.2 conformance suite that cwltool validates is re-emitted
    through the graph (merged into its text, and again from the graph alone after JSON); the
    result validates and cwltool loads the same thing from it."""
    assert CONFORMANCE.is_dir(), f"the CWL conformance tests are missing: {CONFORMANCE}"
    # A private copy, so the re-emitted files sit next to the tools they `run:` without
    # writing into the shared folder other runs read.
    copy = tmp_path_factory.mktemp("cwl") / "tests"
    shutil.copytree(CONFORMANCE, copy, symlinks=True)
    files = sorted(p for p in copy.rglob("*.cwl") if is_workflow(p))
    start = time.perf_counter()
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        results = list(pool.map(roundtrip, files, chunksize=4))
    elapsed = time.perf_counter() - start
    validated = [r for r in results if r["status"] != "invalid-original"]
    equal = [r for r in validated if r["status"] == "equal"]
    failed = [r for r in validated if r["status"] == "failed"]
    by_reason: dict[str, list[str]] = {}
    for r in failed:
        by_reason.setdefault(r["reason"].split(":", 2)[1].strip(), []).append(Path(r["file"]).name)
    summary = (
        f"conformance round trip: {len(files)} workflows, {len(validated)} validated by"
        f" cwltool, {len(equal)} round-tripped equal, {len(failed)} failed"
        f" {json.dumps(by_reason)}; {elapsed:.1f} s with 2 processes"
    )
    with capsys.disabled():  # shown in the run's output, not only when it fails
        print("\n" + summary)
    assert len(validated) >= 130, "the suite should hold about 132 valid workflows"
    assert not failed, "\n".join(f"{Path(r['file']).name}: {r['reason']}" for r in failed)


def _conformance_workflows() -> list[Path]:
    assert CONFORMANCE.is_dir(), f"the CWL conformance tests are missing: {CONFORMANCE}"
    return sorted(p for p in CONFORMANCE.rglob("*.cwl") if is_workflow(p))


@pytest.mark.slow
def test_open_and_save_with_no_edit_gives_back_every_conformance_workflow_byte_for_byte():
    """Block sequences indented or not, flow collections spaced or not, JSON documents,
    comments, blank lines: a save with no edit writes the file exactly as it was."""
    files = _conformance_workflows()
    assert len(files) >= 130
    changed = [p.name for p in files if G.to_cwl(G.load_graph(p)) != p.read_text()]
    assert changed == []


@pytest.mark.slow
def test_a_one_node_move_changes_only_that_nodes_position_lines_in_every_conformance_workflow():
    position = re.compile(
        r'^\s*(- )?("?dl:position"?:.*|"?[xy]"?: -?[\d.]+,?|"?\$namespaces"?:.*'
        r'|"?dl"?: "?https://datalabs\.example/cwl#"?,?|},?)$'
    )
    wrong = {}
    for path in _conformance_workflows():
        text = path.read_text()
        graph = G.load_graph(path)
        node = next((n for n in graph.nodes if n.kind == G.STEP), graph.nodes[0])
        moved = G.to_cwl(G.set_position(graph, node.id, 321, 45))
        changed = _changed_lines(text, moved)
        others = [line for line in changed if not position.match(line[1:])]
        # the same document plus the one position (and the namespace it needs)
        data, before = _plain(moved), _plain(text)
        entry = data
        if "$graph" in data:
            entry = next(e for e in data["$graph"] if e.get("id") in ("main", "#main"))
        entries = G._entries(entry[{G.STEP: "steps", G.INPUT: "inputs"}.get(node.kind, "outputs")])
        target = next(v for k, v in entries if k.rsplit("/", 1)[-1].lstrip("#") == node.id)
        if target.pop("dl:position", None) != {"x": 321, "y": 45}:
            others.append("no position on the node")
        data.get("$namespaces", {}).pop("dl", None)
        if data.get("$namespaces") == {} and "$namespaces" not in before:
            del data["$namespaces"]
        if json.dumps(data, sort_keys=True) != json.dumps(before, sort_keys=True):
            others.append("the document changed")
        if others:
            wrong[path.name] = others[:4]
    assert wrong == {}


# --- ids and references as CWL resolves them, and the forms the author wrote --------------

COUNT_TOOL = """\
cwlVersion: v1.0
class: CommandLineTool
baseCommand: echo
inputs:
  x: {type: string, inputBinding: {position: 1}}
outputs:
  out: {type: stdout}
"""

# The workflow's id is also the id of its step: ``count/out`` is that step's output.
ID_IS_A_STEP = """\
class: Workflow
cwlVersion: v1.0
id: count
inputs:
  x: string
outputs:
  result:
    outputSource: count/out
    type: File
steps:
  count:
    run: tool.cwl      # any CommandLineTool with an input x and an output out
    in:
      x: x
    out: [out]
"""

SORT_TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: sort
inputs:
  lines: {type: File, inputBinding: {position: 1}}
  key: {type: File?, inputBinding: {position: 2}}
outputs:
  sort: {type: stdout}
  reads: {type: stderr}
"""

# Names play several parts: ``sort`` is the document's id, a step and an output of both steps;
# ``reads`` a step and an output of both steps; ``sorted`` a workflow input and output (cwltool
# warns that the id is "previously defined", and accepts it). References come relative,
# relative through the document's id (``sort/sort/reads``, which salad finds after
# ``sort/sort/sort/reads``), and absolute.
SHARED_NAMES = """\
cwlVersion: v1.2
class: Workflow
id: sort
inputs:
  sorted: File
  reads_in: File?
outputs:
  out:
    type: File
    outputSource: reads/sort
  err:
    type: File
    outputSource: sort/reads
  all:
    type: File[]
    outputSource: [sort/sort, sort/reads/reads, "#sort/reads/sort"]
    linkMerge: merge_flattened
  sorted:
    type: File
    outputSource: sort/sort
requirements:
  MultipleInputFeatureRequirement: {}
steps:
  sort:
    run: sort.cwl
    in:
      lines: sorted
      key: reads_in
    out: [sort, reads]
  reads:
    run: sort.cwl
    in:
      lines: sort/sort
      key: sort/sort/reads
    out: [sort, reads]
"""

# Step outputs in the long form, with comments between them.
LONG_OUT = """\
cwlVersion: v1.2
class: Workflow
inputs:
  a: File
outputs:
  o:
    type: File
    outputSource: s1/out
steps:
  s1:
    run: tool.cwl
    in:
      f: a
    out:
      # Final outputs
      - id: out
      # Intermediate outputs
      - id: many   # every listing
"""

_POSITION_LINE = re.compile(
    r"^\s*(- )?(dl:position:.*|x: -?[\d.]+|y: -?[\d.]+|\$namespaces:.*"
    + r"|dl: https://datalabs\.example/cwl#)$"
)


def _changed_lines(before: str, after: str) -> list[str]:
    """The lines ``after`` adds to or takes from ``before`` (``+line`` / ``-line``)."""
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]


def _assert_round_trip(path: Path, original: str, moved: str, unfolded: list[str] = ()) -> None:
    """``original`` written to ``path``, opened and saved with no edit: the same bytes; a move
    of ``moved``: only position lines change (and ``unfolded``: a node written in the short form,
    ``a: File``, has to become a mapping to hold a position), the move is read back, and cwltool
    finds the file valid."""
    path.write_text(original)
    assert G.to_cwl(G.load_graph(path)) == original
    assert G.save(G.load_graph(path), check=False).text == original
    assert path.read_text() == original

    before = G.load_graph(path)
    saved = G.save(G.set_position(before, moved, 120, -40))
    changed = _changed_lines(original, saved.text)
    assert any("dl:position" in line for line in changed)
    assert [line for line in changed if not _POSITION_LINE.match(line[1:])] == list(unfolded)
    assert saved.problems == []
    after = G.load_graph(path)
    assert after.node(moved).position == (120, -40)
    assert after.edges == before.edges
    assert {n.id for n in after.nodes if n.position} == {moved}


def test_a_workflow_whose_id_is_also_a_step_survives_open_and_save(tmp_path):
    (tmp_path / "tool.cwl").write_text(COUNT_TOOL)
    (tmp_path / "wf.cwl").write_text(ID_IS_A_STEP)
    graph = G.load_graph(tmp_path / "wf.cwl")
    assert G.Edge("count", "out", "result", "result") in graph.edges
    assert G.validate(tmp_path / "wf.cwl") == []
    _assert_round_trip(tmp_path / "wf.cwl", ID_IS_A_STEP, "count")
    _assert_round_trip(tmp_path / "wf.cwl", ID_IS_A_STEP, "result")


def test_names_shared_by_the_document_inputs_steps_and_ports_keep_their_meaning(tmp_path):
    (tmp_path / "sort.cwl").write_text(SORT_TOOL)
    (tmp_path / "wf.cwl").write_text(SHARED_NAMES)
    original = meaning(tmp_path / "wf.cwl")
    graph = G.load_graph(tmp_path / "wf.cwl")
    assert sorted((e.source, e.source_port, e.target, e.target_port) for e in graph.edges) == [
        ("reads", "reads", "all", "all"),  # "sort/reads/reads", through the document's id
        ("reads", "sort", "all", "all"),  # "#sort/reads/sort", absolute
        ("reads", "sort", "out", "out"),
        ("reads_in", "reads_in", "sort", "key"),
        ("sort", "reads", "err", "err"),  # the step's output, not the document's "reads"
        ("sort", "reads", "reads", "key"),  # "sort/sort/reads", through the document's id
        ("sort", "sort", "all", "all"),
        ("sort", "sort", "reads", "lines"),
        ("sort", "sort", "sorted", "sorted"),
        ("sorted", "sorted", "sort", "lines"),
    ]
    for moved, unfolded in [
        ("sort", []),
        ("reads", []),
        ("all", []),
        ("sorted", ["-  sorted: File", "+  sorted:", "+    type: File"]),
    ]:
        _assert_round_trip(tmp_path / "wf.cwl", SHARED_NAMES, moved, unfolded)
        assert meaning(tmp_path / "wf.cwl") == original


def test_an_edit_rewrites_only_the_references_it_changes(tmp_path):
    (tmp_path / "sort.cwl").write_text(SORT_TOOL)
    (tmp_path / "wf.cwl").write_text(SHARED_NAMES)
    graph = G.load_graph(tmp_path / "wf.cwl")
    graph = G.disconnect(graph, "reads", "sort", "all", "all")
    saved = G.save(graph)
    assert saved.problems == []
    assert _changed_lines(SHARED_NAMES, saved.text) == [
        '-    outputSource: [sort/sort, sort/reads/reads, "#sort/reads/sort"]',
        "+    outputSource: [sort/sort, sort/reads/reads]",
    ]


def test_long_form_step_outputs_and_the_comments_between_them_are_kept(folder):
    (folder / "long.cwl").write_text(LONG_OUT)
    graph = G.load_graph(folder / "long.cwl")
    assert [p.id for p in graph.node("s1").outputs] == ["out", "many"]
    _assert_round_trip(folder / "long.cwl", LONG_OUT, "s1")
    text = G.save(G.add_step(G.load_graph(folder / "long.cwl"), "tool.cwl", "s2")).text
    assert "      # Final outputs\n      - id: out\n      # Intermediate outputs\n" in text
    assert "      - id: many   # every listing\n" in text


def test_a_step_with_the_id_of_an_input_is_refused_not_corrupted(tmp_path):
    (tmp_path / "sort.cwl").write_text(SORT_TOOL)
    twice = SHARED_NAMES.replace("reads_in", "reads")
    (tmp_path / "wf.cwl").write_text(twice)
    with pytest.raises(G.GraphError) as refused:
        G.load_graph(tmp_path / "wf.cwl")
    assert str(refused.value).startswith(
        "the workflow input 'reads' and its step 'reads' have the same id"
    )
    assert "rename one of them" in str(refused.value)


@pytest.mark.parametrize(
    ("version", "says"),
    [
        ("cwlVersion: draft-3\n", "wf.cwl is CWL draft-3, not CWL v1.x"),
        ("cwlVersion: cwl:draft-3\n", "wf.cwl is CWL cwl:draft-3, not CWL v1.x"),
        ("", "wf.cwl has no cwlVersion, so it is not CWL v1.x"),
    ],
)
def test_documents_that_are_not_cwl_v1_are_refused_with_the_upgrade_command(
    tmp_path, version, says
):
    draft3 = (
        "class: Workflow\ninputs:\n  - id: x\n    type: string\noutputs:\n  - id: r\n"
        '    type: File\n    source: "#s/out"\nsteps:\n  - id: s\n    run: tool.cwl\n'
        '    inputs:\n      - {id: x, source: "#x"}\n    outputs:\n      - {id: out}\n'
    )
    (tmp_path / "wf.cwl").write_text(version + draft3)
    with pytest.raises(G.GraphError) as refused:
        G.load_graph(tmp_path / "wf.cwl")
    assert str(refused.value).startswith(says)
    assert "`cwl-upgrader --v1-only --dir upgraded wf.cwl`" in str(refused.value)


# --- positions and what the editor does not model ------------------------------------------


def test_positions_survive_a_save_and_live_only_under_our_namespace(folder):
    graph = G.layout(G.load_graph(folder / "wf.cwl"))
    graph = G.set_position(graph, "s1", 400.5, 80)
    saved = G.save(graph)
    assert saved.problems == []
    text = (folder / "wf.cwl").read_text()
    assert saved.text == text
    doc = _plain(text)
    assert doc["$namespaces"] == {"s": "https://schema.org/", "dl": G.DL_NAMESPACE}
    # every key the editor added is dl:position, and x/y only ever appear inside one
    before = _plain(WORKFLOW)
    added = [k for k in _keys(doc) if k not in set(_keys(before))]
    assert set(added) == {"dl", "dl:position", "x", "y"}
    assert added.count("dl:position") == len(graph.nodes)
    assert all(parent == "dl:position" for parent in _parents(doc, {"x", "y"}))
    assert doc["steps"]["s1"]["dl:position"] == {"x": 400.5, "y": 80}

    again = G.load_graph(folder / "wf.cwl")
    assert {n.id: n.position for n in again.nodes} == {n.id: n.position for n in graph.nodes}
    assert all(n.position is not None for n in again.nodes)
    assert G.validate(folder / "wf.cwl") == []


def test_hints_requirements_metadata_and_comments_survive_an_edit(folder):
    before = _plain(WORKFLOW)
    graph = G.load_graph(folder / "wf.cwl")
    graph = G.add_step(graph, "tool.cwl", "s2")
    graph = G.connect(graph, "s1", "out", "s2", "f")
    text = G.save(G.layout(graph)).text
    after = _plain(text)
    for key in ("hints", "requirements", "s:author", "s:license", "label", "doc", "cwlVersion"):
        assert after[key] == before[key], key
    for comment in ("#!/usr/bin/env cwl-runner", "# A two-step workflow.", "# the author"):
        assert comment in text
    assert "# the main input" in text
    assert after["steps"]["s1"]["in"] == {"f": "a"}  # an untouched entry keeps its short form


def test_graph_through_json_writes_the_same_workflow(folder):
    graph = G.layout(G.load_graph(folder / "wf.cwl"))
    data = json.loads(json.dumps(graph.to_json()))
    back = G.Graph.from_json(data)
    assert back == graph
    step = next(n for n in data["nodes"] if n["id"] == "s1")
    assert [(p["id"], p["type_label"], p["declared"]) for p in step["inputs"]] == [
        ("f", "File", True),
        ("n", "int?", False),
        ("fs", "File[]?", False),
    ]
    (folder / "from-json.cwl").write_text(G.to_cwl(back))
    assert (
        meaning(folder / "from-json.cwl")["process"]["steps"]
        == meaning(folder / "wf.cwl")["process"]["steps"]
    )


def test_subworkflow_is_an_expandable_node_and_packed_documents_load():
    graph = G.load_graph(CONFORMANCE / "count-lines10-wf.cwl")
    step = graph.node("step0")
    assert step is not None and step.run_class == "Workflow" and step.subgraph is not None
    assert [n.id for n in step.subgraph.nodes if n.kind == G.STEP] == ["step1", "step2"]
    assert G.Edge("step1", "output", "step2", "file1") in step.subgraph.edges
    assert [p.type for p in step.outputs] == ["int"]

    packed = G.load_graph(CONFORMANCE / "revsort-packed.cwl")
    assert [n.id for n in packed.nodes if n.kind == G.STEP] == ["rev", "sorted"]
    assert G.Edge("rev", "output", "sorted", "input") in packed.edges
    assert G.Edge("reverse_sort", "reverse_sort", "sorted", "reverse") in packed.edges
    assert packed.node("sorted").port("output", "out").type == "File"


def test_scatter_when_and_multiple_sources_are_read():
    graph = G.load_graph(CONFORMANCE / "count-lines12-wf.cwl")
    step = next(n for n in graph.nodes if n.kind == G.STEP)
    assert [(p.id, p.link_merge, p.source_list) for p in step.inputs if p.declared] == [
        ("file1", "merge_flattened", True)
    ]
    assert [(e.source, e.target_port) for e in graph.edges if e.target == step.id] == [
        ("file1", "file1"),
        ("file2", "file1"),
    ]
    scatter = G.load_graph(CONFORMANCE / "scatter-wf4.cwl")
    main = scatter.node("step1")
    assert main.scatter == ["echo_in1", "echo_in2"] and main.scatter_method == "dotproduct"
    cond = G.load_graph(CONFORMANCE / "conditionals" / "cond-wf-003.1.cwl")
    assert any(n.when for n in cond.nodes if n.kind == G.STEP)


# --- edits -----------------------------------------------------------------------------------


def test_an_edit_produces_a_document_cwltool_validates(folder):
    graph = G.load_graph(folder / "wf.cwl")
    graph = G.add_step(graph, folder / "tool.cwl")
    assert graph.node("tool").run == "tool.cwl"
    graph = G.connect(graph, "s1", "out", "tool", "f")
    graph = G.connect(graph, "k", "k", "tool", "n")
    graph = G.set_step_input(graph, "tool", "fs", default=None, value_from="$([inputs.f])")
    graph = G.add_output(graph, "listing", "tool", "out")
    graph = G.add_input(graph, "flag", "boolean", default=True)
    graph = G.rename(graph, "flag", "verbose")
    text = G.to_cwl(G.layout(graph))
    (folder / "edited.cwl").write_text(text)
    assert G.validate(folder / "edited.cwl") == []
    loaded = meaning(folder / "edited.cwl")["process"]
    step = next(s for s in loaded["steps"] if s["id"].endswith("#tool"))
    sources = {i["id"].rsplit("/", 1)[1]: i.get("source") for i in step["in"]}
    assert sources == {"f": "DOC#s1/out", "n": "DOC#k", "fs": None}
    assert [o["id"] for o in loaded["outputs"]] == ["DOC#listing", "DOC#o"]
    assert "DOC#verbose" in [i["id"] for i in loaded["inputs"]]

    smaller = G.remove_step(G.remove_input(graph, "verbose"), "tool")
    smaller = G.remove_output(smaller, "listing")
    (folder / "smaller.cwl").write_text(G.to_cwl(smaller))
    assert G.validate(folder / "smaller.cwl") == []
    smaller_meaning, original = meaning(folder / "smaller.cwl"), meaning(folder / "wf.cwl")
    kept = original["process"].pop("requirements")
    added = [r for r in smaller_meaning["process"].pop("requirements") if r not in kept]
    # the valueFrom edit's (a JavaScript expression, so both)
    assert added == [
        {"class": "InlineJavascriptRequirement"},
        {"class": "StepInputExpressionRequirement"},
    ]
    assert smaller_meaning == original


def test_scatter_and_when_edits_validate(folder):
    graph = G.add_step(G.load_graph(folder / "wf.cwl"), "tool.cwl", "each")
    graph = G.set_scatter(graph, "each", ["f"])
    graph = G.connect(graph, "many", "many", "each", "f")
    graph = G.set_when(graph, "each", "$(inputs.f.size > 0)")
    text = G.to_cwl(graph)
    doc = _plain(text)
    assert doc["steps"]["each"]["scatter"] == ["f"]
    assert doc["steps"]["each"]["when"] == "$(inputs.f.size > 0)"
    assert G.validate(text, base_dir=str(folder)) == []
    with pytest.raises(G.EditRefused, match="expression"):
        G.set_when(graph, "each", "always")
    with pytest.raises(G.EditRefused, match="method"):
        G.set_scatter(graph, "each", ["f", "n"])


def test_refused_connections_say_why(folder):
    graph = G.add_step(G.load_graph(folder / "wf.cwl"), "tool.cwl", "s2")

    check = G.check_connection(graph, "a", "a", "s2", "n")
    assert not check.allowed
    assert check.reason == "workflow input 'a' gives File but 's2/n' takes int?"
    with pytest.raises(G.EditRefused) as refused:
        G.connect(graph, "a", "a", "s2", "n")
    assert refused.value.reason == check.reason

    # A list of files into a File input: refused unless the step is scattered over it.
    check = G.check_connection(graph, "many", "many", "s2", "f")
    assert not check.allowed and "scatter the step over 'f'" in check.reason
    scattered = G.set_scatter(graph, "s2", ["f"])
    assert G.check_connection(scattered, "many", "many", "s2", "f").allowed
    # ... and once scattered, a single File no longer fits.
    check = G.check_connection(scattered, "a", "a", "s2", "f")
    assert not check.allowed and "needs a list of File" in check.reason

    # A single File into a File[] input: refused unless linkMerge wraps it.
    check = G.check_connection(graph, "a", "a", "s2", "fs")
    assert not check.allowed and "linkMerge" in check.reason
    merged = G.set_step_input(graph, "s2", "fs", link_merge="merge_nested")
    assert G.check_connection(merged, "a", "a", "s2", "fs").allowed

    assert G.check_connection(graph, "k", "k", "s2", "n").allowed  # int into int? (optional)
    assert G.check_connection(graph, "s1", "out", "s2", "f").allowed  # stdout is a File
    linked = G.connect(graph, "s1", "out", "s2", "f")
    check = G.check_connection(linked, "a", "a", "s2", "f")
    assert not check.allowed and "already has a source" in check.reason
    check = G.check_connection(G.disconnect(linked, "a", "a", "s1", "f"), "s2", "out", "s1", "f")
    assert not check.allowed and check.reason.endswith("this link would make a loop")


def test_any_accepts_everything(folder):
    (folder / "any.cwl").write_text(
        "cwlVersion: v1.2\nclass: ExpressionTool\nrequirements: {InlineJavascriptRequirement: {}}\n"
        "inputs: {x: Any}\noutputs: {y: Any}\nexpression: '$({y: inputs.x})'\n"
    )
    graph = G.add_step(G.load_graph(folder / "wf.cwl"), "any.cwl")
    assert G.check_connection(graph, "k", "k", "any", "x").allowed
    graph = G.connect(graph, "many", "many", "any", "x")
    graph = G.add_step(graph, "tool.cwl", "s2")
    assert G.check_connection(graph, "any", "y", "s2", "f").allowed


def test_layout_fills_missing_positions_in_dependency_layers(folder):
    graph = G.add_step(G.load_graph(folder / "wf.cwl"), "tool.cwl", "s2")
    graph = G.connect(graph, "s1", "out", "s2", "f")
    graph = G.set_position(graph, "k", -50, -50)
    placed = {n.id: n.position for n in G.layout(graph).nodes}
    assert placed["k"] == (-50, -50)  # kept
    assert placed["a"][0] == placed["many"][0] == 0
    assert placed["a"][0] < placed["s1"][0] < placed["s2"][0] < placed["o"][0]


# --- validation ------------------------------------------------------------------------------


def test_a_validation_error_points_at_the_step_and_port(folder):
    bad = WORKFLOW.replace("      f: a\n", "      f: a\n      n: a\n")
    problems = G.validate(bad, base_dir=str(folder))
    assert [(p.node, p.port) for p in problems] == [("s1", "n")]
    assert "incompatible" in problems[0].message and "'n'" in problems[0].message
    assert problems[0].line == bad.splitlines().index("      n: a") + 1

    unknown = WORKFLOW.replace("      f: a\n", "      f: nowhere/out\n")
    (folder / "unknown.cwl").write_text(unknown)
    problems = G.validate(folder / "unknown.cwl")
    assert [(p.node, p.port) for p in problems] == [("s1", "f")]
    assert "nowhere/out" in problems[0].message
    assert str(folder) not in problems[0].message  # names the file, not the server's paths


def test_a_broken_document_gives_a_clear_error_not_a_traceback(folder):
    (folder / "broken.cwl").write_text("cwlVersion: v1.2\nclass: Workflow\ninputs: [\n")
    with pytest.raises(G.GraphError, match=r"broken.cwl is not valid YAML at line 4"):
        G.load_graph(folder / "broken.cwl")
    with pytest.raises(G.GraphError, match="is a CommandLineTool, not a Workflow"):
        G.load_graph(folder / "tool.cwl")
    with pytest.raises(G.GraphError, match="cannot read missing.cwl"):
        G.load_graph(folder / "missing.cwl")
    problems = G.validate(folder / "broken.cwl")
    assert len(problems) == 1 and "not valid YAML" in problems[0].message
    assert problems[0].line == 4
    problems = G.validate("cwlVersion: v1.2\nclass: Workflow\nsteps: 3\n")
    assert problems and all("Traceback" not in p.message for p in problems)
    assert any("missing required field 'inputs'" in p.message for p in problems)
    with pytest.raises(G.GraphError, match="step '3' is not a mapping"):
        G.load_graph(folder / "odd.cwl", text="cwlVersion: v1.2\nclass: Workflow\nsteps: [3]\n")
    assert G.validate(folder / "missing.cwl") == [
        G.Problem("cannot read missing.cwl: No such file or directory")
    ]


BARE = """\
cwlVersion: v1.2
class: Workflow
requirements:  # kept as written
  - class: InlineJavascriptRequirement  # already there
inputs:
  many: File[]
  k: int
outputs: []
steps: {}
"""


def test_edits_declare_the_features_they_use(folder):
    """Scatter, a second source, valueFrom, subworkflows: the edit adds the requirement, so the
    saved document still validates; existing requirements and their comments stay."""
    (folder / "bare.cwl").write_text(BARE)
    (folder / "sub.cwl").write_text(
        "cwlVersion: v1.2\nclass: Workflow\ninputs: {f: File}\noutputs:\n"
        "  out: {type: File, outputSource: t/out}\n"
        "steps:\n  t: {run: tool.cwl, in: {f: f}, out: [out]}\n"
    )
    graph = G.load_graph(folder / "bare.cwl")
    graph = G.add_step(graph, "tool.cwl", "each")
    graph = G.set_scatter(graph, "each", ["f"])
    graph = G.connect(graph, "many", "many", "each", "f")
    graph = G.add_step(graph, "tool.cwl", "merge")
    refused = G.check_connection(graph, "each", "many", "merge", "fs")
    assert refused.reason == (
        "'each/many' gives File[][] but 'merge/fs' takes File[]?:"
        " scatter the step over 'fs' to run it once per item"
    )
    graph = G.set_step_input(graph, "merge", "fs", link_merge="merge_flattened")
    graph = G.connect(graph, "each", "out", "merge", "fs")
    graph = G.connect(graph, "many", "many", "merge", "fs")
    graph = G.set_step_input(graph, "merge", "n", value_from="$(inputs.n + 1)")
    graph = G.connect(graph, "k", "k", "merge", "n")
    graph = G.add_step(graph, "sub.cwl", "nested")
    assert graph.node("nested").subgraph is not None
    graph = G.set_step_input(graph, "nested", "f", default={"class": "File", "path": "tool.cwl"})
    graph = G.set_step_input(graph, "merge", "f", default={"class": "File", "path": "tool.cwl"})
    saved = G.save(G.layout(graph))
    assert saved.problems == []
    requirements = _plain(saved.text)["requirements"]
    assert [r["class"] for r in requirements] == [
        "InlineJavascriptRequirement",
        "ScatterFeatureRequirement",
        "MultipleInputFeatureRequirement",
        "StepInputExpressionRequirement",
        "SubworkflowFeatureRequirement",
    ]
    assert "requirements:  # kept as written" in saved.text
    assert "# already there" in saved.text


def test_features_of_newer_cwl_versions_are_refused_with_the_reason(folder):
    (folder / "old.cwl").write_text(BARE.replace("v1.2", "v1.0"))
    graph = G.add_step(G.load_graph(folder / "old.cwl"), "tool.cwl", "s")
    with pytest.raises(G.EditRefused, match="need cwlVersion v1.2; this workflow is v1.0"):
        G.set_when(graph, "s", "$(inputs.n > 1)")
    with pytest.raises(G.EditRefused, match="pickValue needs cwlVersion v1.2"):
        G.set_step_input(graph, "s", "fs", pick_value="all_non_null")


def test_an_inline_subworkflow_is_edited_and_written_back(tmp_path):
    copy = tmp_path / "count-lines10-wf.cwl"
    for name in ("count-lines10-wf.cwl", "wc-tool.cwl", "parseInt-tool.cwl"):
        shutil.copy(CONFORMANCE / name, tmp_path / name)
    graph = G.load_graph(copy)
    sub = graph.node("step0").subgraph
    sub = G.set_position(sub, "step2", 300, 40)
    sub = G.rename(sub, "step2", "parse")
    graph = G.set_subgraph(graph, "step0", sub)
    saved = G.save(graph)
    assert saved.problems == []
    inner = _plain(saved.text)["steps"]["step0"]["run"]
    assert inner["steps"]["parse"]["dl:position"] == {"x": 300, "y": 40}
    assert inner["outputs"]["count_output"]["outputSource"] == "parse/output"
    assert _plain(saved.text)["$namespaces"] == {"dl": G.DL_NAMESPACE}


def test_save_reports_what_cwltool_refuses_and_still_writes(folder):
    # The front end sends a graph whose output type no longer matches its source.
    data = G.load_graph(folder / "wf.cwl").to_json()
    output = next(n for n in data["nodes"] if n["id"] == "o")
    output["inputs"][0]["type"] = "int"
    saved = G.save(G.Graph.from_json(data), folder / "wf.cwl")
    assert (folder / "wf.cwl").read_text() == saved.text
    assert "# the main input" in saved.text  # merged into the file on disk
    lines = saved.text.splitlines()
    assert [p.node for p in saved.problems] == ["o"]
    assert lines.index("  o:") < saved.problems[0].line <= lines.index("steps:")
    assert "incompatible" in saved.problems[0].message


def test_problems_in_a_tool_file_and_several_problems_each_find_their_node(folder):
    (folder / "broken-tool.cwl").write_text(TOOL.replace("baseCommand: cat", "baseCommand: 3.5"))
    wf = WORKFLOW.replace("    run: tool.cwl\n", "    run: broken-tool.cwl\n")
    problems = G.validate(wf, base_dir=str(folder))
    assert [p.node for p in problems] == ["s1"]
    assert "'broken-tool.cwl' is not valid" in problems[0].message
    assert "'baseCommand' field is not valid" in problems[0].message
    assert str(folder) not in " ".join(p.message for p in problems)

    # an unknown field on an input and on a step: one problem each, at its own node
    two = WORKFLOW.replace("  k: int\n", "  k: {type: int, colour: red}\n").replace(
        "    out: [out, many]\n", "    out: [out, many]\n    speed: fast\n"
    )
    problems = G.validate(two, base_dir=str(folder))
    assert [p.node for p in problems] == ["k", "s1"]
    assert "colour" in problems[0].message and "speed" in problems[1].message


# --- EO application packages: a packed $graph whose workflow is not #main ------------------


def _app_package(tmp_path: Path, text: str | None = None) -> Path:
    from tests.pipelines.samples import APP_PACKAGE

    path = tmp_path / "water-bodies.cwl"
    path.write_text(text if text is not None else APP_PACKAGE.read_text())
    return path


def test_an_application_package_opens_as_its_workflow_and_saves_byte_for_byte(tmp_path):
    path = _app_package(tmp_path)
    text = path.read_text()
    graph = G.load_graph(path)
    assert graph.process == "water-bodies"
    assert {n.id: n.kind for n in graph.nodes} == {
        "stac_catalog": G.INPUT,
        "threshold": G.INPUT,
        "water_bodies": G.OUTPUT,
        "node_items": G.STEP,
        "node_detect": G.STEP,
    }
    assert G.Edge("node_items", "items", "node_detect", "items") in graph.edges
    assert graph.node("node_items").port("catalog", "in").type == "Directory"
    assert graph.node("node_detect").port("results", "out").type == "Directory"
    assert G.to_cwl(graph) == text
    # Through the editor's JSON (the REST API's way), too.
    again = G.Graph.from_json(json.loads(json.dumps(G.layout(graph).to_json())))
    again.document, again.text = graph.document, graph.text
    assert G.to_cwl(G.without_layout_positions(again, graph)) == text
    assert G.validate(path) == []


def test_moving_a_node_of_an_application_package_changes_only_its_position_lines(tmp_path):
    path = _app_package(tmp_path)
    text = path.read_text()
    moved = G.to_cwl(G.set_position(G.load_graph(path), "node_detect", 500, 60))
    assert _changed_lines(text, moved) == [
        "+  dl: https://datalabs.example/cwl#",
        "+        dl:position:",
        "+          x: 500",
        "+          y: 60",
    ]
    path.write_text(moved)
    assert G.validate(path) == []  # validated as water-bodies.cwl#water-bodies
    assert G.load_graph(path).node("node_detect").position == (500, 60)


def test_validation_problems_of_an_application_package_point_at_its_workflow(tmp_path):
    path = _app_package(tmp_path)
    path.write_text(path.read_text().replace("items: node_items/items", "items: threshold"))
    problems = G.validate(path)
    assert problems, "a float into a File input must be refused"
    assert any(p.node == "node_detect" and p.port == "items" for p in problems), problems


def test_a_package_with_several_workflows_asks_which_one(tmp_path):
    from tests.pipelines.samples import two_workflow_package

    path = _app_package(tmp_path, two_workflow_package())
    with pytest.raises(G.ProcessChoice) as choice:
        G.load_graph(path)
    assert choice.value.choices == ["water-bodies", "water-bodies-twice"]
    assert "water-bodies, water-bodies-twice" in str(choice.value)
    twice = G.load_graph(path, process="water-bodies-twice")
    assert [n.id for n in twice.nodes if n.kind == G.STEP] == ["once"]
    assert twice.node("once").subgraph is not None
    assert G.to_cwl(G.load_graph(path, process="water-bodies")) == path.read_text()
    moved = G.to_cwl(G.set_position(twice, "once", 10, 20))
    assert [line for line in _changed_lines(path.read_text(), moved) if "position" in line] == [
        "+        dl:position:"
    ]
    assert G.validate(path, process="water-bodies-twice") == []
    with pytest.raises(G.GraphError, match="no process 'nothing'.*water-bodies-twice"):
        G.load_graph(path, process="nothing")
    with pytest.raises(G.GraphError, match="is a CommandLineTool, not a Workflow"):
        G.load_graph(path, process="stac-items")


def test_an_application_package_can_be_a_step(tmp_path):
    path = _app_package(tmp_path)
    graph = G.add_step(G.Graph(path=str(tmp_path / "outer.cwl")), path, "detect")
    step = graph.node("detect")
    assert step.run == "water-bodies.cwl#water-bodies"
    assert [p.id for p in step.inputs] == ["stac_catalog", "threshold"]
