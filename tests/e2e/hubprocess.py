"""Start and drive the embedded hub (``config/jupyterhub_config.py``) as a real process.

Used by the end-to-end tests and by the benchmarks: a real JupyterHub with
configurable-http-proxy on free loopback ports, in its own state folder.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
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


#: Waits until 127.0.0.1:<argv[1]> accepts a connection, then becomes the command after it: a
#: gate a test opens by listening on that port (sandboxed sessions share the host's network,
#: not its files).
PORT_GATE = """import os, socket, sys, time
while True:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5).close()
        break
    except OSError:
        time.sleep(0.05)
os.execv(sys.argv[2], sys.argv[2:])
"""


def gated_server_cmd(gate: socket.socket) -> list[str]:
    """The single-user command as configured, started once ``gate`` (a bound socket) listens."""
    port = gate.getsockname()[1]
    return [
        sys.executable,
        "-c",
        PORT_GATE,
        str(port),
        sys.executable,
        "-m",
        "datalabs_spawner.singleuser",
    ]


@dataclass
class Hub:
    url: str
    token: str
    password: str
    state: Path
    log: Path
    process: HubProcess | None = None

    def kill(self) -> None:
        """SIGKILL the hub process alone, as a crash would: its sessions and its proxy, which
        are not in its process, go on running."""
        assert self.process is not None
        self.process.stop(signal.SIGKILL)

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


class HubProcess:
    """One embedded hub: its settings (ports, tokens, state folder) and its current process,
    which can be stopped (``SIGTERM``; ``SIGKILL`` plays a crash) and started again with the
    same settings, as an operator restarts a hub."""

    def __init__(
        self,
        state: Path,
        archive: Path,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        ports: HubPorts | None = None,
    ) -> None:
        ports = ports or HubPorts.free()
        token = secrets.token_hex(16)
        password = secrets.token_urlsafe(12)
        self.env = dict(
            os.environ,
            DATALABS_STATE_DIR=str(state),
            DATALABS_ARCHIVE_DIR=str(archive),
            DATALABS_PORT=str(ports.public),
            DATALABS_HUB_PORT=str(ports.hub),
            DATALABS_PROXY_API_PORT=str(ports.proxy_api),
            DATALABS_ADMIN_TOKEN=token,
            DATALABS_DEMO_PASSWORD=password,
            JUPYTERLAB_SETTINGS_DIR=str(lab_settings(state)),
            **(env or {}),
        )
        self.argv = [sys.executable, "-m", "jupyterhub", "-f", str(CONFIG), *extra_args]
        url = f"http://127.0.0.1:{ports.public}"
        self.hub = Hub(url, token, password, state, state / "hub.log", self)
        self.proc: subprocess.Popen | None = None

    def start(self) -> Hub:
        """Start the hub and wait until its API answers."""
        hub, log = self.hub, self.hub.log
        with open(log, "ab") as logf:  # a restarted hub adds to the log
            self.proc = proc = subprocess.Popen(
                self.argv,
                cwd=hub.state,
                env=self.env,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the hub exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if hub.api("GET", "").status_code == 200:
                    return hub
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the hub did not answer in 60 s:\n{log.read_text()}")
            time.sleep(0.2)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the hub process alone: with ``cleanup_servers = False`` (the config's) the
        sessions stay. SIGTERM stops the proxy it started too; SIGKILL leaves that to the
        next start (which stops a proxy left running, from its pid file)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def restart(self, sig: int = signal.SIGTERM) -> Hub:
        self.stop(sig)
        return self.start()

    def stop_sessions(self, timeout: float = 120) -> None:
        """Ask the hub to stop every session (all at once), and wait until it has."""
        hub = self.hub

        def active() -> list[str]:
            # active: a server running, starting or stopping (200: the API's largest page)
            users = hub.api("GET", "users?state=active&limit=200").json()
            return [u["name"] for u in users if u.get("servers") or u.get("pending")]

        for name in active():
            r = hub.api("DELETE", f"users/{name}/server")
            assert r.status_code in (202, 204, 400), r.text
        deadline = time.monotonic() + timeout
        while left := active():
            if time.monotonic() > deadline:
                raise AssertionError(f"sessions of {left} did not stop in {timeout} s")
            time.sleep(0.1)

    def close(self) -> None:
        """Stop every session (through the hub's API, as a user would), then the hub; then
        whatever a failed test left: processes working in the state folder, and mounts.

        A hub the test killed itself (``Hub.kill``) is left so: its sessions are meant to
        outlive it, for a hub started next on the same state and ports."""
        if self.proc is None or self.proc.poll() is not None:
            self.stop()
            return
        hub = self.hub
        try:
            self.stop_sessions()
        except (requests.RequestException, AssertionError, ValueError):
            pass  # the hub is not answering: the leftovers are killed below
        finally:
            self.stop()
            for pid in processes_under(hub.state):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            for point in mounts_under(hub.state):
                subprocess.run(["umount", "-l", str(point)], check=False)


def processes_under(folder: Path) -> list[int]:
    """Processes whose working folder is ``folder`` or below it (sessions, their runs)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd == folder or folder in cwd.parents:
            found.append(int(entry.name))
    return found


@contextlib.contextmanager
def running_hub(
    state: Path,
    archive: Path,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    ports: HubPorts | None = None,
) -> Iterator[Hub]:
    """Run the embedded hub until the block ends; then stop its sessions, it and every mount
    it made. ``hub.process`` restarts it (``HubProcess``); ``env`` adds to its environment;
    ``ports``: where it listens (default: free ports); give the same ones and ``state`` to
    restart a hub in another block.
    """
    process = HubProcess(state, archive, extra_args, env, ports)
    try:
        yield process.start()
    finally:
        process.close()


def start_sessions(
    cleanup: contextlib.ExitStack,
    state: Path,
    archive: Path,
    args: Sequence[str] = (),
    users: Sequence[str] = ("alice", "bob"),
) -> Hub:
    """The embedded hub (``args``, on ``state``) with a planetary-lab session and no volume for
    each of ``users``, all ready; ``cleanup`` stops the sessions, then the hub."""
    hub = cleanup.enter_context(running_hub(state, archive, args))
    for user in users:
        r = hub.api(
            "POST", f"users/{user}/server", json={"profile": "planetary-lab", "volumes": []}
        )
        assert r.status_code in (201, 202), r.text
        cleanup.callback(hub.stop_server, user)
    for user in users:
        hub.wait_ready(user)
    return hub
