"""The hub<->session contract: every environment variable the hub's spawner sets for a
session and the session's server extension reads, named once.

Both sides import these names (``datalabs_spawner`` writes them, ``jupyterlab_ext`` and the
kernels' client read them), so that a rename is one change and a typo is an ImportError rather
than a silently empty setting. It lives in ``datalabs_volumes`` because that is the one package
both sides may import. Nothing here is a secret except ``CREDENTIALS_KEY``, which the session
removes from its environment before any kernel starts (a sandboxed session gets the key through
the pipe ``CREDENTIALS_KEY_FD`` names instead).

Nothing the session reads here is trusted by the hub: who may read which volume is decided by
the broker from the hub's own users and groups, never from these values.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

#: JSON list of the volumes attached at spawn: ``[{"id", "title", "mission", "version",
#: "path", "read_only"}]`` (``ChosenVolume.describe``).
VOLUMES = "DATALABS_VOLUMES"
#: Slug of the datalab the session was started as.
DATALAB = "DATALABS_DATALAB"
#: JSON list of the catalogue directories (``DatalabsSpawnerMixin.catalogue_dirs``).
CATALOGUE_DIRS = "DATALABS_CATALOGUE_DIRS"
#: The folder ``local`` volume sources are relative to (``DatalabsLocalSpawner.volume_root``).
ARCHIVE_ROOT = "DATALABS_ARCHIVE_ROOT"
#: ``auto``, ``bind`` or ``rclone``: how the hub attaches volumes (``mount_method``).
MOUNT_METHOD = "DATALABS_MOUNT_METHOD"
#: JSON list of CIDR networks the user's connections may reach in private ranges.
ALLOWED_NETWORKS = "DATALABS_ALLOWED_NETWORKS"
#: JSON list of endpoints (``host``, ``host:port`` or a network) refused to connections even
#: inside an allowed network: the hub's and the proxy's own API ports among them.
REFUSED_ENDPOINTS = "DATALABS_REFUSED_ENDPOINTS"
#: The user's own connections key (derived from the master key for this user alone).
CREDENTIALS_KEY = "DATALABS_CREDENTIALS_KEY"
#: A sandboxed session gets its key through an inherited pipe instead; this holds the pipe's
#: file descriptor number (the session reads it once and closes it; unlike ``os.environ.pop``,
#: reading a pipe leaves nothing in ``/proc/<pid>/environ``).
CREDENTIALS_KEY_FD = "DATALABS_CREDENTIALS_KEY_FD"
#: On Kubernetes the key comes as a file of the session's Secret instead; this holds its path
#: (the Secret is mounted in the user container only; see ``docs/kubernetes.md``).
CREDENTIALS_KEY_FILE = "DATALABS_CREDENTIALS_KEY_FILE"
#: The rclone sidecar's guarded rc socket (Kubernetes): when set, the session drives that
#: sidecar for connections instead of starting its own ``rclone rcd``.
RCLONE_SOCKET = "DATALABS_RCLONE_SOCKET"
#: The file holding the rc password of that socket (a file of the session's Secret).
RCLONE_RC_PASSWORD_FILE = "DATALABS_RCLONE_RC_PASSWORD_FILE"
#: The folder the sidecar mounts connections in (the shared emptyDir, at the same path in both
#: containers): connection ``<name>`` appears at ``<folder>/<name>``.
CONNECTIONS_DIR = "DATALABS_CONNECTIONS_DIR"
#: ``broker`` when the hub mounts the user's connections for the session (a sandboxed one,
#: where ``fusermount3`` cannot mount); unset: the session mounts them with its own rclone.
CONNECTION_MOUNTS = "DATALABS_CONNECTION_MOUNTS"
#: Where the user's encrypted connections file is (optional).
CONNECTIONS_FILE = "DATALABS_CONNECTIONS_FILE"
#: The session's pipeline run store; the same name as ``datalabs_pipelines.settings.ENV_HOME``.
PIPELINES_HOME = "DATALABS_PIPELINES_HOME"
#: Where the session's pipeline runs execute, ``local`` or ``kubernetes`` (the default of
#: ``DatalabsExtension.executor``): ``kubernetes`` where the spawner mounts the user's folders of
#: the run claims (``DatalabsKubeSpawner.run_work_claims``), so runs go to the broker.
PIPELINES_EXECUTOR = "DATALABS_PIPELINES_EXECUTOR"
#: The broker's versioned API root for this hub, e.g. ``http://127.0.0.1:8081/hub/datalabs/v1/``.
BROKER_URL = "DATALABS_BROKER_URL"
#: Set by the session for its kernels: its own Datalabs REST API, and a token for it.
API_URL = "DATALABS_API_URL"
API_TOKEN = "DATALABS_API_TOKEN"
#: A desktop datalab's application (JSON argv) and window manager.
DESKTOP_COMMAND = "DATALABS_DESKTOP_COMMAND"
DESKTOP_WM = "DATALABS_DESKTOP_WM"
#: JSON list of groups, for a server run outside any hub only (no broker there; the person who
#: starts the server owns it). A hub session never reads it.
STANDALONE_GROUPS = "DATALABS_USER_GROUPS"

#: The broker's path under the hub's prefix (``/hub/``), version included.
BROKER_PATH = "datalabs/v1/"


def json_list(name: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """The JSON list of strings in environment variable ``name``; empty when unset or not a
    list."""
    env = os.environ if environ is None else environ
    try:
        value = json.loads(env.get(name, "") or "[]")
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def broker_url(environ: Mapping[str, str] | None = None) -> str:
    """The broker's API root for this session: ``DATALABS_BROKER_URL``, else derived from the
    hub API URL JupyterHub gives every session (``JUPYTERHUB_API_URL``, ``.../hub/api``); empty
    outside a hub."""
    env = os.environ if environ is None else environ
    url = env.get(BROKER_URL, "")
    if url:
        return url if url.endswith("/") else url + "/"
    api = env.get("JUPYTERHUB_API_URL", "").rstrip("/")
    if api.endswith("/api"):
        return api[: -len("api")] + BROKER_PATH
    return ""
