"""Speed of the Pipeline Editor's model, against cwltool's own validation of the same files.

1. Load and lay out a generated 200-step workflow (``load_graph`` + ``layout``; median of a
   few repetitions).
2. Round trip per workflow over the CWL v1.2 conformance set (``../shared/cwl-v1.2``): load,
   lay out and write back (``to_cwl``), our code only; median and total.
3. The ratio of our load time (``load_graph``, which also reads every tool file a step runs) to
   ``cwltool --validate`` on the same files, in-process (``cwltool.main.main(["--validate",
   path])``, after one warm-up call so its schema loading is not counted against it: a
   subprocess per file would add ~1 s of interpreter start to every file and flatter us).
   Files: the 200-step workflow and every conformance workflow cwltool validates. Target <= 1:
   opening a workflow in the editor should not take longer than the check the save runs.

Prints figures, and last ``editor_roundtrip: ratio=<our load time / cwltool validate time>
target=1``. With ``BENCH_SMOKE=1``: a 10-step workflow, one repetition and the first 5
conformance workflows (it starts and reaches its figure; the figure means nothing).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ruamel.yaml import YAML

from datalabs_pipelines import graph as G

REPO = Path(__file__).resolve().parents[1]
CONFORMANCE = REPO.parent / "shared" / "cwl-v1.2" / "tests"
SMOKE = os.environ.get("BENCH_SMOKE") == "1"
REPS = 1 if SMOKE else int(os.environ.get("BENCH_REPS", "5"))
STEPS = 10 if SMOKE else 200

TOOL = """cwlVersion: v1.2
class: CommandLineTool
baseCommand: cat
inputs:
  table: {type: File, inputBinding: {position: 1}}
  extra: {type: "File[]?", inputBinding: {position: 2}}
  rows: {type: int?, inputBinding: {prefix: -n}}
outputs:
  table: {type: stdout}
"""


def write_workflow(folder: Path) -> Path:
    """A 200-step workflow: a chain, every tenth step also merging two earlier results."""
    (folder / "step.cwl").write_text(TOOL)
    lines = [
        "cwlVersion: v1.2",
        "class: Workflow",
        "requirements: {MultipleInputFeatureRequirement: {}}",
        "inputs:",
        "  table: File",
        "  rows: int",
        "outputs:",
        "  table:",
        "    type: File",
        f"    outputSource: s{STEPS}/table",
        "steps:",
    ]
    for i in range(1, STEPS + 1):
        source = "table" if i == 1 else f"s{i - 1}/table"
        lines += [f"  s{i}:", "    run: step.cwl", "    in:", f"      table: {source}"]
        if i % 10 == 0 and i > 2:
            lines += [
                "      extra:",
                f"        source: [s{i - 2}/table, s{i // 2}/table]",
                "        linkMerge: merge_flattened",
            ]
        lines += ["      rows: rows", "    out: [table]"]
    workflow = folder / "wf200.cwl"
    workflow.write_text("\n".join(lines) + "\n")
    return workflow


def is_workflow(path: Path) -> bool:
    try:
        doc = YAML(typ="safe", pure=False).load(path.read_text())
    except Exception:  # noqa: BLE001 - not YAML: not a workflow
        return False
    if not isinstance(doc, dict):
        return False
    entries = doc.get("$graph")
    if isinstance(entries, list):
        return any(
            isinstance(e, dict)
            and str(e.get("id", "")).lstrip("#") == "main"
            and e.get("class") == "Workflow"
            for e in entries
        )
    return doc.get("class") == "Workflow"


def cwltool_validate(path: Path) -> tuple[bool, float]:
    from cwltool.main import main

    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    code = main(["--validate", str(path)], stdout=out, stderr=err)
    return code == 0, time.perf_counter() - start


def our_load(path: Path) -> float:
    start = time.perf_counter()
    G.load_graph(path)
    return time.perf_counter() - start


def main() -> int:
    if not CONFORMANCE.is_dir():
        raise SystemExit(f"the CWL conformance tests are missing: {CONFORMANCE}")
    if SMOKE:
        print("smoke run (BENCH_SMOKE=1): tiny sizes, the figures are not measurements")
    work = Path(tempfile.mkdtemp(prefix="datalabs-bench-editor-"))
    try:
        big = write_workflow(work)
        times = []
        for _ in range(REPS + 1):
            start = time.perf_counter()
            graph = G.layout(G.load_graph(big))
            times.append(time.perf_counter() - start)
        steps = sum(1 for n in graph.nodes if n.kind == G.STEP)
        print(
            f"{steps}-step workflow: load + layout median {statistics.median(times[1:]) * 1000:.1f}"
            f" ms ({len(graph.edges)} edges); write back {timed_write(graph) * 1000:.1f} ms"
        )

        files = sorted(p for p in CONFORMANCE.rglob("*.cwl") if is_workflow(p))
        if SMOKE:
            files = files[:5]
        cwltool_validate(big)  # warm-up: cwltool loads its schemas once per process
        logging.getLogger("cwltool").setLevel(logging.ERROR)
        valid, ours, theirs, round_trips = [], 0.0, 0.0, []
        for path in [big, *files]:
            ok, took = cwltool_validate(path)
            if not ok:
                continue
            valid.append(path)
            theirs += took
            ours += our_load(path)
        for path in valid[1:]:
            start = time.perf_counter()
            G.to_cwl(G.layout(G.load_graph(path)))
            round_trips.append(time.perf_counter() - start)
        print(
            f"conformance round trip (load + layout + to_cwl), {len(round_trips)} workflows:"
            f" median {statistics.median(round_trips) * 1000:.1f} ms,"
            f" max {max(round_trips) * 1000:.1f} ms, total {sum(round_trips):.2f} s"
        )
        print(
            f"load over {len(valid)} files: ours {ours:.2f} s,"
            f" cwltool --validate (in-process, warm) {theirs:.2f} s"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"editor_roundtrip: ratio={ours / theirs:.3f} target=1")
    return 0


def timed_write(graph: G.Graph) -> float:
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        G.to_cwl(graph)
    return time.perf_counter() - start


if __name__ == "__main__":
    sys.exit(main())
