"""A guard in front of rclone's rc API, for the rclone sidecar of a Kubernetes session.

On Kubernetes the session's ``rclone rcd`` runs in a privileged sidecar (FUSE mounts that reach
the user container need Bidirectional propagation, which needs privilege) and the user's
single-user server drives it over a unix socket in an emptyDir both containers share. The
user's own code runs as the same user as that server, so whatever the server may ask rclone,
the user's code may ask too. rclone's rc API has no per-method permissions: with the rc
password a caller could dump the config (every connection's secrets, merely obscured), run any
rclone command (``core/command``), or define a ``local`` remote and list or mount the
privileged sidecar's own file system.

The guard closes that: it starts ``rclone rcd`` itself on a socket in a private folder of the
sidecar, listens on the shared socket with the same basic authentication as rclone (the
``RCLONE_RC_USER``/``RCLONE_RC_PASS`` of its environment), and forwards only the calls the
session's engine (:mod:`.rclone`) makes, each checked:

- ``config/create`` only for the allow-listed backends and options of
  :func:`datalabs_volumes.remotes.validate` (network policy included), secrets obscured;
- ``operations/list``, ``vfs/stats`` and ``mount/mount`` only on remotes defined through the
  guard, as ``<remote>:<path>`` (no ``:backend,option=...:`` connection strings, no local paths);
- ``mount/mount`` and ``mount/unmount`` only below the mount root, with the engine's options;
- ``config/delete``, ``fscache/clear``, ``rc/noop``, ``mount/listmounts`` as they are.

Everything else (``config/dump``, ``config/get``, ``core/command``, ``operations/copyfile``,
``options/set``...) is refused with 403 and the reason. Consequence: the session cannot read a
refreshed OAuth token back from a guarded rclone (that needs ``config/get``, which would show
the token to the user's code too); rclone keeps renewing it with the refresh token it was given.

With ``--hub-listen`` and ``--archive-root`` it also serves the hub-only bind API of hot attach
(:mod:`.hubbind`) on a TCP port, with the token in ``DATALABS_HUB_BIND_TOKEN``.

Run it as ``python -m datalabs_volumes.mount.rcguard --listen SOCKET --mount-root DIR``; see
``--help``. :func:`datalabs_volumes.mount.kubernetes.rclone_sidecar` builds the container.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import configparser
import contextlib
import hmac
import json
import logging
import os
import posixpath
import re
import signal
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_unix_socket
from tornado.web import Application, RequestHandler

from ..egress import NetworkPolicy, as_policy
from ..remotes import BACKENDS, InvalidConnection, check_path, validate
from .hubbind import TOKEN_ENV, BindPolicy, HubBindServer
from .local import mounts_under
from .rclone import TEST_PREFIX, RcloneDaemon, RcloneError

log = logging.getLogger("datalabs.rcguard")

#: Options of ``mount/mount`` the engine sets; any other is refused.
MOUNT_OPTIONS = frozenset({"AllowOther", "MaxReadAhead"})
VFS_OPTIONS = frozenset({"ReadOnly", "CacheMode", "WriteBack", "ChunkSize"})
MOUNT_TYPES = frozenset({"mount", "mount2", "cmount"})
LIST_OPTIONS = frozenset({"recurse", "noModTime", "noMimeType", "dirsOnly", "filesOnly"})
#: ``<remote>:<path>``: a plain remote name, never a ``:backend:`` or ``remote,opt=x:`` string.
_FS_RE = re.compile(r"^(?P<remote>[a-z0-9_-]{1,48}):(?P<path>[^\x00-\x1f]*)$")


class Refused(Exception):
    """A call the guard does not forward; the message says why (it is the caller's answer)."""

    def __init__(self, message: str, status: int = 403):
        super().__init__(message)
        self.message = message
        self.status = status


def _keys(params: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise Refused(f"{where}: {unknown[0]!r} is not allowed through the guard")


def _remote_name(name: Any) -> str:
    """A connection name, or one of the engine's throw-away test remotes."""
    if isinstance(name, str) and name.startswith(TEST_PREFIX):
        rest = name[len(TEST_PREFIX) :]
        if re.fullmatch(r"[0-9a-f]{1,16}", rest):
            return name
    if isinstance(name, str) and re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?", name):
        return name
    raise Refused(f"{name!r} is not a connection name")


@dataclass
class Policy:
    """Which rc calls pass, and with what parameters. Pure: no I/O but DNS for host checks."""

    mount_root: str
    #: Where connections may connect: a NetworkPolicy (allowed networks and refused
    #: endpoints), or the allowed networks alone.
    allowed_networks: NetworkPolicy | tuple[Any, ...] = ()
    resolve_hosts: bool = True
    #: Remotes defined through the guard (or found in the starting config): the only ones usable.
    remotes: set[str] = field(default_factory=set)

    def check(self, method: str, params: Any) -> dict[str, Any]:
        """The parameters to forward for ``method``; Refused if the call may not pass."""
        if not isinstance(params, dict):
            raise Refused("the parameters must be a JSON object", 400)
        checker = _CHECKERS.get(method)
        if checker is None:
            raise Refused(f"rc method {method!r} is not allowed through the guard")
        result: dict[str, Any] = checker(self, params)
        return result

    def forwarded(self, method: str, params: dict[str, Any]) -> None:
        """Note the effect of a call rclone carried out."""
        if method == "config/create":
            self.remotes.add(params["name"])
        elif method == "config/delete":
            self.remotes.discard(params["name"])

    # -- one checker per allowed method (see _CHECKERS) --

    def _rc_noop(self, params: dict[str, Any]) -> dict[str, Any]:
        return params

    def _fscache_clear(self, params: dict[str, Any]) -> dict[str, Any]:
        _keys(params, (), "fscache/clear")
        return {}

    def _mount_listmounts(self, params: dict[str, Any]) -> dict[str, Any]:
        _keys(params, (), "mount/listmounts")
        return {}

    def _config_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        _keys(params, ("name",), "config/delete")
        return {"name": _remote_name(params.get("name"))}

    def _config_create(self, params: dict[str, Any]) -> dict[str, Any]:
        _keys(params, ("name", "type", "parameters", "opt"), "config/create")
        name = _remote_name(params.get("name"))
        backend = params.get("type")
        if backend not in BACKENDS:
            raise Refused(f"backend {backend!r} is not offered")
        spec = BACKENDS[backend]
        given = params.get("parameters") or {}
        if not isinstance(given, dict):
            raise Refused("config/create: parameters must be an object", 400)
        options = {}
        for key, value in given.items():
            if key in spec.fixed:
                if value != spec.fixed[key]:
                    raise Refused(f"config/create: {key!r} is fixed to {spec.fixed[key]!r}")
                continue
            options[key] = value
        opt = params.get("opt") or {}
        if not isinstance(opt, dict):
            raise Refused("config/create: opt must be an object", 400)
        _keys(opt, ("obscure", "nonInteractive"), "config/create opt")
        # Validated as a connection of the user's (the name check is ours: test remotes too).
        doc = {"name": "guarded", "backend": backend, "options": options}
        try:
            connection = validate(doc, self.allowed_networks, resolve=self.resolve_hosts)
        except InvalidConnection as e:
            raise Refused(f"config/create: {e}") from None
        return {
            "name": name,
            "type": backend,
            "parameters": connection.rclone_parameters(),
            "opt": {"obscure": True, "nonInteractive": True},
        }

    def _fs(self, value: Any) -> str:
        match = _FS_RE.match(value) if isinstance(value, str) else None
        if match is None:
            raise Refused(f"fs {value!r} is not <connection>:<path>")
        if match["remote"] not in self.remotes:
            raise Refused(f"{match['remote']!r} is not a connection of this session", 404)
        try:
            check_path(match["path"])
        except InvalidConnection as e:
            raise Refused(f"fs: {e.message}") from None
        return str(value)

    def _mount_point(self, value: Any) -> str:
        if not isinstance(value, str) or not value.startswith("/") or "\x00" in value:
            raise Refused("mountPoint must be an absolute path")
        point = posixpath.normpath(value)
        root = posixpath.normpath(self.mount_root)
        real = os.path.realpath(point)
        inside = point.startswith(root + "/") and real.startswith(os.path.realpath(root) + "/")
        if not inside:
            raise Refused(f"mountPoint {value!r} is not below {root}")
        return point

    def _operations_list(self, params: dict[str, Any]) -> dict[str, Any]:
        _keys(params, ("fs", "remote", "opt"), "operations/list")
        remote = params.get("remote", "")
        try:
            check_path(remote)
        except InvalidConnection as e:
            raise Refused(f"operations/list remote: {e.message}") from None
        opt = params.get("opt") or {}
        if not isinstance(opt, dict) or not all(isinstance(v, bool) for v in opt.values()):
            raise Refused("operations/list: opt must be an object of true/false", 400)
        _keys(opt, LIST_OPTIONS, "operations/list opt")
        return {"fs": self._fs(params.get("fs")), "remote": remote, "opt": opt}

    def _vfs_stats(self, params: dict[str, Any]) -> dict[str, Any]:
        _keys(params, ("fs",), "vfs/stats")
        return {"fs": self._fs(params.get("fs"))}

    def _mount_mount(self, params: dict[str, Any]) -> dict[str, Any]:
        _keys(params, ("fs", "mountPoint", "mountType", "vfsOpt", "mountOpt"), "mount/mount")
        checked: dict[str, Any] = {
            "fs": self._fs(params.get("fs")),
            "mountPoint": self._mount_point(params.get("mountPoint")),
        }
        if "mountType" in params:
            if params["mountType"] not in MOUNT_TYPES:
                raise Refused(f"mountType {params['mountType']!r} is not allowed")
            checked["mountType"] = params["mountType"]
        for key, allowed in (("vfsOpt", VFS_OPTIONS), ("mountOpt", MOUNT_OPTIONS)):
            value = params.get(key) or {}
            if not isinstance(value, dict):
                raise Refused(f"mount/mount: {key} must be an object", 400)
            _keys(value, allowed, f"mount/mount {key}")
            checked[key] = value
        return checked

    def _mount_unmount(self, params: dict[str, Any]) -> dict[str, Any]:
        _keys(params, ("mountPoint",), "mount/unmount")
        return {"mountPoint": self._mount_point(params.get("mountPoint"))}


_CHECKERS = {
    "rc/noop": Policy._rc_noop,
    "fscache/clear": Policy._fscache_clear,
    "mount/listmounts": Policy._mount_listmounts,
    "config/delete": Policy._config_delete,
    "config/create": Policy._config_create,
    "operations/list": Policy._operations_list,
    "vfs/stats": Policy._vfs_stats,
    "mount/mount": Policy._mount_mount,
    "mount/unmount": Policy._mount_unmount,
}


def config_remotes(text: str) -> set[str]:
    """The remote names (sections) of an rclone config file."""
    parser = configparser.ConfigParser(interpolation=None)
    with contextlib.suppress(configparser.Error):
        parser.read_string(text)
    return set(parser.sections())


class _Handler(RequestHandler):
    """``POST /<group>/<method>``: authenticated, checked, forwarded; answers as rclone does."""

    def initialize(self, guard: Guard) -> None:
        self.guard = guard

    def check_xsrf_cookie(self) -> None:  # a JSON API on a unix socket: no cookies, no forms
        pass

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    async def post(self, method: str) -> None:
        if not self.guard.authorized(self.request.headers.get("Authorization", "")):
            self.set_header("WWW-Authenticate", 'Basic realm="rclone"')
            self._answer(401, {"error": "authentication required", "status": 401})
            return
        try:
            params = json.loads(self.request.body or b"{}")
            checked = self.guard.policy.check(method, params)
        except ValueError:
            self._answer(400, {"error": "the body is not JSON", "status": 400})
            return
        except Refused as e:
            log.warning("refused %s: %s", method, e.message)
            self._answer(e.status, {"error": e.message, "path": method, "status": e.status})
            return
        if method == "mount/mount":
            # The user container sees the mount root read-only: the mount point is made here.
            with contextlib.suppress(OSError):
                os.makedirs(checked["mountPoint"], exist_ok=True)
        try:
            answer = await self.guard.daemon.call(method, checked, timeout=60)
        except RcloneError as e:
            status = e.status if 400 <= e.status < 600 else 500
            self._answer(status, {"error": e.message, "path": method, "status": status})
            return
        self.guard.policy.forwarded(method, checked)
        if method == "mount/unmount":
            with contextlib.suppress(OSError):
                os.rmdir(checked["mountPoint"])
        self._answer(200, answer)


class Guard:
    """The guarded rc socket and the private ``rclone rcd`` behind it."""

    def __init__(
        self,
        listen: Path,
        policy: Policy,
        user: str,
        password: str,
        runtime_dir: Path | None = None,
        config: Path | None = None,
    ) -> None:
        if not password:
            raise ValueError("the guard needs an rc password (RCLONE_RC_PASS)")
        self.listen = listen
        self.policy = policy
        self._expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.daemon = RcloneDaemon(
            runtime_dir or Path(tempfile.mkdtemp(prefix="rcguard-")),
            # rclone's own connections obey the networks the guard lets connections name.
            network_policy=as_policy(policy.allowed_networks),
        )
        self.config = config
        self._server: HTTPServer | None = None

    def authorized(self, header: str) -> bool:
        return hmac.compare_digest(header.encode(), self._expected.encode())

    async def start(self) -> None:
        self.daemon.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.config is not None:
            # rclone writes its config on config/create: a Secret's file is read-only, so it
            # works on a private 0600 copy.
            text = self.config.read_text(encoding="utf-8")
            fd = os.open(self.daemon.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            self.policy.remotes |= config_remotes(text)
        await self.daemon.start()
        app = Application([(r"/([A-Za-z0-9_/]+)", _Handler, {"guard": self})])
        self._server = HTTPServer(app)
        # Any local user may connect (the user container runs as another uid than this root
        # sidecar); the rc password is what admits a caller, as with rclone's own socket.
        self._server.add_socket(bind_unix_socket(str(self.listen), mode=0o666))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        with contextlib.suppress(FileNotFoundError):
            self.listen.unlink()
        await self.daemon.stop()
        with contextlib.suppress(FileNotFoundError):
            self.daemon.config_path.unlink()


def _unmount_below(root: Path) -> None:
    """Lazily unmount everything below ``root`` (binds and FUSE mounts), deepest first."""
    for point in mounts_under(root):
        if point != Path(os.path.abspath(root)):
            done = subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)
            if done.returncode:
                log.warning("could not unmount %s: %s", point, done.stderr.decode().strip())


async def _serve(guard: Guard, binder: HubBindServer | None = None, hub_listen: str = "") -> None:
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    await guard.start()
    bind_server = None
    if binder is not None:
        host, _, port = hub_listen.rpartition(":")
        bind_server = binder.app.listen(int(port), address=host or "")
        log.info("serving the hub's bind API on %s", hub_listen)
    log.info("guarding rclone rc on %s (mount root %s)", guard.listen, guard.policy.mount_root)
    dead = asyncio.create_task(guard.daemon.process.wait()) if guard.daemon.process else None
    waits = [asyncio.create_task(stopped.wait()), *([dead] if dead else [])]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    asked = stopped.is_set()
    if bind_server is not None:
        bind_server.stop()
    # First, while the grace period lasts: with Bidirectional propagation a mount made here
    # lives on in the node's copy of the shared folder after this container ends, and the
    # kubelet's removal of that emptyDir then fails on it (or deletes through a writable one).
    _unmount_below(Path(guard.policy.mount_root))
    await guard.stop()
    if not asked and dead is not None:
        # Without its rclone the sidecar is useless: exit so that Kubernetes restarts it.
        raise SystemExit(f"rclone rcd exited with code {dead.result()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m datalabs_volumes.mount.rcguard",
        description="Serve a session's rclone rc API with only the calls Datalabs makes. "
        "The rc user and password come from RCLONE_RC_USER and RCLONE_RC_PASS.",
    )
    parser.add_argument("--listen", type=Path, required=True, help="unix socket to serve")
    parser.add_argument("--mount-root", required=True, help="mounts are allowed below it only")
    parser.add_argument("--config", type=Path, help="rclone config to start from (read-only)")
    parser.add_argument("--runtime-dir", type=Path, help="private folder for rclone (0700)")
    parser.add_argument(
        "--allow-network",
        action="append",
        default=[],
        help="private or loopback range connections may reach (as the spawner's option)",
    )
    parser.add_argument(
        "--refuse-endpoint",
        action="append",
        default=[],
        help="address, network or address:port never reached, even in an allowed network "
        "(as the spawner's refused endpoints: the hub's API)",
    )
    parser.add_argument(
        "--archive-root",
        help="the archive (read-only) whose folders the hub may have bound into the mount root",
    )
    parser.add_argument(
        "--hub-listen",
        default="",
        help=f"[HOST:]PORT of the hub-only bind API (token in {TOKEN_ENV}); off when empty",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s rcguard %(message)s")
    try:
        networks = NetworkPolicy.from_strings(args.allow_network, args.refuse_endpoint)
    except ValueError as e:
        parser.error(f"--allow-network/--refuse-endpoint: {e}")
    policy = Policy(args.mount_root, networks)
    user = os.environ.pop("RCLONE_RC_USER", "datalabs")
    password = os.environ.pop("RCLONE_RC_PASS", "")
    guard = Guard(args.listen, policy, user, password, args.runtime_dir, args.config)
    binder = None
    token = os.environ.pop(TOKEN_ENV, "")
    if args.hub_listen:
        if not args.archive_root:
            parser.error("--hub-listen needs --archive-root")
        binder = HubBindServer(BindPolicy(args.archive_root, args.mount_root), token)
    asyncio.run(_serve(guard, binder, args.hub_listen))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
