"""Round trip of one CWL workflow through the editor's graph, judged by cwltool.

Shared by ``test_graph.py`` (the conformance suite, in a process pool) and usable by hand:
``python -m tests.pipelines.cwl_roundtrip FILE...``. The meaning of a document is what cwltool's
loader makes of it: the loaded process and, recursively, every process its steps run, as JSON,
with the file's own URI, random blank-node ids and our ``dl:`` fields taken out, and the lists
whose order CWL does not give a meaning to (a workflow's inputs, outputs and steps, a step's
``in`` and ``out``) sorted by id. Tool inputs keep their order.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from datalabs_pipelines import graph as G

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def is_workflow(path: Path) -> bool:
    """A ``class: Workflow`` document, or a packed ``$graph`` whose ``#main`` is one."""
    try:
        doc = YAML(typ="safe", pure=False).load(path.read_text())
    except Exception:  # noqa: BLE001 - files that are not YAML are not workflows
        return False
    if not isinstance(doc, dict):
        return False
    if doc.get("class") == "Workflow":
        return True
    entries = doc.get("$graph")
    return isinstance(entries, list) and any(
        isinstance(e, dict)
        and str(e.get("id", "")).lstrip("#") == "main"
        and e.get("class") == "Workflow"
        for e in entries
    )


def _key(item: Any) -> str:
    return str(item.get("id")) if isinstance(item, dict) else str(item)


def _sorted_workflows(value: Any) -> Any:
    if isinstance(value, dict):
        value = {k: _sorted_workflows(v) for k, v in value.items()}
        if value.get("class") == "Workflow":
            for k in ("inputs", "outputs", "steps"):
                if isinstance(value.get(k), list):
                    value[k] = sorted(value[k], key=_key)
            for step in value.get("steps") or []:
                for k in ("in", "out"):
                    if isinstance(step.get(k), list):
                        step[k] = sorted(step[k], key=_key)
        return value
    if isinstance(value, list):
        return [_sorted_workflows(v) for v in value]
    return value


def _tree(tool: Any) -> dict[str, Any]:
    return {
        "process": _sorted_workflows(json.loads(json.dumps(tool.tool, default=str))),
        "steps": {str(s.id): _tree(s.embedded_tool) for s in getattr(tool, "steps", None) or []},
    }


def _normalised(value: Any, uri: str) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if str(k).startswith(G.DL_NAMESPACE):
                continue
            if k == "$namespaces" and isinstance(v, dict):
                v = {p: iri for p, iri in v.items() if iri != G.DL_NAMESPACE}
                if not v:
                    continue
            out[_normalised(k, uri)] = _normalised(v, uri)
        return out
    if isinstance(value, list):
        return [_normalised(v, uri) for v in value]
    if isinstance(value, str):
        return _UUID.sub("UUID", value.replace(uri, "DOC"))
    return value


def meaning(path: Path) -> Any:
    """What cwltool loads from ``path`` (strict validation on), normalised for comparison."""
    from cwltool.context import LoadingContext
    from cwltool.load_tool import load_tool
    from cwltool.workflow import default_make_tool

    context = LoadingContext(
        {"strict": True, "do_validate": True, "construct_tool_object": default_make_tool}
    )
    return _normalised(_tree(load_tool(str(path), context)), path.resolve().as_uri())


def roundtrip(path: Path) -> dict[str, Any]:
    """Round trip one file both ways (merged into the original text, and from the graph alone
    after JSON); ``{"file", "status", "reason", "seconds"}`` with status ``invalid-original``
    (cwltool refuses the original: not counted), ``equal`` or ``failed``."""
    for name in ("cwltool", "salad"):
        logging.getLogger(name).setLevel(logging.ERROR)
    start = time.perf_counter()
    result: dict[str, Any] = {"file": str(path), "status": "equal", "reason": None}
    try:
        original = meaning(path)
    except Exception:  # noqa: BLE001 - an original cwltool refuses is not part of the count
        result["status"] = "invalid-original"
        result["seconds"] = time.perf_counter() - start
        return result
    for mode in ("merged", "json"):
        out = path.with_name(f".dl-roundtrip-{mode}-{path.name}")
        try:
            graph = G.layout(G.load_graph(path))
            if mode == "json":
                graph = G.Graph.from_json(json.loads(json.dumps(graph.to_json())))
            out.write_text(G.to_cwl(graph))
            try:
                again = meaning(out)
            except Exception as exc:  # noqa: BLE001 - reported as the failure reason
                result.update(status="failed", reason=f"{mode}: re-emitted invalid: {exc}")
                break
            if again != original:
                result.update(status="failed", reason=f"{mode}: meaning differs")
                break
        except Exception as exc:  # noqa: BLE001 - reported as the failure reason
            result.update(status="failed", reason=f"{mode}: {type(exc).__name__}: {exc}")
            break
        finally:
            out.unlink(missing_ok=True)
    result["seconds"] = time.perf_counter() - start
    return result


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(json.dumps(roundtrip(Path(arg))))
