"""Example notebooks that a datalab brings into the user's workspace."""

from __future__ import annotations

import shutil
from pathlib import Path


def _through_link(root: Path, folder: Path) -> bool:
    """Whether a folder between ``root`` (excluded) and ``folder`` (included) is a link."""
    while folder != root and root in folder.parents:
        if folder.is_symlink():
            return True
        folder = folder.parent
    return False


def install_examples(source: Path, target: Path, root: Path | None = None) -> list[Path]:
    """Copy the files under ``source`` to ``target``; return the files copied.

    A file the user already has is left alone, edited or not: examples are a starting point,
    and a restart must never undo the user's work. Symbolic links in ``source`` are skipped, so
    nothing outside the examples folder is copied by mistake; so are destinations reached
    through a symbolic link in the user's folders below ``root`` (the workspace), which the
    user controls and the hub, running as root, must not follow.
    """
    copied: list[Path] = []
    if not source.is_dir():
        return copied
    root = root or target
    for path in sorted(source.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        dest = target / path.relative_to(source)
        if dest.exists() or dest.is_symlink() or _through_link(root, dest.parent):
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        copied.append(dest)
    return copied
