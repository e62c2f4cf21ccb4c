"""``/datalabs/api/editor``: the Pipeline Editor's REST API (CWL workflows as graphs).

- ``GET editor/graph?path=WF.cwl[&process=ID]``: the workflow as a graph
  (``datalabs_pipelines.graph``). In a packed document (``$graph``, as an EO application
  package) it is ``process``, by default ``main`` or the document's one Workflow; with several
  Workflows and none named the answer is a 409 whose ``processes`` lists their ids to choose from
- ``PUT editor/graph?path=WF.cwl``: ``{"graph": ...}`` written back as CWL (into the text on
  disk, so comments and fields the editor does not model survive), then validated with cwltool;
  answers with the saved graph and the problems, each tied to a node, port and edges
- ``POST editor/check-connection``: ``{"graph", "source", "source_port", "target",
  "target_port"}`` -> ``{"allowed", "reason", "warning"}``
- ``POST editor/add-step``: ``{"path", "graph", "tool": PATH | "pipeline": ID, "position"}``
  -> ``{"graph", "step"}``
- ``GET editor/palette``: tools and workflows a step can run: the pipeline catalogue and the
  ``.cwl`` files of the workspace
- ``POST editor/run-draft``: ``{"path"}``: a packed snapshot of the saved workflow among the
  user's drafts, described as ``GET pipelines/<id>`` does, for the launch dialog
- ``POST editor/publish``: ``{"path", "process", "name", "label", "doc", "keywords", "author"}``:
  a packed
  (self-contained) copy of the workflow in the user's own catalogue folder, so it shows up in
  ``GET pipelines``

Every path is relative to the workspace and must stay inside it (``..`` and links that lead out
are refused). Parsing, cwltool and file I/O run in a worker thread.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jupyter_server.auth.decorator import authorized
from tornado import web

from datalabs_pipelines import graph as g
from datalabs_pipelines.catalogue import Pipeline, is_pipeline_id

from . import DatalabsHandler, route

#: Processes a step can run, as the palette offers them.
STEP_CLASSES = ("CommandLineTool", "ExpressionTool", "Workflow", "Operation")
#: The palette looks this deep into the workspace, and at this many files at most.
PALETTE_DEPTH = 4
PALETTE_MAX_FILES = 400
#: Folders the palette never walks into (besides hidden ones).
SCHEMA_ORG = "https://schema.org/"
#: The user's drafts (snapshots for runs) are the catalogue mission ``<user>-drafts``.
DRAFTS_SUFFIX = "-drafts"
PALETTE_SKIP = {"node_modules", "__pycache__", "site-packages", "venv"}


class PathRefused(Exception):
    """A path the caller may not use; ``status`` and ``message`` are the answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def refusals(method):
    """Answer a ``PathRefused`` raised by the handler method (or its worker) as a JSON error."""

    @functools.wraps(method)
    async def answering(self, *args: Any, **kwargs: Any) -> None:
        try:
            await method(self, *args, **kwargs)
        except PathRefused as exc:
            self.send_error_json(exc.status, exc.message)

    return answering


def workspace_path(root: Path, raw: Any, *, must_exist: bool = True, suffix: str = ".cwl") -> Path:
    """``raw`` (relative to the workspace ``root``) as an absolute, link-free path inside it."""
    if not isinstance(raw, str) or not raw.strip():
        raise PathRefused(400, "give the workflow's path in the workspace, e.g. ?path=wf.cwl")
    if "\x00" in raw:
        raise PathRefused(400, "the path contains a NUL character")
    base = Path(os.path.realpath(root))
    target = Path(os.path.realpath(base / raw.lstrip("/")))
    if target != base and not target.is_relative_to(base):
        raise PathRefused(403, f"{raw} is outside your workspace: use a path inside it")
    if suffix and target.suffix != suffix:
        raise PathRefused(400, f"{raw} is not a {suffix} file")
    if must_exist and not target.is_file():
        raise PathRefused(404, f"there is no file {raw} in your workspace")
    if not must_exist and not target.parent.is_dir():
        raise PathRefused(404, f"there is no folder {Path(raw).parent} in your workspace")
    return target


def relative(root: Path, path: Path) -> str:
    return Path(path).relative_to(Path(os.path.realpath(root))).as_posix()


def _read_graph(path: Path, process: str | None = None) -> g.Graph:
    """The workflow at ``path`` (``process`` of a packed document) as a graph, every node
    placed."""
    return g.layout(g.load_graph(path, process=process))


def packed_process(path: Path, process: str | None = None) -> str | None:
    """The process of the packed document at ``path`` the editor works on (``process``, else
    the one :func:`datalabs_pipelines.graph.choose_process` picks); None for a document that
    is not packed. Raises ``GraphError`` (``ProcessChoice`` when the caller has to choose)."""
    from ruamel.yaml import YAML

    try:
        doc = YAML(typ="safe", pure=False).load(path.read_text())
    except Exception as exc:  # noqa: BLE001 - cwltool tells what is wrong with it later
        raise g.GraphError(f"{path.name} is not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("$graph"), list):
        return None
    return g.choose_process(doc["$graph"], process, path.name)


def problem_json(problem: g.Problem, graph: g.Graph) -> dict[str, Any]:
    """A validation problem with the edges it concerns (those into its port)."""
    data = problem.to_json()
    data["edges"] = [
        {
            "source": e.source,
            "source_port": e.source_port,
            "target": e.target,
            "target_port": e.target_port,
        }
        for e in graph.edges
        if problem.node is not None
        and problem.port is not None
        and e.target == problem.node
        and e.target_port == problem.port
    ]
    return data


def save_graph(
    path: Path, data: dict[str, Any], check: Callable[[Path], None] | None = None
) -> dict[str, Any]:
    """Write ``data`` (graph JSON) to ``path`` as CWL, validate it, and read it back.

    JSON carries no source document, so the text on disk is read again and the graph merged
    into it: comments, key order and fields the editor does not model stay as they were, and
    only the lines of what changed are written (a save with no edit leaves the file as it was;
    the places the editor gave to unplaced nodes on opening are not written unless moved). A
    file on disk that is not a readable workflow any more is replaced by the graph alone.
    """
    graph = g.Graph.from_json(data)
    graph.path = str(path)
    if path.exists():
        try:
            on_disk = g.load_graph(path, process=graph.process)
        except g.GraphError:
            on_disk = None
        if on_disk is not None:
            graph.document, graph.text = on_disk.document, on_disk.text
            graph = g.without_layout_positions(graph, on_disk)
    text = g.to_cwl(graph)
    path.write_text(text)
    if check is not None:
        # Before cwltool validates it: validation follows every reference in the file.
        check(path)
    problems = g.validate(path, process=graph.process)
    saved = _read_graph(path, graph.process)
    return {
        "graph": saved.to_json(),
        "problems": [problem_json(p, saved) for p in problems],
        "valid": not problems,
    }


def _ports(process: dict[str, Any], side: str) -> list[dict[str, Any]]:
    return [{"id": pid, "type_label": g.type_label(t)} for pid, t in g.process_ports(process, side)]


def palette_entry_from_pipeline(p: Pipeline) -> dict[str, Any]:
    return {
        "key": f"pipeline:{p.id}",
        "source": "catalogue",
        "pipeline": p.id,
        "path": None,
        "class": p.cwl_class,
        "label": p.label or p.id,
        "doc": p.doc,
        "inputs": [{"id": i.id, "type_label": i.to_json()["type_label"]} for i in p.inputs],
        "outputs": [{"id": o.id, "type_label": o.to_json()["type_label"]} for o in p.outputs],
    }


def workspace_tools(root: Path, skip: tuple[Path, ...] = ()) -> list[dict[str, Any]]:
    """The CWL tools and workflows in the workspace (hidden folders and ``skip`` left out)."""
    from ruamel.yaml import YAML

    base = Path(os.path.realpath(root))
    skipped = {os.path.realpath(p) for p in skip}
    found: list[dict[str, Any]] = []
    seen = 0
    for folder, dirs, files in os.walk(base):
        depth = len(Path(folder).relative_to(base).parts)
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".")
            and d not in PALETTE_SKIP
            and depth < PALETTE_DEPTH
            and os.path.realpath(os.path.join(folder, d)) not in skipped
        )
        for name in sorted(files):
            if not name.endswith(".cwl"):
                continue
            seen += 1
            if seen > PALETTE_MAX_FILES:
                return found
            path = Path(folder) / name
            try:
                doc = YAML(typ="safe", pure=False).load(path.read_text())
            except Exception:  # noqa: BLE001 - an unreadable file is simply not offered
                continue
            if not isinstance(doc, dict):
                continue
            if "$graph" in doc:
                entries = doc.get("$graph") or []
                doc = g.packed_entry(entries, g.default_process(entries)) or {}
            if doc.get("class") not in STEP_CLASSES:
                continue
            rel = relative(base, path)
            doc_text = doc.get("doc")
            found.append(
                {
                    "key": f"path:{rel}",
                    "source": "workspace",
                    "pipeline": None,
                    "path": rel,
                    "class": doc.get("class"),
                    "label": doc.get("label") or path.stem,
                    "doc": "\n".join(doc_text) if isinstance(doc_text, list) else doc_text,
                    "inputs": _ports(doc, "inputs"),
                    "outputs": _ports(doc, "outputs"),
                }
            )
    return found


class EditorHandler(DatalabsHandler):
    """What the editor's handlers share: workspace paths, JSON bodies, JSON errors."""

    auth_resource = "contents"

    @property
    def root(self) -> Path:
        return Path(self.services.workspace.root)

    def body_object(self) -> dict[str, Any]:
        body = self.json_body()
        if not isinstance(body, dict):
            raise PathRefused(400, "send a JSON object as the request body")
        return body

    def graph_from(self, body: dict[str, Any], path: Path | None = None) -> g.Graph:
        data = body.get("graph")
        if not isinstance(data, dict):
            raise PathRefused(400, 'send the workflow as {"graph": {...}} (from GET editor/graph)')
        try:
            graph = g.Graph.from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise PathRefused(400, f"the graph is not in the editor's format: {exc}") from None
        if path is not None:
            graph.path = str(path)
        return graph

    def check_references_now(self, path: Path) -> None:
        """Raise PathRefused (400) if the CWL at ``path`` references files outside the
        workspace, the mounted volumes and the catalogue, or URLs."""
        reason = self.refused_reference(path)
        if reason:
            raise PathRefused(400, reason)

    async def refuse_references(self, path: Path) -> None:
        await asyncio.to_thread(self.check_references_now, path)

    async def answer(self, work, *args: Any, status: int = 200) -> None:
        """Run ``work(*args)`` in a thread and answer with its JSON, or with the refusal (a
        ``PathRefused`` is answered by :func:`refusals` around the handler method)."""
        try:
            value = await asyncio.to_thread(work, *args)
        except g.EditRefused as exc:
            self.send_error_json(400, exc.reason)
            return
        except g.ProcessChoice as exc:
            self.send_error_json(409, str(exc), processes=exc.choices)
            return
        except g.GraphError as exc:
            self.send_error_json(400, str(exc))
            return
        self.send_json(value, status=status)


class GraphHandler(EditorHandler):
    """``GET|PUT editor/graph?path=WF.cwl``."""

    @web.authenticated
    @authorized
    @refusals
    async def get(self) -> None:
        path = workspace_path(self.root, self.get_query_argument("path", ""))
        process = self.get_query_argument("process", None) or None
        await self.refuse_references(path)

        def read() -> dict[str, Any]:
            graph = _read_graph(path, process)
            return {"path": relative(self.root, path), "graph": graph.to_json()}

        await self.answer(read)

    @web.authenticated
    @authorized
    @refusals
    async def put(self) -> None:
        path = workspace_path(self.root, self.get_query_argument("path", ""), must_exist=False)
        body = self.body_object()
        self.graph_from(body)  # refuse a malformed graph before touching the file

        def write() -> dict[str, Any]:
            saved = save_graph(path, body["graph"], check=self.check_references_now)
            return {"path": relative(self.root, path), **saved}

        await self.answer(write)


class CheckConnectionHandler(EditorHandler):
    """``POST editor/check-connection``: may this output feed that input, and if not, why."""

    @web.authenticated
    @authorized
    @refusals
    async def post(self) -> None:
        body = self.body_object()
        graph = self.graph_from(body)
        ends = [body.get(k) for k in ("source", "source_port", "target", "target_port")]
        if not all(isinstance(v, str) and v for v in ends):
            raise PathRefused(
                400, "give source, source_port, target and target_port (node and port ids)"
            )

        def check() -> dict[str, Any]:
            verdict = g.check_connection(graph, *ends)
            return {
                "allowed": verdict.allowed,
                "reason": verdict.reason,
                "warning": verdict.warning,
            }

        await self.answer(check)


class AddStepHandler(EditorHandler):
    """``POST editor/add-step``: a new step running a workspace tool or a catalogue pipeline."""

    @web.authenticated
    @authorized
    @refusals
    async def post(self) -> None:
        body = self.body_object()
        path = workspace_path(self.root, body.get("path"), must_exist=False)
        graph = self.graph_from(body, path)
        if isinstance(body.get("pipeline"), str):
            pipeline = await asyncio.to_thread(self.services.catalogue.get, body["pipeline"])
            if pipeline is None:
                raise PathRefused(404, f"no pipeline {body['pipeline']!r} in the catalogue")
            tool = Path(pipeline.path)
        elif isinstance(body.get("tool"), str):
            tool = workspace_path(self.root, body["tool"])
            await self.refuse_references(tool)
        else:
            raise PathRefused(
                400,
                'say what the step runs: {"tool": "<path in the workspace>"} or '
                '{"pipeline": "<mission>/<name>"}',
            )
        step_id = body.get("step_id") if isinstance(body.get("step_id"), str) else None
        position = body.get("position")

        def add() -> dict[str, Any]:
            before = {n.id for n in graph.nodes}
            new = g.add_step(graph, tool, step_id)
            added = next(n.id for n in new.nodes if n.id not in before)
            if isinstance(position, list) and len(position) == 2:
                new = g.set_position(new, added, float(position[0]), float(position[1]))
            new = g.layout(new)
            return {"graph": new.to_json(), "step": added}

        await self.answer(add)


class PaletteHandler(EditorHandler):
    """``GET editor/palette``: what a step can run, from the catalogue and the workspace."""

    @web.authenticated
    @authorized
    @refusals
    async def get(self) -> None:
        def collect() -> dict[str, Any]:
            # Drafts are snapshots made for runs, not tools to build with.
            pipelines = [
                p
                for p in self.services.catalogue.pipelines()
                if not p.mission.endswith(DRAFTS_SUFFIX)
            ]
            return {
                "tools": [palette_entry_from_pipeline(p) for p in pipelines]
                # Archive volumes mounted in the workspace hold data, not tools.
                + workspace_tools(self.root, tuple(v.path for v in self.services.workspace.volumes))
            }

        await self.answer(collect)


def _packed(path: Path, process: str | None = None) -> dict[str, Any]:
    """The workflow and everything it runs as one self-contained document (``cwltool --pack``);
    ``process``: the workflow's id in a packed document (it becomes ``#main`` in the copy)."""
    from cwltool.load_tool import fetch_document, resolve_and_validate_document
    from cwltool.main import print_pack

    uri = path.as_uri() + f"#{quote(process)}" if process else str(path)
    try:
        context, workflowobj, uri = fetch_document(uri)
        context, uri = resolve_and_validate_document(context, workflowobj, uri)
        return json.loads(print_pack(context, uri))
    except Exception as exc:  # noqa: BLE001 - a workflow cwltool refuses cannot be published
        raise PathRefused(
            400, f"fix the workflow before publishing it: {' '.join(str(exc).split())[:800]}"
        ) from None


def publish_workflow(
    path: Path,
    target: Path,
    *,
    label: str,
    doc: str,
    keywords: list[str],
    author: str,
    process: str | None = None,
) -> None:
    """Write a packed copy of the workflow at ``path`` (``process`` of a packed document) to
    ``target`` with schema.org metadata."""
    from ruamel.yaml import YAML

    packed = _packed(path, process)
    if "$graph" in packed:
        main = g.packed_entry(packed["$graph"])
    else:
        main = packed
    main["label"] = label
    if doc:
        main["doc"] = doc
    # Full schema.org URIs rather than an ``s:`` prefix: in a packed ``$graph`` document the
    # catalogue's parser does not expand prefixes on the processes inside it.
    if keywords:
        main[f"{SCHEMA_ORG}keywords"] = keywords
    if author:
        main[f"{SCHEMA_ORG}author"] = [{f"{SCHEMA_ORG}name": author}]
    target.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.dump(packed, buf)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(buf.getvalue())
    os.replace(tmp, target)


class PublishHandler(EditorHandler):
    """``POST editor/publish``: put the workflow in the user's own catalogue folder."""

    @web.authenticated
    @authorized
    @refusals
    async def post(self) -> None:
        folder = Path(self.settings["datalabs_user_catalogue_dir"])
        mission = folder.parent.name
        body = self.body_object()
        path = workspace_path(self.root, body.get("path"))
        await self.refuse_references(path)
        name = body.get("name") or path.stem
        if not isinstance(name, str) or not is_pipeline_id(f"{mission}/{name}"):
            raise PathRefused(
                400,
                f"{name!r} cannot be a pipeline name: use letters, digits, '.', '_' or '-',"
                " starting with a letter or digit",
            )
        label = body.get("label")
        if not isinstance(label, str) or not label.strip():
            raise PathRefused(400, "give the pipeline a label: people find it by it")
        keywords = body.get("keywords") or []
        if isinstance(keywords, str):
            keywords = [k.strip() for k in keywords.split(",") if k.strip()]
        if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
            raise PathRefused(400, "keywords are a list of words (or one comma-separated text)")
        doc = body.get("doc") or ""
        author = body.get("author") or ""
        if not isinstance(doc, str) or not isinstance(author, str):
            raise PathRefused(400, "doc and author are texts")
        pipeline_id = f"{mission}/{name}"
        wanted = body.get("process")
        if wanted is not None and not isinstance(wanted, str):
            raise PathRefused(400, "process is the id of a workflow in the document (a text)")

        def publish() -> dict[str, Any]:
            target = folder / f"{name}.cwl"
            publish_workflow(
                path,
                target,
                label=label.strip(),
                doc=doc,
                keywords=keywords,
                author=author,
                process=packed_process(path, wanted),
            )
            pipeline = self.catalogue_entry(target, pipeline_id)
            return {"pipeline": pipeline.to_json(detail=True), "file": str(target)}

        await self.answer(publish, status=201)

    def catalogue_entry(self, target: Path, pipeline_id: str) -> Pipeline:
        """The catalogue's entry for the file just written (removed again if it has none)."""
        catalogue = self.services.catalogue
        pipeline = catalogue.get(pipeline_id)
        if pipeline is None:
            reason = next(
                (p.reason for p in catalogue.problems() if Path(p.path) == target),
                "the catalogue did not take it",
            )
            target.unlink(missing_ok=True)
            raise PathRefused(400, f"the published workflow is not a valid pipeline: {reason}")
        return pipeline


class RunDraftHandler(PublishHandler):
    """``POST editor/run-draft``: ``{"path"}`` -> the pipeline to launch for the saved workflow.

    Runs start from catalogue pipelines (``POST runs``), so the editor's Run puts a packed
    snapshot of the file in the user's drafts (``<user>-drafts/<name>``, next to their own
    catalogue folder) and answers with its description, which the launch dialog takes. The
    snapshot is what the run's provenance records, whatever happens to the file afterwards.
    """

    @web.authenticated
    @authorized
    @refusals
    async def post(self) -> None:
        own = Path(self.settings["datalabs_user_catalogue_dir"])
        mission = f"{own.parent.name}{DRAFTS_SUFFIX}"
        folder = own.parent.parent / mission / "pipelines"
        body = self.body_object()
        path = workspace_path(self.root, body.get("path"))
        await self.refuse_references(path)
        name = re.sub(r"[^A-Za-z0-9._-]", "-", path.stem).lstrip("._-") or "workflow"
        rel = relative(self.root, path)
        wanted = body.get("process")
        if wanted is not None and not isinstance(wanted, str):
            raise PathRefused(400, "process is the id of a workflow in the document (a text)")

        def stage() -> dict[str, Any]:
            process = packed_process(path, wanted)
            try:
                label = g.load_graph(path, process=process).extras.get("label") or path.stem
            except g.GraphError:
                label = path.stem
            target = folder / f"{name}.cwl"
            publish_workflow(
                path,
                target,
                label=f"{label} (draft)",
                doc=f"{rel} as saved in the Pipeline Editor, for a run.",
                keywords=["draft"],
                author="",
                process=process,
            )
            return self.catalogue_entry(target, f"{mission}/{name}").to_json(detail=True)

        await self.answer(stage, status=201)


default_handlers = [
    (route("editor/graph"), GraphHandler),
    (route("editor/check-connection"), CheckConnectionHandler),
    (route("editor/add-step"), AddStepHandler),
    (route("editor/palette"), PaletteHandler),
    (route("editor/publish"), PublishHandler),
    (route("editor/run-draft"), RunDraftHandler),
]
