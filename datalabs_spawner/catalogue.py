"""The datalab catalogue: what missions publish under ``<root>/<mission>/datalabs/<slug>.yaml``.

A datalab entry borrows the datalab-meta vocabulary (title, abstract, creator, contact, version,
domain, license) and adds what a session needs: kind, image, default_url, resources, default
volumes, who may use it, and image versions to choose from.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from datalabs_volumes.catalogue import (
    ACCESS_SCHEMA,
    EntryDirectory,
    EntryError,
    Problem,
    VolumeCatalogue,
    build_access,
    check_id,
)
from datalabs_volumes.models import ID_PATTERN, Access

DatalabKind = Literal["notebook", "desktop", "app"]

_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$"

DATALAB_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Datalabs datalab",
    "type": "object",
    "required": ["title", "kind", "image"],
    "properties": {
        "slug": {"type": "string", "pattern": ID_PATTERN},
        "title": {"type": "string", "minLength": 1, "maxLength": 200},
        "abstract": {"type": "string"},
        "creator": {"type": "string"},
        "contact": {"type": "string"},
        "version": {"type": "string"},
        "domain": {"type": "string"},
        "license": {"type": "string"},
        "kind": {"enum": ["notebook", "desktop", "app"]},
        "image": {"type": "string", "minLength": 1, "pattern": r"^[^\s]+$"},
        "default_url": {"type": "string", "pattern": r"^/[^\s]*$"},
        "command": {"type": "array", "items": {"type": "string"}},
        "resources": {
            "type": "object",
            "properties": {
                "cpu_limit": {"type": "number", "exclusiveMinimum": 0},
                "cpu_guarantee": {"type": "number", "exclusiveMinimum": 0},
                "mem_limit": {"type": "string", "pattern": _QUANTITY},
                "mem_guarantee": {"type": "string", "pattern": _QUANTITY},
            },
            "additionalProperties": False,
        },
        "default_volumes": {"type": "array", "items": {"type": "string", "pattern": ID_PATTERN}},
        "access": ACCESS_SCHEMA,
        "options": {
            "type": "object",
            "properties": {
                "image_versions": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "image"],
                        "properties": {
                            "name": {
                                "type": "string",
                                "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$",
                            },
                            "image": {"type": "string", "pattern": r"^[^\s]+$"},
                            "default": {"type": "boolean"},
                        },
                        "additionalProperties": False,
                    },
                }
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}


@dataclass(frozen=True)
class ImageVersion:
    name: str
    image: str
    default: bool = False


@dataclass(frozen=True)
class Resources:
    cpu_limit: float | None = None
    cpu_guarantee: float | None = None
    mem_limit: str | None = None
    mem_guarantee: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Datalab:
    """A datalab a user can start."""

    slug: str
    title: str
    kind: DatalabKind
    image: str
    mission: str
    abstract: str = ""
    creator: str = ""
    contact: str = ""
    version: str = ""
    domain: str = ""
    license: str = ""
    default_url: str = ""
    command: tuple[str, ...] = ()
    resources: Resources = field(default_factory=Resources)
    default_volumes: tuple[str, ...] = ()
    access: Access = field(default_factory=Access)
    image_versions: tuple[ImageVersion, ...] = ()
    file: str = ""

    @property
    def default_image_version(self) -> ImageVersion | None:
        if not self.image_versions:
            return None
        return next((v for v in self.image_versions if v.default), self.image_versions[0])

    def image_for(self, version: str | None) -> str:
        """The image for the named version (or the default one). KeyError for an unknown one."""
        if version is None:
            default = self.default_image_version
            return default.image if default else self.image
        for v in self.image_versions:
            if v.name == version:
                return v.image
        raise KeyError(version)

    def to_json(self) -> dict[str, Any]:
        return {
            "slug": self.slug,
            "title": self.title,
            "kind": self.kind,
            "mission": self.mission,
            "abstract": self.abstract,
            "creator": self.creator,
            "contact": self.contact,
            "version": self.version,
            "domain": self.domain,
            "license": self.license,
            "image": self.image,
            "default_url": self.default_url,
            "command": list(self.command),
            "resources": self.resources.to_json(),
            "default_volumes": list(self.default_volumes),
            "access": self.access.to_json(),
            "image_versions": [
                {"name": v.name, "image": v.image, "default": v is self.default_image_version}
                for v in self.image_versions
            ],
            "file": self.file,
        }


def build_datalab(doc: dict[str, Any], mission: str, stem: str, rel: str) -> Datalab:
    """A Datalab from one schema-valid catalogue document."""
    versions = tuple(
        ImageVersion(v["name"], v["image"], bool(v.get("default", False)))
        for v in doc.get("options", {}).get("image_versions", [])
    )
    if len({v.name for v in versions}) != len(versions):
        raise EntryError("options.image_versions", "version names must be unique")
    if sum(v.default for v in versions) > 1:
        raise EntryError("options.image_versions", "more than one version is marked default")
    if doc["kind"] != "notebook" and not doc.get("default_url"):
        raise EntryError("default_url", f"a {doc['kind']} datalab must say which URL to open")
    res = doc.get("resources", {})
    return Datalab(
        slug=check_id(doc, "slug", stem),
        title=doc["title"],
        kind=doc["kind"],
        image=doc["image"],
        mission=mission,
        abstract=doc.get("abstract", ""),
        creator=doc.get("creator", ""),
        contact=doc.get("contact", ""),
        version=str(doc.get("version", "")),
        domain=doc.get("domain", ""),
        license=doc.get("license", ""),
        default_url=doc.get("default_url", ""),
        command=tuple(doc.get("command", ())),
        resources=Resources(
            res.get("cpu_limit"),
            res.get("cpu_guarantee"),
            res.get("mem_limit"),
            res.get("mem_guarantee"),
        ),
        default_volumes=tuple(dict.fromkeys(doc.get("default_volumes", ()))),
        access=build_access(doc.get("access")),
        image_versions=versions,
        file=rel,
    )


class DatalabCatalogue(EntryDirectory[Datalab]):
    """The datalabs published under ``<root>/<mission>/datalabs/``."""

    def __init__(self, roots: Sequence[str | os.PathLike[str]]):
        super().__init__(
            roots, "datalabs", DATALAB_SCHEMA, build_datalab, lambda d: d.slug, "datalab"
        )

    def usable_by(
        self, user: str, groups: Iterable[str], today: date | None = None
    ) -> list[Datalab]:
        groups = list(groups)
        return [d for d in self.entries.values() if d.access.allows(user, groups, today)]


class Catalogue:
    """Datalabs and volumes of the same catalogue roots, refreshed together."""

    def __init__(self, roots: Sequence[str | os.PathLike[str]]):
        self.roots = list(roots)
        self.datalabs = DatalabCatalogue(roots)
        self.volumes = VolumeCatalogue(roots)

    def refresh(self, max_age: float = 0.0) -> None:
        self.datalabs.refresh(max_age)
        self.volumes.refresh(max_age)

    @property
    def problems(self) -> list[Problem]:
        """Every file problem, plus datalabs naming default volumes that do not exist."""
        found = list(self.datalabs.problems) + list(self.volumes.problems)
        for d in self.datalabs.entries.values():
            for i, vid in enumerate(d.default_volumes):
                if vid not in self.volumes.entries:
                    found.append(
                        Problem(
                            d.file, f"default_volumes.{i}", f"no volume {vid!r} in the catalogue"
                        )
                    )
        return sorted(found)


_shared: dict[tuple[str, ...], Catalogue] = {}


def shared_catalogue(roots: Sequence[str]) -> Catalogue:
    """One Catalogue per set of roots for the whole hub process, so files are parsed once."""
    key = tuple(os.path.abspath(r) for r in roots)
    if key not in _shared:
        _shared[key] = Catalogue(key)
    return _shared[key]
