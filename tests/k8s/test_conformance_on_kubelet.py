"""A fixed handful of CWL v1.2 conformance tests as cluster runs on the real kubelet node.

Each is a Calrissian Job created by the run broker, its steps pods of the planetary-lab image
(tests/k8s/conformance_runs.py), picked to cover what pipelines lean on: File inputs and
stdin/stdout, a Directory output, scatter, a subworkflow, InitialWorkDirRequirement,
EnvVarRequirement, a File literal and a JavaScript expression. All of them must pass.
``make conformance-cluster`` runs every ``required`` test the same way and prints how many pass.
"""

from __future__ import annotations

import pytest

from tests.cluster import Cluster
from tests.k8s.conformance_runs import SUITE, load_tests, run_tests, summary
from tests.k8s.conftest import LAB_IMAGE
from tests.k8s.kubelet_runs import KubeletRuns

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

#: conformance test id -> what it covers
SUBSET = {
    "stdinout_redirect": "a File input, stdin and stdout",
    "outputbinding_glob_directory": "a Directory output",
    "wf_scatter_single_param": "scatter",
    "nested_workflow_noexp": "a subworkflow",
    "initial_workdir_trailingnl": "InitialWorkDirRequirement",
    "envvar_req": "EnvVarRequirement",
    "cat_synthetic_file": "a File literal (contents, no file)",
    "inputBinding_position_expr": "a JavaScript expression",
}


async def test_a_conformance_subset_passes_as_cluster_runs(
    cluster: Cluster, kubelet_node, tmp_path
):
    tests = [t for t in load_tests(()) if t.id in SUBSET]
    assert sorted(t.id for t in tests) == sorted(SUBSET), f"missing from {SUITE}"
    assert not [t.id for t in tests if t.images], "the subset must need no registry"
    runs = KubeletRuns(cluster, SUITE.parent, tmp_path / "work")
    try:
        results = await run_tests(runs, tests, LAB_IMAGE, parallel=3, timeout=240)
    finally:
        runs.close()
    print(summary(results, "conformance tests of the subset"))
    failed = {r.test: f"{r.outcome}: {r.reason}" for r in results if r.outcome != "passed"}
    assert not failed, "\n".join(f"{t} ({SUBSET[t]}): {why}" for t, why in failed.items())
