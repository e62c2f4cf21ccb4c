"""A sandboxed user's connections (their own remote storage), mounted by the hub.

Inside bubblewrap ``fusermount3`` cannot mount: it is set-uid root, and ``no_new_privs`` (which
bubblewrap sets whatever ``setpriv`` says) stops it. So for a sandboxed session the broker
mounts the user's connection on the host, under the user's ``data/``, and the mount propagates
into the running sandbox like a volume does (``sandbox.share_data_dir``):

1. The connection is read from the user's own encrypted store in their workspace
   (``<workspace>/.datalabs/connections.json``), opened without following links, and
   decrypted with the key derived from the master key for *the token's owner*: a name the
   session sends only selects among that user's own connections. It is validated again as
   when it was saved (backend allow-list, options, network policy): the user could have
   written anything into their own store.
2. One ``rclone rcd`` per session runs as the user's own system account, outside the sandbox
   (not ``no_new_privs``, so ``fusermount3`` works), with no supplementary group, a minimal
   environment (its rc password only) and the session's network policy: every connection it
   makes goes through an egress proxy that the hub runs for it, as in an unsandboxed session.
   Secrets reach it over its rc unix socket; rclone keeps them (obscured) in its 0600 config
   file in a 0700 folder of that account, outside the workspace and invisible in the sandbox.
3. rclone mounts onto a staging folder of that account (in a root-owned 0711 folder the
   sandbox does not show), and the hub binds that mount onto ``data/<name>`` through a
   descriptor opened without following links (``LocalMounter``'s ``open_mount_point``), since
   the user owns ``data/`` and could swap the folder for a link at any moment.

Detach unmounts ``data/<name>`` (the sandbox's copy goes with it), then rclone's staging mount.
Stopping the session (or the hub noticing it died) closes everything: mounts, rclone, folders.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

from datalabs_volumes.access import AccessError
from datalabs_volumes.credentials import CredentialError, CredentialStore
from datalabs_volumes.egress import NetworkPolicy
from datalabs_volumes.mount.local import (
    LocalMounter,
    MountError,
    UnsafeTarget,
    bind_onto_descriptor,
    is_mount_point,
    mounts_under,
    open_mount_point,
    run_command,
)
from datalabs_volumes.mount.rclone import RcloneError, SessionRclone
from datalabs_volumes.remotes import NAME_RE, Connection, InvalidConnection, validate

from .sandbox import Account

log = logging.getLogger("datalabs.broker")

#: The store file in a workspace, as the session's server extension writes it by default.
STORE_PARTS = (".datalabs", "connections.json")
#: Largest store file the hub reads (a connection holds at most a few KiB of options).
MAX_STORE_BYTES = 4 * 1024 * 1024

_NOFOLLOW_DIR = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
_NOFOLLOW_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def read_store(workspace: Path, account: Account) -> bytes:
    """The bytes of the user's connections file, read by the hub (root) without following a
    link anywhere below the workspace, and only if it is a regular file of the account; empty
    when there is none. AccessError otherwise: the user owns every folder below the workspace
    and could point a link at another user's file or at a FIFO."""
    fds: list[int] = []
    try:
        fds.append(os.open(workspace, _NOFOLLOW_DIR))
        try:
            fds.append(os.open(STORE_PARTS[0], _NOFOLLOW_DIR, dir_fd=fds[-1]))
            fd = os.open(STORE_PARTS[1], _NOFOLLOW_FILE, dir_fd=fds[-1])
        except FileNotFoundError:
            return b""
        except OSError as e:
            raise AccessError(
                400,
                f"Your connections file {'/'.join(STORE_PARTS)} cannot be read "
                f"({e.strerror}); it must be a file, not a link.",
            ) from None
        fds.append(fd)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != account.uid:
            raise AccessError(
                400,
                f"Your connections file {'/'.join(STORE_PARTS)} is not a file of your "
                "account; delete it and create your connections again.",
            )
        if info.st_size > MAX_STORE_BYTES:
            raise AccessError(400, "Your connections file is too large.")
        os.set_blocking(fd, True)
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(MAX_STORE_BYTES + 1)
    finally:
        for fd in fds:
            os.close(fd)


def mount_point_field(field: str) -> str:
    """A mount point as /proc/self/mountinfo writes it (space, tab, newline and backslash
    escaped as octal), unescaped."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def folder_prefix(account: Account) -> str:
    """The name prefix of a session's connections folder in the host's temporary folder: by
    uid, so that no account name is a prefix of another's (``dl-al`` and ``dl-al-x``)."""
    return f"datalabs-connections-{account.uid}-"


async def clean_stale(account: Account) -> list[Path]:
    """Remove the connections folders an earlier hub process left for ``account`` (it died
    without stopping the session: rclone went with it, but its folder stayed, with rclone's
    config). Only root-owned folders of exactly our name; anything still mounted in one is
    unmounted lazily first, and a folder that still holds a mount is left. Called when the
    user's session starts, before anything of this hub process uses such a folder."""
    pattern = re.compile(re.escape(folder_prefix(account)) + r"[a-z0-9_]{8}")
    removed = []
    for folder in Path(tempfile.gettempdir()).iterdir():
        if not pattern.fullmatch(folder.name):
            continue
        info = os.lstat(folder)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0:
            continue  # not made by the hub (anyone may create names in /tmp)
        for point in mounts_under(folder):
            await run_command("umount", "-l", str(point))
        if mounts_under(folder):
            log.error("Left %s in place: something is still mounted there", folder)
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


class HostConnections:
    """The connections of one running sandboxed session, mounted on the host by the hub.

    ``account``: the session's system account; ``workspace``: its workspace (``data/`` below
    it is a shared mount); ``key``: the user's connections key (derived from the master key
    for the token's owner); ``policy``: where rclone may connect; ``lock``: the session's lock
    for mount changes (volumes and connections share ``data/``).
    """

    def __init__(
        self,
        account: Account,
        workspace: Path,
        key: str,
        policy: NetworkPolicy,
        lock: asyncio.Lock | None = None,
    ):
        self.lock = lock or asyncio.Lock()
        self.account = account
        self.workspace = workspace
        self.data_dir = workspace / "data"
        self.key = key
        self.policy = policy
        self._root: Path | None = None
        self._rclone: SessionRclone | None = None
        self.read_only: dict[str, bool] = {}

    # -- folders and rclone --

    def _folders(self) -> Path:
        """The session's root-owned folder (0711): ``rcd/`` and ``mnt/<name>`` of the account."""
        if self._root is None:
            root = Path(tempfile.mkdtemp(prefix=folder_prefix(self.account)))
            os.chmod(root, 0o711)  # the account passes through to its own folders only
            (root / "mnt").mkdir(mode=0o711)
            self._root = root
        return self._root

    def _engine(self) -> SessionRclone:
        if self._rclone is None:
            runtime = self._folders() / "rcd"
            self._rclone = SessionRclone(
                runtime,
                allow_other=False,  # the account's own processes read it (the sandbox's)
                network_policy=self.policy,
                run_as=(self.account.uid, self.account.gid),
            )
        return self._rclone

    def _stage(self, name: str) -> Path:
        stage = self._folders() / "mnt" / name
        with contextlib.suppress(FileExistsError):
            stage.mkdir(mode=0o700)
        # fusermount3 mounts only onto a folder of the user who asks.
        os.chown(stage, self.account.uid, self.account.gid, follow_symlinks=False)
        return stage

    # -- the user's connection --

    def connection(self, name: str) -> Connection:
        """The user's own connection ``name``, from their encrypted store, validated again."""
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise AccessError(404, f"There is no connection '{name}'.")
        raw = read_store(self.workspace, self.account)
        try:
            stored = CredentialStore(os.devnull, self.key).get_from(raw, name) if raw else None
        except CredentialError as e:
            raise AccessError(400, f"Your connection '{name}' cannot be used: {e}.") from None
        if stored is None:
            raise AccessError(404, f"There is no connection '{name}'.")
        try:
            connection = validate(stored.to_json(), self.policy)
        except InvalidConnection as e:
            raise AccessError(400, f"Connection '{name}': {e.field}: {e.message}.") from None
        if connection.spec.kernel:
            raise AccessError(
                501,
                f"{connection.backend} connections are mounted by the kernel's NFS client, "
                "which sessions do not have; ask the operator to publish the export as a "
                "hosted volume instead.",
            )
        return connection

    async def attach(self, name: str, writable: bool | None = None) -> dict[str, Any]:
        """Mount the user's connection ``name`` at ``data/<name>``, read-only unless the
        connection (or ``writable``) says otherwise."""
        async with self.lock:
            return await self._attach(name, writable)

    async def _attach(self, name: str, writable: bool | None) -> dict[str, Any]:
        connection = self.connection(name)
        read_only = not (connection.writable if writable is None else writable)
        target = self.data_dir / name
        if name in self.read_only:
            raise AccessError(409, f"'{name}' is already attached at data/{name}.")
        if self._root is None:
            # First use in this hub process: what an earlier one left (its rclone was killed
            # with it; sessions outlive a hub restart) goes first.
            for folder in await clean_stale(self.account):
                log.warning("Removed %s, left by an earlier hub process", folder)
        if is_mount_point(target) and self._stale_fuse(target):
            # This account's FUSE mount that no object of this hub process made: the mount of
            # an rclone killed with an earlier hub process (dead, "transport endpoint is not
            # connected"). A session cannot FUSE-mount by itself in its sandbox.
            try:
                await LocalMounter().detach(target)
            except MountError as e:
                raise AccessError(500, f"data/{name} holds a dead mount: {e}.") from None
        if is_mount_point(target):
            raise AccessError(409, f"data/{name} is already in use (attached).")
        if not target.is_symlink() and target.is_dir() and any(target.iterdir()):
            raise AccessError(
                409, f"data/{name} is a folder with files in it; rename it or the connection."
            )
        engine = self._engine()
        stage = self._stage(name)
        try:
            # As when it was saved: a clear error now (credentials, network policy) rather
            # than a mount that answers nothing; the store may not hold what the session saved.
            await engine.test(connection)
            await engine.attach(connection, stage, read_only=read_only)
        except RcloneError as e:
            raise AccessError(e.status, e.message) from None
        try:
            self._bind(stage, target)
        except (MountError, OSError) as e:
            with contextlib.suppress(RcloneError, OSError):
                await engine.detach(name)
            message = e if isinstance(e, MountError) else e.strerror
            raise AccessError(
                500, f"Connection '{name}' could not be attached: {message}."
            ) from None
        self.read_only[name] = read_only
        return self.describe(name)

    def _stale_fuse(self, target: Path) -> bool:
        """Whether ``target`` is a FUSE mount of this account (from the mount table)."""
        where = os.path.abspath(target)
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                if len(fields) < 10 or mount_point_field(fields[4]) != where:
                    continue
                after = fields[fields.index("-") + 1 :]
                if after[0].startswith("fuse") and f"user_id={self.account.uid}," in (
                    after[2] + ","
                ):
                    return True
        return False

    def _bind(self, stage: Path, target: Path) -> None:
        # As LocalMounter._bind: never onto a path, onto the folder opened without following
        # a link, checked to be data/<name> still.
        expected = Path(os.path.realpath(target.parent.parent), *target.parts[-2:])
        fd = open_mount_point(target)
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != str(expected):
                raise UnsafeTarget(f"{target.name} in the session's folder was moved")
            bind_onto_descriptor(stage, fd)
        finally:
            os.close(fd)
        if not is_mount_point(expected):
            raise UnsafeTarget(f"{target.name} in the session's folder was moved")

    def describe(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "path": f"data/{name}",
            "attached": name in self.read_only,
            "read_only": self.read_only.get(name, True),
        }

    async def health(self, name: str) -> dict[str, str]:
        if self._rclone is None or name not in self.read_only:
            return {"state": "detached", "reason": ""}
        if not is_mount_point(self.data_dir / name):
            return {"state": "broken", "reason": "the mount is gone; detach and attach again"}
        return (await self._rclone.health(name)).to_json()

    async def attached(self) -> list[dict[str, Any]]:
        """Every attached connection, with its health."""
        return [
            {**self.describe(n), "health": await self.health(n)} for n in sorted(self.read_only)
        ]

    async def detach(self, name: str) -> dict[str, Any]:
        """Unmount ``data/<name>`` (lazily if a kernel holds a file), then rclone's mount."""
        async with self.lock:
            return await self._detach(name)

    async def _detach(self, name: str) -> dict[str, Any]:
        if name not in self.read_only or self._rclone is None:
            raise AccessError(409, f"Connection '{name}' is not attached.")
        try:
            await LocalMounter().detach(self.data_dir / name)
        except MountError as e:
            raise AccessError(500, f"Connection '{name}' could not be detached: {e}.") from None
        del self.read_only[name]
        try:
            await self._rclone.detach(name)
        except RcloneError as e:
            log.warning("rclone's mount of %s for %s: %s", name, self.account.name, e.message)
        return self.describe(name)

    async def close(self) -> None:
        """Unmount every connection, stop rclone, and remove the session's folders."""
        for name in list(self.read_only):
            try:
                await self._detach(name)
            except AccessError as e:
                log.error("Detaching connection %s of %s: %s", name, self.account.name, e)
        self.read_only.clear()
        if self._rclone is not None:
            await self._rclone.close()
            self._rclone = None
        if self._root is not None:
            # Never remove a folder with a mount still in it (that would delete remote files).
            if mounts_under(self._root):
                log.error("Left %s in place: something is still mounted there", self._root)
            else:
                shutil.rmtree(self._root, ignore_errors=True)
                self._root = None
