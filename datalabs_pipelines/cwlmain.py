"""cwltool as the local executor runs it: cwltool's own ``main.run``, with archive inputs keyed
for the cache by size and modification time instead of by a SHA-1 of their bytes.

With ``--cachedir`` cwltool reads every input file whole to hash it for the cache key, before
the step starts; a step that reads a 1 GiB archive file then reads it twice, and one that only
names it (or reads a little of it) pays for a full read. Files on archive volumes are attached
read-only and versioned: nobody writes them while a session has them, so cwltool's own fallback
key for a file without a checksum (its size and modification time, which it uses with
``--no-compute-checksum``) names their content well enough. Every other file is hashed as
before. The volume roots come from ``DATALABS_CWL_UNHASHED_ROOTS`` (a JSON list of folders),
which the supervisor sets from the volumes attached to the session when the run was asked for.

Outputs are stored once: the supervisor makes an output in ``--outdir`` one file (a hard link)
with its cache entry (``store_outputs_once``). cwltool copies a cached output onto the file at
its destination in place, so a later run into the same ``--outdir`` failed on a cache hit ("are
the same file") and, with another entry, would have written through the link into the cache.
Here a file cwltool copies onto replaces the one there instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from typing import Any

#: JSON list of folders whose files are keyed by size and mtime, never hashed for the cache.
ENV_UNHASHED_ROOTS = "DATALABS_CWL_UNHASHED_ROOTS"


def roots_from_env(environ: dict[str, str] | os._Environ[str] = os.environ) -> list[str]:
    """The folders named in ``DATALABS_CWL_UNHASHED_ROOTS`` (real paths); [] if unset or bad."""
    try:
        value = json.loads(environ.get(ENV_UNHASHED_ROOTS) or "[]")
    except ValueError:
        return []
    if not isinstance(value, list):
        return []
    return [os.path.realpath(v) for v in value if isinstance(v, str) and v]


def is_under(path: str, roots: Sequence[str]) -> bool:
    """Whether the real path of ``path`` is one of ``roots`` or inside one."""
    real = os.path.realpath(path)
    return any(real == root or real.startswith(root.rstrip("/") + "/") for root in roots)


def skipping_roots(original: Callable[[Any, Any], None], roots: Sequence[str]) -> Callable:
    """``compute_checksums`` that leaves files under ``roots`` without a checksum."""
    from schema_salad.ref_resolver import uri_file_path

    def compute_checksums(fs_access: Any, fileobj: Any) -> None:
        location = fileobj.get("location", "")
        if (
            "checksum" not in fileobj
            and "contents" not in fileobj
            and isinstance(location, str)
            and location.startswith("file:")
            and is_under(uri_file_path(location), roots)
        ):
            return
        original(fs_access, fileobj)

    return compute_checksums


def replacing(copy2: Callable[..., Any]) -> Callable[..., Any]:
    """``shutil.copy2`` that replaces a file (or link) at ``dst`` instead of writing into it, and
    leaves it when it already is ``src`` (a hard link of it)."""

    def copy(src: Any, dst: Any, *, follow_symlinks: bool = True) -> Any:
        if os.path.lexists(dst) and not os.path.isdir(dst):
            with contextlib.suppress(OSError):
                if os.path.samefile(src, dst):
                    return dst
            os.unlink(dst)
        return copy2(src, dst, follow_symlinks=follow_symlinks)

    return copy


def main(argv: list[str] | None = None) -> int:
    """Run cwltool (its own command line) with archive files left unhashed."""
    shutil.copy2 = replacing(shutil.copy2)
    roots = roots_from_env()
    if roots:
        import cwltool.command_line_tool as clt

        clt.compute_checksums = skipping_roots(clt.compute_checksums, roots)  # type: ignore[assignment]
    from cwltool.main import run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
