"""The Pipeline Editor's model: CWL workflows as graphs, and back.

The editor (a JupyterLab canvas) shows a CWL ``Workflow`` as a graph of nodes (workflow inputs,
workflow outputs, steps) joined by edges (``source`` / ``outputSource``), edits it, and saves it as
CWL that cwltool validates. Everything here is pure: functions take values and return values; the
only I/O is reading the workflow and the tool files its steps ``run``.

Which YAML library and why
    Documents are read with ``ruamel.yaml`` in round-trip mode: it keeps comments, key order,
    block scalars and quoting. It writes one indentation style, though, so :func:`to_cwl`
    applies the difference between its renderings of the document as read and as edited to
    the original text: a save with no edit gives back the same bytes, an edit changes only its
    own lines (:func:`_apply_changes`). The cwl-utils parser is not used for the conversion: it
    expands every id to an absolute URI and drops comments and the shorthand forms, so what it
    saves is a different (if equivalent) text. cwltool's own loader is used where its verdict is
    what matters: :func:`validate`, and the semantic comparison in the tests.

What is modelled and what is kept
    Modelled (editable): the workflow's inputs and outputs (id, type), steps (id, label, ``run``,
    ``in`` ports with ``source``, ``default``, ``valueFrom``, ``linkMerge``, ``pickValue``; ``out``;
    ``scatter``, ``scatterMethod``, ``when``), edges, node positions. Everything else (hints,
    requirements, ``$namespaces``, ``$schemas``, ``s:`` metadata, ``doc``, unknown fields, the
    other processes of a packed ``$graph``) travels unchanged in ``extras`` / ``envelope`` /
    ``packed``. :func:`to_cwl` writes into the document the graph was read from, touching only the
    entries whose modelled values changed, so comments survive; without that document (a graph
    that came through JSON) it writes the same meaning from the graph alone.

Positions
    Node positions are kept in our own namespace, ``dl: https://datalabs.example/cwl#`` (a reserved
    ``.example`` domain, so it can never be someone else's vocabulary), as
    ``dl:position: {x: .., y: ..}`` on steps, workflow inputs and workflow outputs. cwltool ignores
    namespaced extension fields.
"""

from __future__ import annotations

import copy
import difflib
import io
import json
import os
import re
import tempfile
import urllib.parse
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

DL_NAMESPACE = "https://datalabs.example/cwl#"
DL_PREFIX = "dl"
INPUT, OUTPUT, STEP = "input", "output", "step"
_STEP_KEYS = ("label", "run", "in", "out", "scatter", "scatterMethod", "when")
_STEP_IN_KEYS = ("source", "default", "valueFrom", "linkMerge", "pickValue")
_LAYER_GAP, _ROW_GAP = 260, 110
_KIND_NAMES = {INPUT: "input", OUTPUT: "output", STEP: "step"}


class GraphError(ValueError):
    """A document that cannot be shown as a graph; the message says why, for a person."""


class ProcessChoice(GraphError):
    """A packed document with several workflows and none named: ``choices`` are their ids,
    one of which the caller names (``process=``) to open it."""

    def __init__(self, message: str, choices: list[str]) -> None:
        super().__init__(message)
        self.choices = choices


class EditRefused(ValueError):
    """An edit that would break the workflow; ``reason`` says why, for a person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Port:
    """An input or output of a node.

    For a step input, ``declared`` says whether the step lists it in ``in`` (ports only known from
    the tool are shown so they can be connected, and are written once they are used).
    """

    id: str
    type: Any = None
    declared: bool = True
    default: Any = None
    has_default: bool = False
    value_from: str | None = None
    link_merge: str | None = None
    pick_value: str | None = None
    source_list: bool = False
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def optional(self) -> bool:
        """Whether the port may be left unconnected (a default, or ``null`` in its type)."""
        return self.has_default or _is_nullable(self.type)


@dataclass
class Node:
    """A workflow input, a workflow output or a step."""

    id: str
    kind: str
    inputs: list[Port] = field(default_factory=list)
    outputs: list[Port] = field(default_factory=list)
    label: str | None = None
    position: tuple[float, float] | None = None
    run: Any = None
    run_class: str | None = None
    subgraph: Graph | None = None
    scatter: list[str] = field(default_factory=list)
    scatter_list: bool = True
    scatter_method: str | None = None
    when: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def port(self, port_id: str, side: str) -> Port | None:
        ports = self.inputs if side == "in" else self.outputs
        return next((p for p in ports if p.id == port_id), None)


@dataclass(frozen=True)
class Edge:
    """A data link: ``source`` node's output port to ``target`` node's input port."""

    source: str
    source_port: str
    target: str
    target_port: str


@dataclass
class Graph:
    """One workflow. ``extras`` holds its unmodelled fields; for a packed document ``envelope``
    holds the top-level fields besides ``$graph`` and ``packed`` the other processes, with
    ``main_index`` the workflow's place among them and ``process`` its id there (``main``, or
    the application's name in an EO application package: ``file.cwl#<process>``)."""

    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    id: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    envelope: dict[str, Any] | None = None
    packed: list[Any] | None = None
    main_index: int = 0
    process: str | None = None
    document: Any = field(default=None, repr=False, compare=False)
    text: str | None = field(default=None, repr=False, compare=False)

    def node(self, node_id: str) -> Node | None:
        return next((n for n in self.nodes if n.id == node_id), None)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for the REST API (the source document itself is not included)."""
        return _graph_json(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Graph:
        """The inverse of :meth:`to_json`."""
        return _graph_from_json(data)


# --- reading -------------------------------------------------------------------------------


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096  # never re-fold long strings
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def _plain(value: Any) -> Any:
    """ruamel's commented containers and scalar subclasses as plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value


def _short_id(value: str) -> str:
    """``#main/step/out`` or ``file:///x.cwl#step`` -> the part after the document."""
    value = str(value)
    if "#" in value:
        value = value.split("#", 1)[1]
    return value


_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _scope_of(process_id: Any) -> str:
    """The id scope of a process: its id as a fragment (``#main`` and ``main`` -> ``main``;
    ``file:///x.cwl#wf`` -> ``wf``); ``""`` for a process without an id, or whose id is a URI
    without a fragment (its fields are then ids at the document's root, ``#x``)."""
    if process_id is None:
        return ""
    value = str(process_id)
    if "#" in value:
        return value.split("#", 1)[1].strip("/")
    return "" if _URI_SCHEME.match(value) else value.strip("/")


class _Ids:
    """What the ids and references of one workflow mean: the one place where they are resolved,
    by schema-salad's rules, for reading and for writing alike.

    Every field of a workflow with scope ``P`` (see :func:`_scope_of`) is an id under it: the
    input ``x`` is ``P/x``, the step ``s`` is ``P/s`` and its output ``o`` is ``P/s/o``; the
    graph names them locally (``x``, ``s``, ``s/o``). A reference with a ``#`` (``#P/s/o``) is
    absolute in the document. A reference without one (``source``, ``outputSource``) is relative:
    salad tries it in the process's scope first (``P/ref``), then in each enclosing scope out to
    the document's root, and takes the first that names an id. So in a workflow whose id is
    ``count``, ``count/out`` is the output ``out`` of its step ``count`` when that step exists
    (``count/count/out``), and only otherwise the workflow's own ``out`` (``count/out``): the
    document's id is never a prefix to strip blindly.
    """

    def __init__(self, scope: str, known: Iterable[str]) -> None:
        self.scope = scope
        self.known = set(known)

    @classmethod
    def of_graph(cls, graph: Graph) -> _Ids:
        """The ids of ``graph`` (inputs, outputs, steps, and the steps' declared ports)."""
        known: set[str] = set()
        for node in graph.nodes:
            known.add(node.id)
            if node.kind == STEP:
                known.update(f"{node.id}/{p.id}" for p in node.inputs if p.declared)
                known.update(f"{node.id}/{p.id}" for p in node.outputs)
        return cls(_scope_of(graph.id), known)

    def _from_absolute(self, fragment: str) -> str:
        fragment = fragment.strip("/")
        if not self.scope:
            return fragment
        if fragment.startswith(self.scope + "/"):
            return fragment[len(self.scope) + 1 :]
        return fragment  # outside this process: kept as written, so it shows as unknown

    def local_id(self, value: Any) -> str:
        """The local name of an identity field (an input's, output's or step's ``id``)."""
        value = str(value)
        return self._from_absolute(value.split("#", 1)[1]) if "#" in value else value

    def target(self, reference: Any) -> str:
        """What a ``source`` / ``outputSource`` reference names: ``x`` (a workflow input) or
        ``s/o`` (the output ``o`` of step ``s``), local to this workflow."""
        ref = str(reference)
        if "#" in ref:
            return self._from_absolute(ref.split("#", 1)[1])
        segments = self.scope.split("/") if self.scope else []
        for depth in range(len(segments), -1, -1):
            candidate = "/".join([*segments[:depth], ref])
            if not self.scope:
                local = candidate
            elif candidate.startswith(self.scope + "/"):
                local = candidate[len(self.scope) + 1 :]
            else:
                continue
            if local in self.known:
                return local
        return ref

    def edge(self, reference: Any, target: str, target_port: str) -> Edge:
        """The link a reference in ``target``'s ``target_port`` makes."""
        local = self.target(reference)
        if "/" in local:
            node, _, port = local.rpartition("/")
            return Edge(node, port, target, target_port)
        return Edge(local, local, target, target_port)

    @staticmethod
    def reference(edge: Edge, source_is_input: bool) -> str:
        """The text of a new reference for ``edge``: relative and local, which salad resolves
        in the workflow's own scope first, so it always names what the graph links."""
        if source_is_input and edge.source == edge.source_port:
            return edge.source
        return f"{edge.source}/{edge.source_port}"


def _last(value: str) -> str:
    return _short_id(value).rsplit("/", 1)[-1]


def _entries(section: Any, key_name: str = "id") -> list[tuple[str, Any]]:
    """``(id, value)`` for a CWL map-or-list section (``inputs``, ``steps``, ``in``, ...)."""
    if not isinstance(section, (dict, list)):
        return []
    if isinstance(section, dict):
        return [(str(k), v) for k, v in section.items()]
    out = []
    for item in section:
        if isinstance(item, dict):
            out.append((str(item.get(key_name, "")), item))
        else:
            out.append((str(item), item))
    return out


def _position(data: dict[str, Any], prefixes: Iterable[str]) -> tuple[float, float] | None:
    for key in [f"{p}:position" for p in prefixes] + [DL_NAMESPACE + "position"]:
        pos = data.get(key)
        if isinstance(pos, dict) and "x" in pos and "y" in pos:
            return (float(pos["x"]), float(pos["y"]))
    return None


def _without(data: dict[str, Any], keys: Iterable[str], prefixes: Iterable[str]) -> dict[str, Any]:
    drop = set(keys) | {f"{p}:position" for p in prefixes} | {DL_NAMESPACE + "position", "id"}
    return {k: _plain(v) for k, v in data.items() if k not in drop}


def _canon_param(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {"type": value}


def _canon_step_in(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return dict(value)
    return {"source": value}


class _Context:
    """What reading one document needs: its folder, its ``$graph`` and a cache of tool files."""

    def __init__(self, path: Path | None, graph_entries: list[Any] | None) -> None:
        self.path = path
        self.graph_entries = graph_entries or []
        self.prefixes: set[str] = {DL_PREFIX}
        self.cache: dict[str, Any] = {}

    def resolve(self, run: Any) -> tuple[Any, Path | None, list[Any] | None]:
        """The process a step runs, the file it came from, and that file's ``$graph``."""
        if isinstance(run, dict) and "$import" in run:
            run = run["$import"]
        if isinstance(run, dict):
            return run, self.path, self.graph_entries
        ref = str(run)
        if ref.startswith("#"):
            return packed_entry(self.graph_entries, ref[1:]), self.path, self.graph_entries
        if re.match(r"^(https?|ftp):", ref):
            return None, None, None
        file_part, _, fragment = ref.partition("#")
        if file_part.startswith("file://"):
            target = Path(urllib.parse.unquote(urllib.parse.urlparse(file_part).path))
        else:
            base = self.path.parent if self.path else Path.cwd()
            target = base / urllib.parse.unquote(file_part)
        key = str(target)
        if key not in self.cache:
            try:
                self.cache[key] = YAML(typ="safe", pure=False).load(target.read_text())
            except (OSError, YAMLError):
                self.cache[key] = None
        doc = self.cache[key]
        if isinstance(doc, dict) and "$graph" in doc:
            entries = doc["$graph"]
            name = fragment or default_process(entries)
            return packed_entry(entries, name), target, entries
        return doc, target, None


def _graph_index(entries: list[Any], name: str = "main") -> int:
    """Where the process ``#name`` stands in a packed ``$graph`` list; -1 when it is not there."""
    for i, entry in enumerate(entries):
        if isinstance(entry, dict) and _short_id(str(entry.get("id", ""))).lstrip("#") == name:
            return i
    return -1


def packed_entry(entries: list[Any], name: str = "main") -> Any:
    """The process ``#name`` of a packed ``$graph`` list (``#main``: the document's own)."""
    i = _graph_index(entries, name)
    return entries[i] if i >= 0 else None


def _process_ids(entries: list[Any], cwl_class: str | None = None) -> list[str]:
    return [
        _short_id(str(e["id"])).lstrip("#")
        for e in entries
        if isinstance(e, dict)
        and e.get("id")
        and (cwl_class is None or e.get("class") == cwl_class)
    ]


def choose_process(entries: list[Any], process: str | None = None, name: str = "") -> str:
    """The id of the process of a packed ``$graph`` list to open or run: ``process`` when
    given; else ``main`` (cwltool's default); else its one Workflow, as in an EO application
    package (OGC 20-089), whose workflow is named after the application. Raises
    :class:`ProcessChoice` when there are several Workflows and none is named, and
    :class:`GraphError` when the one named, or any Workflow, is not there."""
    where = f"{name}: " if name else ""
    if process is not None:
        process = process.lstrip("#")
        if _graph_index(entries, process) < 0:
            have = ", ".join(_process_ids(entries)) or "none"
            raise GraphError(f"{where}its $graph has no process '{process}' (it has: {have})")
        return process
    if _graph_index(entries, "main") >= 0:
        return "main"
    workflows = _process_ids(entries, "Workflow")
    if len(workflows) == 1:
        return workflows[0]
    if not workflows:
        have = ", ".join(_process_ids(entries)) or "none"
        raise GraphError(
            f"{where}its $graph has no process 'main' and no Workflow (it has: {have})"
        )
    raise ProcessChoice(
        f"{where}its $graph holds {len(workflows)} workflows ({', '.join(workflows)}) and"
        f" none is 'main': say which one to open (process=<id>)",
        workflows,
    )


def default_process(entries: list[Any]) -> str:
    """:func:`choose_process` without a choice: ``main`` where it cannot tell."""
    try:
        return choose_process(entries)
    except GraphError:
        return "main"


_V1 = re.compile(r"^v1\.\d+(\.\d+)?(-dev\d+)?$")


def _check_version(doc: dict[str, Any], name: str) -> None:
    """Refuse, with the way out, a document that is not CWL v1.x: draft-3 and documents without
    ``cwlVersion`` (which cwltool refuses too) have other rules for ids and fields, so editing
    them as v1.x would save a different workflow."""
    version = doc.get("cwlVersion")
    if version is None and isinstance(doc.get("$graph"), list):
        version = next(
            (e["cwlVersion"] for e in doc["$graph"] if isinstance(e, dict) and "cwlVersion" in e),
            None,
        )
    how = (
        f"`cwl-upgrader --v1-only --dir upgraded {name}` in a terminal in its folder (and the"
        f" same for each tool file it runs; cwl-upgrader is installed with Datalabs), then open"
        f" upgraded/{name}"
    )
    if version is None:
        raise GraphError(
            f"{name} has no cwlVersion, so it is not CWL v1.x (cwltool refuses it too) and the"
            f" editor cannot open it. If it is written for CWL v1.x, add its version at the top"
            f" (e.g. `cwlVersion: v1.2`); if it is a draft-3 document, add `cwlVersion: draft-3`"
            f" and convert it with {how}"
        )
    if not _V1.match(str(version)):
        raise GraphError(
            f"{name} is CWL {version}, not CWL v1.x: the editor opens CWL v1.0, v1.1 and v1.2."
            f" Convert it with {how}"
        )


def load_graph(
    source: str | os.PathLike[str], *, text: str | None = None, process: str | None = None
) -> Graph:
    """Read a CWL workflow (a path; or ``text`` with ``source`` naming where it lives, for
    resolving ``run:`` references) as a :class:`Graph`. Raises :class:`GraphError` with a
    readable reason for a document that is not a CWL v1.x workflow.

    In a packed document (``$graph``) the workflow is ``process`` (an id, e.g. the name of an
    EO application package), by default the one :func:`choose_process` picks; a document with
    several workflows and none named raises :class:`ProcessChoice` with their ids."""
    path = Path(source)
    name = path.name
    if text is None:
        try:
            text = path.read_text()
        except OSError as exc:
            raise GraphError(f"cannot read {name}: {exc.strerror or exc}") from None
    try:
        doc = _yaml().load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise GraphError(f"{name} is not valid YAML{where}: {problem}") from None
    if not isinstance(doc, dict):
        raise GraphError(f"{name} is not a CWL document (expected a mapping at the top)")
    _check_version(doc, name)
    envelope = None
    packed = None
    main_index = 0
    chosen: str | None = None
    wf = doc
    if "$graph" in doc:
        entries = doc["$graph"]
        if not isinstance(entries, list):
            raise GraphError(f"{name}: $graph must be a list of processes")
        chosen = choose_process(entries, process, name)
        main_index = _graph_index(entries, chosen)
        wf = entries[main_index]
        envelope = {k: _plain(v) for k, v in doc.items() if k != "$graph"}
        packed = [_plain(e) for i, e in enumerate(entries) if i != main_index]
        ctx = _Context(path, entries)
    else:
        ctx = _Context(path, None)
    if not isinstance(wf, dict) or wf.get("class") != "Workflow":
        found = wf.get("class") if isinstance(wf, dict) else None
        raise GraphError(
            f"{name} is a {found}, not a Workflow: the editor shows workflows"
            if found
            else f"{name} has no 'class: Workflow'"
        )
    namespaces = doc.get("$namespaces") or {}
    ctx.prefixes |= {str(k) for k, v in namespaces.items() if v == DL_NAMESPACE}
    try:
        graph = _read_workflow(wf, ctx)
    except GraphError:
        raise
    except (TypeError, AttributeError, KeyError, ValueError) as exc:
        raise GraphError(
            f"{name} does not have the shape of a CWL workflow ({type(exc).__name__}: {exc});"
            " validate it for the details"
        ) from None
    graph.path = str(path)
    graph.envelope = envelope
    graph.packed = packed
    graph.main_index = main_index
    graph.process = chosen
    graph.document = doc
    graph.text = text
    return graph


def process_ports(process: Any, side: str) -> list[tuple[str, Any]]:
    """``(port id, type)`` of a process's ``inputs`` or ``outputs``, map or list form."""
    if not isinstance(process, dict):
        return []
    out = []
    for pid, value in _entries(process.get(side)):
        canon = _canon_param(value)
        out.append((_last(pid), _plain(canon.get("type"))))
    return out


def _read_workflow(wf: dict[str, Any], ctx: _Context) -> Graph:
    pre = ctx.prefixes
    graph = Graph(id=str(wf["id"]) if wf.get("id") else None)
    ids = _Ids(_scope_of(graph.id), ())
    graph.extras = _without(wf, ("inputs", "outputs", "steps"), pre)
    # (reference, target node, target port): resolved once every id of the workflow is known,
    # since what a reference names depends on which ids exist
    links: list[tuple[str, str, str]] = []
    for pid, value in _entries(wf.get("inputs")):
        canon = _canon_param(value)
        nid = ids.local_id(pid)
        port = Port(id=nid, type=_plain(canon.get("type")))
        graph.nodes.append(
            Node(
                id=nid,
                kind=INPUT,
                outputs=[port],
                label=canon.get("label"),
                position=_position(canon, pre),
                extras=_without(canon, ("type", "label"), pre),
            )
        )
    for pid, value in _entries(wf.get("outputs")):
        canon = _canon_param(value)
        nid = ids.local_id(pid)
        port = Port(
            id=nid,
            type=_plain(canon.get("type")),
            link_merge=canon.get("linkMerge"),
            pick_value=canon.get("pickValue"),
            source_list=isinstance(canon.get("outputSource"), list),
        )
        graph.nodes.append(
            Node(
                id=nid,
                kind=OUTPUT,
                inputs=[port],
                label=canon.get("label"),
                position=_position(canon, pre),
                extras=_without(
                    canon, ("type", "label", "outputSource", "linkMerge", "pickValue"), pre
                ),
            )
        )
        links += [(str(src), nid, nid) for src in _as_list(canon.get("outputSource"))]
    for sid, step in _entries(wf.get("steps")):
        if not isinstance(step, dict):
            raise GraphError(f"step {sid!r} is not a mapping")
        nid = ids.local_id(sid)
        graph.nodes.append(_read_step(nid, step, ctx, links))
    # An input and an output of one name stay apart (one is only ever a source, the other
    # only a target); a step sharing its id with either cannot be told from it in links.
    named: dict[str, Node] = {}
    for node in graph.nodes:
        first = named.setdefault(node.id, node)
        if first is not node and STEP in (first.kind, node.kind):
            raise GraphError(
                f"the workflow {_KIND_NAMES[first.kind]} '{node.id}' and its"
                f" {_KIND_NAMES[node.kind]} '{node.id}' have the same id: CWL ids must be"
                " unique in a workflow (cwltool only warns that the id is 'previously defined',"
                " and then takes either for the other), so the editor cannot tell them apart;"
                " rename one of them"
            )
    ids = _Ids.of_graph(graph)
    graph.edges = [ids.edge(ref, target, port) for ref, target, port in links]
    return graph


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _read_step(
    nid: str, step: dict[str, Any], ctx: _Context, links: list[tuple[str, str, str]]
) -> Node:
    pre = ctx.prefixes
    run = step.get("run")
    process, process_path, process_graph = (
        ctx.resolve(run) if run is not None else (None, None, None)
    )
    node = Node(
        id=nid,
        kind=STEP,
        label=step.get("label"),
        position=_position(step, pre),
        run=_plain(run),
        run_class=process.get("class") if isinstance(process, dict) else None,
        scatter=[_last(s) for s in _as_list(step.get("scatter"))],
        scatter_list=isinstance(step.get("scatter"), list),
        scatter_method=step.get("scatterMethod"),
        when=step.get("when"),
        extras=_without(step, _STEP_KEYS, pre),
    )
    tool_inputs = dict(process_ports(process, "inputs"))
    tool_outputs = dict(process_ports(process, "outputs"))
    for pid, value in _entries(step.get("in")):
        canon = _canon_step_in(value)
        port_id = _last(pid)
        port = Port(
            id=port_id,
            type=tool_inputs.get(port_id),
            default=_plain(canon.get("default")),
            has_default="default" in canon,
            value_from=canon.get("valueFrom"),
            link_merge=canon.get("linkMerge"),
            pick_value=canon.get("pickValue"),
            source_list=isinstance(canon.get("source"), list),
            extras=_without(canon, _STEP_IN_KEYS, pre),
        )
        node.inputs.append(port)
        links += [(str(src), nid, port_id) for src in _as_list(canon.get("source"))]
    declared = {p.id for p in node.inputs}
    for port_id, type_ in tool_inputs.items():
        if port_id not in declared:
            node.inputs.append(Port(id=port_id, type=type_, declared=False))
    for pid, value in _entries(step.get("out")):
        extras = _without(value, (), pre) if isinstance(value, dict) else {}
        port_id = _last(pid)
        node.outputs.append(Port(id=port_id, type=tool_outputs.get(port_id), extras=extras))
    if isinstance(process, dict) and process.get("class") == "Workflow":
        sub_ctx = _Context(process_path, process_graph)
        sub_ctx.prefixes = ctx.prefixes
        sub_ctx.cache = ctx.cache
        try:
            node.subgraph = _read_workflow(process, sub_ctx)
        except GraphError:
            node.subgraph = None
        if isinstance(run, dict) and "$import" not in run and node.subgraph is not None:
            node.run = None  # inline: the step's run is written from its subgraph
    return node


# --- JSON ----------------------------------------------------------------------------------


def _graph_json(graph: Graph) -> dict[str, Any]:
    return {
        "id": graph.id,
        "path": graph.path,
        "extras": graph.extras,
        "envelope": graph.envelope,
        "packed": graph.packed,
        "main_index": graph.main_index,
        "process": graph.process,
        "nodes": [_node_json(n) for n in graph.nodes],
        "edges": [asdict(e) for e in graph.edges],
    }


def _node_json(node: Node) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": node.id,
        "kind": node.kind,
        "label": node.label,
        "position": list(node.position) if node.position else None,
        "inputs": [_port_json(p) for p in node.inputs],
        "outputs": [_port_json(p) for p in node.outputs],
        "extras": node.extras,
    }
    if node.kind == STEP:
        data.update(
            run=node.run,
            run_class=node.run_class,
            subgraph=_graph_json(node.subgraph) if node.subgraph else None,
            scatter=node.scatter,
            scatter_list=node.scatter_list,
            scatter_method=node.scatter_method,
            when=node.when,
        )
    return data


def _port_json(port: Port) -> dict[str, Any]:
    data = asdict(port)
    data["type_label"] = type_label(port.type)
    data["optional"] = port.optional
    return data


def _graph_from_json(data: dict[str, Any]) -> Graph:
    return Graph(
        id=data.get("id"),
        path=data.get("path"),
        extras=dict(data.get("extras") or {}),
        envelope=data.get("envelope"),
        packed=data.get("packed"),
        main_index=int(data.get("main_index") or 0),
        process=str(data["process"]) if data.get("process") else None,
        nodes=[_node_from_json(n) for n in data.get("nodes", [])],
        edges=[Edge(**e) for e in data.get("edges", [])],
    )


def _node_from_json(data: dict[str, Any]) -> Node:
    def ports(items: list[dict[str, Any]]) -> list[Port]:
        names = set(Port.__dataclass_fields__)
        return [Port(**{k: v for k, v in p.items() if k in names}) for p in items]

    pos = data.get("position")
    sub = data.get("subgraph")
    return Node(
        id=data["id"],
        kind=data["kind"],
        label=data.get("label"),
        position=(float(pos[0]), float(pos[1])) if pos else None,
        inputs=ports(data.get("inputs", [])),
        outputs=ports(data.get("outputs", [])),
        extras=dict(data.get("extras") or {}),
        run=data.get("run"),
        run_class=data.get("run_class"),
        subgraph=_graph_from_json(sub) if sub else None,
        scatter=list(data.get("scatter") or []),
        scatter_list=bool(data.get("scatter_list", True)),
        scatter_method=data.get("scatter_method"),
        when=data.get("when"),
    )


# --- writing -------------------------------------------------------------------------------


def _pos_value(node: Node) -> dict[str, Any]:
    assert node.position is not None
    x, y = node.position
    return {
        "x": int(x) if float(x).is_integer() else x,
        "y": int(y) if float(y).is_integer() else y,
    }


def _sources(graph: Graph, node_id: str, port_id: str) -> list[str]:
    return [
        _Ids.reference(e, _is_input(graph, e.source))
        for e in graph.edges
        if e.target == node_id and e.target_port == port_id
    ]


def _is_input(graph: Graph, node_id: str) -> bool:
    node = graph.node(node_id)
    return node is not None and node.kind == INPUT


def _source_value(sources: list[str], as_list: bool) -> Any:
    if not sources:
        return None
    return sources if (as_list or len(sources) > 1) else sources[0]


def _fresh_input(node: Node, prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    port = node.outputs[0] if node.outputs else None
    if port is not None and port.type is not None:
        out["type"] = port.type
    if node.label is not None:
        out["label"] = node.label
    out.update(node.extras)
    if node.position:
        out[f"{prefix}:position"] = _pos_value(node)
    return out


def _fresh_output(graph: Graph, node: Node, prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    port = node.inputs[0] if node.inputs else Port(id=node.id)
    if port.type is not None:
        out["type"] = port.type
    if node.label is not None:
        out["label"] = node.label
    out.update(node.extras)
    src = _source_value(_sources(graph, node.id, port.id), port.source_list)
    if src is not None:
        out["outputSource"] = src
    if port.link_merge:
        out["linkMerge"] = port.link_merge
    if port.pick_value:
        out["pickValue"] = port.pick_value
    if node.position:
        out[f"{prefix}:position"] = _pos_value(node)
    return out


def _fresh_step_in(graph: Graph, node: Node, port: Port) -> dict[str, Any]:
    out: dict[str, Any] = {}
    src = _source_value(_sources(graph, node.id, port.id), port.source_list)
    if src is not None:
        out["source"] = src
    if port.has_default:
        out["default"] = port.default
    if port.value_from is not None:
        out["valueFrom"] = port.value_from
    if port.link_merge:
        out["linkMerge"] = port.link_merge
    if port.pick_value:
        out["pickValue"] = port.pick_value
    out.update(port.extras)
    return out


def _norm_value(key: str, value: Any, ids: _Ids) -> Any:
    """A field's value with references resolved, so ``#main/a``, ``main/a`` and ``a`` compare
    equal where they name the same thing in the workflow being written."""
    value = _plain(value)
    if key in ("source", "outputSource"):
        if isinstance(value, list):
            return [ids.target(v) for v in value]
        return ids.target(value) if value is not None else None
    if key == "scatter":
        if isinstance(value, list):
            return [_last(str(v)) for v in value]
        return _last(str(value))
    return value


def _merge_refs(orig: Any, fresh: Any, ids: _Ids) -> Any:
    """A changed list of references where each one that still names a source keeps the text
    the author wrote: only the references the user edited are written anew."""
    if not isinstance(orig, list) or not isinstance(fresh, list):
        return fresh
    written = {ids.target(v): v for v in orig}
    merged = CommentedSeq(written.get(v, v) for v in fresh)
    if isinstance(orig, CommentedSeq) and orig.fa.flow_style():
        merged.fa.set_flow_style()  # [a, b] stays on its line
    return merged


def _merge_map(orig: Any, fresh: dict[str, Any], ids: _Ids, keep: Iterable[str] = ()):
    """Write ``fresh`` into the original mapping ``orig`` key by key (comments stay); a key whose
    value only differs in form (``#main/a`` vs ``a``) is left as written."""
    if not isinstance(orig, CommentedMap):
        return fresh
    keep = set(keep)
    for key in list(orig):
        if key not in fresh and key not in keep:
            del orig[key]
    for key, value in fresh.items():
        if key in orig:
            if _norm_value(key, orig[key], ids) != _norm_value(key, value, ids):
                if key in ("source", "outputSource"):
                    value = _merge_refs(orig[key], value, ids)
                orig[key] = value
        elif len(orig):
            # After the first key, not at the end: a blank line or comment that closes the
            # entry belongs to its last key and would otherwise end up above the new one.
            orig.insert(1, key, value)
        else:
            orig[key] = value
    return orig


def _merge_section(
    orig: Any, fresh: list[tuple[str, Any]], ids: _Ids, shorthand: str | None
) -> Any:
    """Write a map-or-list section (``inputs``, ``steps``, ``in``) back in its original form."""

    def short(value: Any) -> Any:
        if shorthand and isinstance(value, dict) and list(value) == [shorthand]:
            v = value[shorthand]
            if not isinstance(v, dict) and not (shorthand == "type" and isinstance(v, list)):
                return v
            if shorthand == "source":
                return v
        return value

    if isinstance(orig, CommentedSeq):
        by_id = {}
        for item in orig:
            if isinstance(item, dict) and "id" in item:
                by_id[_last(str(item["id"]))] = item
        wanted = dict(fresh)
        for item in list(orig):
            if isinstance(item, dict) and _last(str(item.get("id", ""))) not in wanted:
                orig.remove(item)
        for key, value in fresh:
            if key in by_id:
                _merge_map(by_id[key], value, ids, keep=("id",))
            else:
                orig.append({"id": key, **value})
        return orig
    if isinstance(orig, CommentedMap):
        wanted = dict(fresh)
        for key in list(orig):
            if _last(str(key)) not in wanted:
                del orig[key]
        existing = {_last(str(k)): k for k in orig}
        for key, value in fresh:
            if key in existing:
                k = existing[key]
                current = orig[k]
                if isinstance(current, CommentedMap):
                    _merge_map(current, value, ids)
                else:
                    canon = (
                        _canon_step_in(current) if shorthand == "source" else _canon_param(current)
                    )
                    same = {k2: _norm_value(k2, v, ids) for k2, v in canon.items()} == {
                        k2: _norm_value(k2, v, ids) for k2, v in value.items()
                    }
                    if not same:
                        orig[k] = short(value)
            else:
                orig[key] = short(value)
        return orig
    out = CommentedMap()
    for key, value in fresh:
        out[key] = short(value)
    return out


def _write_workflow(graph: Graph, orig: Any, prefix: str) -> Any:
    ids = _Ids.of_graph(graph)
    wf = orig if isinstance(orig, CommentedMap) else CommentedMap()
    top = dict(graph.extras)
    if graph.id is not None and "id" not in top:
        top["id"] = graph.id
    inputs = [(n.id, _fresh_input(n, prefix)) for n in graph.nodes if n.kind == INPUT]
    outputs = [(n.id, _fresh_output(graph, n, prefix)) for n in graph.nodes if n.kind == OUTPUT]
    steps = []
    orig_steps = (
        {ids.local_id(k): v for k, v in _entries(wf.get("steps")) if isinstance(v, dict)}
        if isinstance(orig, CommentedMap)
        else {}
    )
    for node in (n for n in graph.nodes if n.kind == STEP):
        steps.append((node.id, _fresh_step(graph, node, orig_steps.get(node.id), prefix, ids)))
    for key in list(wf):
        if key not in top and key not in ("inputs", "outputs", "steps"):
            del wf[key]
    for key, value in top.items():
        if key not in wf:
            if len(wf):
                wf.insert(1, key, value)
            else:
                wf[key] = value
        elif _plain(wf[key]) != value:
            wf[key] = _merge_value(wf[key], value)
    wf["inputs"] = _merge_section(wf.get("inputs"), inputs, ids, "type")
    wf["outputs"] = _merge_section(wf.get("outputs"), outputs, ids, None)
    wf["steps"] = _merge_section(wf.get("steps"), steps, ids, None)
    return wf


def _merge_value(orig: Any, value: Any) -> Any:
    """``value`` written over ``orig`` keeping the parts that did not change (and their
    comments): a requirement added to ``requirements`` leaves the others as they were."""
    if _plain(orig) == value:
        return orig
    if isinstance(orig, CommentedMap) and isinstance(value, dict):
        for key in list(orig):
            if key not in value:
                del orig[key]
        for key, v in value.items():
            orig[key] = _merge_value(orig[key], v) if key in orig else v
        return orig
    if (
        isinstance(orig, CommentedSeq)
        and isinstance(value, list)
        and len(value) >= len(orig)
        and all(_plain(a) == b for a, b in zip(orig, value, strict=False))
    ):
        for v in value[len(orig) :]:
            orig.append(v)
        return orig
    return value


def _fresh_step(graph: Graph, node: Node, orig: Any, prefix: str, ids: _Ids):
    step: dict[str, Any] = {}
    if node.label is not None:
        step["label"] = node.label
    if node.subgraph is not None and node.run is None:
        orig_run = orig.get("run") if isinstance(orig, dict) else None
        step["run"] = _write_workflow(node.subgraph, orig_run, prefix)
    elif node.run is not None:
        step["run"] = node.run
    ins = [(p.id, _fresh_step_in(graph, node, p)) for p in node.inputs if p.declared]
    orig_in = orig.get("in") if isinstance(orig, dict) else None
    step["in"] = _merge_section(orig_in, ins, ids, "source")
    outs = []
    orig_out = {_last(k): v for k, v in _entries(orig.get("out"))} if isinstance(orig, dict) else {}
    for p in node.outputs:
        o = orig_out.get(p.id)
        if isinstance(o, dict):  # the long form {id: x, ...} stays long, its id as written
            outs.append(_merge_map(o, dict(p.extras), ids, keep=("id",)))
        elif p.extras:
            outs.append({"id": p.id, **p.extras})
        else:
            outs.append(o if isinstance(o, str) and _last(o) == p.id else p.id)
    step["out"] = outs
    if node.scatter:
        step["scatter"] = (
            node.scatter if (node.scatter_list or len(node.scatter) > 1) else node.scatter[0]
        )
    if node.scatter_method:
        step["scatterMethod"] = node.scatter_method
    if node.when is not None:
        step["when"] = node.when
    step.update(node.extras)
    if node.position:
        step[f"{prefix}:position"] = _pos_value(node)
    return step


def _has_positions(graph: Graph) -> bool:
    return any(
        n.position is not None
        or (n.subgraph is not None and n.run is None and _has_positions(n.subgraph))
        for n in graph.nodes
    )


def _namespace_prefix(namespaces: dict[str, Any]) -> str:
    for key, value in namespaces.items():
        if value == DL_NAMESPACE:
            return str(key)
    return DL_PREFIX if DL_PREFIX not in namespaces else "datalabs"


def to_cwl(graph: Graph, base: str | None = None) -> str:
    """The graph as CWL text.

    ``base`` is the text of the document the graph was read from (default: the document
    :func:`load_graph` kept on the graph). Fields the editor does not model, comments and key
    order come from it; without it the same meaning is written from the graph alone.
    """
    y = _yaml()
    original: str | None = None
    if base is not None:
        doc = y.load(base)
        original = base
    elif graph.document is not None:
        doc = copy.deepcopy(graph.document)
        original = graph.text
    else:
        doc = None
    # How the document read before the edits, in the writer's own style: what changes between
    # it and the edited document is what gets applied to the author's text.
    # (A copy: dumping one ruamel document twice can misplace its comments; seen on the
    # conformance suite's scatter-wf3.cwl, whose second dump read `$graph:   -`.)
    before = _render(y, copy.deepcopy(doc), original) if original is not None else None
    packed = graph.envelope is not None
    if packed:
        if not isinstance(doc, CommentedMap):
            doc = CommentedMap(copy.deepcopy(graph.envelope or {}))
            entries = CommentedSeq(copy.deepcopy(graph.packed or []))
            entries.insert(graph.main_index, CommentedMap())
            doc["$graph"] = entries
        entries = doc["$graph"]
        idx = _graph_index(entries, graph.process or "main")
        if idx < 0:
            idx = graph.main_index
        namespaces_owner = doc
        wf_orig = entries[idx] if idx < len(entries) else None
    else:
        wf_orig = doc
        namespaces_owner = None
    if not isinstance(wf_orig, CommentedMap):
        wf_orig = None
    if packed and isinstance(namespaces_owner, dict):
        namespaces = dict(namespaces_owner.get("$namespaces") or {})
    else:
        namespaces = dict(graph.extras.get("$namespaces") or {})
    prefix = _namespace_prefix(namespaces)
    extras_backup = graph.extras
    if _has_positions(graph) and namespaces.get(prefix) != DL_NAMESPACE:
        namespaces[prefix] = DL_NAMESPACE
        if packed:
            owner = namespaces_owner
            assert owner is not None
            if isinstance(owner.get("$namespaces"), dict):
                owner["$namespaces"][prefix] = DL_NAMESPACE
            else:
                owner.insert(0, "$namespaces", CommentedMap(namespaces))
        else:
            graph = copy.copy(graph)
            graph.extras = dict(graph.extras)
            graph.extras["$namespaces"] = namespaces
    wf = _write_workflow(graph, wf_orig, prefix)
    del extras_backup
    if packed:
        assert isinstance(doc, CommentedMap)
        doc["$graph"][idx] = wf
        out_doc = doc
    else:
        out_doc = wf
    after = _render(y, out_doc, original)
    if original is None or before is None:
        return after
    return _apply_changes(original, before, after)


def _render(y: YAML, doc: Any, original: str | None) -> str:
    """``doc`` as text: JSON for a document the author wrote as JSON, YAML otherwise."""
    if original is not None and original.lstrip().startswith("{"):
        indent = _json_indent(original)
        return json.dumps(_plain(doc), indent=indent, ensure_ascii=False) + "\n"
    buf = io.StringIO()
    y.dump(doc, buf)
    return buf.getvalue()


def _json_indent(text: str) -> int:
    for line in text.splitlines()[1:]:
        if line.strip():
            return len(line) - len(line.lstrip(" ")) or 4
    return 4


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _shifted(line: str, by: int) -> str:
    if by > 0 and line.strip():
        return " " * by + line
    if by < 0:
        return line[min(-by, _indent(line)) :]
    return line


def _apply_changes(original: str, before: str, after: str) -> str:
    """The author's text ``original`` with the changes from ``before`` to ``after`` (both the
    writer's renderings: of the document as read, and as edited) applied to it, so a save with
    no edit gives back the very same bytes and an edit changes only the lines it concerns.

    ruamel re-indents block sequences and mappings to one style, re-spaces flow collections,
    drops trailing blanks...: the writer's lines are matched to the author's with whitespace
    ignored; lines the edit keeps are the author's, lines it adds are the writer's, shifted to
    the author's indentation at that place. Where the result would not read back as the edited
    document (a match that whitespace alone cannot make), the writer's text is used whole.
    """
    if after == before:
        return original
    mine = original.splitlines(keepends=True)
    old = before.splitlines(keepends=True)
    new = after.splitlines(keepends=True)
    kept = [False] * len(old)
    added: dict[int, list[str]] = {}  # lines of ``after`` that go before line j of ``before``
    edits = difflib.SequenceMatcher(None, old, new)
    for op, j1, j2, k1, k2 in edits.get_opcodes():
        if op == "equal":
            kept[j1:j2] = [True] * (j2 - j1)
        elif k2 > k1:
            added.setdefault(j1, []).extend(new[k1:k2])
    mine_keys, old_keys = ["".join(x.split()) for x in mine], ["".join(x.split()) for x in old]
    blocks: list[tuple[str, int, int, int, int]]
    if mine_keys == old_keys:  # the author's style is the writer's, or differs in spaces only
        blocks = [("equal", 0, len(mine), 0, len(old))]
    else:
        matcher = difflib.SequenceMatcher(None, mine_keys, old_keys, autojunk=False)
        blocks = [(str(tag), i1, i2, j1, j2) for tag, i1, i2, j1, j2 in matcher.get_opcodes()]
    pairs = {
        j1 + t: i1 + t for tag, i1, _, j1, j2 in blocks if tag == "equal" for t in range(j2 - j1)
    }

    def shift(j: int, lines: list[str]) -> int:
        """How far the author's indentation is from the writer's at the place of ``lines``:
        read from the nearest line of the same depth and kind that both texts share."""
        first = next((x for x in lines if x.strip()), "")
        depth, item = _indent(first), first.lstrip().startswith("- ")
        for k in [*range(min(j, len(old) - 1), -1, -1), *range(j + 1, len(old))]:
            if k in pairs and _indent(old[k]) == depth:
                if old[k].lstrip().startswith("- ") == item:
                    return _indent(mine[pairs[k]]) - depth
        return 0

    out: list[str] = []

    def put_added(j: int) -> None:
        lines = added.pop(j, [])
        if lines and out and not out[-1].endswith("\n"):
            out[-1] += "\n"  # the author's last line had no line break
        by = shift(j, lines) if lines else 0
        out.extend(_shifted(x, by) for x in lines)

    for tag, i1, i2, j1, j2 in blocks:
        if tag == "equal":
            for t in range(j2 - j1):
                put_added(j1 + t)
                if kept[j1 + t]:
                    out.append(mine[i1 + t])
            continue
        if j2 == j1:  # the author's lines the writer does not have (blank lines, ``---``)
            out.extend(mine[i1:i2])
            continue
        put_added(j1)
        if all(kept[j1:j2]) and not any(j in added for j in range(j1 + 1, j2)):
            out.extend(mine[i1:i2])
            continue
        for j in range(j1, j2):
            if j > j1:
                put_added(j)
            if kept[j]:
                out.append(_shifted(old[j], shift(j, [old[j]])))
    put_added(len(old))
    text = "".join(out)
    # The check parses both texts with PyYAML's C loader: ruamel has no compiled loader here,
    # and its pure one took ~1.3 s of the 200-step benchmark's write back.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        same = yaml.load(text, Loader=loader) == yaml.load(after, Loader=loader)
    except yaml.YAMLError:
        same = False
    return text if same else after


@dataclass(frozen=True)
class Saved:
    """What :func:`save` wrote, and what cwltool says about it (empty: valid)."""

    path: Path
    text: str
    problems: list[Problem]


def save(graph: Graph, path: str | os.PathLike[str] | None = None, *, check: bool = True) -> Saved:
    """Write the graph as CWL to ``path`` (default: the file it came from), merged into the
    document it was read from (or into the text on disk, for a graph that came through JSON),
    then validate what was written, as the editor does on every save. An invalid document is
    still written (work in progress is never lost); its problems come back mapped to nodes."""
    where = path or graph.path
    if not where:
        raise GraphError("this graph has no file: give the path to save to")
    target = Path(where)
    base = None
    if graph.document is None and target.exists():
        base = target.read_text()
    text = to_cwl(graph, base)
    target.write_text(text)
    return Saved(target, text, validate(target) if check else [])


# --- types ---------------------------------------------------------------------------------


def _expand_type(t: Any) -> Any:
    """A CWL type with the ``?`` / ``[]`` shorthands expanded and names made short, in the
    shape cwltool's static checker compares."""
    if t is None:
        return "Any"
    if isinstance(t, str):
        if t.endswith("?"):
            return ["null", _expand_type(t[:-1])]
        if t.endswith("[]"):
            return {"type": "array", "items": _expand_type(t[:-2])}
        if t in ("stdout", "stderr"):
            return "File"
        return _last(t) if ("#" in t or "/" in t) else t
    if isinstance(t, list):
        out: list[Any] = []
        for member in t:
            e = _expand_type(member)
            out.extend(e if isinstance(e, list) else [e])
        return out
    if isinstance(t, dict):
        kind = t.get("type")
        if kind == "array":
            return {"type": "array", "items": _expand_type(t.get("items"))}
        if kind == "record":
            fields = [
                {"name": _last(str(fid)), "type": _expand_type(_canon_param(f).get("type"))}
                for fid, f in _entries(t.get("fields"), "name")
            ]
            return {"type": "record", "fields": fields}
        if kind == "enum":
            return {"type": "enum", "symbols": [_last(str(s)) for s in t.get("symbols", [])]}
        return _expand_type(kind)
    return "Any"


def _is_nullable(t: Any) -> bool:
    e = _expand_type(t) if t is not None else None
    return isinstance(e, list) and "null" in e


def type_label(t: Any) -> str:
    """A short human label for a CWL type: ``File``, ``File[]``, ``int?``, ``Any``."""
    if t is None:
        return "Any"
    e = _expand_type(t)

    def label(x: Any) -> str:
        if isinstance(x, str):
            return x
        if isinstance(x, list):
            rest = [m for m in x if m != "null"]
            text = " | ".join(label(m) for m in rest) or "null"
            return f"{text}?" if len(rest) < len(x) else text
        if x.get("type") == "array":
            inner = label(x["items"])
            return f"({inner})[]" if " " in inner or inner.endswith("?") else f"{inner}[]"
        return str(x.get("type"))

    return label(e)


def _array_of(t: Any, depth: int = 1) -> Any:
    for _ in range(depth):
        t = {"type": "array", "items": t}
    return t


def _source_type(graph: Graph, edge_source: str, port_id: str) -> Any:
    node = graph.node(edge_source)
    if node is None:
        return None
    port = node.port(port_id, "out")
    if port is None:
        return None
    t = _expand_type(port.type)
    if node.kind == STEP and node.scatter:
        depth = len(node.scatter) if node.scatter_method == "nested_crossproduct" else 1
        t = _array_of(t, depth)
    if node.kind == STEP and node.when is not None:
        t = ["null", *(t if isinstance(t, list) else [t])]
    return t


@dataclass(frozen=True)
class ConnectionCheck:
    """Whether a connection may be made; ``reason`` explains a refusal, ``warning`` a risk."""

    allowed: bool
    reason: str | None = None
    warning: str | None = None


def _describe(node: Node, port_id: str) -> str:
    if node.kind == INPUT:
        return f"workflow input '{node.id}'"
    if node.kind == OUTPUT:
        return f"workflow output '{node.id}'"
    return f"'{node.id}/{port_id}'"


def check_connection(
    graph: Graph, source: str, source_port: str, target: str, target_port: str
) -> ConnectionCheck:
    """Whether ``source/source_port`` may feed ``target/target_port``, by CWL's typing rules as
    cwltool's static checker applies them (scatter, linkMerge, pickValue, optional, ``Any``)."""
    from cwltool.checker import check_types

    src_node, dst_node = graph.node(source), graph.node(target)
    if src_node is None or dst_node is None:
        missing = source if src_node is None else target
        return ConnectionCheck(False, f"there is no node '{missing}'")
    if src_node.kind == OUTPUT:
        return ConnectionCheck(False, "a workflow output cannot feed anything")
    if dst_node.kind == INPUT:
        return ConnectionCheck(False, "a workflow input cannot be fed from inside the workflow")
    src_p = src_node.port(source_port, "out")
    dst_p = dst_node.port(target_port, "in")
    if src_p is None:
        return ConnectionCheck(False, f"'{source}' has no output '{source_port}'")
    if dst_p is None:
        return ConnectionCheck(False, f"'{target}' has no input '{target_port}'")
    if source == target:
        return ConnectionCheck(False, "a step cannot feed itself")
    if dst_node.kind == STEP and _reaches(graph, target, source):
        return ConnectionCheck(
            False, f"'{target}' already runs before '{source}': this link would make a loop"
        )
    if Edge(source, source_port, target, target_port) in graph.edges:
        return ConnectionCheck(False, "these ports are already connected")
    existing = [e for e in graph.edges if e.target == target and e.target_port == target_port]
    src_t = _source_type(graph, source, source_port)
    sink_t = _expand_type(dst_p.type)
    scattered = dst_node.kind == STEP and target_port in dst_node.scatter
    if scattered:
        sink_t = _array_of(sink_t)
    link_merge = dst_p.link_merge or ("merge_nested" if existing else None)
    what_src, what_dst = _describe(src_node, source_port), _describe(dst_node, target_port)
    if dst_p.value_from is not None:
        return ConnectionCheck(True)
    verdict = check_types(src_t, sink_t, link_merge, dst_p.pick_value, None)
    if verdict == "pass":
        return ConnectionCheck(True)
    src_label, sink_label = type_label(src_t), type_label(dst_p.type)
    if verdict == "warning":
        return ConnectionCheck(
            True,
            warning=f"{what_src} may be empty ({src_label}) but {what_dst} needs a value "
            f"({sink_label}); the run fails if it is",
        )
    reason = f"{what_src} gives {src_label} but {what_dst} takes {sink_label}"
    items_ok = (
        isinstance(src_t, dict)
        and src_t.get("type") == "array"
        and check_types(src_t["items"], _expand_type(dst_p.type), None, None, None) == "pass"
    )
    wrap_ok = check_types(src_t, sink_t, "merge_nested", None, None) == "pass"
    if existing and not dst_p.link_merge:
        reason += (
            f"; it already has a source, and a second one makes a list ({src_label}[]),"
            " which needs an array input"
        )
    elif items_ok and dst_node.kind == STEP and not scattered:
        reason += f": scatter the step over '{target_port}' to run it once per item"
    elif scattered:
        reason += f": '{target_port}' is scattered, so it needs a list of {sink_label}"
    elif wrap_ok:
        reason += ": set linkMerge (merge_nested) on it to pass the value as a one-item list"
    return ConnectionCheck(False, reason)


def _reaches(graph: Graph, start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        current = todo.pop()
        if current == goal:
            return True
        if current in seen:
            continue
        seen.add(current)
        todo.extend(e.target for e in graph.edges if e.source == current)
    return False


# --- editing -------------------------------------------------------------------------------


_PARAMETER_REFERENCE = re.compile(r"^\$\((inputs|self|runtime)(\.\w+|\['[^']*'\]|\[\d+\])*\)$")


def _needs_javascript(expression: Any) -> bool:
    """Whether an expression is JavaScript (anything beyond ``$(inputs.x.y)`` references)."""
    if not isinstance(expression, str):
        return False
    text = expression.strip()
    return "${" in text or ("$(" in text and not _PARAMETER_REFERENCE.match(text))


def _require(graph: Graph, requirement: str) -> None:
    """Add ``requirement`` to the workflow's requirements unless it is declared already (as a
    requirement or a hint), so an edit that uses a feature keeps the document valid."""
    for section in ("requirements", "hints"):
        declared = graph.extras.get(section)
        if isinstance(declared, dict) and requirement in declared:
            return
        if isinstance(declared, list) and any(
            isinstance(r, dict) and r.get("class") == requirement for r in declared
        ):
            return
    current = graph.extras.get("requirements")
    if isinstance(current, dict):
        graph.extras["requirements"] = {**current, requirement: {}}
    elif isinstance(current, list):
        graph.extras["requirements"] = [*current, {"class": requirement}]
    else:
        graph.extras["requirements"] = {requirement: {}}


def _cwl_version(graph: Graph) -> str:
    version = graph.extras.get("cwlVersion") or (graph.envelope or {}).get("cwlVersion") or ""
    return str(version)


def _copy(graph: Graph) -> Graph:
    document = graph.document
    graph.document = None
    try:
        new = copy.deepcopy(graph)
    finally:
        graph.document = document
    new.document = document  # never mutated: to_cwl works on a copy
    return new


def _step(graph: Graph, step_id: str) -> Node:
    node = graph.node(step_id)
    if node is None or node.kind != STEP:
        raise EditRefused(f"there is no step '{step_id}'")
    return node


def _check_new_id(graph: Graph, node_id: str) -> None:
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_.-]*$", node_id):
        raise EditRefused(
            f"'{node_id}' cannot be used as an id: use letters, digits, '_', '-' or '.',"
            " starting with a letter"
        )
    if graph.node(node_id) is not None:
        raise EditRefused(f"the workflow already has something called '{node_id}'")


def add_step(graph: Graph, tool: str | os.PathLike[str], step_id: str | None = None) -> Graph:
    """A new step running the tool file ``tool``; its ports come from the tool's inputs and
    outputs. ``run`` is written relative to the workflow's folder."""
    tool_path = Path(tool)
    if graph.path and not tool_path.is_absolute():
        tool_path = Path(graph.path).parent / tool_path
    try:
        process = YAML(typ="safe", pure=False).load(tool_path.read_text())
    except OSError as exc:
        raise EditRefused(f"cannot read the tool {tool_path.name}: {exc.strerror}") from None
    except YAMLError as exc:
        raise EditRefused(f"the tool {tool_path.name} is not valid YAML: {exc}") from None
    fragment = ""
    if isinstance(process, dict) and isinstance(process.get("$graph"), list):
        # An application package runs as file.cwl#<its workflow>; #main is cwltool's default.
        name = default_process(process["$graph"])
        fragment = "" if name == "main" else f"#{name}"
        process = packed_entry(process["$graph"], name)
    if not isinstance(process, dict) or process.get("class") not in (
        "CommandLineTool",
        "ExpressionTool",
        "Workflow",
        "Operation",
    ):
        raise EditRefused(f"{tool_path.name} is not a CWL tool or workflow")
    new = _copy(graph)
    sid = step_id or re.sub(r"[^A-Za-z0-9_]", "_", tool_path.stem)
    if step_id is None:
        base, n = sid, 2
        while new.node(sid) is not None:
            sid, n = f"{base}_{n}", n + 1
    _check_new_id(new, sid)
    if graph.path:
        run = os.path.relpath(tool_path.resolve(), Path(graph.path).resolve().parent)
    else:
        run = str(tool_path.resolve())
    node = Node(
        id=sid, kind=STEP, run=Path(run).as_posix() + fragment, run_class=process.get("class")
    )
    for pid, type_ in process_ports(process, "inputs"):
        node.inputs.append(Port(id=pid, type=type_, declared=False))
    for pid, type_ in process_ports(process, "outputs"):
        node.outputs.append(Port(id=pid, type=type_))
    if process.get("class") == "Workflow":
        _require(new, "SubworkflowFeatureRequirement")
        try:
            node.subgraph = load_graph(tool_path)
        except GraphError:
            node.subgraph = None
    new.nodes.append(node)
    return new


def remove_step(graph: Graph, step_id: str) -> Graph:
    """The graph without the step and every link to or from it."""
    _step(graph, step_id)
    new = _copy(graph)
    new.nodes = [n for n in new.nodes if n.id != step_id]
    new.edges = [e for e in new.edges if step_id not in (e.source, e.target)]
    return new


def connect(graph: Graph, source: str, source_port: str, target: str, target_port: str) -> Graph:
    """The graph with a new link; raises :class:`EditRefused` with the reason when the types or
    the shape of the workflow do not allow it."""
    verdict = check_connection(graph, source, source_port, target, target_port)
    if not verdict.allowed:
        raise EditRefused(verdict.reason or "not allowed")
    new = _copy(graph)
    target_node = new.node(target)
    assert target_node is not None
    port = target_node.port(target_port, "in")
    assert port is not None
    port.declared = True
    new.edges.append(Edge(source, source_port, target, target_port))
    if sum(1 for e in new.edges if e.target == target and e.target_port == target_port) > 1:
        _require(new, "MultipleInputFeatureRequirement")
    return new


def disconnect(graph: Graph, source: str, source_port: str, target: str, target_port: str) -> Graph:
    """The graph without that link (the step keeps the port in ``in`` if it has a default or
    valueFrom)."""
    edge = Edge(source, source_port, target, target_port)
    if edge not in graph.edges:
        raise EditRefused("these ports are not connected")
    new = _copy(graph)
    new.edges = [e for e in new.edges if e != edge]
    node = new.node(target)
    if node is not None and node.kind == STEP:
        port = node.port(target_port, "in")
        still = any(e.target == target and e.target_port == target_port for e in new.edges)
        if port and not still and not port.has_default and port.value_from is None:
            port.declared = bool(port.extras)
    return new


def add_input(graph: Graph, input_id: str, type_: Any = "File", **fields: Any) -> Graph:
    """A new workflow input (``fields``: label, doc, default, format, ...)."""
    _check_new_id(graph, input_id)
    new = _copy(graph)
    label = fields.pop("label", None)
    node = Node(id=input_id, kind=INPUT, outputs=[Port(id=input_id, type=type_)], label=label)
    node.extras = dict(fields)
    new.nodes.insert(sum(1 for n in new.nodes if n.kind == INPUT), node)
    return new


def add_output(
    graph: Graph, output_id: str, source: str, source_port: str | None = None, type_: Any = None
) -> Graph:
    """A new workflow output taking its value from ``source/source_port`` (type from there
    unless given)."""
    _check_new_id(graph, output_id)
    src = graph.node(source)
    if src is None:
        raise EditRefused(f"there is no node '{source}'")
    port_id = source_port or source
    src_port = src.port(port_id, "out")
    if src_port is None:
        raise EditRefused(f"'{source}' has no output '{port_id}'")
    new = _copy(graph)
    if type_ is None:
        type_ = _plain(_source_type(graph, source, port_id))
    node = Node(id=output_id, kind=OUTPUT, inputs=[Port(id=output_id, type=type_)])
    index = sum(1 for n in new.nodes if n.kind in (INPUT, OUTPUT))
    new.nodes.insert(index, node)
    try:
        return connect(new, source, port_id, output_id, output_id)
    except EditRefused:
        raise


def _remove_parameter(graph: Graph, node_id: str, kind: str) -> Graph:
    node = graph.node(node_id)
    if node is None or node.kind != kind:
        raise EditRefused(f"there is no workflow {kind} '{node_id}'")
    new = _copy(graph)
    new.nodes = [n for n in new.nodes if n.id != node_id]
    new.edges = [e for e in new.edges if node_id not in (e.source, e.target)]
    return new


def remove_input(graph: Graph, input_id: str) -> Graph:
    """The graph without that workflow input and its links."""
    return _remove_parameter(graph, input_id, INPUT)


def remove_output(graph: Graph, output_id: str) -> Graph:
    """The graph without that workflow output."""
    return _remove_parameter(graph, output_id, OUTPUT)


def rename(graph: Graph, old: str, new_id: str) -> Graph:
    """Rename a workflow input, output or step; links follow."""
    node = graph.node(old)
    if node is None:
        raise EditRefused(f"there is no node '{old}'")
    _check_new_id(graph, new_id)
    new = _copy(graph)
    n = new.node(old)
    assert n is not None
    n.id = new_id
    if n.kind == INPUT:
        n.outputs[0].id = new_id
    elif n.kind == OUTPUT:
        n.inputs[0].id = new_id
    edges = []
    for e in new.edges:
        sp = new_id if (e.source == old and n.kind == INPUT) else e.source_port
        tp = new_id if (e.target == old and n.kind == OUTPUT) else e.target_port
        edges.append(
            Edge(
                new_id if e.source == old else e.source,
                sp,
                new_id if e.target == old else e.target,
                tp,
            )
        )
    new.edges = edges
    return new


_UNSET = object()


def set_step_input(
    graph: Graph,
    step_id: str,
    port_id: str,
    *,
    default: Any = _UNSET,
    value_from: Any = _UNSET,
    link_merge: Any = _UNSET,
    pick_value: Any = _UNSET,
) -> Graph:
    """Set (or, with ``None`` for value_from / link_merge / pick_value, clear) a step input's
    default, valueFrom, linkMerge or pickValue. ``default=None`` clears the default too."""
    _step(graph, step_id)
    new = _copy(graph)
    node = _step(new, step_id)
    port = node.port(port_id, "in")
    if port is None:
        port = Port(id=port_id)
        node.inputs.append(port)
    if default is not _UNSET:
        port.default, port.has_default = default, default is not None
    if value_from is not _UNSET:
        port.value_from = value_from
        if value_from is not None:
            _require(new, "StepInputExpressionRequirement")
            if _needs_javascript(value_from):
                _require(new, "InlineJavascriptRequirement")
    if link_merge is not _UNSET:
        if link_merge not in (None, "merge_nested", "merge_flattened"):
            raise EditRefused("linkMerge is merge_nested or merge_flattened")
        port.link_merge = link_merge
    if pick_value is not _UNSET:
        if pick_value not in (None, "first_non_null", "the_only_non_null", "all_non_null"):
            raise EditRefused("pickValue is first_non_null, the_only_non_null or all_non_null")
        port.pick_value = pick_value
        if pick_value is not None and _cwl_version(new) in ("v1.0", "v1.1"):
            raise EditRefused(f"pickValue needs cwlVersion v1.2 (this is {_cwl_version(new)})")
    port.declared = True
    return new


def set_scatter(graph: Graph, step_id: str, ports: list[str], method: str | None = None) -> Graph:
    """Scatter the step over ``ports`` (empty: no scatter); two or more need a ``method``."""
    node = _step(graph, step_id)
    unknown = [p for p in ports if node.port(p, "in") is None]
    if unknown:
        raise EditRefused(f"'{step_id}' has no input {', '.join(repr(p) for p in unknown)}")
    if len(ports) > 1 and method is None:
        raise EditRefused(
            "scattering over several inputs needs a method: dotproduct, nested_crossproduct"
            " or flat_crossproduct"
        )
    if method not in (None, "dotproduct", "nested_crossproduct", "flat_crossproduct"):
        raise EditRefused(f"unknown scatter method '{method}'")
    new = _copy(graph)
    n = _step(new, step_id)
    n.scatter, n.scatter_method = list(ports), (method if ports else None)
    if ports:
        _require(new, "ScatterFeatureRequirement")
    for p in n.inputs:
        if p.id in ports:
            p.declared = True
    return new


def set_when(graph: Graph, step_id: str, when: str | None) -> Graph:
    """Run the step only when the expression ``when`` is true (``None``: always)."""
    _step(graph, step_id)
    if when is not None and not re.search(r"\$\(|\$\{", when):
        raise EditRefused("'when' must be an expression such as $(inputs.flag)")
    if when is not None and _cwl_version(graph) in ("v1.0", "v1.1"):
        raise EditRefused(
            f"conditional steps ('when') need cwlVersion v1.2; this workflow is"
            f" {_cwl_version(graph)}"
        )
    new = _copy(graph)
    _step(new, step_id).when = when
    if _needs_javascript(when):
        _require(new, "InlineJavascriptRequirement")
    return new


def set_position(graph: Graph, node_id: str, x: float, y: float) -> Graph:
    """Move a node on the canvas."""
    if graph.node(node_id) is None:
        raise EditRefused(f"there is no node '{node_id}'")
    new = _copy(graph)
    node = new.node(node_id)
    assert node is not None
    node.position = (x, y)
    return new


def layout(graph: Graph) -> Graph:
    """Positions for the nodes that have none: one column per dependency layer (inputs left,
    outputs right), rows in document order. Nodes already placed keep their place; nested
    graphs are laid out too."""
    new = _copy(graph)
    ids = [n.id for n in new.nodes]
    preds: dict[str, set[str]] = {i: set() for i in ids}
    succs: dict[str, set[str]] = {i: set() for i in ids}
    for e in new.edges:
        if e.target in preds and e.source in preds and e.source != e.target:
            preds[e.target].add(e.source)
            succs[e.source].add(e.target)
    layer = {i: 0 for i in ids}
    waiting = {i: len(preds[i]) for i in ids}
    ready = [i for i in ids if not waiting[i]]
    while ready:  # Kahn's order: a node's layer is one more than its deepest predecessor's
        current = ready.pop()
        for nxt in succs[current]:
            layer[nxt] = max(layer[nxt], layer[current] + 1)
            waiting[nxt] -= 1
            if not waiting[nxt]:
                ready.append(nxt)
    last = max([layer[n.id] for n in new.nodes if n.kind != OUTPUT] + [0]) + 1
    for n in new.nodes:
        if n.kind == INPUT:
            layer[n.id] = 0
        elif n.kind == OUTPUT:
            layer[n.id] = last
        elif layer[n.id] == 0:
            layer[n.id] = 1
    rows: dict[int, int] = {}
    for n in new.nodes:
        col = layer[n.id]
        row = rows.get(col, 0)
        rows[col] = row + 1
        if n.position is None:
            n.position = (float(col * _LAYER_GAP), float(row * _ROW_GAP))
        if n.subgraph is not None and n.run is None:
            n.subgraph = layout(n.subgraph)
    return new


def without_layout_positions(graph: Graph, read: Graph) -> Graph:
    """``graph`` (as the canvas sends it back) without the positions that :func:`layout` gave
    the nodes ``read`` (the same workflow as read from its file) has no position for: the
    editor places such nodes on opening, and writing those places would change every node of
    a file saved with no edit. A node the user moved keeps its new position."""
    new = _copy(graph)
    _drop_layout_positions(new, read, layout(read))
    return new


def _drop_layout_positions(graph: Graph, read: Graph, laid: Graph) -> None:
    for node in graph.nodes:
        was, auto = read.node(node.id), laid.node(node.id)
        if was is None or auto is None or was.kind != node.kind:
            continue
        if (
            was.position is None
            and node.position is not None
            and auto.position is not None
            and all(abs(a - b) < 0.5 for a, b in zip(node.position, auto.position, strict=True))
        ):
            node.position = None
        if node.subgraph is not None and was.subgraph is not None and auto.subgraph is not None:
            _drop_layout_positions(node.subgraph, was.subgraph, auto.subgraph)


def set_subgraph(graph: Graph, step_id: str, subgraph: Graph) -> Graph:
    """Put back the edited graph of an inline subworkflow (``node.subgraph``, edited with the
    functions above); a subworkflow in its own file is saved on its own instead."""
    node = _step(graph, step_id)
    if node.subgraph is None or node.run is not None:
        raise EditRefused(
            f"'{step_id}' does not hold its subworkflow inline: open and save"
            f" {node.run or 'its file'} on its own"
        )
    new = _copy(graph)
    _step(new, step_id).subgraph = subgraph
    return new


# --- validation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One validation error, and the part of the graph it concerns where that can be told."""

    message: str
    line: int | None = None
    node: str | None = None
    port: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_LINE_RE = re.compile(r"^(?P<file>[^\s:][^:]*):(?P<line>\d+):(?P<col>\d+):\s*(?P<msg>.*)$")


def _line_index(doc: Any, process: str | None = None) -> list[tuple[int, float, str, str | None]]:
    """``(first line, last line, node id, port id)`` of every node and step input (1-based)."""
    out: list[tuple[int, float, str, str | None]] = []
    if not isinstance(doc, CommentedMap):
        return out
    wf: Any = doc
    if "$graph" in doc and isinstance(doc["$graph"], list):
        wf = packed_entry(doc["$graph"], process or default_process(doc["$graph"]))
    if not isinstance(wf, CommentedMap):
        return out
    top_lines = sorted(wf.lc.key(k)[0] + 1 for k in wf)
    for section in ("inputs", "outputs", "steps"):
        if section not in wf:
            continue
        section_line = wf.lc.key(section)[0] + 1
        section_end = min([n - 1 for n in top_lines if n > section_line], default=float("inf"))
        nodes = _located(wf.get(section))
        for i, (line, key, value) in enumerate(nodes):
            node_id = _last(key)
            node_end = nodes[i + 1][0] - 1 if i + 1 < len(nodes) else section_end
            out.append((line, node_end, node_id, None))
            if section != "steps" or not isinstance(value, CommentedMap) or "in" not in value:
                continue
            in_line = value.lc.key("in")[0] + 1
            after = [value.lc.key(k)[0] + 1 for k in value]
            in_end = min([n - 1 for n in after if n > in_line], default=node_end)
            ports = _located(value.get("in"))
            for j, (pline, pkey, _) in enumerate(ports):
                port_end = ports[j + 1][0] - 1 if j + 1 < len(ports) else in_end
                out.append((pline, port_end, node_id, _last(pkey)))
    return out


def _step_runs(doc: Any, process: str | None = None) -> dict[str, str]:
    """File name of each ``run:`` reference -> the step, for problems found in tool files."""
    wf: Any = doc
    if isinstance(doc, dict) and isinstance(doc.get("$graph"), list):
        wf = packed_entry(doc["$graph"], process or default_process(doc["$graph"]))
    if not isinstance(wf, dict):
        return {}
    runs = {}
    for key, step in _entries(wf.get("steps")):
        run = step.get("run") if isinstance(step, dict) else None
        if isinstance(run, str) and not run.startswith("#"):
            runs[Path(run.split("#", 1)[0]).name] = _last(key)
    return runs


def _where(index: list[tuple[int, float, str, str | None]], line: int) -> tuple[Any, Any]:
    """The innermost node (and step input) whose lines hold ``line``."""
    holding = [entry for entry in index if entry[0] <= line <= entry[1]]
    if not holding:
        return None, None
    _, _, node, port = max(holding, key=lambda e: (e[0], e[3] is not None))
    return node, port


def _located(section: Any) -> list[tuple[int, str, Any]]:
    found = []
    if isinstance(section, CommentedMap):
        for key, value in section.items():
            pos = section.lc.key(key)
            found.append((pos[0] + 1, str(key), value))
    elif isinstance(section, CommentedSeq):
        for i, item in enumerate(section):
            if isinstance(item, dict) and "id" in item:
                found.append((section.lc.item(i)[0] + 1, str(item["id"]), item))
    return found


def validate(
    document: str | os.PathLike[str], *, base_dir: str | None = None, process: str | None = None
) -> list[Problem]:
    """Validate a workflow with cwltool's own loader (strict, in this process), the check the
    run will face. ``document`` is a path or CWL text (then ``base_dir`` is where its ``run:``
    references are resolved from). An empty list means valid; never raises for a bad document.
    A packed document is validated as ``file.cwl#<process>`` (default: the process
    :func:`choose_process` picks), as cwltool runs it.

    In-process because it is about 10x faster than a ``cwltool --validate`` subprocess
    (measured here on conformance workflows: 0.6 s against 6.6 s a file on a busy 2-core
    machine; the subprocess pays for starting Python, importing cwltool and loading the CWL
    schemas every time).
    """
    is_path = isinstance(document, os.PathLike) or (
        "\n" not in str(document) and Path(str(document)).is_file()
    )
    if not is_path and "\n" not in str(document) and str(document).endswith(".cwl"):
        return [Problem(f"there is no file {document}")]
    if is_path:
        path = Path(document)
        try:
            text = path.read_text()
        except OSError as exc:
            return [Problem(f"cannot read {path.name}: {exc.strerror}")]
        return _validate_file(path, text, path.name, process)
    text = str(document)
    folder = Path(base_dir) if base_dir else Path(tempfile.gettempdir())
    try:
        fd, tmp = tempfile.mkstemp(suffix=".cwl", prefix=".dl-validate-", dir=folder)
    except OSError:
        fd, tmp = tempfile.mkstemp(suffix=".cwl", prefix=".dl-validate-")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        return _validate_file(Path(tmp), text, "the workflow", process)
    finally:
        os.unlink(tmp)


def _validate_file(
    path: Path, text: str, display: str, process: str | None = None
) -> list[Problem]:
    import logging

    from cwltool.context import LoadingContext
    from cwltool.load_tool import load_tool
    from cwltool.workflow import default_make_tool

    try:
        doc = _yaml().load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return [Problem(f"{display} is not valid YAML: {problem}", line=line)]
    uri = str(path.resolve())
    if isinstance(doc, dict) and isinstance(doc.get("$graph"), list):
        try:
            process = choose_process(doc["$graph"], process, display)
        except GraphError as exc:
            return [Problem(str(exc))]
        # cwltool loads a packed document's process by its fragment (no fragment: #main only).
        uri = path.resolve().as_uri() + "#" + urllib.parse.quote(process)
    context = LoadingContext(
        {"strict": True, "do_validate": True, "construct_tool_object": default_make_tool}
    )
    quiet = logging.getLogger("cwltool")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        load_tool(uri, context)
    except Exception as exc:  # noqa: BLE001 - any loader failure is a validation problem
        try:
            return _problems(str(exc), path, display, doc, process)
        except Exception:  # noqa: BLE001 - an odd document: the message without places
            return [Problem(" ".join(str(exc).split()) or type(exc).__name__)]
    finally:
        quiet.setLevel(level)
    return []


def _problems(
    message: str, path: Path, display: str, doc: Any, process: str | None = None
) -> list[Problem]:
    """cwltool's nested message (``file:line:col: checking ...`` lines, then the error on
    continuation lines) as one :class:`Problem` per error, each at its innermost location."""
    index = _line_index(doc, process)
    name = path.name
    mention = re.compile(r"(?:file://)?[^\s'\"]*" + re.escape(name))
    # Paths of other files (the tools steps run) shortened to their names: a person knows
    # "tools/plot.cwl" as plot.cwl, and the server's folders are nobody's business.
    other_file = re.compile(r"(?:file://)?[^\s'\"]*/([^/\s'\"]+\.cwl)")
    runs = _step_runs(doc, process)
    blocks: list[list[Any]] = []  # [line or None, text]
    for raw in message.splitlines():
        text = raw.strip()
        if not text:
            continue
        m = _LINE_RE.match(text)
        if m:
            line = int(m.group("line")) if Path(m.group("file")).name == name else None
            blocks.append([line, m.group("msg").strip()])
        elif blocks:
            blocks[-1][1] += " " + text
        else:
            blocks.append([None, text])
    problems: list[Problem] = []
    tool_of: dict[int, str] = {}  # problem index -> the tool file it was found in
    context_line: int | None = None
    for line, text in blocks:
        if line is not None:
            context_line = line
        if re.fullmatch(r"checking (field|object) \S+", text) or not text:
            continue
        text = re.sub(r"^checking (field|object) \S+\s*", "", text)
        text = other_file.sub(r"\1", mention.sub(display, text))
        where = line if line is not None else context_line
        node, port = _where(index, where) if where is not None else (None, None)
        in_tool = None
        if node is None:  # a problem inside a tool file belongs to the step that runs it
            in_tool = next((run for run in runs if run in text), None)
            node = runs.get(in_tool) if in_tool else None
        # cwltool writes one reason over several places, each part indented under the last:
        # a part that goes on with the sentence ("item is invalid because", "with sink ...")
        # belongs to the problem before and moves it to its own, innermost place (for a type
        # mismatch that is the sink: the link the user fixes). A bullet starts a new reason.
        bullet = text[:1] in "*-"
        if (
            problems
            and not bullet
            and (text[:1].islower() or (node is None and problems[-1].message.endswith(":")))
        ):
            prev = problems[-1]
            problems[-1] = Problem(
                prev.message + " " + text,
                where if node is not None else prev.line,
                node if node is not None else prev.node,
                port if node is not None else prev.port,
            )
            continue
        text = re.sub(r"^[*-]\s+", "", text)
        if bullet and node is None and problems:
            where, node, port = problems[-1].line, problems[-1].node, problems[-1].port
            in_tool = tool_of.get(len(problems) - 1)
            if in_tool:
                text = f"{in_tool}: {text}"
        if in_tool:
            tool_of[len(problems)] = in_tool
        problems.append(Problem(text, line=where, node=node, port=port))
    # "Object ... is not valid because ... but" alone only introduces the reasons after it
    headers = [p for p in problems if p.message.endswith((":", " but"))]
    if len(headers) < len(problems):
        problems = [p for p in problems if p not in headers]
    return problems or [Problem(" ".join(mention.sub(display, message).split()) or "invalid CWL")]
