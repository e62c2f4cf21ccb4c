"""Reading a volume's folder without mounting it: its size and a listing of one folder.

The same code for a session that sees the archive root (outside the sandbox) and for the
hub's broker, which answers for sandboxed sessions, where the archive root is invisible.
Callers check first that the user may read the volume; here only paths are checked: a path
inside the volume, never ``..``, and symbolic links in the archive never lead out of it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .models import is_safe_relative_path

#: Largest number of entries walked to size a volume; beyond it the size is a lower bound.
SIZE_WALK_LIMIT = 20_000
#: Largest listing returned by browse; the answer says when it was cut.
BROWSE_LIMIT = 5_000


class BrowseError(ValueError):
    """A folder that cannot be listed: ``status`` for HTTP, ``message`` for the person."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class FolderSize:
    """Bytes and files below a folder; ``complete`` False when the walk stopped early."""

    bytes: int
    files: int
    complete: bool

    def to_json(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "files": self.files, "complete": self.complete}


def folder_size(folder: Path, limit: int = SIZE_WALK_LIMIT) -> FolderSize:
    """Walk ``folder`` (not following links) counting bytes and files, up to ``limit`` files."""
    total = files = 0
    complete = True
    for dirpath, _dirs, names in os.walk(folder):
        for n in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, n)).st_size
            files += 1
        if files > limit:
            complete = False
            break
    return FolderSize(total, files, complete)


def browse_folder(vid: str, source: Path, path: str = "") -> dict[str, Any]:
    """The listing of folder ``path`` of volume ``vid`` whose folder is ``source``: at most
    :data:`BROWSE_LIMIT` entries, folders first. BrowseError (400, 404) for a bad path."""
    from fsspec.implementations.dirfs import DirFileSystem
    from fsspec.implementations.local import LocalFileSystem

    path = (path or "").strip("/")
    if path and not is_safe_relative_path(path):
        raise BrowseError(400, "'path' must be a folder inside the volume, without '..'.")
    folder = Path(os.path.realpath(source / path)) if path else source
    # Symbolic links inside the archive must not lead out of the volume.
    if folder != source and source not in folder.parents:
        raise BrowseError(400, f"'{path}' is not a folder of volume '{vid}'.")
    if folder.is_file():
        raise BrowseError(400, f"'{path}' in volume '{vid}' is a file.")
    fs = DirFileSystem(path=str(source), fs=LocalFileSystem())
    rel = folder.relative_to(source).as_posix() if folder != source else ""
    try:
        entries = fs.ls(rel, detail=True)
    except FileNotFoundError:
        raise BrowseError(404, f"Volume '{vid}' has no folder '{path}'.") from None
    except NotADirectoryError:
        raise BrowseError(400, f"'{path}' in volume '{vid}' is a file.") from None
    items = []
    for e in entries[:BROWSE_LIMIT]:
        name = PurePosixPath(e["name"]).name
        items.append({"name": name, "type": e["type"], "size": e.get("size")})
    items.sort(key=lambda i: (i["type"] != "directory", i["name"]))
    return {"volume": vid, "path": rel, "entries": items, "truncated": len(entries) > BROWSE_LIMIT}
