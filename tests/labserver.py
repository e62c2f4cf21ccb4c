"""A real jupyter-server with the Datalabs extension, as a process on 127.0.0.1.

Started the way the hub's spawner starts a session, minus the hub: the same ``DATALABS_*``
environment (catalogue, archive root, groups, credentials key, allowed networks), its own
Jupyter folders, a token, and a log file the tests read (the canary must never be in it).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests

from datalabs_volumes.credentials import new_master_key, user_key
from datalabs_volumes.mount.local import mounts_under

from .servers import free_port


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    log: Path
    process: subprocess.Popen
    state: Path
    #: Every answer body seen, for the canary check.
    seen: list[str] = field(default_factory=list)

    def request(self, method: str, path: str, **kw) -> requests.Response:
        headers = {"Authorization": f"token {self.token}"}
        kw.setdefault("timeout", 60)
        r = requests.request(method, f"{self.url}/{path}", headers=headers, **kw)
        self.seen.append(r.text)
        return r

    def api(self, method: str, path: str, **kw) -> requests.Response:
        """A request to ``/datalabs/api/<path>`` with the server's token."""
        return self.request(method, f"datalabs/api/{path}", **kw)

    def contents(self, path: str, method: str = "GET", **kw) -> requests.Response:
        """A request to the server's own contents API (what the file browser uses)."""
        return self.request(method, f"api/contents/{path}", **kw)


@contextlib.contextmanager
def running_lab(
    state: Path,
    catalogue: Path,
    archive: Path,
    user: str = "alice",
    groups: Sequence[str] = (),
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[Lab]:
    """Run jupyter-server with the extension until the block ends; then stop it and its mounts."""
    root = state / "workspace"
    root.mkdir(parents=True, exist_ok=True)
    jupyter = state / "jupyter"
    port = free_port()
    token = secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATALABS_", "JUPYTER"))}
    env.update(
        JUPYTER_CONFIG_DIR=str(jupyter / "config"),
        JUPYTER_DATA_DIR=str(jupyter / "data"),
        JUPYTER_RUNTIME_DIR=str(jupyter / "runtime"),
        JUPYTERHUB_USER=user,
        # As the spawner does: the workspace is home (IPython history and all stay in it).
        HOME=str(root),
        DATALABS_CATALOGUE_DIRS=json.dumps([str(catalogue)]),
        DATALABS_ARCHIVE_ROOT=str(archive),
        DATALABS_USER_GROUPS=json.dumps(list(groups)),
        DATALABS_ALLOWED_NETWORKS=json.dumps(["127.0.0.1/32"]),
        DATALABS_CREDENTIALS_KEY=user_key(new_master_key(), user),
    )
    env.update(extra_env or {})
    argv = [
        sys.executable,
        "-m",
        "jupyter_server",
        "--ServerApp.jpserver_extensions={'jupyterlab_ext': True}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--ServerApp.open_browser=False",
        f"--IdentityProvider.token={token}",
        # Debug logs are the likeliest place for a secret to leak: the canary tests read them.
        "--ServerApp.log_level=DEBUG",
        f"--DatalabsStorage.rclone_runtime_dir={state / 'rclone'}",
    ]
    if os.geteuid() == 0:
        argv.append("--allow-root")
    log = state / "server.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            argv, env=env, cwd=root, stdout=f, stderr=subprocess.STDOUT, start_new_session=True
        )
    lab = Lab(f"http://127.0.0.1:{port}", token, root, log, proc, state)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"jupyter-server exited:\n{log.read_text()}")
            with contextlib.suppress(requests.ConnectionError):
                if lab.api("GET", "backends", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"jupyter-server did not answer in 60 s:\n{log.read_text()}")
            time.sleep(0.1)
        yield lab
    finally:
        # SIGTERM: the server stops its extensions, which unmount and stop rclone.
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for point in mounts_under(root):
            subprocess.run(["umount", "-l", str(point)], check=False)
