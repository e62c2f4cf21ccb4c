"""The session's side of the Kubernetes rclone sidecar: the same engine, another rclone.

On Kubernetes the user container may not mount anything (no capability, no FUSE device), so the
session does not start its own ``rclone rcd``: it drives the privileged sidecar's rclone through
the rc guard (:mod:`.rcguard`) on the socket the two containers share. ``SidecarRclone`` is the
session engine (:class:`.rclone.SessionRclone`) with that one difference: test, attach, health
and detach send the very same rc calls, over the guarded socket, with the rc password the
spawner put in the session's Secret. The sidecar mounts into the shared folder, which both
containers see at the same path (the user container read-only, through HostToContainer
propagation), so a mount point means the same in both and needs no translation.

What the guard refuses (``config/dump``, ``core/command``, mounts outside the shared folder...)
comes back as an ``RcloneError`` with status 403 and the guard's reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import contract
from ..egress import NetworkPolicy
from ..remotes import Connection
from .local import is_mount_point
from .rclone import RcClient, RcloneError, SessionRclone

log = logging.getLogger("datalabs.rclone")

#: The rc user the sidecar's guard admits (the password is the secret part).
RC_USER = "datalabs"


class SidecarDaemon:
    """The sidecar's guarded rclone, as the engine sees a daemon: started and stopped by the
    pod, not by the session (``start`` waits until it answers; ``stop`` leaves it running)."""

    process = None
    pid = None

    def __init__(self, socket_path: Path, password: str, user: str = RC_USER):
        self.socket_path = socket_path
        self.client = RcClient(socket_path, user, password)
        # The engine removes its daemon's config on close: the sidecar's is not the session's.
        self.config_path = Path(tempfile.gettempdir(), "datalabs-no-such-rclone.conf")
        # Not enforced here: the sidecar enforces its own (``--allow-network``, from the spawner).
        self.network_policy = NetworkPolicy()
        self._answered = False

    @property
    def alive(self) -> bool:
        # The session cannot see the sidecar's process; the sidecar restarts itself (its
        # restartPolicy), and a call made meanwhile fails with 503 "rclone is not running".
        return self._answered

    async def start(self, timeout: float = 15.0) -> None:
        """Wait until the guard answers ``rc/noop`` (the sidecar may still be starting)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                await self.client.call("rc/noop", {}, timeout=2)
                self._answered = True
                return
            except RcloneError as e:
                if e.status in (401, 403) or time.monotonic() > deadline:
                    raise RcloneError(
                        f"the rclone sidecar did not answer on {self.socket_path}: {e.message}",
                        "daemon",
                        503,
                    ) from None
                await asyncio.sleep(0.1)

    async def call(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        return await self.client.call(method, params, timeout)

    async def stop(self, grace: float = 5.0) -> None:
        self._answered = False


class SidecarRclone(SessionRclone):
    """The session engine driving the rclone sidecar through its guard.

    ``connections_dir``: the shared folder, where connection ``<name>`` is mounted at
    ``<connections_dir>/<name>`` whatever target the session names (the sidecar may mount
    nowhere else).
    """

    def __init__(self, socket_path: Path, password: str, connections_dir: Path):
        super().__init__(runtime_dir=Path(tempfile.mkdtemp(prefix="datalabs-sidecar-")))
        self.daemon = SidecarDaemon(socket_path, password)  # type: ignore[assignment]
        self.connections_dir = connections_dir
        # The sidecar runs as root and the user's server as the image's user: allow_other.
        self.allow_other = True

    def target(self, name: str) -> Path:
        """Where connection ``name`` appears in the user's container."""
        return self.connections_dir / name

    async def attach(self, connection: Connection, target: Path, read_only: bool = True) -> None:
        await super().attach(connection, self.target(connection.name), read_only)

    async def _mount(self, connection: Connection, target: Path, read_only: bool) -> None:
        # The shared folder is read-only here: the guard makes (and removes) mount points.
        await self._rc_mount(connection, target, read_only)
        await self._propagated(connection, target)

    async def _propagated(self, connection: Connection, target: Path, timeout: float = 5) -> None:
        """Wait for the sidecar's mount to show here (HostToContainer propagation is quick but
        not synchronous with the sidecar's answer)."""
        deadline = time.monotonic() + timeout
        while not is_mount_point(target):
            if time.monotonic() > deadline:
                with contextlib.suppress(RcloneError):
                    await self.daemon.call("mount/unmount", {"mountPoint": str(target)})
                await self._forget(connection.name)
                raise RcloneError(f"rclone reported '{connection.name}' mounted, but it is not")
            await asyncio.sleep(0.05)

    async def detach(self, name: str) -> None:
        """Unmount through the sidecar (the user container cannot unmount anything itself)."""
        async with self._lock:
            attached = self.attached.get(name)
            if attached is None:
                raise RcloneError(f"'{name}' is not attached", "missing", 404)
            if not attached.read_only:
                await self._flush(attached)
            await self.daemon.call(
                "mount/unmount", {"mountPoint": str(attached.target)}, timeout=15
            )
            del self.attached[name]
            await self._forget(name)

    async def recover(self) -> None:
        """Nothing to restart from here: the pod restarts a dead sidecar."""

    async def close(self) -> None:
        """Unmount this session's connections; the sidecar itself stops with the pod."""
        await self._detach_all()
        self.attached.clear()
        with contextlib.suppress(OSError):
            self.runtime_dir.rmdir()


def sidecar_from_env(environ: Mapping[str, str]) -> SidecarRclone | None:
    """The sidecar engine when the spawner said there is a sidecar (``DATALABS_RCLONE_SOCKET``
    with its password file and shared folder); None otherwise. A missing or unreadable password
    file is an error naming the file: a half-configured sidecar must not fall back to a local
    rclone that cannot mount anything in a pod."""
    socket = environ.get(contract.RCLONE_SOCKET, "")
    if not socket:
        return None
    password_file = environ.get(contract.RCLONE_RC_PASSWORD_FILE, "")
    connections_dir = environ.get(contract.CONNECTIONS_DIR, "")
    if not password_file or not connections_dir:
        raise ValueError(
            f"{contract.RCLONE_SOCKET} is set but {contract.RCLONE_RC_PASSWORD_FILE} or "
            f"{contract.CONNECTIONS_DIR} is not"
        )
    try:
        password = Path(password_file).read_text(encoding="ascii").strip()
    except OSError as e:
        raise ValueError(
            f"{contract.RCLONE_RC_PASSWORD_FILE}: {password_file}: {e.strerror}"
        ) from None
    return SidecarRclone(Path(socket), password, Path(connections_dir))
