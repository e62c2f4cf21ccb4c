"""The workspace size quota (``DATALABS_WORKSPACE_QUOTA_BYTES``) on a real jupyter-server."""

from __future__ import annotations

import time

import pytest
import requests

from jupyterlab_ext.quota import WorkspaceQuota, disk_usage
from tests.jupyterlab_ext.conftest import TOKENS

QUOTA = 1024 * 1024


def save(server, path: str, text: str) -> requests.Response:
    return requests.put(
        f"{server.url}/api/contents/{path}",
        json={"type": "file", "format": "text", "content": text},
        headers={"Authorization": f"token {TOKENS['alice']}"},
        timeout=30,
    )


def until(condition, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return value


def test_usage_counts_the_workspace_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "big.bin").write_bytes(b"x" * 300_000)
    assert 300_000 <= disk_usage(tmp_path) < 400_000
    quota = WorkspaceQuota(tmp_path, 200_000)
    assert "Your workspace is full: it uses " in quota.refusal()
    assert WorkspaceQuota(tmp_path, 10 * QUOTA).refusal() is None
    with pytest.raises(ValueError, match="at least 1 byte"):
        WorkspaceQuota(tmp_path, 0)


def test_a_full_workspace_refuses_saves_and_runs_with_a_clear_message(start_server, monkeypatch):
    monkeypatch.setenv("DATALABS_WORKSPACE_QUOTA_BYTES", str(QUOTA))
    server = start_server()
    assert save(server, "notes.txt", "hello").status_code in (200, 201)
    # A kernel writes a big file directly: the quota cannot stop that, but counts it.
    (server.root / "big.bin").write_bytes(b"x" * (2 * QUOTA))
    answers = []  # a 507 Response is falsy, so the answers are kept aside
    until(
        lambda: (
            answers.append(save(server, "notes.txt", "hello again"))
            or answers[-1].status_code == 507
        ),
        "the save to be refused",
    )
    refused = answers[-1]
    assert "Your workspace is full" in refused.json()["message"]
    assert "1.0 MiB quota" in refused.json()["message"]
    run = server.post("runs", {"pipeline": "demo/no-such", "inputs": {}})
    assert run.status_code == 507, run.text
    assert "Delete files" in run.json()["message"]
    (server.root / "big.bin").unlink()
    until(lambda: save(server, "notes.txt", "hello again").status_code == 200, "saves again")
