"""Start and drive the embedded hub (``config/jupyterhub_config.py``) as a real process.

Used by the end-to-end tests and by the benchmarks: a real JupyterHub with
configurable-http-proxy on free loopback ports, in its own state folder.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests

from datalabs_volumes.mount.local import mounts_under
from tests.helpers import free_port  # noqa: F401 - re-exported for the tests

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config" / "jupyterhub_config.py"


@dataclass(frozen=True)
class HubPorts:
    """The hub's three ports; a hub restarted with the same ones is where its sessions (and the
    proxy's routes) expect it."""

    public: int
    hub: int
    proxy_api: int

    @classmethod
    def free(cls) -> HubPorts:
        return cls(free_port(), free_port(), free_port())


@dataclass
class Hub:
    url: str
    token: str
    password: str
    state: Path
    log: Path
    process: subprocess.Popen | None = None

    def kill(self) -> None:
        """SIGKILL the hub process alone, as a crash would: its sessions and its proxy, which
        are not in its process, go on running."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def api(self, method: str, path: str, **kw) -> requests.Response:
        headers = {"Authorization": f"token {self.token}"}
        return requests.request(
            method, f"{self.url}/hub/api/{path}", headers=headers, timeout=30, **kw
        )

    def server(self, user: str, method: str, path: str, **kw) -> requests.Response:
        """A request to ``user``'s single-user server (through the proxy)."""
        headers = {"Authorization": f"token {self.token}"}
        return requests.request(
            method, f"{self.url}/user/{user}/{path}", headers=headers, timeout=30, **kw
        )

    def wait_ready(self, user: str, timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.api("GET", f"users/{user}").json()
            server = model.get("servers", {}).get("")
            if server and server.get("ready"):
                return server
            if not model.get("pending") and not server:
                raise AssertionError(f"{user}'s server stopped while starting: {model}")
            time.sleep(0.05)
        raise AssertionError(f"{user}'s server not ready in {timeout} s; see {self.log}")

    def stop_server(self, user: str, timeout: float = 60) -> None:
        r = self.api("DELETE", f"users/{user}/server")
        assert r.status_code in (202, 204, 400), r.text
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.api("GET", f"users/{user}").json()
            if not model.get("servers") and not model.get("pending"):
                return
            time.sleep(0.1)
        raise AssertionError(f"{user}'s server did not stop in {timeout} s")


def lab_settings(state: Path) -> Path:
    """JupyterLab settings that turn off its news prompt, which would cover the page."""
    settings = state / "lab-settings"
    target = settings / "@jupyterlab" / "apputils-extension"
    target.mkdir(parents=True, exist_ok=True)
    (target / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    return settings


@contextlib.contextmanager
def running_hub(
    state: Path, archive: Path, extra_args: Sequence[str] = (), ports: HubPorts | None = None
) -> Iterator[Hub]:
    """Run the embedded hub until the block ends; then stop it and every mount it made.

    ``ports``: where it listens (default: free ports); give the same ones and ``state`` to
    restart a hub.
    """
    ports = ports or HubPorts.free()
    port = ports.public
    token = secrets.token_hex(16)
    password = secrets.token_urlsafe(12)
    env = dict(
        os.environ,
        DATALABS_STATE_DIR=str(state),
        DATALABS_ARCHIVE_DIR=str(archive),
        DATALABS_PORT=str(port),
        DATALABS_HUB_PORT=str(ports.hub),
        DATALABS_PROXY_API_PORT=str(ports.proxy_api),
        DATALABS_ADMIN_TOKEN=token,
        DATALABS_DEMO_PASSWORD=password,
        JUPYTERLAB_SETTINGS_DIR=str(lab_settings(state)),
    )
    log = state / "hub.log"
    with open(log, "ab") as logf:  # a restarted hub adds to the log
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(CONFIG), *extra_args],
            cwd=state,
            env=env,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    hub = Hub(f"http://127.0.0.1:{port}", token, password, state, log, proc)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the hub exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if hub.api("GET", "").status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the hub did not answer in 60 s:\n{log.read_text()}")
            time.sleep(0.2)
        yield hub
    finally:
        proc.send_signal(signal.SIGTERM)  # the hub stops its servers and the proxy
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        for point in mounts_under(state):
            subprocess.run(["umount", "-l", str(point)], check=False)
