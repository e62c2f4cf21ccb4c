"""The Datalabs spawners.

- ``DatalabsKubeSpawner`` (entry point ``datalabs``): KubeSpawner with the datalab catalogue as
  its ``profile_list`` and the chosen archive volumes as read-only pod volumes.
- ``DatalabsLocalSpawner`` (entry point ``datalabs-local``): the embedded default for one
  machine; a local process per user with a workspace folder and read-only bind mounts.

Both take the same ``user_options`` from the spawn form and from the REST API, and check them
with the same function (``options.resolve_choice``) before anything starts.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from jupyterhub.spawner import SimpleLocalProcessSpawner
from kubespawner import KubeSpawner
from sqlalchemy.orm import object_session
from tornado import web
from traitlets import Bool, Dict, Enum, Float, List, TraitError, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from datalabs_pipelines.executors.kubernetes import session_work_volumes
from datalabs_pipelines.executors.memory import ENV_CGROUP, ENV_MEMORY_LIMIT, delegate
from datalabs_pipelines.executors.slots import ENV_SLOTS_DIR
from datalabs_volumes import contract
from datalabs_volumes.access import AccessError, authorize_volume, may_read, refuse_volume
from datalabs_volumes.credentials import user_key
from datalabs_volumes.egress import NetworkPolicy
from datalabs_volumes.models import ChosenVolume, Volume
from datalabs_volumes.mount.kubernetes import UnmountableVolume, merge_named, session_volumes
from datalabs_volumes.mount.local import (
    LocalMounter,
    Mounted,
    MountError,
    is_mount_point,
    mounts_under,
    resolve_source,
    run_command,
    sweep_stages,
)
from datalabs_volumes.processes import process_start

from .catalogue import Catalogue, shared_catalogue
from .connections import HostConnections, clean_stale
from .desktop import COMMAND_ENV, SESSION_SCRIPT, XSTARTUP_ENV, desktop_env
from .examples import install_examples
from .form import render_form
from .kube_session import (
    KEY_PREFIX,
    SidecarSecretMixin,
    escape_braces,
    session_catalogue_parts,
)
from .limits import RunLimitsMixin
from .options import (
    ChoiceError,
    SessionChoice,
    Who,
    make_profile_list,
    options_from_form,
    readable_volumes,
    resolve_choice,
    usable_datalabs,
)
from .queue import QueuedStartMixin
from .sandbox import (
    MEMORY_CGROUP_INSIDE,
    RUN_SLOTS_INSIDE,
    Account,
    AccountError,
    SandboxSpec,
    account_name,
    bwrap_argv,
    check_account,
    ensure_account,
    host_links,
    prepare_workspace,
    sandboxed_pid,
    share_data_dir,
    validate_prefix,
)

#: The parent of every sandboxed session (see its docstring), run by path with ``python -I -S``.
SUPERVISOR = Path(__file__).with_name("supervise.py")

#: Environment variable through which the single-user server learns its volumes (JSON list).
VOLUMES_ENV = contract.VOLUMES
DATALAB_ENV = contract.DATALAB
#: What a ConfigMap key may be (Kubernetes: at most 253 of these characters).
CONFIGMAP_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}")


def _http_error(status: int, message: str) -> web.HTTPError:
    err = web.HTTPError(status, log_message=message.replace("%", "%%"))
    # JupyterHub shows this text to the user, on the spawn page and in REST API answers.
    err.jupyterhub_message = message  # type: ignore[attr-defined]
    return err


class DatalabsSpawnerMixin(LoggingConfigurable):
    """What both Datalabs spawners share: the catalogue, the form and the choice checks.

    Its options can be set for both spawners at once as ``c.DatalabsSpawnerMixin.<option>``.
    """

    catalogue_dirs = List(
        Unicode(),
        config=True,
        help="""
        Catalogue directories, one subfolder per mission, each with ``datalabs/`` and
        ``volumes/`` folders of YAML files (and ``pipelines/`` of CWL files).

        Files are re-read when they change, so missions publish without a hub restart.
        A broken file is logged as ``file: field: problem`` and left out; the rest is served.
        Check a directory before publishing with ``datalabs catalogue check DIR``.

        Example: ``c.DatalabsSpawnerMixin.catalogue_dirs = ["/srv/datalabs/catalogue"]``
        """,
    )

    catalogue_refresh_seconds = Float(
        2.0,
        config=True,
        help="""
        How old a scan of the catalogue directories may be before the next request rescans
        them (seconds). Rescanning costs one ``stat`` per file; changed files are re-parsed.
        """,
    )

    group_volume_access = Dict(
        key_trait=Unicode(),
        value_trait=List(Unicode()),
        config=True,
        help="""
        Extra volume access granted by the operator, per JupyterHub group, on top of each
        volume's own ``access`` rules: ``{"<hub group>": ["<volume id>", ...]}``.

        Example: ``{"staff": ["rosetta-restricted"]}`` lets members of the hub group ``staff``
        read that volume whatever its catalogue entry says. Default: no extra access.
        """,
    )

    credentials_master_key = Unicode(
        config=True,
        help="""
        Master key protecting users' connections to their own storage (WebDAV, S3, ...):
        each user's connections are encrypted at rest with a key derived from it for that
        user alone. A Fernet key (``python -c "from cryptography.fernet import Fernet;
        print(Fernet.generate_key().decode())"``); keep it secret and stable, since changing
        it makes stored connections unreadable (users then create them again).

        Default: ``DATALABS_CREDENTIALS_MASTER_KEY`` from the hub's environment; empty means
        connections are disabled, with a message saying so in the Data panel.
        """,
    )

    @default("credentials_master_key")
    def _default_credentials_master_key(self):
        return os.environ.get("DATALABS_CREDENTIALS_MASTER_KEY", "")

    connection_allowed_networks = List(
        Unicode(),
        config=True,
        help="""
        Private, loopback or link-local networks (CIDR) that users' connections may reach.
        Connections to addresses in those ranges are refused unless listed here, so that users
        cannot probe the platform's own network. Example: ``["10.20.0.0/16"]`` for an
        institute's storage; the demo allows ``["127.0.0.1/32"]`` to try ``rclone serve``.
        """,
    )

    connection_refused_endpoints = List(
        Unicode(),
        config=True,
        help="""
        Addresses, networks or ``address:port`` endpoints that users' connections never reach,
        even inside ``connection_allowed_networks``: e.g. ``["127.0.0.1:9000"]`` to allow
        loopback for a test server but not another local service. The hub's own API and the
        proxy's API are added to this list whenever their address is an IP address, so a demo
        that allows ``127.0.0.1/32`` does not expose them. Checked when a connection is saved
        and at every connection rclone makes, redirects included.
        """,
    )

    def refused_endpoints(self) -> list[str]:
        """``connection_refused_endpoints`` plus the hub's and the proxy's API endpoints."""
        found = list(self.connection_refused_endpoints)
        urls = [getattr(self.hub, "api_url", "") if self.hub is not None else ""]
        proxy = (getattr(self.user, "settings", None) or {}).get("proxy")
        urls.append(getattr(proxy, "api_url", "") or "")
        for url in urls:
            endpoint = ip_endpoint(url)
            if endpoint and endpoint not in found:
                found.append(endpoint)
        return found

    def network_policy(self) -> NetworkPolicy:
        """Where this user's connections may connect (``connection_allowed_networks``,
        ``refused_endpoints()``)."""
        return NetworkPolicy.from_strings(
            self.connection_allowed_networks, self.refused_endpoints()
        )

    pipeline_runs_dir = Unicode(
        "~/pipeline-runs",
        config=True,
        help="""
        Where the session keeps its pipeline runs (the run store: ``runs.db`` and one folder
        per run with its logs, outputs and provenance), given to the session as
        ``DATALABS_PIPELINES_HOME``; ``~`` is the user's home in the session. The default is a
        visible folder of the workspace, so that run outputs open in JupyterLab's file browser
        (jupyter-server refuses hidden paths) and the ``datalabs-pipeline`` command in a
        terminal sees the same runs as the Pipelines panel. Empty: the single-user default,
        ``~/.local/share/datalabs/pipelines``.
        """,
    )

    broker_url = Unicode(
        config=True,
        help="""
        The broker's API root as the session reaches it (given to the session as
        ``DATALABS_BROKER_URL``). The session's Data panel lists, attaches and detaches
        volumes by asking it, with the user's own hub token. Default: the hub's API address
        as sessions reach it (``JupyterHub.hub_connect_url`` when set) with
        ``/hub/datalabs/v1/``. Serve the broker on the hub with
        ``c.JupyterHub.extra_handlers = datalabs_spawner.broker.default_handlers``.
        """,
    )

    @default("broker_url")
    def _default_broker_url(self):
        api = (self.hub.api_url if self.hub is not None else "").rstrip("/")
        if not api.endswith("/api"):
            return ""
        return api[: -len("api")] + contract.BROKER_PATH

    _progress_events: list[dict[str, Any]]
    choice: SessionChoice | None = None

    # -- catalogue and user ------------------------------------------------------------------

    @property
    def catalogue(self) -> Catalogue:
        catalogue = shared_catalogue(self.catalogue_dirs)
        before = list(catalogue.problems)
        catalogue.refresh(self.catalogue_refresh_seconds)
        after = catalogue.problems
        if after != before:
            for problem in after:
                self.log.warning("Catalogue problem (entry left out): %s", problem)
        return catalogue

    def who(self) -> Who:
        """The spawner's user, their JupyterHub groups and the volumes the operator grants."""
        groups = tuple(sorted(g.name for g in getattr(self.user, "groups", []) or []))
        granted = frozenset(v for g in groups for v in self.group_volume_access.get(g, []))
        return Who(self.user.name, groups, granted)

    def mountable(self, volume: ChosenVolume | Volume) -> bool:
        """Whether this spawner can attach the volume's source (all kinds by default)."""
        return True

    def authorize_volume(self, vid: str, version: str | None = None) -> ChosenVolume:
        """The broker's decision for one volume of this spawner's user, at spawn and at hot
        attach alike: ``datalabs_volumes.access.authorize_volume`` on the hub's own groups
        (``who()``), the catalogue and this spawner's engine (``mountable``). AccessError
        (403 unknown or forbidden, 400 bad version or unattachable source) otherwise."""
        return authorize_volume(
            self.catalogue.volumes.entries, self.who(), vid, version, mountable=self.mountable
        )

    def readable_volumes(self) -> list[Volume]:
        """The catalogue's volumes this spawner's user may read and this hub can attach."""
        return [v for v in readable_volumes(self.catalogue, self.who()) if self.mountable(v)]

    def resolve_user_options(self) -> SessionChoice:
        """Check ``self.user_options``; raise an HTTP error naming what is refused."""
        try:
            return resolve_choice(
                self.user_options, self.catalogue, self.who(), mountable=self.mountable
            )
        except ChoiceError as e:
            self.log.warning("Refused session options for %s: %s", self.user.name, e.message)
            raise _http_error(e.status, e.message) from None

    async def hot_attach(self, chosen: ChosenVolume) -> Mounted:
        """Attach an authorized volume to the running session (the broker calls this after
        ``authorize_volume``). Spawners that attach volumes only at start refuse (409)."""
        raise AccessError(
            409,
            f"Volume '{chosen.id}' can only be attached when the session starts on this hub; "
            "restart the session with it.",
        )

    def volume_path(self, folder: str) -> str:
        """Where a volume attached while the session runs appears, from the user's home."""
        return f"data/{folder}"

    async def hot_detach(self, vid: str) -> Volume:
        """Detach a volume from the running session (see ``hot_attach``)."""
        raise AccessError(
            409, f"Volume '{vid}' can only be detached by restarting the session on this hub."
        )

    def volume_folder(self, chosen: ChosenVolume) -> Path:
        """The host folder of an authorized volume, for the broker's size and browse (a
        sandboxed session cannot see the archive). Spawners without one refuse (501)."""
        raise AccessError(501, f"Volume '{chosen.id}' cannot be read by the hub here.")

    def host_connections(self) -> HostConnections:
        """The user's connections as the hub mounts them into the running session (the
        broker's connection calls). Only sandboxed sessions need it; elsewhere 409."""
        raise AccessError(
            409, "Your session mounts its connections itself on this hub; use its Data panel."
        )

    # -- the spawn form ----------------------------------------------------------------------

    @default("options_form")
    def _datalabs_options_form(self):
        return self._render_datalabs_form

    def _render_datalabs_form(self, spawner: Any = None) -> str:
        who = self.who()
        catalogue = self.catalogue
        previous: dict[str, Any] = {}
        if self.user_options:
            try:
                previous = resolve_choice(self.user_options, catalogue, who).to_user_options()
            except ChoiceError:
                previous = {}
        volumes = [v for v in readable_volumes(catalogue, who) if self.mountable(v)]
        return render_form(usable_datalabs(catalogue, who), volumes, previous)

    @default("options_from_form")
    def _datalabs_options_from_form(self):
        return self._parse_datalabs_form

    def _parse_datalabs_form(self, formdata: dict[str, list[str]]) -> dict[str, Any]:
        options = options_from_form(formdata)
        # Checked here as well as at start, so a form user sees the refusal on the form itself.
        try:
            resolve_choice(options, self.catalogue, self.who())
        except ChoiceError as e:
            raise ValueError(e.message) from None
        return options

    # -- progress ----------------------------------------------------------------------------

    def _emit(self, message: str, progress: int | None = None) -> None:
        event: dict[str, Any] = {"message": message}
        if progress is not None:
            event["progress"] = progress
        self._progress_events.append(event)
        self.log.info("%s: %s", self.user.name, message)

    async def _datalabs_progress(self):
        """Our own events (one per volume attached), as they happen, until start() finishes."""
        sent = 0
        while True:
            events = getattr(self, "_progress_events", [])
            while sent < len(events):
                yield events[sent]
                sent += 1
            if not getattr(self, "_datalabs_starting", False):
                return
            await asyncio.sleep(0.1)

    def volume_env(self, choice: SessionChoice, paths: dict[str, str]) -> dict[str, str]:
        """Environment telling the single-user server what it has (read by the extension)."""
        described = [c.describe(paths[c.id]) for c in choice.volumes]
        # No groups or grants: the session never decides access, the broker does (and a
        # session's environment is the user's to change).
        return {
            VOLUMES_ENV: json.dumps(described),
            DATALAB_ENV: choice.datalab.slug,
            contract.ALLOWED_NETWORKS: json.dumps(list(self.connection_allowed_networks)),
            contract.REFUSED_ENDPOINTS: json.dumps(self.refused_endpoints()),
            **({contract.BROKER_URL: self.broker_url} if self.broker_url else {}),
            **({contract.PIPELINES_HOME: self.pipeline_runs_dir} if self.pipeline_runs_dir else {}),
        }


def ip_endpoint(url: str) -> str | None:
    """``"127.0.0.1:8081"`` for ``http://127.0.0.1:8081/hub/api``; None unless the host is an
    IP address (a name cannot be matched against the addresses rclone connects to). A
    wildcard bind address (``0.0.0.0``, ``::``) stands for every local address: loopback."""
    import ipaddress
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
        addr = ipaddress.ip_address(host or "")
    except ValueError:
        return None
    if addr.is_unspecified:
        addr = ipaddress.ip_address("127.0.0.1" if addr.version == 4 else "::1")
    return f"[{addr}]:{port}" if addr.version == 6 else f"{addr}:{port}"


class DatalabsLocalSpawner(
    QueuedStartMixin, RunLimitsMixin, DatalabsSpawnerMixin, SimpleLocalProcessSpawner
):
    """The embedded default: a local single-user server per user, volumes bind-mounted read-only.

    Each user gets a workspace folder; volume ``<id>`` appears at ``<workspace>/data/<id>``.
    By default everything runs as the hub's own system user, so there is no isolation between
    users: for one trusted machine, demos and development. With ``sandbox = True`` each user's
    server runs as their own system account inside a bubblewrap sandbox (docs/security.md).
    """

    workspace_root = Unicode(
        "/var/lib/datalabs/workspaces",
        config=True,
        help="""
        Folder holding one workspace per user (``<workspace_root>/<username>``), which is the
        user's home and the root of their file browser. Created 0700 when missing.
        """,
    )

    volume_root = Unicode(
        "/srv/datalabs/archive",
        config=True,
        help="""
        The archive root: ``local`` volume sources (``source: {type: local, path: P}``) are
        the folders ``<volume_root>/P``. Sources resolving outside it (symbolic links included)
        are refused.
        """,
    )

    mount_method = Enum(
        ["auto", "bind", "rclone"],
        default_value="auto",
        config=True,
        help="""
        How hosted volumes are attached. ``bind``: a read-only bind mount (needs root; reads
        at disk speed). ``rclone``: a read-only rclone FUSE mount (no root needed, far slower).
        ``auto`` (default): bind when the hub runs as root, else rclone, with a warning.
        """,
    )

    examples_dir = Unicode(
        "",
        config=True,
        help="""
        Folder of example notebooks, one subfolder per datalab slug: at each start,
        ``<examples_dir>/<slug>/`` is copied to ``<workspace>/examples/<slug>/``, leaving files
        the user already has (edited or not) untouched. Empty (default): no examples.
        """,
    )

    sandbox = Bool(
        False,
        config=True,
        help="""
        Run each user's server unprivileged, in its own sandbox (needs the hub to run as root,
        and Debian's ``bubblewrap``): as the user's own system account (``account_prefix``,
        created on first start), never root; in its own PID namespace (no other process and no
        other ``/proc/<pid>/environ`` visible) with a private ``/tmp``; seeing the host system
        read-only (``/usr``, ``/etc``, ``/lib*``, ``/bin``, the Python environment, the
        catalogue: ``sandbox_read_only``), its workspace (mode 0700, owned by the account)
        writable, and of the archive only the volumes attached read-only under ``data/``. The
        archive root, the hub's state folder, other workspaces, ``/root``, ``/home``, ``/var``
        and ``/run`` are not visible. The connection key reaches the server through a pipe,
        never its environment. Kernels, terminals and pipeline runs are its children, inside.
        Each sandbox runs under a small supervisor process (``supervise.py``), not as the
        hub's child, so that sessions outlive a hub restart (README, "Hub restarts").

        Default False in this release. Volumes attached to a running session and the user's
        connections (FUSE, which cannot mount inside bubblewrap) are mounted by the hub's
        broker on the host and propagate into the sandbox (docs/security.md).
        """,
    )

    account_prefix = Unicode(
        "dl-",
        config=True,
        help="""
        Prefix of the system accounts made for hub users when ``sandbox`` is on: hub user
        ``alice`` runs as ``dl-alice``. A hub name that is not a valid account name (upper
        case, ``@``, ``.``, too long) becomes ``<prefix><slug>--<hash>``, so distinct hub
        users never share an account; an account of that name not made by Datalabs for this
        hub user (its comment says whose it is) is refused, never reused. Accounts are made
        with ``useradd`` (uid from ``UID_MIN``-``UID_MAX`` of ``/etc/login.defs``, own group,
        locked password, home at the workspace) and are never removed by the hub.
        """,
    )

    @validate("account_prefix")
    def _validate_account_prefix(self, proposal):
        try:
            return validate_prefix(proposal["value"])
        except ValueError as e:
            raise ValueError(f"DatalabsLocalSpawner.{e}") from None

    sandbox_read_only = List(
        Unicode(),
        config=True,
        help="""
        Host folders shown read-only (at the same path) inside every sandbox, besides the
        system folders (``/usr``, ``/etc``, ``/bin``, ``/sbin``, ``/lib*``, ``/opt``) and the
        catalogue directories. Default: the Python environment the hub runs from
        (``sys.prefix`` and its base) and, for an editable install, the Datalabs package
        folders (never the checkout itself, which may hold the demo's state). Never list the
        archive root, the hub's state folder or anything holding secrets.
        """,
    )

    @default("sandbox_read_only")
    def _default_sandbox_read_only(self):
        return python_env_paths()

    _mounted: list[Mounted]
    account: Account | None = None
    #: When the server's process started (``process_start``), so that after a hub restart a
    #: pid the kernel has since given to another process is never taken for the server.
    _pid_started: int | None = None
    #: Whether the running session is sandboxed (its pid is then its supervisor's): kept in
    #: the state, since the operator may change ``sandbox`` while sessions outlive the hub.
    _sandboxed: bool | None = None
    #: Whether this hub process has looked for staging folders a killed hub left (class-wide).
    _stages_swept: bool = False

    @default("cmd")
    def _default_cmd(self):
        return ["jupyterhub-singleuser"]

    def mountable(self, volume: ChosenVolume | Volume) -> bool:
        return volume.source.type == "local"

    @property
    def workspace(self) -> Path:
        name = self.user.name
        if name in ("", ".", "..") or "/" in name or "\x00" in name:
            raise _http_error(400, f"User name {name!r} cannot name a workspace folder")
        return Path(self.workspace_root) / name

    @property
    def data_dir(self) -> Path:
        return self.workspace / "data"

    def source_folder(self, chosen: ChosenVolume) -> Path:
        return resolve_source(self.volume_root, chosen.source.path)

    def get_args(self) -> list[str]:
        args = list(super().get_args())
        if self.sandbox:
            return [a for a in args if a != "--allow-root"]
        if os.geteuid() == 0 and "--allow-root" not in args:
            # jupyter-server refuses to run as root otherwise, and the hub then only sees a
            # time-out (FACTS.md).
            args.append("--allow-root")
        return args

    def get_env(self):
        env = super().get_env()
        # Every session gets our X session script: JupyterLab's Desktop launcher (from
        # jupyter-remote-desktop-proxy) would otherwise want xfce4, and would leave its X server
        # running after the session. A desktop datalab's application is set per start, never
        # stored in self.environment, so that it cannot outlive the desktop session.
        env[XSTARTUP_ENV] = str(SESSION_SCRIPT)
        env.update(self.run_limits_env())  # pipeline run limits (limits.py)
        if self.choice is not None:
            env.update(desktop_env(self.choice.datalab))
        if self.sandbox and self.account is not None:
            env["USER"] = env["LOGNAME"] = self.account.name
            if ENV_SLOTS_DIR in env:
                env[ENV_SLOTS_DIR] = RUN_SLOTS_INSIDE  # where sandbox_spec() shows them
            if ENV_MEMORY_LIMIT in env:
                env[ENV_CGROUP] = MEMORY_CGROUP_INSIDE  # the account's own (sandbox_spec())
        return env

    async def progress(self):
        async for event in self._queue_progress():  # the place in the start queue (queue.py)
            yield event
        async for event in self._datalabs_progress():
            yield event

    async def run_pre_spawn_hook(self):
        await super().run_pre_spawn_hook()  # waits for a start slot (queue.py), untimed
        # Admitted: progress follows the start from here on, with no gap until start() runs.
        self._progress_events = []
        self._datalabs_starting = True

    async def start(self):
        self._progress_events = []
        self._datalabs_starting = True
        try:
            choice = self.resolve_user_options()
            self.choice = choice
            workspace = self.workspace
            if self.sandbox:
                await self._prepare_account(workspace)
            else:
                workspace.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Before any mount, so that a failure here leaves nothing attached.
            if self.examples_dir:
                slug = choice.datalab.slug
                copied = install_examples(
                    Path(self.examples_dir) / slug, workspace / "examples" / slug, workspace
                )
                if copied and self.account is not None:
                    give_to(self.account, workspace, copied)
                if copied:
                    self._emit(f"Copied {len(copied)} example file(s) to examples/{slug}")
            mounter = LocalMounter(self.mount_method)
            await self._sweep_stages_once()
            try:
                if self.sandbox:
                    await self._share_data_dir()
                stale = await mounter.clean(self.data_dir)
                if stale:
                    self._emit(f"Cleaned {len(stale)} stale mount(s) left by an earlier session")
                self._mounted = []
                paths = await self._attach_all(mounter, choice)
                self.home_dir = str(workspace)
                self.notebook_dir = str(workspace)
                if choice.datalab.default_url:
                    self.default_url = choice.datalab.default_url
                self.environment = {
                    **self.environment,
                    **self.volume_env(choice, paths),
                    **self.storage_env(),
                }
                self._emit(f"Starting {choice.datalab.title}", 80)
                if self.sandbox:
                    url = await self._start_sandboxed()
                else:
                    url = await super().start()
                self._started(self.sandbox)
                return url
            except Exception:
                # Nothing attached is left behind, the sandbox's shared data/ mount included.
                await self._detach_all()
                raise
        finally:
            self._datalabs_starting = False

    def storage_env(self) -> dict[str, str]:
        """What the server extension needs to attach volumes and connections in the session.

        The per-user credentials key travels in the environment of this local process only
        (the extension removes it before any kernel starts); it never goes into a pod spec.
        """
        env = {
            contract.CATALOGUE_DIRS: json.dumps(list(self.catalogue_dirs)),
            contract.ARCHIVE_ROOT: self.volume_root,
            contract.MOUNT_METHOD: self.mount_method,
        }
        if self.credentials_master_key and not self.sandbox:
            env[contract.CREDENTIALS_KEY] = user_key(self.credentials_master_key, self.user.name)
        if self.sandbox:
            env[contract.CONNECTION_MOUNTS] = "broker"  # FUSE cannot mount inside bubblewrap
        return env

    @property
    def _volume_lock(self) -> asyncio.Lock:
        # One mount change at a time per session: two attaches of one volume must not both
        # pass the "not yet mounted" check.
        lock = self.__dict__.get("_datalabs_volume_lock")
        if lock is None:
            lock = self.__dict__["_datalabs_volume_lock"] = asyncio.Lock()
        return lock

    async def hot_attach(self, chosen: ChosenVolume) -> Mounted:
        """Bind-mount an authorized volume read-only into the running session's ``data/``,
        exactly as at spawn (the broker calls this, as root, after ``authorize_volume``).

        In a sandboxed session the mount is made on the host and propagates into the running
        sandbox through the shared ``data/`` (``share_data_dir``); ``LocalMounter`` mounts onto
        the folder opened without following links, since the user can change ``data/`` while
        their session runs."""
        if not self.ready:
            raise AccessError(
                409, f"Start your session before attaching volume '{chosen.id}' to it."
            )
        target = self.data_dir / chosen.volume.folder
        async with self._volume_lock:
            if is_mount_point(target):
                raise AccessError(409, f"data/{chosen.volume.folder} is already in use (attached).")
            try:
                source = self.source_folder(chosen)
                mounted = await LocalMounter(self.mount_method).attach(source, target)
            except MountError as e:
                raise AccessError(
                    500, f"Volume '{chosen.id}' could not be attached: {e}."
                ) from None
            self._mounted = [*getattr(self, "_mounted", []), mounted]
        return mounted

    async def hot_detach(self, vid: str) -> Volume:
        """Unmount a volume from the running session (lazily if a kernel still reads it).

        A user may detach a volume they can no longer read (their access ended while it was
        attached); an unknown or unreadable volume that is not attached is refused in the
        words of ``refuse_volume``, so that the answer does not tell who has what."""
        volume = self.catalogue.volumes.entries.get(vid)
        if volume is None:
            raise refuse_volume(vid)
        target = self.data_dir / volume.folder
        async with self._volume_lock:
            if not is_mount_point(target):
                if not may_read(volume, self.who()):
                    raise refuse_volume(vid)
                raise AccessError(409, f"Volume '{vid}' is not attached.")
            try:
                await LocalMounter(self.mount_method).detach(target)
            except MountError as e:
                raise AccessError(500, f"Volume '{vid}' could not be detached: {e}.") from None
            self._mounted = [m for m in getattr(self, "_mounted", []) if m.target != target]
        return volume

    def volume_folder(self, chosen: ChosenVolume) -> Path:
        try:
            return self.source_folder(chosen)
        except MountError as e:
            raise AccessError(500, f"Volume '{chosen.id}' cannot be read: {e}.") from None

    def host_connections(self) -> HostConnections:
        """A sandboxed session's connections, mounted by the hub (``connections.py``)."""
        if not self.sandbox:
            return super().host_connections()
        if self.ready and self.account is None:
            # A session started by an earlier hub process (sessions outlive a restart).
            try:
                name = account_name(self.user.name, self.account_prefix)
                self.account = check_account(pwd.getpwnam(name), self.user.name)
            except (KeyError, AccountError):
                pass
        if not self.ready or self.account is None:
            raise AccessError(409, "Start your session before attaching a connection to it.")
        if not self.credentials_master_key:
            raise AccessError(503, "Connections are not available: no credentials key is set.")
        found = self.__dict__.get("_host_connections")
        if found is None:
            key = user_key(self.credentials_master_key, self.user.name)
            found = HostConnections(
                self.account, self.workspace, key, self.network_policy(), self._volume_lock
            )
            self.__dict__["_host_connections"] = found
        return found

    # -- the sandbox -------------------------------------------------------------------------

    async def _prepare_account(self, workspace: Path) -> None:
        if os.geteuid() != 0:
            raise _http_error(
                500,
                "DatalabsLocalSpawner.sandbox needs the hub to run as root (to create accounts "
                "and mounts); tell the operator.",
            )
        try:
            self.account = await ensure_account(self.user.name, self.account_prefix, str(workspace))
            prepare_workspace(str(workspace), self.account)
        except AccountError as e:
            self.log.error("Sandbox account for %s: %s", self.user.name, e)
            raise _http_error(500, f"Your session account could not be prepared: {e}") from None
        self._emit(f"Running as system account {self.account.name}")
        for folder in await clean_stale(self.account):
            self.log.warning("Removed %s, left by an earlier hub process", folder)

    async def _share_data_dir(self) -> None:
        try:
            await share_data_dir(str(self.data_dir))
        except AccountError as e:
            raise _http_error(500, f"Your session could not be prepared: {e}") from None

    def sandbox_spec(self) -> SandboxSpec:
        """What this user's sandbox shows (see ``sandbox``)."""
        assert self.account is not None
        read_only = [*self.sandbox_read_only, *self.catalogue_dirs]
        slots = self.pipeline_run_slots_dir if self.pipeline_runs_machine else ""
        return SandboxSpec(
            account=self.account,
            workspace=str(self.workspace),
            read_only=tuple(os.path.realpath(p) for p in read_only if os.path.isdir(p)),
            links=host_links(),
            run_slots=os.path.realpath(slots) if slots else "",
            memory_cgroup=self._memory_cgroup(),
        )

    def _memory_cgroup(self) -> str:
        """The memory cgroup delegated to this session's account, under which its pipeline
        runs make their own (``pipeline_memory_limit``): the account may not create one under
        the machine's, being unprivileged. It holds the runs the user may have at once. Empty
        when there is no limit, or when it cannot be made (the runs then say the limit is not
        applied)."""
        if not self.pipeline_memory_limit or self.account is None:
            return ""
        folder = Path(self.pipeline_memory_cgroup) / self.account.name
        total = self.pipeline_memory_limit * self.pipeline_runs_per_user
        try:
            delegate(folder, total, self.account.uid, self.account.gid)
        except OSError as e:
            self.log.warning("No pipeline memory limit for %s's runs: %s", self.user.name, e)
            return ""
        return str(folder)

    async def _start_sandboxed(self) -> tuple[str, int]:
        """LocalProcessSpawner.start, with the command wrapped in the sandbox and the
        connection key written to an inherited pipe instead of the environment."""
        from jupyterhub.utils import random_port

        if self.port == 0:
            self.port = random_port()
        env = self.get_env()
        # Under a supervisor, not as the hub's child: bubblewrap's --die-with-parent would end
        # the session with the hub (supervise.py says why).
        sandboxed = bwrap_argv(self.sandbox_spec(), [*self.cmd, *self.get_args()])
        argv = [sys.executable, "-I", "-S", str(SUPERVISOR), *sandboxed]
        key = (
            user_key(self.credentials_master_key, self.user.name)
            if self.credentials_master_key
            else ""
        )
        read_end, write_end = os.pipe() if key else (-1, -1)
        if key:
            env[contract.CREDENTIALS_KEY_FD] = str(read_end)
        self.log.info("Spawning %s in a sandbox as %s", self.user.name, self.account)
        try:
            self.proc = subprocess.Popen(
                argv,
                env=env,
                start_new_session=True,
                pass_fds=(read_end,) if key else (),
                **self.popen_kwargs,
            )
        finally:
            if key:
                os.close(read_end)
        if key:
            # Far below a pipe's buffer (64 KiB): the write never waits for the reader.
            try:
                os.write(write_end, key.encode() + b"\n")
            finally:
                os.close(write_end)
        self.pid = self.proc.pid
        return (self.ip or "127.0.0.1", self.port)

    async def _attach_all(self, mounter: LocalMounter, choice: SessionChoice) -> dict[str, str]:
        paths: dict[str, str] = {}
        total = len(choice.volumes)
        for i, chosen in enumerate(choice.volumes, 1):
            target = self.data_dir / chosen.volume.folder
            self._emit(f"Attaching volume {chosen.id} ({i}/{total})", 10 + 60 * (i - 1) // total)
            try:
                mounted = await mounter.attach(self.source_folder(chosen), target)
            except MountError as e:
                await self._detach_all()
                raise _http_error(
                    500,
                    f"Volume '{chosen.id}' could not be attached: {e}. "
                    "No volume was left attached; tell the operator, or start without it.",
                ) from None
            self._mounted.append(mounted)
            paths[chosen.id] = str(target)
            self._emit(
                f"Attached volume {chosen.id} at data/{chosen.volume.folder} "
                f"(read-only, {mounted.method} mount)",
                10 + 60 * i // total,
            )
        return paths

    async def _detach_all(self) -> None:
        mounter = LocalMounter(self.mount_method)
        problems = []
        connections = self.__dict__.pop("_host_connections", None)
        if connections is not None:
            await connections.close()
        for m in reversed(getattr(self, "_mounted", [])):
            try:
                await mounter.detach(m.target)
            except MountError as e:
                problems.append(str(e))
        self._mounted = []
        # Also whatever an earlier hub process attached and this object does not know about.
        try:
            await mounter.clean(self.data_dir)
        except (MountError, OSError) as e:
            problems.append(str(e))
        # The shared self-bind of data/ that a sandboxed start made (also on a failed start).
        if is_mount_point(self.data_dir):
            code, out = await run_command("umount", "-l", str(self.data_dir))
            if code:
                problems.append(out)
        for p in problems:
            self.log.error("Detaching volumes of %s: %s", self.user.name, p)

    # -- sessions that outlive the hub -------------------------------------------------------

    def _started(self, sandboxed: bool) -> None:
        """Remember what identifies the server's process, and store it in the hub's database
        at once: JupyterHub stores the spawner's state only when start() has returned, so a
        hub killed in between would lose the pid of a server that is running."""
        self._pid_started = process_start(self.pid)
        self._sandboxed = sandboxed
        orm_spawner = getattr(self, "orm_spawner", None)
        # The hub's own session for this row (Spawner.db is deprecated).
        db = object_session(orm_spawner) if orm_spawner is not None else None
        if db is None:
            return  # not run by a hub (tests of the spawner alone)
        orm_spawner.state = self.get_state()
        db.commit()

    def get_state(self):
        """The pid (LocalProcessSpawner), when its process started and whether it is
        sandboxed: what a restarted hub needs to find the session again (``poll``)."""
        state = super().get_state()
        if self.pid:
            if self._pid_started is not None:
                state["pid_started"] = self._pid_started
            if self._sandboxed:
                state["sandboxed"] = True
        return state

    def load_state(self, state):
        super().load_state(state)
        self._pid_started = state.get("pid_started")
        self._sandboxed = bool(state.get("sandboxed", False))

    def clear_state(self):
        super().clear_state()
        self._pid_started = None
        self._sandboxed = None

    def _process_alive(self) -> bool:
        """Whether the server's process (found by pid after a hub restart) still runs: not
        ended (a zombie nobody reaps counts as ended: where PID 1 is no init, none is ever
        reaped), and still the process that was started, not a newer one with its pid."""
        started = process_start(self.pid)
        return started is not None and self._pid_started in (None, started)

    def _left_mounted(self) -> bool:
        if getattr(self, "_mounted", None) or "_host_connections" in self.__dict__:
            return True  # the hub's rclone for the session's connections runs until closed
        try:
            data_dir = self.data_dir
        except web.HTTPError:
            return False
        # Also what no object in this hub process knows of: a hub killed while it mounted
        # (the session's spawn never ended), or one restarted since the session started.
        return bool(mounts_under(data_dir))

    async def _signal(self, sig: int) -> bool:
        sandboxed = self.sandbox if self._sandboxed is None else self._sandboxed
        if sig == 0 and self.proc is None and not self._process_alive():
            return False
        if sandboxed and sig not in (0, signal.SIGKILL):
            # supervisor -> bubblewrap -> the namespace's init -> the server
            server = sandboxed_pid(self.pid, levels=3)
            if server is not None:
                # To the server itself, so that it shuts its kernels down as it would unboxed.
                try:
                    os.kill(server, sig)
                except ProcessLookupError:
                    pass
                return await self._signal(0)
        return await super()._signal(sig)

    async def stop(self, now: bool = False):
        try:
            await super().stop(now=now)
        finally:
            await self._detach_all()

    async def _sweep_stages_once(self) -> None:
        """Once per hub process: remove what a hub killed mid-attach left in staging."""
        if DatalabsLocalSpawner._stages_swept:
            return
        DatalabsLocalSpawner._stages_swept = True
        swept = await sweep_stages()
        if swept:
            self.log.warning(
                "Removed %d staging folder(s) a hub killed while mounting left: %s",
                len(swept),
                ", ".join(map(str, swept)),
            )

    async def poll(self):
        await self._sweep_stages_once()
        status = await super().poll()
        if (
            status is not None
            and not getattr(self, "_datalabs_starting", False)
            and self._left_mounted()
        ):
            # The server died (at start, later, or while the hub was down), or its start was
            # cancelled or cut short by a hub killed mid-spawn: JupyterHub calls stop() only
            # for a live process, so the volumes would stay mounted until the user's next start.
            await self._detach_all()
        return status


def python_env_paths() -> list[str]:
    """The folders the hub's Python environment lives in, for ``sandbox_read_only``: its
    prefixes and, for an editable install, the Datalabs package folders."""
    import datalabs_pipelines
    import datalabs_volumes
    import jupyterlab_ext

    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths = sorted({os.path.realpath(p) for p in prefixes})
    for module_file in (
        __file__,
        datalabs_volumes.__file__,
        datalabs_pipelines.__file__,
        jupyterlab_ext.__file__,
    ):
        folder = os.path.dirname(os.path.realpath(module_file or ""))
        if not any(folder == p or folder.startswith(p + os.sep) for p in paths):
            paths.append(folder)
    return paths


def give_to(account: Account, root: Path, paths: list[Path]) -> None:
    """Hand files the hub made under ``root`` (the workspace) to the account, with their
    folders; never following a symbolic link."""
    done: set[Path] = set()
    for path in paths:
        while path != root and root in path.parents and path not in done:
            done.add(path)
            os.chown(path, account.uid, account.gid, follow_symlinks=False)
            path = path.parent


class DatalabsKubeSpawner(SidecarSecretMixin, DatalabsSpawnerMixin, KubeSpawner):
    """KubeSpawner driven by the Datalabs catalogue.

    ``profile_list`` is derived from the datalab catalogue for each user; the chosen volumes
    become read-only NFS or PVC pod volumes, merged with the operator's own ``volumes`` and
    ``volume_mounts`` (which are never replaced).
    """

    data_mount_root = Unicode(
        "/home/jovyan/data",
        config=True,
        help="""
        Where volumes appear in the user's container: volume ``<id>`` at
        ``<data_mount_root>/<id>`` (or its ``mount_path``), read-only.
        """,
    )

    archive_claim = Unicode(
        "",
        config=True,
        help="""
        A PersistentVolumeClaim holding the archive folders that ``local`` volume sources name:
        a local source ``path: P`` becomes this claim with ``subPath: P``. Empty (default):
        local volumes are refused on Kubernetes with a message saying so.
        """,
    )

    run_work_claims = Bool(
        False,
        config=True,
        help="""
        Mount the user's own folder of the pipeline runs' input claim (read-write, at
        ``/calrissian/input-data``) and output claim (read-only, at
        ``/calrissian/output-data``) into their session, for cluster runs submitted by the
        broker (docs/pipelines.md; the chart's ``runs.enabled``), and make the session's
        Pipelines panel run pipelines there (``$DATALABS_PIPELINES_EXECUTOR=kubernetes``, the
        default of ``DatalabsExtension.executor``). Off by default.
        """,
    )

    session_catalogue_configmap = Unicode(
        "datalabs-catalogue",
        config=True,
        help="""
        A ConfigMap in the sessions' namespace holding the catalogue files, mounted read-only
        into every user pod at ``/srv/datalabs/catalogue``, with ``DATALABS_CATALOGUE_DIRS``
        naming that folder. The session's Data panel describes volumes and its Pipelines
        panel lists pipelines from it; which volumes the user may see is still the broker's
        answer, never the files' (they hold no secret). Mounted ``optional``: without such a
        ConfigMap the session starts with an empty catalogue. Default: the chart's
        ``datalabs-catalogue``. Empty: sessions get no catalogue (set ``volumes``,
        ``volume_mounts`` and ``environment`` yourself to give them one another way).
        """,
    )

    session_catalogue_items = List(
        Dict(),
        config=True,
        help="""
        Where each key of ``session_catalogue_configmap`` goes in the session's catalogue
        folder, as a ConfigMap volume's ``items``: ``[{"key": "rosetta__volumes__psa.yaml",
        "path": "rosetta/volumes/psa.yaml"}, ...]``. Needed because ConfigMap keys cannot
        hold ``/`` while a catalogue is ``<mission>/volumes/<file>.yaml``. The chart writes
        this list from ``catalogue.files`` (the same items as the hub's own mount). A file
        added to the ConfigMap needs its item here too, which the chart's upgrade (that
        restarts the hub) does. Empty (default): every key becomes a file of that name.
        """,
    )

    @validate("session_catalogue_items")
    def _valid_catalogue_items(self, proposal):
        # Checked at start-up: a bad item would otherwise surface as a pod that never starts.
        name = "DatalabsKubeSpawner.session_catalogue_items"
        for i, item in enumerate(proposal["value"]):
            key, path = item.get("key"), item.get("path")
            if not isinstance(key, str) or not CONFIGMAP_KEY.fullmatch(key):
                raise TraitError(
                    f"{name}[{i}]: key: {key!r} is not a ConfigMap key "
                    "(letters, digits, '-', '_' and '.')"
                )
            parts = path.split("/") if isinstance(path, str) else [""]
            if set(item) - {"key", "path"} or "" in parts or ".." in parts:
                raise TraitError(
                    f"{name}[{i}]: path: {path!r} must be a relative path without '..' "
                    "(and an item holds only key and path)"
                )
        return proposal["value"]

    @default("profile_list")
    def _datalabs_profile_list(self):
        return self._profiles_for

    # User pods meet Pod Security "restricted" (tested on a real API server enforcing it):
    # the user's code runs as the image's non-root user with no capability and no way to gain
    # one, and gets no Kubernetes API token. An operator's own config of these traits wins.
    @default("automount_service_account_token")
    def _no_api_token(self):
        return False

    @default("uid")
    def _non_root_uid(self):
        return 1000  # jovyan in the Jupyter images

    @default("fs_gid")
    def _users_group(self):
        return 100

    @default("container_security_context")
    def _restricted_container(self):
        return {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }

    @validate("profile_list")
    def _catalogue_profiles_only(self, proposal):
        # Zero to JupyterHub writes `singleuser.profileList` (default []) into
        # c.KubeSpawner.profile_list, and a config value beats @default: without this every
        # spawn under z2jh failed with "No such profile". The catalogue is the only source.
        value = proposal["value"]
        if getattr(value, "__self__", None) is self:  # our own _profiles_for
            return value
        if value:
            self.log.warning(
                "Ignoring the configured KubeSpawner.profile_list (%d profiles): with Datalabs "
                "the profile_list is derived from the datalab catalogue; publish datalabs there.",
                len(value) if isinstance(value, list) else 1,
            )
        return self._profiles_for

    def _profiles_for(self, spawner: KubeSpawner) -> list[dict[str, Any]]:
        return make_profile_list(usable_datalabs(self.catalogue, self.who()))

    def _add_session_catalogue(self) -> None:
        """Mount the session's catalogue (``session_catalogue_configmap``) into the pod.

        The item list comes from config rather than from reading the ConfigMap through the
        API at each spawn: the hub then needs no right on ConfigMaps, and the chart already
        knows the list (it mounts the same items into the hub).
        """
        parts = session_catalogue_parts(
            self.session_catalogue_configmap, self.session_catalogue_items
        )
        try:
            self.volumes = merge_named(
                self.volumes, escape_braces(parts.volumes), KEY_PREFIX + "catalogue"
            )
            self.volume_mounts = merge_named(
                self.volume_mounts, escape_braces(parts.volume_mounts), KEY_PREFIX + "catalogue"
            )
        except UnmountableVolume as e:
            raise _http_error(500, f"The session's catalogue cannot be mounted: {e}") from None
        self.environment = {**self.environment, **escape_braces(parts.environment)}

    async def progress(self):
        async for event in self._datalabs_progress():
            yield event
        async for event in super().progress():
            yield event

    async def load_user_options(self):
        self._progress_events = []
        choice = self.resolve_user_options()
        self.choice = choice
        # A desktop profile merges its application into self.environment, and JupyterHub keeps
        # this spawner for the user's next session: forget it before the next profile applies.
        self.environment = {k: v for k, v in self.environment.items() if k != COMMAND_ENV}
        # KubeSpawner applies image, resources and default_url from the derived profile.
        self.user_options = {**(self.user_options or {}), **choice.to_user_options()}
        await super().load_user_options()
        try:
            volumes, mounts = session_volumes(
                choice.volumes, self.data_mount_root, self.archive_claim
            )
            self.volumes = merge_named(self.volumes, escape_braces(volumes), "datalabs-")
            self.volume_mounts = merge_named(self.volume_mounts, escape_braces(mounts), "datalabs-")
        except UnmountableVolume as e:
            raise _http_error(400, str(e)) from None
        if self.rclone_sidecar:
            self._add_rclone_sidecar()
        else:  # turned off since the last start: no sidecar parts left from it
            self._remove_rclone_sidecar()
        if self.session_catalogue_configmap:
            # After the sidecar's parts, whose removal drops every key of ours.
            self._add_session_catalogue()
        if self.run_work_claims:
            # Cluster runs: the user's own folders of the work claims (their keys start with
            # "datalabs-", so a restart replaces them like the archive volumes).
            run_volumes, run_mounts = session_work_volumes(self.user.name)
            self.volumes = merge_named(self.volumes, escape_braces(run_volumes), "datalabs-run-")
            self.volume_mounts = merge_named(
                self.volume_mounts, escape_braces(run_mounts), "datalabs-run-"
            )
            # Without it the session's Pipelines panel would still run everything in the pod.
            self.environment = {**self.environment, contract.PIPELINES_EXECUTOR: "kubernetes"}
        else:
            self.environment = {
                k: v for k, v in self.environment.items() if k != contract.PIPELINES_EXECUTOR
            }
        paths = {c.id: mounts["datalabs-" + c.id]["mountPath"] for c in choice.volumes}
        self.environment = {**self.environment, **escape_braces(self.volume_env(choice, paths))}
        for c in choice.volumes:
            self._emit(f"Volume {c.id} will be mounted read-only at {paths[c.id]}")
