"""CWL v1.2 conformance tests run as cluster runs: each test a Calrissian Job of the run broker.

The path is the one a user's pipeline takes (tests/k8s/kubelet_runs.py): the test's tool is
loaded as a catalogue pipeline (:func:`load_pipeline`), its job's files are given as paths of
an archive volume (``cwl-v1.2``: the suite's folder, ``<repo>/../shared/cwl-v1.2``, mounted
read-only at ``/data/cwl-v1.2``), :meth:`RunBroker.submit` checks the job and creates the Job,
Calrissian runs each step as a pod in the default container (the planetary-lab image), and the
output object the Job leaves in the user's output folder is compared with the test's expected
output by cwltest's own comparison. A test whose tool names an image with ``DockerRequirement``
is counted apart: there is no registry here, so its step pod could never start.

Used by tests/k8s/test_conformance_on_kubelet.py (a fixed subset, in ``make test``) and by
``make conformance-cluster`` (``python -m tests.k8s.conformance_runs``: every ``required``
test, "N of M required tests pass" and each failure with its reason).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import re
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import yaml

from datalabs_pipelines.catalogue import load_pipeline
from datalabs_spawner.run_broker import RunRefused
from datalabs_volumes.access import Who, readable
from datalabs_volumes.models import Volume, VolumeSource

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO.parent / "shared" / "cwl-v1.2"
VOLUME = "cwl-v1.2"
MOUNT = f"/data/{VOLUME}"
USER = "alice"
#: A file name of a CWL document a tool refers to (``run:``, ``$import``, ``$include``).
_CWL_NAME = re.compile(r"[\w./-]+\.(?:cwl|yml|yaml)\b")
_IMAGE = re.compile(r"\b(dockerPull|dockerImageId|dockerLoad|dockerFile)[\"']?\s*:\s*(.+)")


@dataclass(frozen=True)
class ConformanceTest:
    """One entry of ``conformance_tests.yaml``."""

    id: str
    tool: Path
    fragment: str | None
    job: Path | None
    output: Any
    should_fail: bool
    tags: tuple[str, ...]

    @property
    def images(self) -> tuple[str, ...]:
        """The images the tool (or a document it refers to) names in a DockerRequirement."""
        return tuple(sorted(_images(self.tool)))


@dataclass
class Result:
    test: str
    outcome: str  # passed | failed | refused | timeout | error | needs-image
    reason: str = ""
    seconds: float = 0.0


def _images(path: Path, seen: set[Path] | None = None) -> set[str]:
    seen = set() if seen is None else seen
    if path in seen or not path.is_file():
        return set()
    seen.add(path)
    text = path.read_text(errors="replace")
    found = {m.group(2).strip().rstrip(",").strip("'\"") for m in _IMAGE.finditer(text)}
    for name in _CWL_NAME.findall(text):
        found |= _images((path.parent / name).resolve(), seen)
    return found


def load_tests(tags: Iterable[str] = ("required",)) -> list[ConformanceTest]:
    """The suite's tests carrying any of ``tags``, in the suite's order."""
    index = SUITE / "conformance_tests.yaml"
    if not index.exists():
        raise FileNotFoundError(f"CWL v1.2 conformance tests missing: {index}")
    wanted = set(tags)
    out = []
    for entry in yaml.safe_load(index.read_text()):
        if "$import" in entry:
            continue
        if wanted and not wanted & set(entry.get("tags") or ()):
            continue
        tool, _, fragment = entry["tool"].partition("#")
        out.append(
            ConformanceTest(
                id=entry["id"],
                tool=SUITE / tool,
                fragment=fragment or None,
                job=SUITE / entry["job"] if entry.get("job") else None,
                output=entry.get("output"),
                should_fail=bool(entry.get("should_fail")),
                tags=tuple(entry.get("tags") or ()),
            )
        )
    return out


def suite_volume() -> Volume:
    """The suite's folder as an archive volume (a folder of the archive claim)."""
    return Volume(VOLUME, "CWL v1.2 conformance", "CWL", VolumeSource("local", path=VOLUME))


def _job_paths(value: Any, base: Path) -> Any:
    """The test's job with each relative file ``location``/``path`` as the Job sees it."""
    if isinstance(value, list):
        return [_job_paths(v, base) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _job_paths(v, base) for k, v in value.items()}
    if value.get("class") in ("File", "Directory"):
        for key in ("location", "path"):
            raw = value.get(key)
            if not isinstance(raw, str) or re.match(r"^[a-z][a-z0-9+.-]*:", raw):
                continue
            # a location is a URI reference (``item %231.txt`` names ``item #1.txt``)
            here = (base / (unquote(raw) if key == "location" else raw)).resolve()
            if here == SUITE or SUITE in here.parents:
                out[key] = f"{MOUNT}/{here.relative_to(SUITE)}"
    return out


def _host_locations(value: Any, job_root: str, host_root: Path) -> Any:
    """The Job's output object with its locations where the host sees them."""
    if isinstance(value, list):
        return [_host_locations(v, job_root, host_root) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _host_locations(v, job_root, host_root) for k, v in value.items()}
    for key in ("location", "path"):
        raw = value.get(key)
        if isinstance(raw, str) and value.get("class") in ("File", "Directory"):
            path = unquote(urlparse(raw).path) if raw.startswith("file:") else raw
            if path.startswith(job_root):
                host = host_root / path[len(job_root) :].lstrip("/")
                out[key] = host.as_uri() if key == "location" else str(host)
    return out


def _reason(outputs: Path, fallback: str) -> str:
    """cwltool's own words for the failure: its log from the first telling error on (the
    lines about cancelled futures and ``--debug`` say nothing), else ``fallback``."""
    log = outputs / "cwltool.log"
    if not log.exists():
        return fallback[-600:]
    lines = log.read_text(errors="replace").splitlines()
    noise = re.compile(r"queued exception|canceled futures|try again with --debug|^\s*$")
    first = [
        k
        for k, line in enumerate(lines)
        if re.search(r"ERROR|Exception|Traceback", line) and not noise.search(line)
    ]
    errors = [k for k, line in enumerate(lines) if "ERROR" in line]
    i = (first or errors or [len(lines)])[0]
    telling = [line.strip() for line in lines[i : i + 12] if not noise.search(line)]
    return (" | ".join(telling) or fallback)[:700]


async def run_test(
    runs: Any,
    test: ConformanceTest,
    run_id: str,
    default_container: str,
    timeout: float = 300,
) -> Result:
    """Run ``test`` as one cluster run through ``runs.broker``; its result."""
    from cwltest.compare import CompareFail, compare

    started = time.monotonic()

    def result(outcome: str, reason: str = "") -> Result:
        return Result(test.id, outcome, reason, time.monotonic() - started)

    try:
        pipeline = load_pipeline(test.tool, "conformance")
    except Exception as exc:  # noqa: BLE001 - any loading error is the test's outcome
        return result("refused", f"not loadable as a pipeline: {exc}"[:600])
    if test.fragment:
        pipeline = dataclasses.replace(pipeline, process=test.fragment)
    job: Any = {}
    if test.job is not None:
        job = yaml.safe_load(test.job.read_text()) or {}
        job = _job_paths(job, test.job.parent)
    try:
        await runs.broker.submit(
            USER,
            run_id,
            pipeline,
            job,
            readable({VOLUME: suite_volume()}, Who(USER)),
            default_container,
            int(timeout),
        )
    except RunRefused as exc:
        if test.should_fail:
            return result("passed", f"refused as expected: {exc.message}")
        return result("refused", exc.message[:600])
    deadline = time.monotonic() + timeout + 60
    end = None
    while end is None and time.monotonic() < deadline:
        end = await asyncio.to_thread(runs.job_end, run_id)
        if end is None:
            await asyncio.sleep(2)
    outputs = runs.outputs(USER, run_id)
    if end is None:
        return result("timeout", f"the Job did not end in {timeout + 60:.0f} s")
    if end == "Failed":
        if test.should_fail:
            return result("passed")
        return result("failed", _reason(outputs, "the Job failed"))
    if test.should_fail:
        return result("failed", "ran to success where the test expects a failure")
    answer = outputs / "output.json"
    if not answer.exists():
        return result("failed", _reason(outputs, "no output.json in the run's folder"))
    try:
        actual = json.loads(answer.read_text() or "{}")
    except json.JSONDecodeError as exc:
        return result("failed", f"output.json is not JSON: {exc}")
    actual = _host_locations(actual, f"/calrissian/output-data/{run_id}", outputs)
    try:
        compare(test.output, actual)
    except CompareFail as exc:
        return result("failed", f"output differs: {exc}"[:600])
    return result("passed")


async def run_tests(
    runs: Any,
    tests: Sequence[ConformanceTest],
    default_container: str,
    parallel: int = 2,
    timeout: float = 300,
    progress: Any = None,
) -> list[Result]:
    """Every test of ``tests`` (``parallel`` Jobs at a time); those naming an image are
    reported as ``needs-image`` without a run."""
    runs.user_folders(USER)
    gate = asyncio.Semaphore(parallel)

    async def one(i: int, test: ConformanceTest) -> Result:
        if test.images:
            return Result(test.id, "needs-image", ", ".join(test.images))
        async with gate:
            run_id = f"c0f0{i:04x}{int(time.time()):08x}"
            started = time.monotonic()
            try:
                got = await run_test(runs, test, run_id, default_container, timeout)
            except Exception as exc:  # noqa: BLE001 - one broken run must not end the others
                got = Result(test.id, "error", repr(exc)[:600], time.monotonic() - started)
        if progress is not None:
            progress(got)
        return got

    return list(await asyncio.gather(*(one(i, t) for i, t in enumerate(tests))))


def summary(results: Sequence[Result], what: str = "required tests") -> str:
    """ "N of M required tests pass", then the tests apart and each failure with its reason."""
    passed = [r for r in results if r.outcome == "passed"]
    images = [r for r in results if r.outcome == "needs-image"]
    bad = [r for r in results if r.outcome not in ("passed", "needs-image")]
    lines = [
        f"{len(passed)} of {len(results)} {what} pass "
        f"({len(images)} name an image in a DockerRequirement and were not run: no registry "
        f"here; {len(passed)} of {len(results) - len(images)} of those run)"
    ]
    for r in images:
        lines.append(f"  needs-image {r.test}: {r.reason}")
    for r in bad:
        lines.append(f"  {r.outcome} {r.test} ({r.seconds:.0f} s): {r.reason}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``make conformance-cluster``: the required tests on a cluster of their own."""
    from datalabs_pipelines.executors.kubernetes import CALRISSIAN_IMAGE
    from tests.cluster import running_cluster
    from tests.k8s.conftest import LAB_IMAGE
    from tests.k8s.kubelet_runs import KubeletRuns
    from tests.kubelet_node import running_kubelet_node

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--tags", default="required", help="comma-separated conformance tags")
    parser.add_argument("-k", dest="only", default="", help="only tests whose id contains this")
    parser.add_argument("-j", dest="parallel", type=int, default=3, help="Jobs at a time")
    parser.add_argument("--limit", type=int, default=0, help="at most this many tests")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per test")
    parser.add_argument("--json", default="", help="write the results here as JSON")
    args = parser.parse_args(argv)
    tests = [t for t in load_tests(args.tags.split(",")) if args.only in t.id]
    if args.limit:
        tests = tests[: args.limit]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="datalabs-conformance-") as tmp:
        root = Path(tmp)
        with running_cluster(root / "cluster") as cluster:
            with running_kubelet_node(cluster, images=(LAB_IMAGE, CALRISSIAN_IMAGE)):
                runs = KubeletRuns(cluster, SUITE.parent, root / "work")
                try:

                    def progress(r: Result) -> None:
                        print(
                            f"{r.outcome:8} {r.test} ({r.seconds:.0f} s) {r.reason[:200]}",
                            flush=True,
                        )

                    results = asyncio.run(
                        run_tests(runs, tests, LAB_IMAGE, args.parallel, args.timeout, progress)
                    )
                finally:
                    runs.close()
    if args.json:
        Path(args.json).write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=1))
    print(summary(results))
    print(f"in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
