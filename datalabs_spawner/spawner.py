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
from pathlib import Path
from typing import Any

from jupyterhub.spawner import SimpleLocalProcessSpawner
from kubespawner import KubeSpawner
from tornado import web
from traitlets import Dict, Enum, Float, List, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from datalabs_volumes.credentials import user_key
from datalabs_volumes.models import ChosenVolume, Volume
from datalabs_volumes.mount.kubernetes import UnmountableVolume, merge_named, session_volumes
from datalabs_volumes.mount.local import LocalMounter, Mounted, MountError, resolve_source

from .catalogue import Catalogue, shared_catalogue
from .desktop import COMMAND_ENV, SESSION_SCRIPT, XSTARTUP_ENV, desktop_env
from .examples import install_examples
from .form import render_form
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

#: Environment variable through which the single-user server learns its volumes (JSON list).
VOLUMES_ENV = "DATALABS_VOLUMES"
DATALAB_ENV = "DATALABS_DATALAB"
GROUPS_ENV = "DATALABS_USER_GROUPS"


def _http_error(status: int, message: str) -> web.HTTPError:
    err = web.HTTPError(status, log_message=message.replace("%", "%%"))
    # JupyterHub shows this text to the user, on the spawn page and in REST API answers.
    err.jupyterhub_message = message  # type: ignore[attr-defined]
    return err


def _escape_braces(value: Any) -> Any:
    """Protect literal braces from KubeSpawner, which ``str.format``s every string it is given."""
    if isinstance(value, str):
        return value.replace("{", "{{").replace("}", "}}")
    if isinstance(value, dict):
        return {k: _escape_braces(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape_braces(v) for v in value]
    return value


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

    def resolve_user_options(self) -> SessionChoice:
        """Check ``self.user_options``; raise an HTTP error naming what is refused."""
        try:
            choice = resolve_choice(self.user_options, self.catalogue, self.who())
        except ChoiceError as e:
            self.log.warning("Refused session options for %s: %s", self.user.name, e.message)
            raise _http_error(e.status, e.message) from None
        for c in choice.volumes:
            if not self.mountable(c):
                raise _http_error(
                    400,
                    f"Volume '{c.id}' has a {c.source.type} source, which "
                    f"this hub's spawner cannot attach.",
                )
        return choice

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
        who = self.who()
        return {
            VOLUMES_ENV: json.dumps(described),
            DATALAB_ENV: choice.datalab.slug,
            GROUPS_ENV: json.dumps(list(who.groups)),
            # For hot attach inside the session: the same access rule needs the same grants.
            "DATALABS_GRANTED_VOLUMES": json.dumps(sorted(who.granted)),
            "DATALABS_ALLOWED_NETWORKS": json.dumps(list(self.connection_allowed_networks)),
            **(
                {"DATALABS_PIPELINES_HOME": self.pipeline_runs_dir}
                if self.pipeline_runs_dir
                else {}
            ),
        }


class DatalabsLocalSpawner(
    QueuedStartMixin, RunLimitsMixin, DatalabsSpawnerMixin, SimpleLocalProcessSpawner
):
    """The embedded default: a local single-user server per user, volumes bind-mounted read-only.

    Each user gets a workspace folder (no system accounts needed); volume ``<id>`` appears at
    ``<workspace>/data/<id>``. Everything runs as the hub's own system user, so this spawner
    offers no isolation between users: it is for one trusted machine, demos and development.
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

    _mounted: list[Mounted]

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
            workspace.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Before any mount, so that a failure here leaves nothing attached.
            if self.examples_dir:
                slug = choice.datalab.slug
                copied = install_examples(
                    Path(self.examples_dir) / slug, workspace / "examples" / slug
                )
                if copied:
                    self._emit(f"Copied {len(copied)} example file(s) to examples/{slug}")
            mounter = LocalMounter(self.mount_method)
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
            try:
                return await super().start()
            except Exception:
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
            "DATALABS_CATALOGUE_DIRS": json.dumps(list(self.catalogue_dirs)),
            "DATALABS_ARCHIVE_ROOT": self.volume_root,
            "DATALABS_MOUNT_METHOD": self.mount_method,
        }
        if self.credentials_master_key:
            env["DATALABS_CREDENTIALS_KEY"] = user_key(self.credentials_master_key, self.user.name)
        return env

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
        for p in problems:
            self.log.error("Detaching volumes of %s: %s", self.user.name, p)

    async def stop(self, now: bool = False):
        try:
            await super().stop(now=now)
        finally:
            await self._detach_all()

    async def poll(self):
        status = await super().poll()
        if (
            status is not None
            and getattr(self, "_mounted", None)
            and not getattr(self, "_datalabs_starting", False)
        ):
            # The server died (at start, or later), or its start was cancelled: JupyterHub
            # calls stop() only for a live process, so the volumes would stay mounted until
            # the user's next start.
            await self._detach_all()
        return status


class DatalabsKubeSpawner(DatalabsSpawnerMixin, KubeSpawner):
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

    @default("profile_list")
    def _datalabs_profile_list(self):
        return self._profiles_for

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
            self.volumes = merge_named(self.volumes, _escape_braces(volumes), "datalabs-")
            self.volume_mounts = merge_named(
                self.volume_mounts, _escape_braces(mounts), "datalabs-"
            )
        except UnmountableVolume as e:
            raise _http_error(400, str(e)) from None
        paths = {c.id: mounts["datalabs-" + c.id]["mountPath"] for c in choice.volumes}
        self.environment = {**self.environment, **_escape_braces(self.volume_env(choice, paths))}
        for c in choice.volumes:
            self._emit(f"Volume {c.id} will be mounted read-only at {paths[c.id]}")
