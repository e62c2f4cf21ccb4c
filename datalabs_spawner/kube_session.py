"""What ``DatalabsKubeSpawner`` adds to a user pod for connections: the rclone sidecar behind its
rc guard, the folder they share, and the session's Secret. Pure builders, as kubespawner's
``objects.py``: plain values in, API dicts out (the spawner turns its traits into arguments).

The session's Secret (one per user pod, made by the hub before the pod and deleted when it
stops) holds three values, each mounted only where it is used:

- ``credentials-key``: the user's own connections key (derived from the operator's master key
  for this user alone). The **user container** needs it, because the session's server
  extension is what decrypts and encrypts the user's connections file (it lives in the user's
  home) to list, test, save and attach them; it sends rclone one connection's parameters per
  call. The sidecar never holds it: a privileged container with a network stack the user's code
  can drive should hold as little as possible. It is a file, never an environment variable:
  the pod spec only names the Secret.
- ``rc-password``: the guard's password; the user container reads it as a file, the sidecar
  gets it through ``secretKeyRef`` (a reference, not a value, in the pod spec).
- ``rclone.conf``: the sidecar's starting rclone config (empty: connections arrive as
  ``config/create`` calls through the guard); mounted in the sidecar only.
- ``hub-bind-token`` (with an ``archive_claim``): the token of the sidecar's hub-only bind API
  for hot attach (``datalabs_volumes.mount.hubbind``); the sidecar gets it through
  ``secretKeyRef``, the hub keeps it in its own state, the user container never sees it.
"""

from __future__ import annotations

import asyncio
import json
import posixpath
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes_asyncio.client.rest import ApiException
from traitlets import Bool, Dict, Unicode, default
from traitlets.config import LoggingConfigurable

from datalabs_volumes import contract
from datalabs_volumes.access import AccessError, may_read, refuse_volume
from datalabs_volumes.credentials import user_key
from datalabs_volumes.models import ChosenVolume, Volume
from datalabs_volumes.mount.hubbind import request_bind
from datalabs_volumes.mount.kubernetes import (
    ARCHIVE_VOLUME,
    HUB_BIND_PORT,
    SIDECAR_IMAGE,
    archive_volume,
    rclone_sidecar,
    remote_storage_user_mounts,
    remote_storage_volumes,
)
from datalabs_volumes.mount.local import Mounted

KEY_ITEM = "credentials-key"
HUB_TOKEN_ITEM = "hub-bind-token"
RC_PASSWORD_ITEM = "rc-password"
RCLONE_CONF_ITEM = "rclone.conf"
#: The user container's projection of the session's Secret (key and rc password only).
SESSION_SECRET_VOLUME = "datalabs-session-secret"
#: Where the user container sees that projection.
SECRETS_DIR = "/run/datalabs-secrets"
#: Where both containers see the rc socket.
SOCKET_DIR = "/run/datalabs-rc"
#: Keys of our entries in KubeSpawner's dict-form traits. The underscore keeps them apart from
#: archive volumes (``datalabs-<id>``), whose ids never contain one.
KEY_PREFIX = "datalabs-_"
#: The label the session's Secret carries (with the user's name), for operators and cleanup.
COMPONENT_LABEL = "datalabs-session-secret"
#: Where the user container sees the session's copy of the catalogue (the hub's own path in
#: the chart, so a path in a catalogue message means the same on both sides).
SESSION_CATALOGUE_DIR = "/srv/datalabs/catalogue"
#: The pod volume holding it (a name no archive volume, ``dlv-<id>``, can take).
SESSION_CATALOGUE_VOLUME = "datalabs-catalogue"


def session_secret_name(pod_name: str) -> str:
    """The session Secret of the pod ``pod_name`` (names are at most 253 characters)."""
    return f"{pod_name}-datalabs"[:253]


def session_secret(
    name: str,
    namespace: str,
    user: str,
    rc_password: str,
    credentials_key: str = "",
    hub_token: str = "",
) -> dict[str, Any]:
    """The session's Secret: rc password, empty rclone config and (if connections are enabled)
    the user's connections key, (with hot attach) the hub's bind token."""
    data = {RC_PASSWORD_ITEM: rc_password, RCLONE_CONF_ITEM: ""}
    if credentials_key:
        data[KEY_ITEM] = credentials_key
    if hub_token:
        data[HUB_TOKEN_ITEM] = hub_token
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app": "datalabs",
                "component": COMPONENT_LABEL,
                # user names may hold characters a label value may not
                "hub.jupyter.org/username": "".join(
                    c if c.isalnum() or c in "-_." else "-" for c in user
                )[:63].strip("-_."),
            },
        },
        "type": "Opaque",
        "stringData": data,
    }


@dataclass(frozen=True)
class SidecarParts:
    """What the pod gets: the sidecar (an init container), pod volumes, the user container's
    mounts and environment, each keyed as KubeSpawner's dict-form traits take them."""

    init_containers: dict[str, dict[str, Any]]
    volumes: dict[str, dict[str, Any]]
    volume_mounts: dict[str, dict[str, Any]]
    environment: dict[str, str]


def sidecar_parts(
    secret_name: str,
    image: str,
    connections_dir: str,
    with_key: bool,
    allowed_networks: tuple[str, ...] = (),
    resources: dict[str, Any] | None = None,
    archive_claim: str = "",
    refused_endpoints: tuple[str, ...] = (),
) -> SidecarParts:
    """The rclone sidecar wired into a user pod.

    ``connections_dir``: the shared folder, at the same path in both containers (Bidirectional
    in the sidecar, HostToContainer and read-only in the user container), so a mount point the
    session names is the sidecar's too. ``with_key``: whether the Secret holds the user's
    connections key (the operator configured a master key). ``archive_claim``: mounted
    read-only in the sidecar alone, for hot attach (the Secret then holds the hub's token).
    ``allowed_networks`` and ``refused_endpoints``: the network policy of the user's
    connections, enforced by the sidecar's guard and rclone as by the session.
    """
    sidecar = rclone_sidecar(
        image,
        config_secret=secret_name,
        rc_secret=secret_name,
        rc_password_key=RC_PASSWORD_ITEM,
        mount_root=connections_dir,
        socket_dir=SOCKET_DIR,
        resources=resources,
        allowed_networks=allowed_networks,
        refused_endpoints=refused_endpoints,
        archive_claim=archive_claim,
        hub_token_key=HUB_TOKEN_ITEM if archive_claim else "",
    )
    items = [{"key": RC_PASSWORD_ITEM, "path": RC_PASSWORD_ITEM}]
    if with_key:
        items.append({"key": KEY_ITEM, "path": KEY_ITEM})
    volumes = {v["name"]: v for v in remote_storage_volumes(secret_name)}
    if archive_claim:
        volumes[ARCHIVE_VOLUME] = archive_volume(archive_claim)
    volumes[SESSION_SECRET_VOLUME] = {
        "name": SESSION_SECRET_VOLUME,
        # 0440 with the pod's fsGroup: the user's server (uid 1000, group 100) reads it.
        "secret": {"secretName": secret_name, "items": items, "defaultMode": 0o440},
    }
    mounts = {m["name"]: m for m in remote_storage_user_mounts(connections_dir, SOCKET_DIR)}
    mounts[SESSION_SECRET_VOLUME] = {
        "name": SESSION_SECRET_VOLUME,
        "mountPath": SECRETS_DIR,
        "readOnly": True,
    }
    env = {
        contract.RCLONE_SOCKET: posixpath.join(SOCKET_DIR, "rc.sock"),
        contract.RCLONE_RC_PASSWORD_FILE: posixpath.join(SECRETS_DIR, RC_PASSWORD_ITEM),
        contract.CONNECTIONS_DIR: connections_dir,
    }
    if with_key:
        env[contract.CREDENTIALS_KEY_FILE] = posixpath.join(SECRETS_DIR, KEY_ITEM)
    return SidecarParts(
        init_containers={KEY_PREFIX + "rclone": sidecar},
        volumes={KEY_PREFIX + k: v for k, v in volumes.items()},
        volume_mounts={KEY_PREFIX + k: v for k, v in mounts.items()},
        environment=env,
    )


@dataclass(frozen=True)
class CatalogueParts:
    """The session's catalogue in the pod: one volume, the user container's mount of it and
    the environment naming it, keyed as KubeSpawner's dict-form traits take them."""

    volumes: dict[str, dict[str, Any]]
    volume_mounts: dict[str, dict[str, Any]]
    environment: dict[str, str]


def session_catalogue_parts(
    configmap: str, items: list[dict[str, str]] | tuple[dict[str, str], ...] = ()
) -> CatalogueParts:
    """The ConfigMap ``configmap`` mounted read-only at ``SESSION_CATALOGUE_DIR``, each of
    ``items`` (``{"key", "path"}``) at its relative path (ConfigMap keys cannot hold ``/``,
    so a catalogue's ``<mission>/volumes/<file>.yaml`` needs one); without items every key
    becomes a file of that name.

    ``optional``: a hub whose namespace has no such ConfigMap still starts sessions (with an
    empty catalogue) instead of leaving the pod waiting for the volume forever.
    """
    source: dict[str, Any] = {"name": configmap, "optional": True}
    if items:
        source["items"] = [{"key": i["key"], "path": i["path"]} for i in items]
    return CatalogueParts(
        volumes={KEY_PREFIX + "catalogue": {"name": SESSION_CATALOGUE_VOLUME, "configMap": source}},
        volume_mounts={
            KEY_PREFIX + "catalogue": {
                "name": SESSION_CATALOGUE_VOLUME,
                "mountPath": SESSION_CATALOGUE_DIR,
                "readOnly": True,
            }
        },
        environment={contract.CATALOGUE_DIRS: json.dumps([SESSION_CATALOGUE_DIR])},
    )


def escape_braces(value: Any) -> Any:
    """Protect literal braces from KubeSpawner, which ``str.format``s every string it is given."""
    if isinstance(value, str):
        return value.replace("{", "{{").replace("}", "}}")
    if isinstance(value, dict):
        return {k: escape_braces(v) for k, v in value.items()}
    if isinstance(value, list):
        return [escape_braces(v) for v in value]
    return value


class SidecarSecretMixin(LoggingConfigurable):
    """``DatalabsKubeSpawner``'s rclone sidecar and session Secret (see the module docstring).

    Its options are set as ``c.DatalabsKubeSpawner.<option>``.
    """

    rclone_sidecar = Bool(
        True,
        config=True,
        help="""
        Whether user pods get the rclone sidecar, through which sessions mount the users'
        own storage (WebDAV, S3, SFTP...). The sidecar is privileged (FUSE and Bidirectional
        mount propagation need it), so the namespace must admit privileged pods
        (``pod-security.kubernetes.io/enforce: privileged``, with ``warn`` and ``audit`` at
        ``restricted``; docs/kubernetes.md says why). Turn it off (False) to keep the
        namespace at ``enforce: restricted``: sessions then have no connections.
        """,
    )

    rclone_sidecar_image = Unicode(
        SIDECAR_IMAGE,
        config=True,
        help="""
        The sidecar's image: rclone, fuse3 and ``datalabs`` (for the rc guard), built by
        ``config/images/``. Example: ``"registry.example.org/datalabs/rclone-sidecar:0.1"``.
        """,
    )

    rclone_sidecar_resources = Dict(
        config=True,
        help="""
        The sidecar's ``resources`` (requests and limits), e.g.
        ``{"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}}``.
        Its memory use grows with the files being read through mounts. Default: none.
        """,
    )

    connections_mount_root = Unicode(
        config=True,
        help="""
        The folder, shared by the sidecar and the user container, where the user's
        connections appear (``<folder>/<name>``, read-only to the user container, written
        through by a writable connection). Default: ``remote_storage`` in
        ``data_mount_root`` (an underscore: no volume id or connection name has one).
        """,
    )

    @default("connections_mount_root")
    def _default_connections_mount_root(self):
        return posixpath.join(self.data_mount_root, "remote_storage")  # type: ignore[attr-defined]

    @property
    def session_secret_name(self) -> str:
        """The name of this pod's session Secret."""
        return session_secret_name(self.pod_name)  # type: ignore[attr-defined]

    def _add_rclone_sidecar(self) -> None:
        """Put the sidecar, its volumes and the user container's mounts and environment into
        the traits KubeSpawner builds the pod from (the operator's entries are kept)."""
        parts = sidecar_parts(
            self.session_secret_name,
            self.rclone_sidecar_image,
            self.connections_mount_root,
            with_key=bool(self.credentials_master_key),  # type: ignore[attr-defined]
            allowed_networks=tuple(self.connection_allowed_networks),  # type: ignore[attr-defined]
            # The session refuses these when a connection is saved; the user's code can call
            # the guard without the session, so the sidecar must refuse them as well.
            refused_endpoints=tuple(self.refused_endpoints()),  # type: ignore[attr-defined]
            resources=self.rclone_sidecar_resources or None,
            archive_claim=self.archive_claim,  # type: ignore[attr-defined]
        )
        spawner: Any = self
        for trait, ours in (
            ("init_containers", parts.init_containers),
            ("volumes", parts.volumes),
            ("volume_mounts", parts.volume_mounts),
        ):
            current = getattr(spawner, trait)
            if isinstance(current, list):
                current = {f"operator-{i:03d}": v for i, v in enumerate(current)}
            kept = {k: v for k, v in current.items() if not k.startswith(KEY_PREFIX)}
            setattr(spawner, trait, {**kept, **escape_braces(ours)})
        spawner.environment = {**spawner.environment, **escape_braces(parts.environment)}

    def _remove_rclone_sidecar(self) -> None:
        spawner: Any = self
        for trait in ("init_containers", "volumes", "volume_mounts"):
            current = getattr(spawner, trait)
            if isinstance(current, dict):
                kept = {k: v for k, v in current.items() if not k.startswith(KEY_PREFIX)}
                setattr(spawner, trait, kept)
        ours = {
            contract.RCLONE_SOCKET,
            contract.RCLONE_RC_PASSWORD_FILE,
            contract.CONNECTIONS_DIR,
            contract.CREDENTIALS_KEY_FILE,
        }
        spawner.environment = {k: v for k, v in spawner.environment.items() if k not in ours}

    # -- the session's Secret: made before the pod, deleted when it stops -------------------

    def start(self):
        if not self.rclone_sidecar:
            return super().start()  # type: ignore[misc]
        return asyncio.ensure_future(self._start_with_session_secret())

    async def _start_with_session_secret(self):
        # Before the pod: the kubelet then finds it at once (a pod naming a missing Secret
        # waits, retrying, before any container starts).
        await self._create_session_secret()
        try:
            return await super().start()  # type: ignore[misc]
        except BaseException:
            await self._delete_session_secret()
            raise

    async def stop(self, now: bool = False):
        try:
            await self._unbind_hot_attached()
            return await super().stop(now)  # type: ignore[misc]
        finally:
            # Only with the sidecar: a hub without it may have no right to touch Secrets.
            if self.rclone_sidecar:
                await self._delete_session_secret()

    async def _create_session_secret(self) -> None:
        master = self.credentials_master_key  # type: ignore[attr-defined]
        spawner: Any = self
        body = session_secret(
            self.session_secret_name,
            spawner.namespace,
            spawner.user.name,
            rc_password=secrets.token_urlsafe(24),
            credentials_key=user_key(master, spawner.user.name) if master else "",
            hub_token=self._new_hub_token() if spawner.archive_claim else "",
        )
        for _ in range(3):
            try:
                await asyncio.wait_for(
                    spawner.api.create_namespaced_secret(spawner.namespace, body),
                    spawner.k8s_api_request_timeout,
                )
                return
            except ApiException as e:
                if e.status != 409:
                    raise
            # One left from a session that ended without a stop (a hub crash): replace it,
            # so the new pod never starts with an old rc password.
            await self._delete_session_secret()
        raise RuntimeError(f"Could not create the Secret {self.session_secret_name}")

    async def _delete_session_secret(self) -> None:
        spawner: Any = self
        try:
            await asyncio.wait_for(
                spawner.api.delete_namespaced_secret(self.session_secret_name, spawner.namespace),
                spawner.k8s_api_request_timeout,
            )
        except ApiException as e:
            if e.status != 404:
                raise

    # -- hot attach: the broker authorizes, the sidecar binds (datalabs_volumes.mount.hubbind) --

    #: The port of the sidecar's bind API (the sidecar listens on ``HUB_BIND_PORT``).
    hub_bind_port: int = HUB_BIND_PORT
    #: The token of this pod's sidecar bind API; kept in the hub's database with the
    #: spawner's state, so that a restarted hub can still attach to running sessions.
    _hub_token: str = ""
    #: The folders the sidecar bound for this pod (kept with the state, as the token).
    _hot_attached: frozenset[str] = frozenset()

    def _new_hub_token(self) -> str:
        self._hub_token = secrets.token_urlsafe(32)
        return self._hub_token

    def get_state(self):
        state = super().get_state()  # type: ignore[misc]
        if self._hub_token:
            state["datalabs_hub_token"] = self._hub_token
        if self._hot_attached:
            state["datalabs_hot_attached"] = sorted(self._hot_attached)
        return state

    def load_state(self, state):
        super().load_state(state)  # type: ignore[misc]
        self._hub_token = state.get("datalabs_hub_token", "")
        self._hot_attached = frozenset(state.get("datalabs_hot_attached", ()))

    def clear_state(self):
        super().clear_state()  # type: ignore[misc]
        self._hub_token = ""
        self._hot_attached = frozenset()

    async def _unbind_hot_attached(self) -> None:
        """Have the sidecar undo its binds before the pod is deleted.

        A bind made in the sidecar propagates (Bidirectional) to the emptyDir's folder on the
        node, where it outlives the sidecar; the kubelet then cannot remove the emptyDir
        ("unlinkat .../datalabs-remote/psa/hello.txt: read-only file system", seen on the
        real kubelet) and the pod stays Terminating. Were the bind writable, that removal
        would delete archive files. Best effort: a sidecar that does not answer is logged.
        """
        if not self._hot_attached:
            return
        try:
            url = self._bind_url("")
        except AccessError:
            return
        for folder in sorted(self._hot_attached):
            try:
                await request_bind(url, self._hub_token, "unbind", {"folder": folder}, 10.0)
            except AccessError as e:
                if e.status != 409:  # 409: not bound (any more)
                    self.log.warning("Could not detach %s before stopping: %s", folder, e)
        self._hot_attached = frozenset()

    def volume_path(self, folder: str) -> str:
        """Where a volume attached while the session runs appears: in the shared folder."""
        spawner: Any = self
        home = posixpath.dirname(spawner.data_mount_root.rstrip("/"))
        return posixpath.relpath(posixpath.join(self.connections_mount_root, folder), home)

    def _bind_source(self, chosen: ChosenVolume) -> str:
        """The volume's folder in the archive claim the sidecar holds; 409 for other sources."""
        src = chosen.source
        claim = self.archive_claim  # type: ignore[attr-defined]
        if src.type == "local":
            return src.path
        if src.type == "pvc" and src.claim == claim and src.sub_path:
            return src.sub_path
        raise AccessError(
            409,
            f"Volume '{chosen.id}' is not in the archive claim, so it can only be attached "
            "when the session starts; restart the session with it.",
        )

    def _bind_url(self, vid: str) -> str:
        spawner: Any = self
        if not (self.rclone_sidecar and spawner.archive_claim and self._hub_token):
            raise AccessError(
                409,
                f"Volume '{vid}' can only be attached when the session starts on this hub; "
                "restart the session with it.",
            )
        pod = spawner.pod_reflector.pods.get(f"{spawner.namespace}/{spawner.pod_name}")
        ip = ((pod or {}).get("status") or {}).get("podIP")
        if not ip:
            raise AccessError(409, f"Start your session before attaching volume '{vid}' to it.")
        host = f"[{ip}]" if ":" in ip else ip
        return f"http://{host}:{self.hub_bind_port}"

    async def hot_attach(self, chosen: ChosenVolume) -> Mounted:
        """Have the pod's sidecar bind an authorized volume read-only into the shared folder
        (the broker calls this after ``authorize_volume``)."""
        source = self._bind_source(chosen)
        url = self._bind_url(chosen.id)
        folder = chosen.volume.folder
        await request_bind(url, self._hub_token, "bind", {"folder": folder, "source": source})
        self._hot_attached |= {folder}
        return Mounted(
            Path(source), Path(posixpath.join(self.connections_mount_root, folder)), "bind"
        )

    async def hot_detach(self, vid: str) -> Volume:
        """Have the sidecar unbind a volume (refused as ``hot_attach`` is for others)."""
        spawner: Any = self
        volume = spawner.catalogue.volumes.entries.get(vid)
        if volume is None:
            raise refuse_volume(vid)
        url = self._bind_url(vid)
        try:
            await request_bind(url, self._hub_token, "unbind", {"folder": volume.folder})
            self._hot_attached -= {volume.folder}
        except AccessError as e:
            if e.status == 409 and not may_read(volume, spawner.who()):
                raise refuse_volume(vid) from None
            raise
        return volume
