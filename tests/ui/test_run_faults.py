"""A pipeline step killed by the kernel's OOM killer, as the runs viewer shows it in a real
JupyterLab driven by Chromium: the run's reason, and the step's own message beside its state.

The lab's runs get a 256 MiB memory cgroup each (``DATALABS_PIPELINES_MEMORY_LIMIT``, as the hub
sets it), under a parent cgroup of this test's own, removed at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from datalabs_pipelines.executors.memory import ENV_CGROUP, ENV_MEMORY_LIMIT
from tests.e2e.hubprocess import lab_settings
from tests.labserver import running_lab
from tests.ui.conftest import CATALOGUE, REPO, fresh_workspace, open_lab, shot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MEMORY_ROOT = Path("/sys/fs/cgroup/memory")


@pytest.fixture(scope="module")
def oom_lab(tmp_path_factory, ui_archive):
    # Not a skip: a test that cannot run must fail, not count as passed. CI runs as root here.
    assert os.geteuid() == 0, "this test needs root (a memory cgroup); run it as CI does"
    assert (MEMORY_ROOT / "cgroup.procs").exists(), f"no cgroup v1 memory controller: {MEMORY_ROOT}"
    state = tmp_path_factory.mktemp("oom-lab")
    extra = tmp_path_factory.mktemp("oom-catalogue")
    (extra / "test" / "pipelines").mkdir(parents=True)
    for name in ("greedy.cwl", "echo.cwl"):
        shutil.copy(REPO / "tests/pipelines/data" / name, extra / "test/pipelines" / name)
    parent = MEMORY_ROOT / f"datalabs-test-{secrets.token_hex(4)}"
    env = {
        "JUPYTERLAB_SETTINGS_DIR": str(lab_settings(state)),
        "DATALABS_CATALOGUE_DIRS": json.dumps([str(CATALOGUE), str(extra)]),
        "DATALABS_PIPELINES_HOME": str(state / "workspace" / "pipeline-runs"),
        ENV_MEMORY_LIMIT: str(256 * 2**20),
        ENV_CGROUP: str(parent),
    }
    try:
        with running_lab(
            state, CATALOGUE, ui_archive, user="alice", groups=["rosetta-team"], extra_env=env
        ) as lab:
            yield lab
    finally:
        if parent.exists():
            for child in parent.iterdir():
                if child.is_dir():
                    child.rmdir()
            parent.rmdir()


def test_the_runs_viewer_says_which_step_ran_out_of_memory(page, oom_lab):
    r = oom_lab.api("POST", "runs", json={"pipeline": "test/greedy", "inputs": {"mib": 1024}})
    assert r.status_code == 201, r.text
    run = r.json()
    deadline = time.monotonic() + 120
    while run["state"] not in ("success", "failed", "cancelled"):
        assert time.monotonic() < deadline, run
        time.sleep(0.5)
        run = oom_lab.api("GET", f"runs/{run['id']}").json()
    assert run["state"] == "failed", run

    open_lab(page, oom_lab, fresh_workspace())
    tab = page.locator(".jp-SideBar .lm-TabBar-tab[data-id='datalabs-pipelines']")
    tab.click()
    panel = page.get_by_test_id("dl-pipelines-panel")
    panel.get_by_role("button", name="My runs").click()
    page.get_by_role("button", name=f"Open run {run['id']}").click()
    run_page = page.locator(f"[data-testid=dl-run-page][data-run='{run['id']}']")
    expect(run_page).to_have_attribute("data-state", "failed")
    expect(run_page.get_by_role("status")).to_contain_text(
        "killed: out of memory: step 'greedy' needed more than the 256 MiB"
    )
    greedy = page.get_by_test_id("dl-step-table").locator("tr", has_text="greedy")
    expect(greedy).to_contain_text("killed: out of memory (over the run's 256 MiB)")
    small = page.get_by_test_id("dl-step-table").locator("tr", has_text="small")
    expect(small).not_to_contain_text("killed")
    shot(page, "pipelines-out-of-memory")
