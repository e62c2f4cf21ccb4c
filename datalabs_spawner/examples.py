"""Example notebooks that a datalab brings into the user's workspace."""

from __future__ import annotations

import shutil
from pathlib import Path


def install_examples(source: Path, target: Path) -> list[Path]:
    """Copy the files under ``source`` to ``target``; return the files copied.

    A file the user already has is left alone, edited or not: examples are a starting point,
    and a restart must never undo the user's work. Symbolic links in ``source`` are skipped, so
    nothing outside the examples folder is copied by mistake.
    """
    copied = []
    if not source.is_dir():
        return copied
    for path in sorted(source.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        dest = target / path.relative_to(source)
        if dest.exists() or dest.is_symlink():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        copied.append(dest)
    return copied
