"""Fixtures for the jupyter-server extension tests.

- ``start_server``: starts a real ``jupyter server`` process on 127.0.0.1 with the Datalabs
  extension, the demo pipeline catalogue and a run store under ``tmp_path``; two users, ``alice``
  and ``bob``, are told apart by their tokens. Waits until it answers; always stopped.
- ``server_starter(folder)``: the same as a context manager, for wider-scoped fixtures.
- ``server``: one started server (``.url``, ``.get/post(path, user=...)``, ``.root``, ``.home``).
- ``wait_run``: polls ``GET runs/<id>`` until the run ends.
- ``storage_catalogue``: a catalogue with three volumes (``open-data`` for everyone,
  ``team-data`` for the hub group ``team``, ``staff-data`` for ``staff``) and their archive
  folders, as ``(catalogue_dir, archive_dir)``.
- ``lab``: jupyter-server run as alice (member of ``team``) with the extension, on 127.0.0.1,
  one per test module (see ``tests/labserver.py``); stopped, and its mounts removed, at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from datalabs_pipelines.executors.local import cancel
from datalabs_pipelines.runs import RunStore
from tests.helpers import free_port
from tests.labserver import running_lab

REPO = Path(__file__).resolve().parents[2]
TOKENS = {"alice": "alice-token-0123456789", "bob": "bob-token-9876543210"}


@dataclass
class Server:
    url: str
    root: Path
    home: Path
    log: Path
    process: subprocess.Popen | None = None
    extra: dict = field(default_factory=dict)

    def api(self, path: str) -> str:
        return f"{self.url}/datalabs/api/{path}"

    def get(self, path: str, user: str | None = "alice", **kwargs) -> requests.Response:
        headers = {"Authorization": f"token {TOKENS[user]}"} if user else {}
        return requests.get(self.api(path), headers=headers, timeout=30, **kwargs)

    def post(self, path: str, body=None, user: str | None = "alice") -> requests.Response:
        headers = {"Authorization": f"token {TOKENS[user]}"} if user else {}
        return requests.post(
            self.api(path), data=json.dumps(body or {}), headers=headers, timeout=60
        )

    def kill(self) -> None:
        """Kill the server abruptly (SIGKILL), as a crash would."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@contextlib.contextmanager
def server_starter(tmp_path: Path) -> Iterator:
    """``start(**extension_config)`` for servers sharing the folder ``tmp_path``; all are
    stopped, and their runs cancelled, when the block ends."""
    started: list[Server] = []
    root = tmp_path / "workspace"
    root.mkdir()
    home = tmp_path / "pipelines-home"
    config_dir = tmp_path / "jupyter-config"
    config_dir.mkdir()

    def start(**extension_config) -> Server:
        port = free_port()
        config = {
            "ServerApp": {
                "jpserver_extensions": {"jupyterlab_ext": True},
                "identity_provider_class": "token_users.TokenUsers",
                "ip": "127.0.0.1",
                "port": port,
                "port_retries": 0,
                "open_browser": False,
                "allow_root": True,
                "root_dir": str(root),
            },
            "TokenUsers": {"users_by_token": {t: u for u, t in TOKENS.items()}, "token": "x"},
            "DatalabsExtension": {
                "catalogue_dirs": [str(REPO / "config" / "catalogue")],
                "pipelines_home": str(home),
                "poll_interval": 0.5,
                **extension_config,
            },
        }
        (config_dir / "jupyter_server_config.json").write_text(json.dumps(config))
        env = dict(
            os.environ,
            JUPYTER_CONFIG_DIR=str(config_dir),
            JUPYTER_CONFIG_PATH=str(config_dir),
            JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
            PYTHONPATH=str(Path(__file__).parent) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        )
        env.pop("JUPYTERHUB_USER", None)
        log = tmp_path / f"server-{len(started)}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "jupyter_server"],
                env=env,
                stdout=out,
                stderr=out,
                cwd=root,
            )
        server = Server(
            url=f"http://127.0.0.1:{port}", root=root, home=home, log=log, process=process
        )
        started.append(server)
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"jupyter server exited:\n{log.read_text()[-4000:]}")
            try:
                if server.get("pipelines").status_code == 200:
                    return server
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                server.stop()
                raise AssertionError(f"jupyter server did not answer:\n{log.read_text()[-4000:]}")
            time.sleep(0.2)

    try:
        yield start
    finally:
        for server in started:
            server.stop()
        # Runs outlive their server by design; a test must not leave them behind.
        if (home / "runs.db").exists():
            store = RunStore(home / "runs.db")
            for run in store.list(states=("queued", "running", "cancelling"), limit=10_000):
                cancel(store, run.id, run.user, grace=2)
            store.close()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator:
    with server_starter(tmp_path) as start:
        yield start


@pytest.fixture
def server(start_server) -> Server:
    return start_server()


@pytest.fixture
def wait_run():
    """``wait_run(server, run_id)``: poll a run until it ends; returns its JSON."""
    return _wait_run


def _wait_run(server: Server, run_id: str, user: str = "alice", timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = server.get(f"runs/{run_id}", user=user).json()
        if run["state"] in ("success", "failed", "cancelled"):
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not end in {timeout}s")


@pytest.fixture(scope="module")
def storage_catalogue(tmp_path_factory):
    base = tmp_path_factory.mktemp("storage-catalogue")
    catalogue = base / "catalogue" / "demo" / "volumes"
    catalogue.mkdir(parents=True)
    archive = base / "archive"
    for vid, access in [("open-data", ""), ("team-data", "team"), ("staff-data", "staff")]:
        folder = archive / vid
        (folder / "sub").mkdir(parents=True)
        (folder / "readme.txt").write_text(f"{vid}\n")
        (folder / "sub" / "table.csv").write_text("x,y\n1,2\n")
        text = f"title: {vid}\nsource: {{type: local, path: {vid}}}\n"
        if access:
            text += f"access: {{groups: [{access}]}}\n"
        (catalogue / f"{vid}.yaml").write_text(text)
    # A link that leads out of the volume, for the traversal tests.
    (archive / "open-data" / "escape").symlink_to(archive / "staff-data")
    return base / "catalogue", archive


@pytest.fixture(scope="module")
def lab(tmp_path_factory, storage_catalogue):
    catalogue, archive = storage_catalogue
    state = tmp_path_factory.mktemp("lab")
    with running_lab(state, catalogue, archive, user="alice", groups=["team"]) as server:
        yield server
