"""A run's provenance as a Workflow Run RO-Crate that names its inputs instead of copying them.

cwltool's ``--provenance`` copies every input and output file into its BagIt bag: a run with one
1 GiB archive input made a 1.1 GiB run folder and took 5.4 s against plain cwltool's 2.1 s. The
platform's promise is that archive data is read in place, so the executor no longer asks cwltool
for provenance; it writes ``ro-crate-metadata.json`` into the run folder when the run ends, from
what it already knows: the pipeline, the job, the volumes attached when the run was asked for,
and cwltool's output object.

Inputs are File entities by reference: an absolute ``file:`` URI, the volume they lie on (id,
title, version) and their path relative to it, size, modification time, and a SHA-1 only when
the file is small enough to hash cheaply (``checksum_limit``). Outputs are the files cwltool
left in the run's output folder, with the size and SHA-1 cwltool computed anyway. The crate's
root is the run folder; the download zips the metadata and the parts that lie in it.

The builders here are pure (plain values in, JSON out) except :func:`describe_path`, which
stats (and maybe hashes) one file, and :func:`write_crate`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse

METADATA_FILE = "ro-crate-metadata.json"
#: Where the pipeline's CWL documents are copied to (they are small, and they may change later).
WORKFLOW_DIR = "workflow"
#: Inputs up to this size get a SHA-1 by default: hashing 16 MiB costs about 30 ms here, while
#: hashing a 1 GiB archive file would double a short run's time.
DEFAULT_CHECKSUM_LIMIT = 16 * 1024 * 1024

CONTEXT: list[Any] = [
    "https://w3id.org/ro/crate/1.1/context",
    {
        # Terms schema.org lacks; a URN keeps them unambiguous without claiming a web address.
        "sha1": "urn:datalabs:terms:sha1",
        "volumePath": "urn:datalabs:terms:volumePath",
    },
]
PROFILES = {
    "https://w3id.org/ro/wfrun/process/0.5": "Process Run Crate",
    "https://w3id.org/ro/wfrun/workflow/0.5": "Workflow Run Crate",
    "https://w3id.org/workflowhub/workflow-ro-crate/1.0": "Workflow RO-Crate",
}
_RUN_REF = re.compile(r"""run:\s*["']?([^\s"'#{}]+\.cwl)""")


@dataclass(frozen=True)
class VolumeRef:
    """An archive volume attached to the session when the run was asked for."""

    id: str
    path: str
    title: str = ""
    version: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "path": self.path, "title": self.title, "version": self.version}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VolumeRef:
        version = data.get("version")
        return cls(
            id=str(data["id"]),
            path=str(data["path"]),
            title=str(data.get("title") or ""),
            version=None if version is None else str(version),
        )


@dataclass(frozen=True)
class FileFacts:
    """What the crate says about one file or folder outside the crate."""

    path: str
    is_dir: bool
    size: int | None
    mtime: float | None
    sha1: str | None = None


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def _sha1(path: str) -> str:
    # SHA-1 because CWL and cwltool checksum files with it (not for security).
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def describe_path(path: str, checksum_limit: int) -> FileFacts:
    """Stat ``path`` (never copy it); hash it only if it is a file of at most
    ``checksum_limit`` bytes (a negative limit hashes every file)."""
    try:
        st = os.stat(path)
    except OSError:
        return FileFacts(path=path, is_dir=False, size=None, mtime=None)
    is_dir = os.path.isdir(path)
    sha1 = None
    if not is_dir and (checksum_limit < 0 or st.st_size <= checksum_limit):
        try:
            sha1 = _sha1(path)
        except OSError:
            sha1 = None
    return FileFacts(
        path=path,
        is_dir=is_dir,
        size=None if is_dir else st.st_size,
        mtime=st.st_mtime,
        sha1=sha1,
    )


def _local(value: dict[str, Any], base: str) -> str | None:
    """The absolute local path of a CWL File or Directory in a job, if it has one."""
    raw = value.get("path")
    if not isinstance(raw, str):
        location = value.get("location")
        if not isinstance(location, str):
            return None
        if "://" in location or location.startswith("file:"):
            url = urlparse(location)
            if url.scheme != "file":
                return None
            raw = unquote(url.path)
        else:
            raw = location
    return os.path.normpath(os.path.join(base, os.path.expanduser(raw)))


def job_paths(job: Any, base: str) -> Iterator[tuple[str, str]]:
    """Every (input name, absolute path) of a File or Directory in ``job`` (secondary files and
    listings included); relative paths are taken from ``base``."""
    if not isinstance(job, dict):
        return
    for name, value in job.items():
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, list):
                stack.extend(reversed(item))
            elif isinstance(item, dict):
                if item.get("class") in ("File", "Directory"):
                    path = _local(item, base)
                    if path is not None:
                        yield str(name), path
                    for key in ("secondaryFiles", "listing"):
                        if isinstance(item.get(key), list):
                            stack.extend(reversed(item[key]))
                else:
                    stack.extend(item.values())


def volume_of(path: str, volumes: Sequence[VolumeRef]) -> tuple[VolumeRef, str] | None:
    """The volume ``path`` lies on and the path relative to it (symlinks resolved)."""
    real = os.path.realpath(path)
    for volume in volumes:
        root = os.path.realpath(volume.path)
        if real == root or real.startswith(root.rstrip("/") + "/"):
            return volume, os.path.relpath(real, root)
    return None


def output_files(outputs: Any) -> Iterator[dict[str, Any]]:
    """Every File and Directory object in cwltool's output object (secondary files included)."""
    stack = [outputs]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            if item.get("class") in ("File", "Directory"):
                yield item
                for key in ("secondaryFiles",):
                    if isinstance(item.get(key), list):
                        stack.extend(reversed(item[key]))
            else:
                stack.extend(item.values())


def _file_id(path: str, root: str) -> str:
    """A crate-relative id for a path inside the crate, else an absolute ``file:`` URI."""
    if path == root or path.startswith(root.rstrip("/") + "/"):
        rel = os.path.relpath(path, root)
        return quote(rel) + ("/" if os.path.isdir(path) else "")
    return "file://" + quote(path)


def _param_type(value: Any) -> str:
    if isinstance(value, dict) and value.get("class") in ("File", "Directory"):
        return value["class"]
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Float"
    if isinstance(value, str):
        return "Text"
    return "Collection" if isinstance(value, list) else "StructuredValue"


def _property_value(pid: str, name: str, value: Any, parameter: dict[str, Any]) -> dict[str, Any]:
    """A non-file input or output value as a PropertyValue of its formal parameter."""
    return {
        "@id": pid,
        "@type": "PropertyValue",
        "name": name,
        "value": value if isinstance(value, str | int | float | bool) else json.dumps(value),
        "exampleOfWork": parameter,
    }


def build_crate(
    *,
    run_id: str,
    pipeline: str,
    workflow_file: str | None,
    job: dict[str, Any],
    inputs: Sequence[tuple[str, FileFacts]],
    volumes: Sequence[VolumeRef],
    outputs: dict[str, Any] | None,
    root: str,
    state: str,
    started: float | None,
    finished: float | None,
    extra_parts: Sequence[str] = (),
) -> dict[str, Any]:
    """The ``ro-crate-metadata.json`` of a run (a pure function of its arguments).

    ``workflow_file`` is the crate-relative path of the copied main CWL document; ``inputs``
    the described input files; ``root`` the run folder (the crate's root); ``extra_parts``
    more crate-relative files to list (the run's log).
    """
    graph: list[dict[str, Any]] = []
    by_id: dict[str, dict[str, Any]] = {}

    def add(entity: dict[str, Any]) -> dict[str, Any]:
        if entity["@id"] not in by_id:
            by_id[entity["@id"]] = entity
            graph.append(entity)
        return by_id[entity["@id"]]

    root_entity = add(
        {
            "@id": "./",
            "@type": "Dataset",
            "name": f"Run {run_id} of {pipeline}",
            "description": (
                "Provenance of a Datalabs pipeline run. Input files are named by reference "
                "(volume, path, size, modification time), never copied."
            ),
            "datePublished": _iso(finished or started) or _iso(0),
            "license": {"@id": "https://spdx.org/licenses/CC-BY-4.0"},
            "conformsTo": [{"@id": p} for p in PROFILES],
            "hasPart": [],
        }
    )
    add(
        {
            "@id": METADATA_FILE,
            "@type": "CreativeWork",
            "about": {"@id": "./"},
            "conformsTo": [
                {"@id": "https://w3id.org/ro/crate/1.1"},
                {"@id": "https://w3id.org/workflowhub/workflow-ro-crate/1.0"},
            ],
        }
    )
    for profile, name in PROFILES.items():
        add({"@id": profile, "@type": "CreativeWork", "name": name, "version": profile[-3:]})
    add(
        {
            "@id": "https://spdx.org/licenses/CC-BY-4.0",
            "@type": "CreativeWork",
            "name": "Creative Commons Attribution 4.0",
        }
    )
    parts: list[dict[str, str]] = root_entity["hasPart"]

    input_params: list[dict[str, str]] = []
    output_params: list[dict[str, str]] = []
    objects: list[dict[str, str]] = []
    results: list[dict[str, str]] = []

    def param(kind: str, name: str, value: Any) -> dict[str, str]:
        pid = f"#{kind}-{quote(name)}"
        add(
            {
                "@id": pid,
                "@type": "FormalParameter",
                "name": name,
                "additionalType": _param_type(value),
                "conformsTo": {
                    "@id": "https://bioschemas.org/profiles/FormalParameter/1.0-RELEASE"
                },
            }
        )
        ref = {"@id": pid}
        (input_params if kind == "input" else output_params).append(ref)
        return ref

    facts_by_path = {facts.path: facts for _name, facts in inputs}
    names_by_path: dict[str, list[str]] = {}
    for name, facts in inputs:
        names_by_path.setdefault(facts.path, []).append(name)

    for name, value in job.items():
        if str(name).startswith(("cwl:", "http://", "https://")):
            continue
        ref = param("input", str(name), value)
        if not (isinstance(value, dict) and value.get("class") in ("File", "Directory")):
            pv = add(_property_value(f"#pv-{quote(str(name))}", str(name), value, ref))
            objects.append({"@id": pv["@id"]})

    for path, facts in facts_by_path.items():
        fid = "file://" + quote(path) + ("/" if facts.is_dir else "")
        entity: dict[str, Any] = {
            "@id": fid,
            "@type": "Dataset" if facts.is_dir else "File",
            "name": os.path.basename(path),
            "exampleOfWork": [{"@id": f"#input-{quote(n)}"} for n in names_by_path[path]],
        }
        if facts.size is not None:
            entity["contentSize"] = str(facts.size)
        if facts.mtime is not None:
            entity["dateModified"] = _iso(facts.mtime)
        if facts.sha1:
            entity["sha1"] = facts.sha1
        found = volume_of(path, volumes)
        if found is not None:
            volume, rel = found
            vid = f"#volume-{quote(volume.id)}"
            volume_entity: dict[str, Any] = {
                "@id": vid,
                "@type": "Collection",
                "identifier": volume.id,
                "name": volume.title or volume.id,
                "description": "An archive volume, read in place (mounted read-only).",
            }
            if volume.version:
                volume_entity["version"] = volume.version
            add(volume_entity)
            entity["isPartOf"] = {"@id": vid}
            entity["volumePath"] = rel
            entity["name"] = f"{volume.id}:{rel}"
        add(entity)
        objects.append({"@id": fid})
        # RO-Crate 1.1 links every data entity, web-based (by reference) ones too, to the root.
        parts.append({"@id": fid})

    for name, value in (outputs or {}).items():
        ref = param("output", str(name), value)
        for item in output_files(value):
            out_path = _local(item, root)
            if out_path is None:
                continue
            oid = _file_id(out_path, root)
            entity = {
                "@id": oid,
                "@type": "Dataset" if item.get("class") == "Directory" else "File",
                "name": item.get("basename") or os.path.basename(out_path),
                "exampleOfWork": ref,
            }
            if isinstance(item.get("size"), int):
                entity["contentSize"] = str(item["size"])
            checksum = item.get("checksum")
            if isinstance(checksum, str) and checksum.startswith("sha1$"):
                entity["sha1"] = checksum[5:]
            add(entity)
            results.append({"@id": oid})
            if {"@id": oid} not in parts:
                parts.append({"@id": oid})
        if not list(output_files(value)):
            pv = add(_property_value(f"#pv-output-{quote(str(name))}", str(name), value, ref))
            results.append({"@id": pv["@id"]})

    add(
        {
            "@id": "#cwl",
            "@type": "ComputerLanguage",
            "name": "Common Workflow Language",
            "alternateName": "CWL",
            "identifier": {"@id": "https://w3id.org/cwl/v1.2/"},
            "url": {"@id": "https://www.commonwl.org/"},
        }
    )
    if workflow_file is not None:
        add(
            {
                "@id": workflow_file,
                "@type": ["File", "SoftwareSourceCode", "ComputationalWorkflow"],
                "name": pipeline,
                "programmingLanguage": {"@id": "#cwl"},
                "input": input_params,
                "output": output_params,
            }
        )
        root_entity["mainEntity"] = {"@id": workflow_file}
        parts.insert(0, {"@id": workflow_file})
    for extra in extra_parts:
        add({"@id": extra, "@type": "File", "name": os.path.basename(extra)})
        parts.append({"@id": extra})

    action: dict[str, Any] = {
        "@id": f"#run-{run_id}",
        "@type": "CreateAction",
        "name": f"Run {run_id} of {pipeline}",
        "object": objects,
        "result": results,
        "actionStatus": {
            "@id": "http://schema.org/CompletedActionStatus"
            if state == "success"
            else "http://schema.org/FailedActionStatus"
        },
    }
    if workflow_file is not None:
        action["instrument"] = {"@id": workflow_file}
    if started is not None:
        action["startTime"] = _iso(started)
    if finished is not None:
        action["endTime"] = _iso(finished)
    add(action)
    root_entity["mentions"] = [{"@id": action["@id"]}]
    return {"@context": CONTEXT, "@graph": graph}


def copy_workflow(pipeline_path: str, dest: Path) -> str | None:
    """Copy the pipeline's CWL document, and the ``run:`` files it names below its folder, to
    ``dest``; returns the main document's path relative to ``dest.parent``."""
    main = Path(pipeline_path.partition("#")[0])
    if not main.is_file():
        return None
    base = main.parent
    pending: list[Path] = [main]
    seen: set[Path] = set()
    while pending and len(seen) < 200:
        path = pending.pop()
        real = path.resolve()
        if real in seen or not path.is_file():
            continue
        seen.add(real)
        try:
            rel = path.resolve().relative_to(base.resolve())
        except ValueError:
            continue  # a tool outside the pipeline's folder: the PROV of cwltool names it too
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        try:
            text = path.read_text(encoding="utf-8", errors="replace")[:2_000_000]
        except OSError:
            continue
        pending += [path.parent / ref for ref in _RUN_REF.findall(text)]
    return f"{dest.name}/{quote(main.name)}"


def write_crate(rundir: Path, crate: dict[str, Any]) -> Path:
    """Write ``crate`` as the run folder's ``ro-crate-metadata.json`` (atomically)."""
    target = rundir / METADATA_FILE
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(crate, indent=2), encoding="utf-8")
    os.replace(tmp, target)
    return target


def crate_parts(rundir: Path) -> list[Path]:
    """The files of a run's crate that lie in the run folder (metadata first), for the zip."""
    try:
        crate = json.loads((rundir / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    root = rundir.resolve()
    found = [root / METADATA_FILE]
    ids = [e.get("@id") for e in crate.get("@graph", []) if isinstance(e, dict)]
    for eid in ids:
        if (
            not isinstance(eid, str)
            or "://" in eid
            or eid.startswith("#")
            or eid in ("./", METADATA_FILE)
        ):
            continue
        path = (rundir / unquote(eid)).resolve()
        if not path.is_relative_to(root):
            continue
        if path.is_dir():
            found += [
                p
                for p in sorted(path.rglob("*"))
                if p.is_file() and not p.is_symlink() and p.resolve().is_relative_to(root)
            ]
        elif path.is_file() and not (rundir / unquote(eid)).is_symlink():
            found.append(path)
    unique: list[Path] = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique
