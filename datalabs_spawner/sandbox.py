"""The unprivileged session sandbox of ``DatalabsLocalSpawner``: system accounts and bubblewrap.

Pure parts (``account_name``, ``account_comment``, ``bwrap_argv``) take plain values and return
plain values, and are tested by comparing whole results. The I/O (``useradd``, ``chown``, the
shared mount of ``data/``) lives in small functions below them.

Why each hub user gets a named system account (TLJH-style, ``<prefix><name>``) rather than a
bare uid from a range: ``getpwuid()`` must answer inside the session (``getpass.getuser()``,
``~`` expansion, ``ls -l``, ``ps``, git and pip all ask), and an account is what an operator
sees and audits with the usual tools (``id``, ``ps -u``, ``find -user``). ``useradd`` picks the
uid from ``UID_MIN``-``UID_MAX`` in ``/etc/login.defs``.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from datalabs_volumes.mount.local import run_command

#: Longest account name ``useradd`` accepts on Debian.
MAX_ACCOUNT_NAME = 32
#: A hub name used as is (after the prefix): lower-case letters, digits, ``_`` and single
#: ``-`` between them. Never ``--``, which marks the hashed form, so the two forms never meet.
_DIRECT = re.compile(r"[a-z0-9][a-z0-9_]*(?:-[a-z0-9_]+)*")
_PREFIX = re.compile(r"[a-z][a-z0-9_]*(?:-[a-z0-9_]+)*-?")
_DIGEST_LEN = 10  # hex characters: 40 bits; a collision is refused by ``check_account``
_READABLE_COMMENT = re.compile(r"[A-Za-z0-9_.@+-]{1,64}")

#: Host folders bound read-only at the same path in every sandbox (those that exist).
SYSTEM_PATHS = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt")


class AccountError(RuntimeError):
    """A hub user cannot be given a system account; the message says why."""


def validate_prefix(prefix: str) -> str:
    """The account prefix, or ValueError: a lower-case letter first, then letters, digits,
    ``_`` and single ``-`` (at most 16 characters)."""
    if not _PREFIX.fullmatch(prefix) or len(prefix) > 16:
        raise ValueError(
            f"account_prefix {prefix!r} must start with a lower-case letter and hold only "
            "lower-case letters, digits, '_' and single '-' (at most 16 characters), e.g. 'dl-'"
        )
    return prefix


def account_name(hub_name: str, prefix: str) -> str:
    """The system account of hub user ``hub_name``: ``<prefix><hub_name>`` when that is a
    valid account name, else ``<prefix><slug>--<hash>`` (the hash of the exact hub name).

    Distinct hub names give distinct accounts: the two forms never meet (only the hashed one
    holds ``--``), and a hash collision between two hashed names is caught by ``check_account``
    (the account's comment names the hub user it belongs to), never shared.
    """
    validate_prefix(prefix)
    if not hub_name:
        raise AccountError("an empty hub user name cannot name a system account")
    if _DIRECT.fullmatch(hub_name) and len(prefix) + len(hub_name) <= MAX_ACCOUNT_NAME:
        return prefix + hub_name
    digest = hashlib.sha256(hub_name.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST_LEN]
    slug = re.sub(r"[^a-z0-9_]+", "-", hub_name.lower()).strip("-")
    room = MAX_ACCOUNT_NAME - len(prefix) - 2 - _DIGEST_LEN
    return f"{prefix}{slug[:room].rstrip('-')}--{digest}"


def account_comment(hub_name: str) -> str:
    """The account's comment (GECOS) field, naming the hub user it belongs to: how
    ``check_account`` tells our accounts from anything else on the machine."""
    if _READABLE_COMMENT.fullmatch(hub_name):
        return f"Datalabs {hub_name}"
    digest = hashlib.sha256(hub_name.encode("utf-8", "surrogatepass")).hexdigest()
    return f"Datalabs sha256:{digest[:32]}"


@dataclass(frozen=True)
class Account:
    """A system account a session runs as."""

    name: str
    uid: int
    gid: int


def check_account(entry: pwd.struct_passwd, hub_name: str) -> Account:
    """The Account of an existing passwd entry, if it is the one made for ``hub_name``."""
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise AccountError(f"account {entry.pw_name} is root's; sessions never run as root")
    if entry.pw_gecos != account_comment(hub_name):
        raise AccountError(
            f"system account {entry.pw_name} exists but was not made by Datalabs for hub user "
            f"{hub_name!r} (its comment is {entry.pw_gecos!r}); choose another account_prefix "
            "or remove that account"
        )
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


def useradd_argv(name: str, hub_name: str, home: str) -> list[str]:
    """The ``useradd`` command creating ``name``: its own group, no password (locked), home
    at the workspace (not created: the spawner makes the workspace itself)."""
    return [
        "useradd",
        "--no-create-home",
        "--home-dir",
        home,
        "--shell",
        "/bin/bash",
        "--user-group",
        "--comment",
        account_comment(hub_name),
        name,
    ]


async def ensure_account(hub_name: str, prefix: str, home: str) -> Account:
    """The system account of ``hub_name``, created on first use."""
    name = account_name(hub_name, prefix)
    try:
        return check_account(pwd.getpwnam(name), hub_name)
    except KeyError:
        pass
    code, out = await run_command(*useradd_argv(name, hub_name, home))
    if code and code != 9:  # 9: made by a concurrent start in the meantime; checked below
        raise AccountError(f"could not create system account {name}: {out}")
    try:
        return check_account(pwd.getpwnam(name), hub_name)
    except KeyError:
        raise AccountError(f"useradd made no account {name}: {out}") from None


def prepare_workspace(workspace: str, account: Account) -> None:
    """Workspace owned by the account, mode 0700; ``data/`` owned by it too, before any bind
    (bubblewrap would make a missing mount point as root, mode 0700)."""
    os.makedirs(workspace, mode=0o700, exist_ok=True)
    # lchown/no-follow: the user owns the workspace and could have put a symbolic link there.
    os.chown(workspace, account.uid, account.gid, follow_symlinks=False)
    os.chmod(workspace, 0o700)
    data = os.path.join(workspace, "data")
    if os.path.islink(data):
        os.unlink(data)
    os.makedirs(data, exist_ok=True)
    os.chown(data, account.uid, account.gid, follow_symlinks=False)
    os.chmod(data, 0o755, follow_symlinks=False)


async def share_data_dir(data_dir: str) -> None:
    """Make ``data_dir`` a mount point with shared propagation, so that a read-only bind the
    hub makes under it later (hot attach) also appears in the running sandbox, whose copy of
    it bubblewrap makes a slave. Idempotent."""
    code, out = await run_command("findmnt", "--noheadings", "--mountpoint", data_dir)
    if code:
        code, out = await run_command("mount", "--bind", data_dir, data_dir)
        if code:
            raise AccountError(f"could not bind {data_dir} onto itself: {out}")
    code, out = await run_command("mount", "--make-shared", data_dir)
    if code:
        raise AccountError(f"could not make {data_dir} a shared mount: {out}")


#: Where a sandboxed session sees the machine-wide pipeline run slots, whatever their host
#: folder (binding them at their own path would show that path's parents, e.g. ``/var``).
RUN_SLOTS_INSIDE = "/run/datalabs-run-slots"
#: Where a sandboxed session sees the memory cgroup its pipeline runs get theirs under.
MEMORY_CGROUP_INSIDE = "/run/datalabs-memory"


@dataclass(frozen=True)
class SandboxSpec:
    """What one session's sandbox shows, as host paths (each appears at the same path inside).

    ``system``: host folders bound read-only when they exist (``--ro-bind-try``);
    ``links``: ``(path, target)`` symbolic links to make instead (``/bin -> usr/bin``);
    ``read_only``: further folders bound read-only (the Python environment, the catalogue);
    ``workspace``: bound writable, with the volumes already mounted under its ``data/``;
    ``run_slots``: the host folder of the machine-wide run slots, shown read-only at
    :data:`RUN_SLOTS_INSIDE` (runs take a slot by ``flock``, which needs no write access);
    ``memory_cgroup``: the host memory cgroup delegated to the account, bound writable at
    :data:`MEMORY_CGROUP_INSIDE` (each pipeline run makes its own cgroup in it).
    """

    account: Account
    workspace: str
    read_only: tuple[str, ...] = ()
    system: tuple[str, ...] = SYSTEM_PATHS
    links: tuple[tuple[str, str], ...] = ()
    run_slots: str = ""
    memory_cgroup: str = ""


def _ancestors(path: str) -> list[str]:
    parts = PurePosixPath(path).parents
    return [str(p) for p in reversed(parts) if str(p) != "/"]


def _under(path: str, roots: Iterable[str]) -> bool:
    p = PurePosixPath(path)
    return any(p == PurePosixPath(r) or PurePosixPath(r) in p.parents for r in roots)


def bwrap_argv(
    spec: SandboxSpec, command: Sequence[str], bwrap: str = "bwrap", setpriv: str = "setpriv"
) -> list[str]:
    """The argument list running ``command`` in the sandbox, as the spec's account.

    bubblewrap builds a new root from a tmpfs: only what is listed is visible (the archive
    root, the hub's state folder, ``/root``, ``/home``, ``/var``, ``/run``, ``/srv`` and other
    workspaces are not). ``--unshare-pid`` gives the session its own PID namespace and ``/proc``;
    ``--die-with-parent`` ends it with its parent, the session's supervisor (``supervise.py``),
    so that it outlives a hub restart but never the hub's handle on it. Then ``setpriv`` drops
    to the account with no groups, no capabilities (inheritable and bounding sets cleared) and
    ``no_new_privs``, so set-uid programs cannot raise it back.
    """
    argv = [bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    linked = {p for p, _ in spec.links}
    mounted: list[str] = []
    for path in spec.system:
        if path in linked:
            continue
        argv += ["--ro-bind-try", path, path]
        mounted.append(path)
    for path, target in spec.links:
        argv += ["--symlink", target, path]
        mounted.append(path)
    argv += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
    argv += ["--perms", "1777", "--tmpfs", "/dev/shm"]
    tmpfs = ["/tmp", "/dev/shm"]
    made: set[str] = {"/tmp", "/dev", "/dev/shm", "/proc"}

    def parents_of(path: str) -> list[str]:
        # bubblewrap would make missing parents root-only (0700): the account could not reach
        # its own workspace. Make them 0755 ourselves, except inside a host folder already
        # bound (they exist there, with the host's own modes).
        out = []
        for parent in _ancestors(path):
            if parent in made or _under(parent, mounted):
                continue
            made.add(parent)
            out += ["--perms", "0755", "--dir", parent]
        return out

    for path in spec.read_only:
        if _under(path, mounted) and not _under(path, tmpfs):
            continue  # already visible, read-only, through a system folder
        argv += parents_of(path) + ["--ro-bind", path, path]
        mounted.append(path)
    if spec.run_slots:
        argv += parents_of(RUN_SLOTS_INSIDE) + ["--ro-bind", spec.run_slots, RUN_SLOTS_INSIDE]
    if spec.memory_cgroup:
        argv += parents_of(MEMORY_CGROUP_INSIDE)
        argv += ["--bind", spec.memory_cgroup, MEMORY_CGROUP_INSIDE]
    argv += parents_of(spec.workspace) + ["--bind", spec.workspace, spec.workspace]
    argv += ["--chdir", spec.workspace]
    argv += [
        "--",
        setpriv,
        f"--reuid={spec.account.uid}",
        f"--regid={spec.account.gid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
        *command,
    ]
    return argv


def sandboxed_pid(bwrap_pid: int, levels: int = 2) -> int | None:
    """The host pid of the command bubblewrap ``bwrap_pid`` runs (bubblewrap's child is the
    PID namespace's init, whose first child is the command), or None when it is gone.
    ``levels=3`` starts one level higher, from the supervisor whose child is bubblewrap
    (``supervise.py``).

    bubblewrap forwards no signal: a signal to it kills it, and ``--die-with-parent`` then
    SIGKILLs the sandbox, so a graceful stop signals the command itself."""
    pid = bwrap_pid
    for _ in range(levels):
        try:
            with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
                children = f.read().split()
        except OSError:
            return None
        if not children:
            return None
        pid = int(children[0])
    return pid


def host_links(paths: Iterable[str] = SYSTEM_PATHS) -> tuple[tuple[str, str], ...]:
    """The system folders that are symbolic links on this host (``/bin -> usr/bin`` on a
    merged-/usr Debian), to be made as the same links in the sandbox."""
    return tuple((p, os.readlink(p)) for p in paths if os.path.islink(p))
