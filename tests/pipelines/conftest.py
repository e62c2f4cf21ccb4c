"""Fixtures for the pipeline services tests.

- ``data_dir``: the small CWL files under ``tests/pipelines/data``.
- ``settings``: :class:`Settings` with a fresh run store under ``tmp_path`` (user ``alice``),
  also exported as ``DATALABS_PIPELINES_HOME`` for the CLI.
- ``store``: the :class:`RunStore` of ``settings``.
- ``executor``: a :class:`LocalExecutor`; on teardown every run still active is cancelled, so no
  test leaves a process behind.
- ``cli``: runs ``datalabs-pipeline`` as a real subprocess with that environment.
- ``wait_for``: polls a condition with a deadline.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from datalabs_pipelines.executors.local import LocalExecutor, cancel
from datalabs_pipelines.runs import ACTIVE_STATES, QUEUED, RunStore
from datalabs_pipelines.settings import Settings

DATA = Path(__file__).parent / "data"
CLI = str(Path(sys.executable).parent / "datalabs-pipeline")


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    home = tmp_path / "home"
    monkeypatch.setenv("DATALABS_PIPELINES_HOME", str(home))
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    return Settings(home=home, user="alice", max_concurrent=4)


@pytest.fixture
def store(settings: Settings) -> Iterator[RunStore]:
    s = RunStore(settings.db_path)
    yield s
    for run in s.list(states=(*ACTIVE_STATES, QUEUED), limit=10_000):
        cancel(s, run.id, run.user, grace=2)
    s.close()


@pytest.fixture
def executor(settings: Settings, store: RunStore) -> Iterator[LocalExecutor]:
    ex = LocalExecutor(settings, store)
    yield ex
    ex.close()


@pytest.fixture
def cli(settings: Settings) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str, timeout: float = 120, cwd: Path | None = None):
        return subprocess.run(
            [CLI, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(os.environ),
            cwd=cwd,
        )

    return run


@pytest.fixture
def wait_for() -> Callable[..., object]:
    def wait(condition: Callable[[], object], timeout: float = 60, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    return wait
