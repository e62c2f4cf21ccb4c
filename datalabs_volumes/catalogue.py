"""The catalogue that missions publish: one YAML file per entry, one folder per mission.

Layout of a catalogue directory::

    <root>/<mission>/volumes/<id>.yaml      hosted archive volumes (this module)
    <root>/<mission>/datalabs/<slug>.yaml   datalabs (datalabs_spawner.catalogue)
    <root>/<mission>/pipelines/*.cwl        pipelines (datalabs_pipelines.catalogue)

Every file is validated on its own against a JSON Schema. A broken file is reported as
``file: field: problem`` and left out; the rest of the catalogue is still served. Files are read
again only when their modification time or size changes, so a long-running hub sees added,
changed and removed files without a restart, at the cost of one ``stat`` per file per refresh.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Generic, TypeVar

import jsonschema
import yaml

from .models import (
    ID_PATTERN,
    ID_RE,
    Access,
    Volume,
    VolumeSource,
    VolumeVersion,
    is_safe_relative_path,
)

T = TypeVar("T")

YAML_SUFFIXES = (".yaml", ".yml")
#: Largest catalogue file read; anything bigger is a mistake, not an entry.
MAX_FILE_BYTES = 256 * 1024


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with one catalogue file."""

    file: str
    field: str
    problem: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.problem}"


class EntryError(Exception):
    """Raised by an entry builder for a problem the schema cannot express."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


# -- YAML reading ---------------------------------------------------------------------------


#: libyaml's parser when PyYAML has it: the pure-Python one took 30 s to read 10,000 volume
#: files on first listing. Same safe constructor and resolver either way.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    """A safe loader that refuses duplicate keys and keeps dates as strings.

    Duplicate keys silently overwrite in plain YAML, which hides a mission's mistake; dates stay
    strings so that the JSON Schema sees exactly what was written.
    """

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def read_yaml(path: Path) -> Any:
    """Read one catalogue file; raises EntryError naming the problem."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise EntryError("(file)", f"file is {size} bytes; the limit is {MAX_FILE_BYTES}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise EntryError("(file)", f"not UTF-8 text ({e.reason})") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(e, "problem", None) or str(e)
        raise EntryError("(yaml)", f"not valid YAML{where}: {what}") from None


_VALIDATORS: dict[int, tuple[dict[str, Any], jsonschema.Draft202012Validator]] = {}


def _validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """One validator per schema object: building one per file dominated reading 10,000 files."""
    hit = _VALIDATORS.get(id(schema))
    if hit is None or hit[0] is not schema:
        hit = (schema, jsonschema.Draft202012Validator(schema))
        _VALIDATORS[id(schema)] = hit
    return hit[1]


def schema_problems(doc: Any, schema: dict[str, Any]) -> list[tuple[str, str]]:
    """Validate ``doc`` against ``schema``; return (field, problem) pairs a mission can act on."""
    validator = _validator(schema)
    out: list[tuple[str, str]] = []
    for error in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path))):
        path = [str(p) for p in error.absolute_path]
        if error.validator == "additionalProperties":
            known = sorted(error.schema.get("properties", {}))
            for extra in sorted(set(error.instance) - set(known)):
                out.append((".".join([*path, extra]), f"unknown field (known: {', '.join(known)})"))
        elif error.validator == "required":
            missing = error.message.split("'")[1] if "'" in error.message else error.message
            out.append((".".join([*path, missing]), "required field is missing"))
        else:
            out.append((".".join(path) or "(top level)", error.message))
    return out


# -- The generic directory of entries ---------------------------------------------------------


@dataclass
class _Cached(Generic[T]):
    stamp: tuple[int, int]
    entry: T | None
    problems: list[Problem]


class EntryDirectory(Generic[T]):
    """Entries of one kind (``subdir``) across catalogue roots, re-read when files change.

    ``build(doc, mission, stem, rel)`` turns a schema-valid document into an entry with an
    ``id``-like key given by ``key(entry)``; it raises EntryError for semantic problems.
    """

    def __init__(
        self,
        roots: Sequence[str | os.PathLike[str]],
        subdir: str,
        schema: dict[str, Any],
        build: Callable[[dict[str, Any], str, str, str], T],
        key: Callable[[T], str],
        kind: str,
    ):
        self.roots = [Path(r) for r in roots]
        self.subdir = subdir
        self.schema = schema
        self.build = build
        self.key = key
        self.kind = kind
        #: By the file's path as a string (hashing Path objects showed up in 10,000-file rescans).
        self._cache: dict[str, _Cached[T]] = {}
        self._entries: dict[str, T] = {}
        self._problems: list[Problem] = []
        self._refreshed_at = float("-inf")
        #: Held by the scan under way, so that no two scans run at once.
        self._scanning = threading.Lock()

    def _scan(self) -> Iterable[tuple[str, str, str, tuple[int, int]]]:
        """Every entry file: its path, mission, path relative to its root, (mtime, size) stamp.

        ``os.scandir`` and plain strings: a rescan of 10,000 files with pathlib and two stat
        calls per file took over a second, and runs every few seconds while users list volumes.
        """
        for root in self.roots:
            try:
                missions = sorted(
                    (e for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")),
                    key=lambda e: e.name,
                )
            except (FileNotFoundError, NotADirectoryError):
                continue
            for mission_dir in missions:
                folder = os.path.join(mission_dir.path, self.subdir)
                try:
                    files = sorted(os.scandir(folder), key=lambda e: e.name)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                for f in files:
                    if f.name.startswith(".") or os.path.splitext(f.name)[1] not in YAML_SUFFIXES:
                        continue
                    try:
                        if not f.is_file():
                            continue
                        st = f.stat()
                    except OSError:
                        continue
                    rel = f"{mission_dir.name}/{self.subdir}/{f.name}"
                    yield f.path, mission_dir.name, rel, (st.st_mtime_ns, st.st_size)

    def _load_one(self, key: str, mission: str, rel: str, stamp: tuple[int, int]) -> _Cached[T]:
        """The entry of the file at ``key`` (its path), parsed again only when its stamp moved."""
        cached = self._cache.get(key)
        if cached and cached.stamp == stamp:
            return cached
        path = Path(key)
        problems: list[Problem] = []
        entry: T | None = None
        try:
            doc = read_yaml(path)
            if not isinstance(doc, dict):
                raise EntryError("(top level)", f"expected a mapping of fields, got {_kind(doc)}")
            found = schema_problems(doc, self.schema)
            if found:
                problems = [Problem(rel, f, p) for f, p in found]
            else:
                entry = self.build(doc, mission, path.stem, rel)
        except EntryError as e:
            problems = [Problem(rel, e.field, e.problem)]
        except OSError as e:
            problems = [Problem(rel, "(file)", f"cannot read: {e.strerror}")]
        cached = _Cached(stamp, entry, problems)
        self._cache[key] = cached
        return cached

    def refresh(self, max_age: float = 0.0, background: bool = False) -> None:
        """Re-scan the roots unless the last scan is younger than ``max_age`` seconds.

        ``background``: once a first scan is done, a later one runs in a thread and the caller
        goes on with the entries it has (a rescan of 10,000 files takes a fifth of a second,
        which no answer should wait for); the next caller sees what it found.
        """
        if time.monotonic() - self._refreshed_at < max_age:
            return
        if not background or self._refreshed_at == float("-inf"):
            with self._scanning:
                self._rescan()
        elif self._scanning.acquire(blocking=False):

            def rescan() -> None:
                try:
                    self._rescan()
                finally:
                    self._scanning.release()

            threading.Thread(target=rescan, name=f"rescan-{self.subdir}", daemon=True).start()

    def _rescan(self) -> None:
        self._refreshed_at = time.monotonic()
        entries: dict[str, T] = {}
        origin: dict[str, str] = {}
        problems: list[Problem] = []
        seen: set[str] = set()
        for path, mission, rel, stamp in self._scan():
            seen.add(path)
            loaded = self._load_one(path, mission, rel, stamp)
            problems.extend(loaded.problems)
            if loaded.entry is None:
                continue
            k = self.key(loaded.entry)
            if k in entries:
                problems.append(
                    Problem(
                        rel,
                        "id",
                        f"duplicate {self.kind} id {k!r}: already defined in "
                        f"{origin[k]}; this file is ignored",
                    )
                )
                continue
            entries[k] = loaded.entry
            origin[k] = rel
        for gone in set(self._cache) - seen:
            del self._cache[gone]
        # The same dict while nothing changed, so that what is derived from it can be kept.
        old = self._entries
        if entries.keys() != old.keys() or any(old[k] is not e for k, e in entries.items()):
            self._entries = entries
        self._problems = sorted(problems)

    @property
    def entries(self) -> dict[str, T]:
        return self._entries

    @property
    def problems(self) -> list[Problem]:
        return self._problems


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


# -- Volumes ---------------------------------------------------------------------------------

_SOURCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"enum": ["local", "nfs", "pvc"]},
        "path": {"type": "string", "minLength": 1},
        "server": {"type": "string", "pattern": r"^[A-Za-z0-9.:\[\]-]+$"},
        "claim": {"type": "string", "pattern": ID_PATTERN},
        "subPath": {"type": "string"},
    },
    "additionalProperties": False,
    "allOf": [
        {"if": {"properties": {"type": {"const": "local"}}}, "then": {"required": ["path"]}},
        {
            "if": {"properties": {"type": {"const": "nfs"}}},
            "then": {"required": ["server", "path"]},
        },
        {"if": {"properties": {"type": {"const": "pvc"}}}, "then": {"required": ["claim"]}},
    ],
}

ACCESS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "groups": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "users": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "embargo_until": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
    },
    "additionalProperties": False,
}

VOLUME_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Datalabs hosted volume",
    "type": "object",
    "required": ["title", "source"],
    "properties": {
        "id": {"type": "string", "pattern": ID_PATTERN},
        "title": {"type": "string", "minLength": 1, "maxLength": 200},
        "mission": {"type": "string", "minLength": 1, "maxLength": 100},
        "description": {"type": "string"},
        "source": _SOURCE_SCHEMA,
        "mount_path": {"type": "string", "pattern": ID_PATTERN},
        "access": ACCESS_SCHEMA,
        "versions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"},
                    "description": {"type": "string"},
                    "default": {"type": "boolean"},
                    "source": _SOURCE_SCHEMA,
                },
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
}


def build_source(doc: dict[str, Any], field: str) -> VolumeSource:
    """A VolumeSource from a schema-valid mapping; path checks the schema cannot make."""
    kind = doc["type"]
    if kind == "local":
        if not is_safe_relative_path(doc["path"]):
            raise EntryError(
                f"{field}.path", "must be a path relative to the archive root, without '..'"
            )
        return VolumeSource("local", path=doc["path"])
    if kind == "nfs":
        path = doc["path"]
        if not path.startswith("/") or not is_safe_relative_path(path.lstrip("/") or "."):
            raise EntryError(f"{field}.path", "must be an absolute export path without '..'")
        return VolumeSource("nfs", server=doc["server"], path=path)
    sub_path = doc.get("subPath", "")
    if sub_path and not is_safe_relative_path(sub_path):
        raise EntryError(f"{field}.subPath", "must be a relative path without '..'")
    return VolumeSource("pvc", claim=doc["claim"], sub_path=sub_path)


def build_access(doc: dict[str, Any] | None, field: str = "access") -> Access:
    """An Access from a schema-valid mapping (or everyone when absent)."""
    doc = doc or {}
    embargo = None
    if "embargo_until" in doc:
        try:
            embargo = date.fromisoformat(doc["embargo_until"])
        except ValueError:
            raise EntryError(f"{field}.embargo_until", "not a real date (YYYY-MM-DD)") from None
    return Access(tuple(doc.get("groups", ())), tuple(doc.get("users", ())), embargo)


def check_id(doc: dict[str, Any], key: str, stem: str) -> str:
    """The entry's id: the field when given, else the file name, which must then fit the rules."""
    value = doc.get(key, stem)
    if not isinstance(value, str) or not ID_RE.match(value):
        raise EntryError(
            key,
            f"{value!r} is not a valid id: the file name is used when the field "
            "is absent, and ids are lower-case letters, digits and dashes",
        )
    return value


def build_volume(doc: dict[str, Any], mission: str, stem: str, rel: str) -> Volume:
    """A Volume from one schema-valid catalogue document."""
    source = build_source(doc["source"], "source")
    versions = []
    names: set[str] = set()
    for i, v in enumerate(doc.get("versions", [])):
        if v["name"] in names:
            raise EntryError(f"versions.{i}.name", f"duplicate version {v['name']!r}")
        names.add(v["name"])
        vsource = build_source(v["source"], f"versions.{i}.source") if "source" in v else source
        versions.append(
            VolumeVersion(
                v["name"], vsource, v.get("description", ""), bool(v.get("default", False))
            )
        )
    if sum(v.default for v in versions) > 1:
        raise EntryError("versions", "more than one version is marked default")
    return Volume(
        id=check_id(doc, "id", stem),
        title=doc["title"],
        mission=doc.get("mission", mission),
        description=doc.get("description", ""),
        source=source,
        mount_path=doc.get("mount_path", ""),
        access=build_access(doc.get("access")),
        versions=tuple(versions),
        file=rel,
    )


class VolumeCatalogue(EntryDirectory[Volume]):
    """The hosted volumes published under ``<root>/<mission>/volumes/``."""

    def __init__(self, roots: Sequence[str | os.PathLike[str]]):
        super().__init__(roots, "volumes", VOLUME_SCHEMA, build_volume, lambda v: v.id, "volume")

    def readable_by(
        self, user: str, groups: Iterable[str], today: date | None = None
    ) -> list[Volume]:
        """The volumes ``user`` may read, in catalogue order."""
        groups = list(groups)
        return [v for v in self.entries.values() if v.access.allows(user, groups, today)]
