"""Real storage servers for tests: ``rclone serve webdav|ftp|sftp|s3`` on 127.0.0.1 (or another
local address: the kubelet node's bridge, which pods reach).

Each server gets its credentials through the environment (``RCLONE_USER``, ``RCLONE_PASS``,
``RCLONE_AUTH_KEY``), never its command line, so the canary secret never shows in
``/proc/*/cmdline`` even for the test's own servers.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from datalabs_volumes.mount.local import rclone_binary
from tests.helpers import free_port  # noqa: F401 - re-exported for the tests

#: The secret used as the password of every test server and connection. Tests assert that it
#: appears nowhere it must not: logs, API answers, command lines, files other than rclone's
#: 0600 config.
CANARY = "Cnry" + secrets.token_hex(10)
USER = "scientist"
S3_KEY_ID = "datalabskey"
S3_BUCKET = "bucket"


@dataclass
class Server:
    """A running storage server and the connection options that reach it."""

    kind: str
    root: Path
    port: int
    process: subprocess.Popen
    argv: list[str]
    env: dict[str, str]
    log: Path
    host: str = "127.0.0.1"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def options(self, password: str = CANARY) -> dict[str, str]:
        """rclone options (as a user would type them) for a connection to this server."""
        if self.kind == "webdav":
            return {
                "url": f"http://{self.host}:{self.port}",
                "vendor": "rclone",
                "user": USER,
                "pass": password,
            }
        if self.kind in ("ftp", "sftp"):
            return {"host": self.host, "port": str(self.port), "user": USER, "pass": password}
        return {
            "provider": "Rclone",
            "endpoint": f"http://{self.host}:{self.port}",
            "access_key_id": S3_KEY_ID,
            "secret_access_key": password,
        }

    @property
    def path(self) -> str:
        """The folder of the connection: the bucket for S3, the root otherwise."""
        return S3_BUCKET if self.kind == "s3" else ""

    @property
    def files(self) -> Path:
        """Where the files a connection sees live on disk."""
        return self.root / S3_BUCKET if self.kind == "s3" else self.root

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def kill(self) -> None:
        """Kill the server abruptly (the remote dies under a mount)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def restart(self) -> None:
        """Start the server again on the same port, with the same files."""
        self.stop()
        self.process = _spawn(self.argv, self.env, self.log)
        _wait_port(self.port, self.process, self.log, self.host)


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as f:
        return subprocess.Popen(
            argv, env=env, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )


def _wait_port(
    port: int, proc: subprocess.Popen, log: Path, host: str = "127.0.0.1", timeout: float = 20
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the test server exited: {log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5):
            return
        time.sleep(0.05)
    raise AssertionError(f"the test server did not listen in {timeout} s: {log.read_text()}")


@contextlib.contextmanager
def rclone_serve(
    kind: str,
    root: Path,
    state: Path,
    password: str = CANARY,
    dir_cache_time: str | None = "0s",
    host: str = "127.0.0.1",
) -> Iterator[Server]:
    """Serve ``root`` over ``kind`` on a free port of ``host`` (a local address; loopback by
    default) until the block ends.

    ``dir_cache_time``: how long the server caches listings; "0s" (tests change files while
    serving), None for rclone's default. With "0s" a 10,000-file folder takes the server
    minutes to list over WebDAV, so the benchmark keeps the default.
    """
    port = free_port()
    state.mkdir(parents=True, exist_ok=True)
    if kind == "s3":
        (root / S3_BUCKET).mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(state),
        "RCLONE_CONFIG": os.devnull,
        "RCLONE_CACHE_DIR": str(state / "cache"),
    }
    if kind == "s3":
        # A list flag from the environment is CSV: quote the pair to keep its comma.
        env["RCLONE_AUTH_KEY"] = f'"{S3_KEY_ID},{password}"'
    else:
        env["RCLONE_USER"] = USER
        env["RCLONE_PASS"] = password
    argv = [
        rclone_binary(),
        "serve",
        kind,
        str(root),
        "--addr",
        f"{host}:{port}",
    ]
    if dir_cache_time is not None:
        argv += ["--dir-cache-time", dir_cache_time]
    if kind == "ftp":
        pasv = free_port()
        argv += ["--passive-port", f"{pasv}-{pasv + 20}"]
    log = state / f"serve-{kind}.log"
    proc = _spawn(argv, env, log)
    server = Server(kind, root, port, proc, argv, env, log, host)
    try:
        _wait_port(port, proc, log, host)
        yield server
    finally:
        server.stop()
