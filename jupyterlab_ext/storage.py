"""The session's storage service as the server extension configures it.

Every option defaults to what the Datalabs spawner put in the environment, so an operator sets
them once, on the hub (``c.DatalabsSpawnerMixin.*``), and the single-user server follows.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path

from traitlets import Enum, List, Unicode, default
from traitlets.config import LoggingConfigurable

from datalabs_volumes import contract
from datalabs_volumes.access import Who
from datalabs_volumes.broker_client import BrokerClient
from datalabs_volumes.credentials import CredentialError, CredentialStore
from datalabs_volumes.egress import NetworkPolicy, parse_endpoint
from datalabs_volumes.mount.rclone import SessionRclone
from datalabs_volumes.mount.sidecar import sidecar_from_env
from datalabs_volumes.remotes import parse_networks
from datalabs_volumes.session import StorageSession

#: The per-user credentials key; removed from the environment once read, so kernels and
#: terminals started by this server do not inherit it.
KEY_ENV = contract.CREDENTIALS_KEY
#: A sandboxed session gets the key through an inherited pipe instead, whose number this holds.
KEY_FD_ENV = contract.CREDENTIALS_KEY_FD


def read_key() -> str:
    """The per-user credentials key: from the pipe named by ``DATALABS_CREDENTIALS_KEY_FD``
    (read once, then closed), else from ``DATALABS_CREDENTIALS_KEY``, else (Kubernetes) from
    the Secret's file ``DATALABS_CREDENTIALS_KEY_FILE`` names; empty when none."""
    key = os.environ.pop(KEY_ENV, "")
    key_file = os.environ.pop(contract.CREDENTIALS_KEY_FILE, "")
    if key_file and not key:
        try:
            key = Path(key_file).read_text(encoding="ascii").strip()
        except OSError:
            pass
    fd_text = os.environ.pop(KEY_FD_ENV, "")
    if fd_text.isdigit():
        try:
            with os.fdopen(int(fd_text), "rb") as pipe:
                key = pipe.read(4096).decode("ascii", "replace").strip() or key
        except OSError:
            pass
    return key


def json_env_list(name: str) -> list[str]:
    """The JSON list of strings in environment variable ``name`` (the spawner sets these);
    empty when unset or not a list."""
    return contract.json_list(name)


class DatalabsStorage(LoggingConfigurable):
    """Options of the session's storage service (hosted volumes and connections)."""

    catalogue_dirs = List(
        Unicode(),
        config=True,
        help="""
        Catalogue directories holding ``<mission>/volumes/*.yaml``: the volumes the Data
        panel offers. Default: the JSON list in ``DATALABS_CATALOGUE_DIRS``, which the Datalabs
        spawner sets from ``DatalabsSpawnerMixin.catalogue_dirs``.
        """,
    )

    @default("catalogue_dirs")
    def _default_catalogue_dirs(self):
        return json_env_list(contract.CATALOGUE_DIRS)

    archive_root = Unicode(
        config=True,
        help="""
        The folder ``local`` volume sources are relative to. Default: ``DATALABS_ARCHIVE_ROOT``
        (set by the local spawner from ``DatalabsLocalSpawner.volume_root``).
        """,
    )

    @default("archive_root")
    def _default_archive_root(self):
        return os.environ.get(contract.ARCHIVE_ROOT, "")

    data_dir = Unicode(
        "data",
        config=True,
        help="""
        Where volumes and connections appear, relative to the server's root folder (or
        absolute): volume ``<id>`` at ``<data_dir>/<id>``, connection ``<name>`` at
        ``<data_dir>/<name>``. Default: ``data``.
        """,
    )

    connections_file = Unicode(
        config=True,
        help="""
        The user's encrypted connections file (mode 0600, in a 0700 folder). Default:
        ``DATALABS_CONNECTIONS_FILE``, else ``.datalabs/connections.json`` in the root folder.
        It is encrypted with the key in ``DATALABS_CREDENTIALS_KEY``, which the spawner derives
        per user from the operator's master key; without that key connections are refused.
        """,
    )

    @default("connections_file")
    def _default_connections_file(self):
        return os.environ.get(contract.CONNECTIONS_FILE, "")

    allowed_networks = List(
        Unicode(),
        config=True,
        help="""
        Networks that are not public internet addresses (private, loopback, link-local,
        ``100.64.0.0/10``...) that connections may reach, as CIDR (``["10.1.0.0/16"]``); every
        other non-public address is refused, when a connection is saved and at every connection
        rclone makes (redirects included). Default: the JSON list in
        ``DATALABS_ALLOWED_NETWORKS`` (the demo allows ``127.0.0.1/32`` for ``rclone serve``).
        """,
    )

    @default("allowed_networks")
    def _default_allowed_networks(self):
        return json_env_list(contract.ALLOWED_NETWORKS)

    refused_endpoints = List(
        Unicode(),
        config=True,
        help="""
        Addresses, networks and ``address:port`` endpoints that connections never reach, even
        inside ``allowed_networks`` (``["127.0.0.1:8081", "[::1]:8001", "10.0.0.5"]``): the
        hub's and the proxy's API ports when loopback is allowed. Checked when a connection is
        saved and at every connection rclone makes, redirects included. Default: the JSON list
        in ``DATALABS_REFUSED_ENDPOINTS`` (the spawner puts the hub's and the proxy's API there).
        """,
    )

    @default("refused_endpoints")
    def _default_refused_endpoints(self):
        return json_env_list(contract.REFUSED_ENDPOINTS)

    mount_method = Enum(
        ["auto", "bind", "rclone"],
        config=True,
        help="""
        How hosted volumes are attached in a running session, as at spawn: ``bind`` (root),
        ``rclone`` (FUSE, slower) or ``auto``. Default: ``DATALABS_MOUNT_METHOD`` or ``auto``.
        """,
    )

    @default("mount_method")
    def _default_mount_method(self):
        value = os.environ.get(contract.MOUNT_METHOD, "auto")
        return value if value in ("auto", "bind", "rclone") else "auto"

    rclone_runtime_dir = Unicode(
        "",
        config=True,
        help="""
        Private folder (0700) for the session's ``rclone rcd``: its socket, its 0600 config
        file and its cache. Default: a new temporary folder, removed when the server stops.
        """,
    )

    broker_url = Unicode(
        config=True,
        help="""
        The hub's volume broker (its versioned API root), which decides which volumes the user
        may read and attaches and detaches them, asked with the server's own hub token
        (``JUPYTERHUB_API_TOKEN``). Default: ``DATALABS_BROKER_URL``, else derived from
        ``JUPYTERHUB_API_URL``; empty outside a hub, where the server applies the access
        policy itself, to the groups in ``DATALABS_USER_GROUPS`` (its owner's own server).
        """,
    )

    @default("broker_url")
    def _default_broker_url(self):
        return contract.broker_url()

    user = Unicode(
        config=True,
        help="The user whose session this is. Default: ``JUPYTERHUB_USER``, else the login name.",
    )

    @default("user")
    def _default_user(self):
        return os.environ.get("JUPYTERHUB_USER") or getpass.getuser()

    def build(self, root_dir: str) -> StorageSession:
        """The StorageSession for a server whose file browser starts at ``root_dir``."""
        data_dir = Path(root_dir, self.data_dir)
        key = read_key()
        store = None
        if key:
            path = self.connections_file or str(Path(root_dir, ".datalabs", "connections.json"))
            try:
                store = CredentialStore(path, key)
            except CredentialError as e:
                self.log.error("Connections are disabled: %s", e)
        else:
            self.log.warning(
                "Connections are disabled: no credentials key (%s) in the environment", KEY_ENV
            )
        broker = None
        if self.broker_url:
            broker = BrokerClient(
                self.broker_url, self.user, os.environ.get("JUPYTERHUB_API_TOKEN", "")
            )
            who = Who(self.user)
        else:
            who = Who(self.user, tuple(json_env_list(contract.STANDALONE_GROUPS)))
        runtime = Path(self.rclone_runtime_dir) if self.rclone_runtime_dir else None
        # On Kubernetes the spawner says where the rclone sidecar is: connections go through it.
        try:
            sidecar = sidecar_from_env(os.environ)
        except ValueError as e:
            # Never a local rclone instead: in a pod it could mount nothing.
            self.log.error("Connections are disabled: the rclone sidecar is unusable: %s", e)
            sidecar, store = None, None
        return StorageSession(
            data_dir,
            who,
            catalogue_dirs=self.catalogue_dirs,
            archive_root=self.archive_root,
            store=store,
            allowed_networks=NetworkPolicy(
                parse_networks(self.allowed_networks),  # type: ignore[arg-type]
                tuple(parse_endpoint(e) for e in self.refused_endpoints),
            ),
            mount_method=self.mount_method,
            rclone=sidecar or SessionRclone(runtime),
            broker=broker,
            connections_dir=sidecar.connections_dir if sidecar else None,
            connections_by_broker=os.environ.get(contract.CONNECTION_MOUNTS) == "broker",
        )
