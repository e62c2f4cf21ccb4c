"""CWL v1.2 conformance, ``required`` tests: ``datalabs-cwl-runner``, our drop-in cwl-runner,
must pass as many as plain cwltool on the same machine in the same test, twice: once with an
empty store, once more with the per-user step cache the first pass filled (cwltool's cache
replays some jobs differently, so a warm cache must not change any result).

The tests are read from ``<repo>/../shared/cwl-v1.2`` (copied unchanged from the CWL project,
with their licence), never copied into this repository.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO.parent / "shared" / "cwl-v1.2"
BIN = Path(sys.executable).parent
SUMMARY = re.compile(r"(\d+) tests passed(?:, (\d+) failures?)?(?:, (\d+) unsupported features?)?")


def _cwltest(tool: str, tool_args: list[str], env: dict[str, str]) -> tuple[int, int, int, str]:
    done = subprocess.run(
        [
            str(BIN / "cwltest"),
            "--test",
            "conformance_tests.yaml",
            "--tool",
            tool,
            "--tags",
            "required",
            "-j",
            "2",
            "--",
            *tool_args,
        ],
        cwd=SUITE,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    output = done.stdout + done.stderr
    lines = [line for line in output.splitlines() if line.strip()]
    match = SUMMARY.search(lines[-1]) if lines else None
    assert match, f"no cwltest summary in its output:\n{output[-3000:]}"
    passed, failed, unsupported = (int(g or 0) for g in match.groups())
    return passed, failed, unsupported, output


def _failures(output: str) -> list[str]:
    """The ``Test N failed: <command>`` lines of a cwltest run."""
    return [line.strip() for line in output.splitlines() if re.match(r"\s*Test \d+ failed", line)]


@pytest.mark.slow
def test_required_conformance_matches_plain_cwltool(tmp_path):
    assert (SUITE / "conformance_tests.yaml").exists(), f"conformance tests missing: {SUITE}"
    env = dict(os.environ, DATALABS_PIPELINES_HOME=str(tmp_path / "store"))

    baseline = _cwltest(str(BIN / "cwltool"), ["--no-container"], env)
    # As cwl-runner is called: no subcommand, no extra arguments.
    cold = _cwltest(str(BIN / "datalabs-cwl-runner"), [], env)
    warm = _cwltest(str(BIN / "datalabs-cwl-runner"), [], env)

    print(f"plain cwltool: {baseline[:3]}; datalabs-cwl-runner: {cold[:3]}, warm cache {warm[:3]}")
    artifacts = REPO / "tests" / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "conformance-cwltool.txt").write_text(baseline[3])
    (artifacts / "conformance-datalabs.txt").write_text(cold[3])
    (artifacts / "conformance-datalabs-warm.txt").write_text(warm[3])
    for name, ours in (("datalabs-cwl-runner", cold), ("datalabs-cwl-runner, warm cache", warm)):
        assert ours[0] == baseline[0], (
            f"plain cwltool failed: {_failures(baseline[3])}\n"
            f"{name} failed: {_failures(ours[3])}\n"
            "full outputs in tests/artifacts/conformance-*.txt"
        )
    assert cold[0] >= 80
