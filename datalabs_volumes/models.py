"""What crosses module borders in the volume service: volumes, their sources and access rules.

Plain frozen dataclasses with no I/O, so that the catalogue, the spawners and the REST API all
talk about the same thing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import PurePosixPath
from typing import Any, Literal

#: Ids and slugs double as Kubernetes volume names (prefixed) and folder names, so they follow
#: the DNS-label rules: lower case letters, digits and dashes, at most 59 characters.
ID_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,57}[a-z0-9])?$"
ID_RE = re.compile(ID_PATTERN)

SourceType = Literal["local", "nfs", "pvc"]


def is_safe_relative_path(value: str) -> bool:
    """True when ``value`` is a relative path that cannot climb out of the folder it is joined to.

    Used for local sources and PVC subPaths, which missions write and the hub joins to a root.
    """
    if not value or "\x00" in value or "\\" in value:
        return False
    path = PurePosixPath(value)
    return not path.is_absolute() and ".." not in path.parts


@dataclass(frozen=True)
class VolumeSource:
    """Where a hosted volume's files live.

    ``local``: ``path`` relative to the operator's archive root (a folder on one machine, or
    the archive claim on Kubernetes). ``nfs``: ``server`` and absolute export ``path``.
    ``pvc``: an existing claim ``claim`` and an optional ``sub_path`` inside it.
    """

    type: SourceType
    path: str = ""
    server: str = ""
    claim: str = ""
    sub_path: str = ""

    def to_json(self) -> dict[str, str]:
        """The source as catalogue files spell it."""
        out: dict[str, str] = {"type": self.type}
        if self.type == "local":
            out["path"] = self.path
        elif self.type == "nfs":
            out.update(server=self.server, path=self.path)
        else:
            out["claim"] = self.claim
            if self.sub_path:
                out["subPath"] = self.sub_path
        return out


@dataclass(frozen=True)
class Access:
    """Who may use an entry.

    No groups and no users: everyone. Otherwise members of ``groups`` and the ``users`` named.
    ``embargo_until``: until that day only those groups and users; from that day on, everyone.
    """

    groups: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    embargo_until: date | None = None

    @property
    def restricted(self) -> bool:
        return bool(self.groups or self.users or self.embargo_until)

    def allows(self, user: str, groups: Iterable[str], today: date | None = None) -> bool:
        """Whether ``user`` (member of ``groups``) may use the entry on ``today``."""
        if self.embargo_until is not None and (today or date.today()) >= self.embargo_until:
            return True
        if not self.groups and not self.users:
            # An embargo with nobody named keeps the entry closed until the day comes.
            return self.embargo_until is None
        return user in self.users or bool(set(groups) & set(self.groups))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"groups": list(self.groups), "users": list(self.users)}
        if self.embargo_until:
            out["embargo_until"] = self.embargo_until.isoformat()
        return out


@dataclass(frozen=True)
class VolumeVersion:
    """One published version of a volume, with its own source."""

    name: str
    source: VolumeSource
    description: str = ""
    default: bool = False


@dataclass(frozen=True)
class Volume:
    """A hosted archive volume from the catalogue."""

    id: str
    title: str
    mission: str
    source: VolumeSource
    description: str = ""
    mount_path: str = ""
    access: Access = field(default_factory=Access)
    versions: tuple[VolumeVersion, ...] = ()
    file: str = ""

    @property
    def folder(self) -> str:
        """The folder name under the session's data directory."""
        return self.mount_path or self.id

    @property
    def default_version(self) -> VolumeVersion | None:
        if not self.versions:
            return None
        return next((v for v in self.versions if v.default), self.versions[0])

    def version(self, name: str | None) -> VolumeVersion | None:
        """The named version (or the default one); None when the volume has no versions."""
        if name is None:
            return self.default_version
        for v in self.versions:
            if v.name == name:
                return v
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "mission": self.mission,
            "description": self.description,
            "source": self.source.to_json(),
            "mount_path": self.folder,
            "access": self.access.to_json(),
            "versions": [
                {"name": v.name, "default": v is self.default_version, "description": v.description}
                for v in self.versions
            ],
            "file": self.file,
        }


@dataclass(frozen=True)
class ChosenVolume:
    """A volume picked for a session, with the version and source it resolves to."""

    volume: Volume
    version: str | None
    source: VolumeSource

    @property
    def id(self) -> str:
        return self.volume.id

    def describe(self, path: str) -> dict[str, Any]:
        """What the single-user server is told about this volume (no secrets: sources only)."""
        return {
            "id": self.volume.id,
            "title": self.volume.title,
            "mission": self.volume.mission,
            "version": self.version,
            "path": path,
            "read_only": True,
        }


def choose(volume: Volume, version: str | None = None) -> ChosenVolume:
    """Resolve ``volume`` at ``version`` (default version when None) to a ChosenVolume."""
    chosen = volume.version(version)
    if chosen is None:
        return ChosenVolume(volume, None, volume.source)
    return ChosenVolume(volume, chosen.name, chosen.source)
