"""The launcher: checks a job against a pipeline's inputs before anything starts.

A job that names a missing input, a value of the wrong type, a file that does not exist, or a
path outside the user's workspace and mounted volumes is refused with every problem listed by
input name. Archive files on mounted volumes are valid inputs and are read in place (cwltool
links them into the step's working directory without copying).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from .crate import VolumeRef

if TYPE_CHECKING:
    from .catalogue import Pipeline


def _type_label(type_: Any) -> str:
    """The catalogue's name for a CWL type, for messages. Imported when needed: the foreground
    ``datalabs-pipeline run`` reads :class:`Workspace` from here and never needs the catalogue."""
    from .catalogue import type_label

    return type_label(type_)


#: JSON list of the volumes mounted in the session: ``[{"id", "title", "path"}, ...]``.
ENV_VOLUMES = "DATALABS_VOLUMES"


@dataclass(frozen=True)
class Volume:
    """An archive volume mounted (read-only) in the user's session."""

    id: str
    path: Path
    title: str = ""
    version: str | None = None

    def ref(self) -> VolumeRef:
        """How a run records this volume (its inputs on it are named by volume and path)."""
        return VolumeRef(id=self.id, path=str(self.path), title=self.title, version=self.version)


@dataclass(frozen=True)
class Workspace:
    """Where a user's inputs may come from: their workspace and their mounted volumes."""

    root: Path
    volumes: tuple[Volume, ...] = ()

    @classmethod
    def from_env(cls, root: Path | str | None = None) -> Workspace:
        """The workspace ``root`` (default: home) with volumes from ``$DATALABS_VOLUMES``."""
        volumes = []
        raw = os.environ.get(ENV_VOLUMES, "").strip()
        if raw:
            try:
                entries = json.loads(raw)
            except ValueError:
                entries = []
            for entry in entries if isinstance(entries, list) else []:
                if isinstance(entry, dict) and entry.get("id") and entry.get("path"):
                    volumes.append(
                        Volume(
                            id=str(entry["id"]),
                            path=Path(str(entry["path"])),
                            title=str(entry.get("title", "")),
                            version=None if entry.get("version") is None else str(entry["version"]),
                        )
                    )
        return cls(root=Path(root or os.path.expanduser("~")), volumes=tuple(volumes))

    def allowed_roots(self) -> list[Path]:
        return [Path(os.path.realpath(self.root))] + [
            Path(os.path.realpath(v.path)) for v in self.volumes
        ]

    def resolve(self, path: str) -> Path:
        """An absolute, symlink-free path; relative paths are taken from the workspace root."""
        return Path(os.path.realpath(os.path.join(self.root, os.path.expanduser(path))))

    def contains(self, path: Path) -> bool:
        return any(path == root or path.is_relative_to(root) for root in self.allowed_roots())


@dataclass(frozen=True)
class InputProblem:
    """What is wrong with one input of a job."""

    input: str
    message: str

    def __str__(self) -> str:
        return f"input '{self.input}': {self.message}"


@dataclass
class JobRejected(ValueError):
    """The job cannot run; ``problems`` names each input at fault."""

    pipeline: str
    problems: list[InputProblem] = field(default_factory=list)

    def __str__(self) -> str:
        return f"cannot run {self.pipeline}: " + "; ".join(str(p) for p in self.problems)


class _Bad(Exception):
    pass


#: Fields of a CWL File and Directory object in a job (CWL v1.2, "File" and "Directory").
FILE_FIELDS = frozenset(
    {
        "class",
        "location",
        "path",
        "basename",
        "dirname",
        "nameroot",
        "nameext",
        "checksum",
        "size",
        "secondaryFiles",
        "format",
        "contents",
    }
)
DIRECTORY_FIELDS = frozenset({"class", "location", "path", "basename", "listing"})
#: Fields cwltool computes from the path itself; a job's own values could only contradict them.
_COMPUTED = ("dirname", "nameroot", "nameext")
#: How deep a job's values may nest (lists, objects, listings, secondaryFiles). Deeper values
#: are refused before anything recurses into them, so no input can exhaust Python's stack.
MAX_DEPTH = 64


def _field(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _local_path(raw: str, where: str) -> str:
    """A ``path`` or ``location`` as a local path; only ``file:`` URLs and plain paths."""
    if "\x00" in raw:
        raise _Bad(f"{where}: the path contains a NUL character")
    if "://" in raw or raw.startswith("file:"):
        url = urlparse(raw)
        if url.scheme != "file":
            raise _Bad(
                f"{where}: {raw!r} is not a local path; pick a file from your workspace or a "
                "mounted volume"
            )
        return unquote(url.path)
    return raw


def _check_basename(value: Any, where: str) -> str:
    """A file name: cwltool joins it to the run's folders, so it must stay one name."""
    if not isinstance(value, str) or not value:
        raise _Bad(f"{where}: must be a file name")
    if "/" in value or "\\" in value or value in (".", "..") or "\x00" in value:
        raise _Bad(
            f"{where}: {value!r} is not a plain file name (no '/', no '..'): a basename "
            "cannot place a file outside the run's folder"
        )
    return value


def _check_format(value: Any, where: str, workspace: Workspace) -> str:
    """A format IRI (``edam:format_1915``, ``http://...``); a local file only inside the
    workspace, since cwltool would read it as an ontology."""
    if not isinstance(value, str) or not value or "\x00" in value:
        raise _Bad(f"{where}: must be a format IRI such as edam:format_1915")
    if value.startswith(("file:", "/", ".", "~")):
        path = workspace.resolve(_local_path(value, where))
        if not workspace.contains(path):
            raise _Bad(f"{where}: {value!r} is outside your workspace and mounted volumes")
    return value


def _check_fs_object(
    value: Any,
    kind: str,
    workspace: Workspace,
    formats: tuple[str, ...] = (),
    where: str = "",
    depth: int = 0,
) -> dict[str, Any]:
    """A File/Directory value checked field by field, nested ones included.

    Every ``path`` and ``location`` (both, when both are given: cwltool prefers ``location``)
    must resolve inside the workspace or a mounted volume; ``basename`` must be one plain name
    (cwltool creates it in the run's folder); ``secondaryFiles`` and ``listing`` are checked
    the same way. Answers ``{"class", "path", ...}`` with the resolved path.
    """
    if depth > MAX_DEPTH:
        raise _Bad(f"{where or kind}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        obj: dict[str, Any] = {"class": kind, "path": value}
    elif isinstance(value, dict) and value.get("class", kind) == kind:
        obj = dict(value)
        obj["class"] = kind
    else:
        raise _Bad(
            f"{where + ': ' if where else ''}expected a {kind} (a path, or an object with "
            f"class {kind})"
        )
    known = FILE_FIELDS if kind == "File" else DIRECTORY_FIELDS
    unknown = sorted(str(k) for k in obj if k not in known)
    if unknown:
        raise _Bad(
            f"{_field(where, unknown[0])}: not a field of a {kind} "
            f"(fields: {', '.join(sorted(known - {'class'}))})"
        )
    for name in _COMPUTED:
        obj.pop(name, None)
    if "basename" in obj:
        _check_basename(obj["basename"], _field(where, "basename"))
    if "format" in obj:
        _check_format(obj["format"], _field(where, "format"), workspace)
    if "contents" in obj and not isinstance(obj["contents"], str):
        raise _Bad(f"{_field(where, 'contents')}: must be a text")
    for key in ("secondaryFiles", "listing"):
        if key not in obj:
            continue
        items = obj[key]
        if not isinstance(items, list):
            raise _Bad(f"{_field(where, key)}: must be a list of Files/Directories")
        obj[key] = [
            _check_nested(item, workspace, f"{_field(where, key)}[{i}]", depth)
            for i, item in enumerate(items)
        ]
    given = [(k, obj.pop(k)) for k in ("path", "location") if k in obj]
    if not given:
        literal = obj.get("contents") if kind == "File" else obj.get("listing")
        if literal is None:
            raise _Bad(f"{where + ': ' if where else ''}a {kind} needs a path")
        return obj  # a literal: cwltool creates it inside the run's folder
    resolved: Path | None = None
    for key, raw in given:
        if not isinstance(raw, str) or not raw:
            raise _Bad(f"{_field(where, key)}: must be a path")
        path = workspace.resolve(_local_path(raw, _field(where, key)))
        if not workspace.contains(path):
            raise _Bad(
                f"{_field(where, key)}: {raw!r} is outside your workspace and mounted volumes"
            )
        if resolved is not None and path != resolved:
            raise _Bad(f"{_field(where, 'location')}: names another file than path")
        resolved = path
    assert resolved is not None
    raw = given[0][1]
    if kind == "File" and "contents" in obj:
        raise _Bad(f"{_field(where, 'contents')}: a File has either contents or a path, not both")
    if kind == "File" and not resolved.is_file():
        raise _Bad(f"{where + ': ' if where else ''}file not found: {raw!r}")
    if kind == "Directory" and not resolved.is_dir():
        raise _Bad(f"{where + ': ' if where else ''}directory not found: {raw!r}")
    obj["path"] = str(resolved)
    if kind == "File" and formats and "format" not in obj:
        # cwltool refuses a File without a format where the input declares one; a file picked
        # in the launch form is taken to be what the pipeline asks for.
        obj["format"] = formats[0]
    return obj


def _check_nested(item: Any, workspace: Workspace, where: str, depth: int) -> dict[str, Any]:
    if not isinstance(item, dict) or item.get("class") not in ("File", "Directory"):
        raise _Bad(f"{where}: expected an object with class File or Directory")
    return _check_fs_object(item, item["class"], workspace, (), where, depth + 1)


def _check_embedded(value: Any, workspace: Workspace, where: str = "", depth: int = 0) -> Any:
    """Any File/Directory object anywhere inside a value whose type does not say (``Any``, a
    named schema, a record's extra fields) checked as a declared one would be."""
    if depth > MAX_DEPTH:
        raise _Bad(f"{where or 'value'}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, list):
        return [
            _check_embedded(v, workspace, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)
        ]
    if isinstance(value, dict):
        if value.get("class") in ("File", "Directory"):
            return _check_fs_object(value, value["class"], workspace, (), where, depth)
        return {
            k: _check_embedded(v, workspace, _field(where, str(k)), depth + 1)
            for k, v in value.items()
        }
    return value


def check_value(
    value: Any, type_: Any, workspace: Workspace, formats: tuple[str, ...] = (), depth: int = 0
) -> Any:
    """``value`` checked against a normalised CWL type; returns it ready for a job file."""
    if depth > MAX_DEPTH:
        raise _Bad(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(type_, list):
        if value is None:
            if "null" in type_:
                return None
            raise _Bad(f"a value of type {_type_label(type_)} is required")
        errors = []
        for option in type_:
            if option == "null":
                continue
            try:
                return check_value(value, option, workspace, formats, depth + 1)
            except _Bad as exc:
                errors.append(str(exc))
        raise _Bad(" or ".join(errors) if len(errors) < 3 else f"expected {_type_label(type_)}")
    if isinstance(type_, dict):
        kind = type_.get("type")
        if kind == "array":
            if not isinstance(value, list):
                raise _Bad(f"expected a list ({_type_label(type_)})")
            out = []
            for i, item in enumerate(value):
                try:
                    out.append(check_value(item, type_["items"], workspace, formats, depth + 1))
                except _Bad as exc:
                    raise _Bad(f"item {i}: {exc}") from None
            return out
        if kind == "enum":
            if value not in type_["symbols"]:
                raise _Bad(f"expected one of {', '.join(type_['symbols'])}, got {value!r}")
            return value
        if kind == "record":
            if not isinstance(value, dict):
                raise _Bad("expected an object (record)")
            # Fields the record does not declare still reach cwltool: check what they hold.
            out_rec = _check_embedded(value, workspace)
            for fld in type_.get("fields", []):
                try:
                    out_rec[fld["name"]] = check_value(
                        value.get(fld["name"]), fld["type"], workspace, (), depth + 1
                    )
                except _Bad as exc:
                    raise _Bad(f"field {fld['name']}: {exc}") from None
            return out_rec
        raise _Bad(f"unsupported type {type_!r}")
    if type_ == "Any":
        if value is None:
            raise _Bad("a value is required")
        return _check_embedded(value, workspace)
    if type_ == "null":
        if value is not None:
            raise _Bad("expected no value (null)")
        return None
    if type_ == "string":
        if not isinstance(value, str):
            raise _Bad(f"expected a string, got {type(value).__name__}")
        return value
    if type_ in ("int", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(f"expected an integer, got {value!r}")
        return value
    if type_ in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Bad(f"expected a number, got {value!r}")
        return value
    if type_ == "boolean":
        if not isinstance(value, bool):
            raise _Bad(f"expected true or false, got {value!r}")
        return value
    if type_ in ("File", "Directory"):
        return _check_fs_object(value, type_, workspace, formats, depth=depth)
    # A named schema (SchemaDefRequirement) we cannot see from here: cwltool checks its
    # types, we check the files and folders in it.
    return _check_embedded(value, workspace)


def validate_job(
    pipeline: Pipeline, inputs: dict[str, Any], workspace: Workspace
) -> dict[str, Any]:
    """The job for ``pipeline`` with paths resolved, or :class:`JobRejected` naming each input."""
    if not isinstance(inputs, dict):
        raise JobRejected(pipeline.id, [InputProblem("(job)", "inputs must be a JSON object")])
    problems: list[InputProblem] = []
    job: dict[str, Any] = {}
    known = {p.id for p in pipeline.inputs}
    for name in inputs:
        if name not in known:
            problems.append(
                InputProblem(
                    name,
                    "not an input of this pipeline (inputs: " + ", ".join(sorted(known)) + ")",
                )
            )
    for param in pipeline.inputs:
        if param.id not in inputs or inputs[param.id] is None:
            if param.optional:
                continue
            problems.append(InputProblem(param.id, f"missing ({_type_label(param.type)} required)"))
            continue
        try:
            job[param.id] = check_value(inputs[param.id], param.type, workspace, param.format)
        except _Bad as exc:
            problems.append(InputProblem(param.id, str(exc)))
    if problems:
        raise JobRejected(pipeline.id, problems)
    return job
