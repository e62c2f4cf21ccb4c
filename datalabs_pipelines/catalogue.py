"""The pipeline catalogue: CWL workflows and tools that missions publish.

Layout: ``<catalogue dir>/<mission>/pipelines/*.cwl``; each file directly in ``pipelines/`` is a
pipeline, with id ``<mission>/<file name without .cwl>``. Helper tools that workflows ``run:``
belong in sub-folders (``pipelines/tools/``) and are not listed on their own.

Pipelines are indexed by label, doc, schema.org keywords and authors, and by the types and
formats of their inputs and outputs. A file that is not valid CWL (v1.0 to v1.2) is reported as
a :class:`CatalogueProblem` and skipped; it never hides the rest of the catalogue.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .references import ReferenceRefused, check_references

log = logging.getLogger(__name__)

_PIPELINE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
SCHEMA_ORG = ("https://schema.org/", "http://schema.org/")

#: Short names for common EDAM formats, so "accepts csv" finds ``edam:format_3752`` inputs.
FORMAT_NAMES = {
    "http://edamontology.org/format_3752": "csv",
    "http://edamontology.org/format_3475": "tsv",
    "http://edamontology.org/format_3464": "json",
    "http://edamontology.org/format_2330": "text",
    "http://edamontology.org/format_3750": "yaml",
    "http://edamontology.org/format_2332": "xml",
    "http://edamontology.org/format_3603": "png",
    "http://edamontology.org/format_3604": "svg",
    "http://edamontology.org/format_3508": "pdf",
    "http://edamontology.org/format_3986": "fits",
}


def is_pipeline_id(value: str) -> bool:
    """Whether ``value`` has the shape of a pipeline id (``mission/name``, no ``..``)."""
    return bool(_PIPELINE_ID_RE.match(value)) and ".." not in value


def _short(name: str) -> str:
    """``file:///x/wf.cwl#step/input`` -> ``input``."""
    return name.rsplit("#", 1)[-1].rsplit("/", 1)[-1]


def normalise_type(t: Any) -> Any:
    """A CWL type as plain JSON: a name, a list (union) or a dict for array/enum/record."""
    if isinstance(t, str):
        return _short(t) if "#" in t else t
    if isinstance(t, list):
        return [normalise_type(x) for x in t]
    kind = getattr(t, "type_", None)
    if kind == "array":
        return {"type": "array", "items": normalise_type(t.items)}
    if kind == "enum":
        return {"type": "enum", "symbols": [_short(s) for s in t.symbols]}
    if kind == "record":
        return {
            "type": "record",
            "fields": [
                {"name": _short(f.name), "type": normalise_type(f.type_)} for f in t.fields or []
            ],
        }
    return str(t)


def type_label(t: Any) -> str:
    """A short human label: ``File``, ``string[]``, ``int?``, ``enum(a|b)``."""
    if isinstance(t, str):
        return t
    if isinstance(t, list):
        rest = [x for x in t if x != "null"]
        label = " | ".join(type_label(x) for x in rest) or "null"
        return f"{label}?" if len(rest) < len(t) else label
    if t.get("type") == "array":
        return f"{type_label(t['items'])}[]"
    if t.get("type") == "enum":
        return "enum(" + "|".join(t["symbols"]) + ")"
    if t.get("type") == "record":
        return "record"
    return str(t)


def base_types(t: Any) -> set[str]:
    """Every named type a value of ``t`` may carry (``File`` for ``File[]?``)."""
    if isinstance(t, str):
        return {t}
    if isinstance(t, list):
        return set().union(*(base_types(x) for x in t)) if t else set()
    if t.get("type") == "array":
        return base_types(t["items"])
    return {t.get("type", "")}


@dataclass(frozen=True)
class Parameter:
    """An input or output of a pipeline, enough to build a launch form."""

    id: str
    type: Any
    label: str | None = None
    doc: str | None = None
    format: tuple[str, ...] = ()
    default: Any = None
    has_default: bool = False

    @property
    def optional(self) -> bool:
        return self.has_default or (isinstance(self.type, list) and "null" in self.type)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "type_label": type_label(self.type),
            "label": self.label,
            "doc": self.doc,
            "format": list(self.format),
            "default": self.default,
            "optional": self.optional,
        }


@dataclass(frozen=True)
class Pipeline:
    """A catalogue entry: one CWL Workflow, CommandLineTool or ExpressionTool."""

    id: str
    mission: str
    path: Path
    cwl_class: str
    cwl_version: str
    label: str | None = None
    doc: str | None = None
    keywords: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()
    inputs: tuple[Parameter, ...] = ()
    outputs: tuple[Parameter, ...] = ()
    steps: tuple[str, ...] = ()
    #: ``(from_step, to_step)``: ``to_step`` reads an output of ``from_step`` (for graphs).
    links: tuple[tuple[str, str], ...] = ()
    #: The process's id in a packed (``$graph``) document, e.g. an EO application package
    #: whose workflow is named after the application; None for a document of one process.
    process: str | None = None
    _text: str = field(default="", repr=False, compare=False)

    @property
    def uri(self) -> str:
        """What cwltool runs: the file, with ``#<process>`` for a packed document."""
        return f"{self.path}#{self.process}" if self.process else str(self.path)

    def input(self, name: str) -> Parameter | None:
        return next((p for p in self.inputs if p.id == name), None)

    def accepts(self, what: str) -> bool:
        """Whether some input takes values of type or format ``what`` (case-insensitive)."""
        wanted = what.strip().lower()
        for param in self.inputs:
            if wanted in {b.lower() for b in base_types(param.type)}:
                return True
            for fmt in param.format:
                names = {fmt.lower(), _short(fmt).lower(), FORMAT_NAMES.get(fmt, "").lower()}
                # IANA media types: ".../media-types/text/csv" also answers to "text/csv".
                parts = fmt.rstrip("/").split("/")
                names.add("/".join(parts[-2:]).lower())
                if wanted in names:
                    return True
        return False

    def to_json(self, detail: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "mission": self.mission,
            "class": self.cwl_class,
            "cwlVersion": self.cwl_version,
            "label": self.label,
            "doc": self.doc,
            "keywords": list(self.keywords),
            "authors": list(self.authors),
            "input_types": sorted({type_label(p.type) for p in self.inputs}),
        }
        if detail:
            data["inputs"] = [p.to_json() for p in self.inputs]
            data["outputs"] = [p.to_json() for p in self.outputs]
            data["steps"] = list(self.steps)
            data["links"] = [{"from": a, "to": b} for a, b in self.links]
        return data


@dataclass(frozen=True)
class CatalogueProblem:
    """A catalogue file that could not be used, and why."""

    path: Path
    reason: str


def _schema_org(ext: dict[str, Any], name: str) -> Any:
    for prefix in SCHEMA_ORG:
        if prefix + name in ext:
            return ext[prefix + name]
    return None


def _names(value: Any) -> list[str]:
    """Author names from schema.org ``Person``/``Organization`` objects or plain strings."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [n for v in value for n in _names(v)]
    if isinstance(value, dict):
        for key, v in value.items():
            if key.rsplit(":", 1)[-1].rsplit("/", 1)[-1] == "name" and isinstance(v, str):
                return [v]
    return []


def _keywords(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [k.strip() for k in value.split(",") if k.strip()]
    if isinstance(value, list):
        return [k for v in value for k in _keywords(v)]
    return []


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    return str(value)


def _parameters(items: Any) -> tuple[Parameter, ...]:
    params = []
    for p in items or []:
        fmt = getattr(p, "format", None)
        formats = tuple(fmt if isinstance(fmt, list) else [fmt] if fmt else [])
        default = getattr(p, "default", None)
        type_ = getattr(p, "type_", None)
        if type_ is None:
            type_ = "Any"
        params.append(
            Parameter(
                id=_short(p.id),
                type=normalise_type(type_),
                label=getattr(p, "label", None),
                doc=_text(getattr(p, "doc", None)),
                format=tuple(str(f) for f in formats),
                default=default,
                has_default=default is not None,
            )
        )
    return tuple(params)


def validate_cwl(path: Path, process: str | None = None) -> None:
    """Validate a CWL file the way the runner will (cwltool's loader, strict); raises if invalid.
    ``process``: the process of a packed document to validate (its id, cwltool's fragment).

    The cwl-utils parser alone accepts some documents cwltool refuses (unknown type names, ids
    used twice), so a pipeline that would only fail at launch is caught here instead.
    """
    from cwltool.context import LoadingContext
    from cwltool.load_tool import load_tool
    from cwltool.workflow import default_make_tool

    context = LoadingContext(
        {"strict": True, "do_validate": True, "construct_tool_object": default_make_tool}
    )
    uri = Path(path).resolve().as_uri() + f"#{quote(process)}" if process else str(path)
    load_tool(uri, context)


def _step_links(steps: list[Any], names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Which step reads which step's outputs (``#extract/table`` comes from ``extract``)."""
    links: list[tuple[str, str]] = []
    for step in steps:
        to = _short(step.id)
        for port in getattr(step, "in_", None) or []:
            sources = port.source if isinstance(port.source, list) else [port.source]
            for source in sources:
                if not isinstance(source, str):
                    continue
                parts = source.rsplit("#", 1)[-1].split("/")
                if len(parts) >= 2 and parts[-2] in names and (parts[-2], to) not in links:
                    links.append((parts[-2], to))
    return tuple(links)


def packed_process(path: Path) -> tuple[str | None, dict[str, Any]]:
    """For a packed (``$graph``) document: the id of its pipeline (``main``, or its one
    Workflow, as in an EO application package) and its top-level fields; ``(None, {})`` for
    any other document. Raises ValueError when a packed document has no such process."""
    from ruamel.yaml import YAML

    from .graph import GraphError, choose_process

    doc = YAML(typ="safe", pure=False).load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("$graph"), list):
        return None, {}
    try:
        process = choose_process(doc["$graph"])
    except GraphError as exc:
        raise ValueError(f"{exc}; a package lists one pipeline: name it 'main'") from None
    return process, {k: v for k, v in doc.items() if k != "$graph"}


def _expanded(fields: dict[str, Any]) -> dict[str, Any]:
    """Top-level fields of a document with their namespace prefixes expanded (``s:author``
    -> ``https://schema.org/author``), nested values too, as the CWL parser gives them."""
    namespaces = fields.get("$namespaces") or {}

    def expand(value: Any) -> Any:
        if isinstance(value, dict):
            return {expand_key(k): expand(v) for k, v in value.items()}
        if isinstance(value, list):
            return [expand(v) for v in value]
        return value

    def expand_key(key: Any) -> str:
        prefix, sep, rest = str(key).partition(":")
        return f"{namespaces[prefix]}{rest}" if sep and prefix in namespaces else str(key)

    return {expand_key(k): expand(v) for k, v in fields.items()}


def load_pipeline(path: Path, mission: str) -> Pipeline:
    """Parse and validate one CWL file (raises on invalid CWL)."""
    from cwl_utils.parser import load_document_by_uri

    process, envelope = packed_process(path)
    validate_cwl(path, process)
    if process:
        doc = load_document_by_uri(Path(path).resolve().as_uri() + f"#{quote(process)}")
    else:
        doc = load_document_by_uri(path)
    cwl_class = type(doc).__name__
    if cwl_class not in ("Workflow", "CommandLineTool", "ExpressionTool", "Operation"):
        raise ValueError(f"not a CWL process: {cwl_class}")
    # An EO application package keeps its schema.org metadata (author, version...) at the top
    # of the document, outside the workflow; the workflow's own fields win.
    ext = {**_expanded(envelope), **dict(getattr(doc, "extension_fields", None) or {})}
    steps = tuple(_short(s.id) for s in getattr(doc, "steps", None) or [])
    links = _step_links(getattr(doc, "steps", None) or [], steps)
    pipeline = Pipeline(
        id=f"{mission}/{path.stem}",
        mission=mission,
        path=path.resolve(),
        cwl_class=cwl_class,
        cwl_version=str(getattr(doc, "cwlVersion", "") or ""),
        label=getattr(doc, "label", None) or _text(_schema_org(ext, "name")),
        doc=_text(getattr(doc, "doc", None)) or _text(_schema_org(ext, "description")),
        keywords=tuple(_keywords(_schema_org(ext, "keywords"))),
        authors=tuple(_names(_schema_org(ext, "author")) + _names(_schema_org(ext, "creator"))),
        inputs=_parameters(doc.inputs),
        outputs=_parameters(doc.outputs),
        steps=steps,
        links=links,
        process=process if process != "main" else None,
    )
    text = " ".join(
        [
            pipeline.id,
            pipeline.label or "",
            pipeline.doc or "",
            " ".join(pipeline.keywords),
            " ".join(pipeline.authors),
            " ".join(f"{p.id} {p.label or ''} {p.doc or ''}" for p in pipeline.inputs),
            " ".join(f"{p.id} {p.label or ''}" for p in pipeline.outputs),
        ]
    ).lower()
    return replace(pipeline, _text=text)


class Catalogue:
    """Pipelines from one or more catalogue folders, re-read when their files change."""

    def __init__(
        self,
        roots: list[Path] | tuple[Path, ...],
        user_roots: list[Path] | tuple[Path, ...] = (),
        reference_roots: list[Path] | tuple[Path, ...] = (),
    ) -> None:
        """``roots``: catalogue folders. Files under ``user_roots`` (the user's workspace, where
        their own published pipelines and drafts live) are the user's CWL: cwltool would follow
        their ``$include``, ``$import`` and ``run`` references anywhere while reading them, so
        any reference outside ``reference_roots`` (plus ``roots``) makes them a problem instead
        (:mod:`datalabs_pipelines.references`)."""
        self.roots = [Path(r) for r in roots]
        self.user_roots = [Path(os.path.realpath(r)) for r in user_roots]
        self.reference_roots = [Path(r) for r in reference_roots] + self.roots
        self._lock = threading.Lock()
        # path -> (mtime_ns, size, Pipeline | CatalogueProblem)
        self._cache: dict[Path, tuple[int, int, Pipeline | CatalogueProblem]] = {}

    def _files(self) -> list[tuple[Path, str]]:
        found = []
        for root in self.roots:
            if not root.is_dir():
                continue
            for mission_dir in sorted(p for p in root.iterdir() if p.is_dir()):
                for cwl in sorted((mission_dir / "pipelines").glob("*.cwl")):
                    found.append((cwl, mission_dir.name))
        return found

    def _scan(self) -> list[Pipeline | CatalogueProblem]:
        with self._lock:
            entries: list[Pipeline | CatalogueProblem] = []
            seen: set[Path] = set()
            ids: set[str] = set()
            for path, mission in self._files():
                seen.add(path)
                try:
                    st = path.stat()
                except OSError as exc:
                    entries.append(CatalogueProblem(path, f"cannot read: {exc}"))
                    continue
                cached = self._cache.get(path)
                if cached and cached[0] == st.st_mtime_ns and cached[1] == st.st_size:
                    entry = cached[2]
                else:
                    entry = self._load(path, mission)
                    self._cache[path] = (st.st_mtime_ns, st.st_size, entry)
                if isinstance(entry, Pipeline):
                    if not is_pipeline_id(entry.id):
                        entry = CatalogueProblem(path, f"unusable pipeline id {entry.id!r}")
                    elif entry.id in ids:
                        entry = CatalogueProblem(path, f"duplicate pipeline id {entry.id!r}")
                    else:
                        ids.add(entry.id)
                entries.append(entry)
            for gone in set(self._cache) - seen:
                del self._cache[gone]
            return entries

    def _load(self, path: Path, mission: str) -> Pipeline | CatalogueProblem:
        real = Path(os.path.realpath(path))
        if any(real == r or real.is_relative_to(r) for r in self.user_roots):
            try:
                check_references(real, self.reference_roots)
            except ReferenceRefused as exc:
                log.warning("skipping pipeline %s: %s", path, exc)
                return CatalogueProblem(path, str(exc))
        try:
            return load_pipeline(path, mission)
        except Exception as exc:  # noqa: BLE001 - any broken file is reported, never fatal
            reason = " ".join(str(exc).split())[:1000] or type(exc).__name__
            log.warning("skipping pipeline %s: %s", path, reason)
            return CatalogueProblem(path, reason)

    def pipelines(self) -> list[Pipeline]:
        """Every valid pipeline, sorted by id."""
        return sorted((e for e in self._scan() if isinstance(e, Pipeline)), key=lambda p: p.id)

    def problems(self) -> list[CatalogueProblem]:
        """Files that were skipped, with the reason."""
        return [e for e in self._scan() if isinstance(e, CatalogueProblem)]

    def get(self, pipeline_id: str) -> Pipeline | None:
        """The pipeline with that id, or None (also for ids that are not well-formed)."""
        if not is_pipeline_id(pipeline_id):
            return None
        return next((p for p in self.pipelines() if p.id == pipeline_id), None)

    def search(self, query: str = "", accepts: str | None = None) -> list[Pipeline]:
        """Pipelines whose text matches every word of ``query`` and, if given, that have an
        input of type or format ``accepts``; best matches (label and keyword hits) first."""
        words = [w for w in re.split(r"\s+", query.lower()) if w]
        hits = []
        for p in self.pipelines():
            if accepts and not p.accepts(accepts):
                continue
            if not all(w in p._text for w in words):
                continue
            strong = f"{p.label or ''} {' '.join(p.keywords)} {p.id}".lower()
            score = sum(2 if w in strong else 1 for w in words)
            hits.append((-score, p.id, p))
        return [p for _, _, p in sorted(hits, key=lambda h: (h[0], h[1]))]
