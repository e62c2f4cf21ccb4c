"""Where a user's CWL may point: the references cwltool follows, checked before it follows them.

cwltool (through schema-salad) reads whatever a document names: ``$include`` puts a file's text
into the document, ``$import`` and ``$mixin`` load another document, a step's ``run`` loads a
process, ``$schemas`` loads ontologies, and a ``location`` (or ``path``) in a File or Directory
default is read when the run starts. In CWL a user wrote, each of these could name any file the
server can read (``doc: {$include: /etc/passwd}`` put that file's text into the editor's answer)
or any URL (``run: http://127.0.0.1:8081/...`` made the server fetch it).

:func:`check_references` walks a document, and every document it references in turn, and
refuses any reference outside the allowed folders (the user's workspace, their mounted volumes
and the pipeline catalogue) and any URL but ``file:``, except ``http(s)`` ontologies in
``$schemas``. It reads only the documents it checks, with a safe YAML loader that resolves
nothing. Pure: no cwltool, no network.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

#: Keys whose string value names another document or file.
DIRECTIVES = ("$include", "$import", "$mixin")
#: How deep a document may nest, and how many documents one check reads at most.
MAX_DEPTH = 200
MAX_DOCUMENTS = 500


@dataclass
class ReferenceRefused(ValueError):
    """A reference the user's CWL may not make. ``document``: the file it is in; ``field``:
    where in it (``steps.s1.run``); ``reference``: what it names; ``reason``: why not."""

    document: str
    field: str
    reference: str
    reason: str

    def __str__(self) -> str:
        return f"{self.document}: {self.field}: {self.reference!r} {self.reason}"


def _inside(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == r or path.is_relative_to(r) for r in roots)


def _target(ref: str, base: Path) -> tuple[str, Path | None]:
    """``(scheme, local path)`` of a reference made from a document in folder ``base``."""
    if ref.startswith("#"):
        return "fragment", None
    url = urlparse(ref)
    scheme = url.scheme.lower()
    if scheme and len(scheme) > 1:  # "C:" is not a scheme here, but nor is it on Linux
        if scheme != "file":
            return scheme, None
        return "file", Path(os.path.realpath(unquote(url.path)))
    file_part = ref.split("#", 1)[0]
    return "file", Path(os.path.realpath(base / unquote(file_part)))


def _load(path: Path) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        return YAML(typ="safe", pure=False).load(path.read_text())
    except (OSError, UnicodeDecodeError, YAMLError, RecursionError):
        return None  # cwltool will say what is wrong with it; nothing to follow in it


def check_references(
    document: str | os.PathLike[str], allowed_roots: Iterable[str | os.PathLike[str]]
) -> None:
    """Refuse (:class:`ReferenceRefused`) any reference in the CWL file ``document``, or in a
    document it references, that leaves ``allowed_roots`` or is a URL other than ``file:``
    (``http(s)`` ontologies in ``$schemas`` excepted)."""
    roots = [Path(os.path.realpath(r)) for r in allowed_roots]
    start = Path(os.path.realpath(document))
    display = {start: Path(document).name}
    todo = [start]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        if len(seen) > MAX_DOCUMENTS:
            raise ReferenceRefused(
                display.get(path, path.name), "", str(path), "is one document too many to check"
            )
        name = display.get(path, path.name)
        doc = _load(path)
        for field, ref, follow in _references(doc, name):
            scheme, target = _target(ref, path.parent)
            if scheme == "fragment":
                continue
            if target is None:
                if field.endswith("$schemas") or "$schemas[" in field:
                    if scheme in ("http", "https"):
                        continue
                raise ReferenceRefused(
                    name,
                    field,
                    ref,
                    f"is a {scheme}: URL; only files in your workspace can be used",
                )
            if not _inside(target, roots):
                raise ReferenceRefused(
                    name,
                    field,
                    ref,
                    "is outside your workspace, your mounted volumes and the pipeline catalogue",
                )
            if follow and target.is_file() and target not in seen:
                display.setdefault(target, ref)
                todo.append(target)


def _references(doc: Any, name: str) -> list[tuple[str, str, bool]]:
    """``(field, reference, follow)`` for each reference in ``doc``; ``follow``: the target is
    itself a document whose references count."""
    found: list[tuple[str, str, bool]] = []
    stack: list[tuple[Any, str, int]] = [(doc, "", 0)]
    while stack:
        node, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ReferenceRefused(name, where, "", f"nests deeper than {MAX_DEPTH} levels")
        if isinstance(node, list):
            stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            here = f"{where}.{key}" if where else str(key)
            if key in DIRECTIVES and isinstance(value, str):
                found.append((here, value, key != "$include"))
            elif key == "run" and isinstance(value, str):
                found.append((here, value, True))
            elif key == "$schemas":
                for i, item in enumerate(value if isinstance(value, list) else [value]):
                    if isinstance(item, str):
                        found.append((f"{here}[{i}]", item, False))
            elif (
                key in ("location", "path")
                and isinstance(value, str)
                and node.get("class") in ("File", "Directory")
            ):
                found.append((here, value, False))
            else:
                stack.append((value, here, depth + 1))
    return found
