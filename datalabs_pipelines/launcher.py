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
from typing import Any
from urllib.parse import unquote, urlparse

from .catalogue import Pipeline, type_label

#: JSON list of the volumes mounted in the session: ``[{"id", "title", "path"}, ...]``.
ENV_VOLUMES = "DATALABS_VOLUMES"


@dataclass(frozen=True)
class Volume:
    """An archive volume mounted (read-only) in the user's session."""

    id: str
    path: Path
    title: str = ""


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


def _check_path(
    value: Any, kind: str, workspace: Workspace, formats: tuple[str, ...] = ()
) -> dict[str, Any]:
    """A File/Directory value as ``{"class", "path"}`` after checking where it points."""
    if isinstance(value, str):
        obj: dict[str, Any] = {"class": kind, "path": value}
    elif isinstance(value, dict) and value.get("class", kind) == kind:
        obj = dict(value)
        obj["class"] = kind
    else:
        raise _Bad(f"expected a {kind} (a path, or an object with class {kind})")
    if kind == "File" and "contents" in obj and "path" not in obj and "location" not in obj:
        return obj  # a file literal: nothing on disk to check
    raw = obj.pop("path", None) or obj.pop("location", None)
    if not isinstance(raw, str) or not raw:
        raise _Bad(f"a {kind} needs a path")
    if "://" in raw:
        url = urlparse(raw)
        if url.scheme != "file":
            raise _Bad(
                f"{raw!r} is not a local path; pick a file from your workspace or a mounted volume"
            )
        raw = unquote(url.path)
    if "\x00" in raw:
        raise _Bad("the path contains a NUL character")
    path = workspace.resolve(raw)
    if not workspace.contains(path):
        raise _Bad(f"{raw!r} is outside your workspace and mounted volumes")
    if kind == "File" and not path.is_file():
        raise _Bad(f"file not found: {raw!r}")
    if kind == "Directory" and not path.is_dir():
        raise _Bad(f"directory not found: {raw!r}")
    obj["path"] = str(path)
    if kind == "File" and formats and "format" not in obj:
        # cwltool refuses a File without a format where the input declares one; a file picked
        # in the launch form is taken to be what the pipeline asks for.
        obj["format"] = formats[0]
    return obj


def check_value(value: Any, type_: Any, workspace: Workspace, formats: tuple[str, ...] = ()) -> Any:
    """``value`` checked against a normalised CWL type; returns it ready for a job file."""
    if isinstance(type_, list):
        if value is None:
            if "null" in type_:
                return None
            raise _Bad(f"a value of type {type_label(type_)} is required")
        errors = []
        for option in type_:
            if option == "null":
                continue
            try:
                return check_value(value, option, workspace, formats)
            except _Bad as exc:
                errors.append(str(exc))
        raise _Bad(" or ".join(errors) if len(errors) < 3 else f"expected {type_label(type_)}")
    if isinstance(type_, dict):
        kind = type_.get("type")
        if kind == "array":
            if not isinstance(value, list):
                raise _Bad(f"expected a list ({type_label(type_)})")
            out = []
            for i, item in enumerate(value):
                try:
                    out.append(check_value(item, type_["items"], workspace, formats))
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
            out_rec = dict(value)
            for fld in type_.get("fields", []):
                try:
                    out_rec[fld["name"]] = check_value(
                        value.get(fld["name"]), fld["type"], workspace
                    )
                except _Bad as exc:
                    raise _Bad(f"field {fld['name']}: {exc}") from None
            return out_rec
        raise _Bad(f"unsupported type {type_!r}")
    if type_ == "Any":
        if value is None:
            raise _Bad("a value is required")
        return value
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
        return _check_path(value, type_, workspace, formats)
    # A named schema (SchemaDefRequirement) we cannot see from here: cwltool checks it.
    return value


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
            problems.append(InputProblem(param.id, f"missing ({type_label(param.type)} required)"))
            continue
        try:
            job[param.id] = check_value(inputs[param.id], param.type, workspace, param.format)
        except _Bad as exc:
            problems.append(InputProblem(param.id, str(exc)))
    if problems:
        raise JobRejected(pipeline.id, problems)
    return job
