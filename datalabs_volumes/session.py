"""The storage of one running session: hosted volumes and the user's own connections.

What the REST API (and through it the Data panel and the notebook API) does, as a plain
library: list, attach, detach and browse hosted volumes with the same access rule and the same
mount code as at spawn; define, test, attach and detach connections through the session's
``rclone rcd``. Errors are ``StorageError`` with an HTTP status and a sentence a person can act
on. No Jupyter here: the server extension only turns requests into these calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any, cast

from . import listing
from .access import AccessError, Who, may_read, refuse_volume
from .archive import BrowseError, FolderSize, browse_folder, folder_size
from .broker_client import BrokerClient
from .catalogue import VolumeCatalogue
from .credentials import CredentialError, CredentialStore
from .egress import NetworkPolicy, as_policy
from .models import Volume, choose
from .mount.local import (
    LocalMounter,
    MountError,
    MountMethod,
    is_mount_point,
    mount_points,
    resolve_source,
)
from .mount.rclone import RcloneError, SessionRclone
from .remotes import Connection, InvalidConnection, merge_patch, validate

#: The ``reason`` of an error the user can retry: the hub (and its broker) did not answer.
HUB_UNAVAILABLE = "hub_unavailable"


class StorageError(AccessError):
    """A request that cannot be done: ``status`` for HTTP, ``message`` for the person, and
    ``reason``, a field or kind a client can act on."""

    def __init__(self, status: int, message: str, reason: str = "", retry_after: int | None = None):
        super().__init__(status, message, retry_after)
        self.reason = reason

    @classmethod
    def from_broker(cls, error: AccessError) -> StorageError:
        """The broker's refusal or failure as the session answers it."""
        reason = HUB_UNAVAILABLE if error.retry_after is not None else ""
        return cls(error.status, error.message, reason, error.retry_after)


def _refuse_volume(vid: str) -> StorageError:
    refused = refuse_volume(vid)
    return StorageError(refused.status, refused.message)


@dataclass
class _Size:
    bytes: int
    files: int
    complete: bool
    at: float


@dataclass(frozen=True)
class _Readable:
    entries: dict[str, Volume]
    day: date
    volumes: list[Volume]
    index: list[listing.Indexed]
    allowed: frozenset[str] | None = None


class StorageSession:
    """Hosted volumes and connections of one user's running session.

    ``data_dir``: where volumes and connections appear (``<workspace>/data``).
    ``catalogue_dirs`` / ``archive_root``: the hub's catalogue and the root of ``local`` sources.
    ``who``: the user (and, for a server outside any hub, its groups). ``broker``: in a hub
    session, the hub's broker, which alone decides which volumes the user may read and alone
    attaches and detaches them; ``who``'s groups are then never used. Without a broker (a
    server its owner runs outside any hub) the session applies the same policy function
    itself, with its own mounter. ``store``: their encrypted connections (None: the operator
    configured no credentials key, and connections are refused with a message saying so).
    ``allowed_networks``: the :class:`NetworkPolicy` (or the non-public networks it allows)
    that connections obey, when saved and at every connection rclone makes.
    ``connections_dir``: where connections are mounted (default ``data_dir``; on Kubernetes the
    folder the rclone sidecar shares with the user container).
    ``connections_by_broker``: the broker mounts connections (a sandboxed session); the
    session's own rclone then only tests them.
    """

    def __init__(
        self,
        data_dir: Path,
        who: Who,
        catalogue_dirs: Sequence[str] = (),
        archive_root: str = "",
        store: CredentialStore | None = None,
        allowed_networks: NetworkPolicy | Iterable[ipaddress._BaseNetwork] = (),
        mount_method: MountMethod = "auto",
        rclone: SessionRclone | None = None,
        catalogue_refresh_seconds: float = 2.0,
        broker: BrokerClient | None = None,
        connections_dir: Path | None = None,
        connections_by_broker: bool = False,
    ):
        self.broker = broker
        #: A sandboxed session cannot FUSE-mount (``fusermount3`` is stopped by
        #: no_new_privs): the hub's broker mounts its connections on the host instead.
        self.connections_by_broker = broker is not None and connections_by_broker
        #: The broker's answer (ids the user may read) and when it was fetched.
        self._allowed: tuple[frozenset[str], float] | None = None
        self.data_dir = Path(data_dir)
        self._data_dir_abs = os.path.abspath(self.data_dir)
        self.connections_dir = Path(connections_dir) if connections_dir else self.data_dir
        self.who = who
        self.catalogue = VolumeCatalogue(catalogue_dirs)
        self.catalogue_refresh_seconds = catalogue_refresh_seconds
        self.archive_root = archive_root
        self.store = store
        self.network_policy = as_policy(allowed_networks)
        self.allowed_networks = self.network_policy.allowed_networks
        self.mounter = LocalMounter(mount_method)
        self.rclone = rclone or SessionRclone()
        # The same rules when rclone connects as when a connection is saved.
        self.rclone.network_policy = self.network_policy
        self.rclone.on_token_refresh = self._keep_refreshed_token
        self._sizes: dict[str, _Size] = {}
        self._described: dict[str, tuple[Volume, dict[str, Any]]] = {}
        self._readable_cache: _Readable | None = None
        self._volume_lock = asyncio.Lock()
        self._archive_hidden: bool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- hosted volumes ------------------------------------------------------------------------

    def _entries(self) -> dict[str, Volume]:
        """The catalogue's entries, rescanned in the background at most every
        ``catalogue_refresh_seconds`` (with 0, every call rescans and waits for it)."""
        seconds = self.catalogue_refresh_seconds
        self.catalogue.refresh(seconds, background=seconds > 0)
        return self.catalogue.entries

    async def _ask_broker(self) -> None:
        """Fetch from the broker the volumes the user may read, at most every
        ``catalogue_refresh_seconds`` (the same freshness as the catalogue itself)."""
        if self.broker is None:
            return
        self._loop = asyncio.get_running_loop()
        if self._allowed and time.monotonic() - self._allowed[1] < self.catalogue_refresh_seconds:
            return
        try:
            ids = await self.broker.readable()
        except AccessError as e:
            raise StorageError.from_broker(e) from None
        self._allowed = (frozenset(ids), time.monotonic())

    def _may_read(self, volume: Volume, today: date | None = None) -> bool:
        if self.broker is not None:
            return self._allowed is not None and volume.id in self._allowed[0]
        return may_read(volume, self.who, today)

    def _readable(self) -> _Readable:
        """The volumes the user may read, in catalogue order and indexed for search; made
        again only when the catalogue's entries, the broker's answer or the date (an embargo
        may end) changed."""
        entries = self._entries()
        today = date.today()
        allowed = self._allowed[0] if self._allowed else None
        cached = self._readable_cache
        if (
            cached is None
            or cached.entries is not entries
            or cached.day != today
            or cached.allowed is not allowed
        ):
            volumes = [v for v in entries.values() if self._may_read(v, today)]
            cached = _Readable(entries, today, volumes, listing.index(volumes), allowed)
            self._readable_cache = cached
        return cached

    def _volume(self, vid: str) -> Volume:
        volume = self._entries().get(vid)
        if volume is None or not self._may_read(volume):
            raise _refuse_volume(vid)
        return volume

    def _source(self, volume: Volume, version: str | None = None) -> Path:
        try:
            chosen = choose(volume, version)
        except KeyError:
            names = ", ".join(v.name for v in volume.versions) or "none"
            raise StorageError(
                400, f"Volume '{volume.id}' has no version '{version}' (versions: {names})."
            ) from None
        if chosen.source.type != "local":
            raise StorageError(
                400,
                f"Volume '{volume.id}' has a {chosen.source.type} source, which this "
                "session cannot attach.",
            )
        if not self.archive_root:
            raise StorageError(500, "The archive root is not configured for this session.")
        try:
            return resolve_source(self.archive_root, chosen.source.path)
        except MountError as e:
            raise StorageError(500, f"Volume '{volume.id}' cannot be attached: {e}.") from None

    def _size(self, volume: Volume) -> _Size:
        """Bytes and files of the volume's source, walked at most every five minutes; a size
        still fresh costs nothing, not even resolving the source path."""
        cached = self._sizes.get(volume.id)
        if cached and time.monotonic() - cached.at < 300:
            return cached
        if self._archive_by_broker():
            found = self._size_from_broker(volume.id)
        else:
            found = folder_size(self._source(volume))
        size = _Size(found.bytes, found.files, found.complete, time.monotonic())
        self._sizes[volume.id] = size
        return size

    def _archive_by_broker(self) -> bool:
        """Whether the broker reads the archive for this session (sizes, browse): a hub
        session told of an archive root it cannot see (a sandboxed one)."""
        if self._archive_hidden is None:
            self._archive_hidden = bool(self.archive_root) and not os.path.isdir(self.archive_root)
        return self.broker is not None and self._archive_hidden

    def _size_from_broker(self, vid: str) -> FolderSize:
        """The broker's size of ``vid``; called from the worker thread that describes
        volumes (``volumes()`` and friends), so it waits for a call made on the event loop."""
        loop = self._loop
        if loop is None or self.broker is None:
            raise StorageError(503, "The hub's volume broker is not reachable from here.")
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop()
            # On the loop's own thread waiting would never end.
            raise StorageError(500, "A volume size was asked for on the event loop.")
        call = asyncio.run_coroutine_threadsafe(self.broker.volume_size(vid), loop)
        try:
            answer = call.result(timeout=self.broker.timeout + 5)
            return FolderSize(
                int(answer["bytes"]), int(answer["files"]), bool(answer.get("complete", True))
            )
        except AccessError as e:
            raise StorageError.from_broker(e) from None
        except TimeoutError:
            call.cancel()
            raise StorageError(504, "The hub's volume broker did not answer in time.") from None
        except (KeyError, TypeError, ValueError):
            raise StorageError(502, "The hub's volume broker answered nonsense.") from None

    def _volume_health(self, target: Path) -> dict[str, str]:
        try:
            os.listdir(target)
        except OSError as e:
            return {"state": "broken", "reason": e.strerror or str(e)}
        return {"state": "ok", "reason": ""}

    def _catalogue_part(self, volume: Volume) -> dict[str, Any]:
        """What the catalogue says of a volume, kept as long as its entry is the same object
        (the catalogue re-reads a file only when it changes)."""
        hit = self._described.get(volume.id)
        if hit is None or hit[0] is not volume:
            part = {
                "id": volume.id,
                "title": volume.title,
                "mission": volume.mission,
                "description": volume.description,
                "path": f"data/{volume.folder}",
                "read_only": True,
                "versions": [v.name for v in volume.versions],
            }
            hit = (volume, part)
            self._described[volume.id] = hit
        return hit[1]

    def _mount_points(self) -> set[str]:
        """The mount table, read once for a whole listing (once per volume made ``GET volumes``
        take seconds for 10,000 volumes)."""
        return {str(p) for p in mount_points()}

    def _is_mounted(self, volume: Volume, points: set[str]) -> bool:
        return self._mounted_at(volume, points) is not None

    def _mounted_at(self, volume: Volume, points: set[str]) -> Path | None:
        """Where the volume is mounted: ``data/<folder>``, or on Kubernetes, when the broker
        attached it while the session runs, the sidecar's folder; None when it is not."""
        at_spawn = os.path.join(self._data_dir_abs, volume.folder)
        if at_spawn in points:
            return Path(at_spawn)
        shared = os.path.join(os.path.abspath(self.connections_dir), volume.folder)
        if self.connections_dir != self.data_dir and shared in points:
            if volume.folder not in self.rclone.attached:  # not a connection of that name
                return Path(shared)
        return None

    def _describe(self, volume: Volume, points: set[str]) -> dict[str, Any]:
        """The volume as the API shows it; ``points`` is :meth:`_mount_points`."""
        where = self._mounted_at(volume, points)
        mounted = where is not None
        out = dict(self._catalogue_part(volume))
        out.update(mounted=mounted, size=None, health=None)
        if where is not None and str(where.parent) != self._data_dir_abs:
            out["path"] = os.path.relpath(where, os.path.dirname(self._data_dir_abs))
        try:
            size = self._size(volume)
            out["size"] = {"bytes": size.bytes, "files": size.files, "complete": size.complete}
        except StorageError:
            pass
        if where is not None:
            out["health"] = self._volume_health(where)
        return out

    async def volumes(self) -> list[dict[str, Any]]:
        """The catalogue's volumes the user may read, with mounted state, size and health."""
        await self._ask_broker()

        def describe_all() -> list[dict[str, Any]]:
            points = self._mount_points()
            return [self._describe(v, points) for v in self._readable().volumes]

        return await asyncio.to_thread(describe_all)

    async def volume_page(
        self,
        query: str = "",
        state: str = "all",
        limit: int = 50,
        collapsed: Sequence[str] = (),
    ) -> dict[str, Any]:
        """One page of the readable volumes for the Data panel (see :mod:`.listing`): those
        matching every word of ``query`` and the state filter, grouped by mission, at most
        ``limit`` rows, none from the ``collapsed`` missions; only these rows are described
        (and sized)."""
        if state not in listing.STATES:
            raise StorageError(
                400, f"Unknown state filter '{state}': use one of {', '.join(listing.STATES)}."
            )
        if not 1 <= limit <= listing.MAX_LIMIT:
            raise StorageError(
                400, f"The page limit must be between 1 and {listing.MAX_LIMIT}, not {limit}."
            )
        await self._ask_broker()

        def build() -> dict[str, Any]:
            points = self._mount_points()

            def mounted(v: Volume) -> bool:
                return self._is_mounted(v, points)

            def broken(v: Volume) -> bool:
                return (
                    mounted(v)
                    and self._volume_health(self.data_dir / v.folder)["state"] == "broken"
                )

            found = listing.page(
                self._readable().index,
                query,
                cast(listing.StateFilter, state),
                limit,
                collapsed,
                mounted,
                broken,
            )
            return found.as_json(lambda v: self._describe(v, points))

        return await asyncio.to_thread(build)

    async def volume(self, vid: str) -> dict[str, Any]:
        """One volume as ``volumes()`` describes it."""
        await self._ask_broker()
        volume = self._volume(vid)
        return await asyncio.to_thread(lambda: self._describe(volume, self._mount_points()))

    async def attach_volume(self, vid: str, version: str | None = None) -> dict[str, Any]:
        """Mount a hosted volume read-only at ``data/<folder>``: in a hub session the broker
        decides and mounts (the session only asks); outside a hub, the spawner's own mounter."""
        if self.broker is not None:
            await self._broker_call(self.broker.attach(vid, version))
            return await self.volume(vid)
        volume = self._volume(vid)
        source = self._source(volume, version)
        target = self.data_dir / volume.folder
        async with self._volume_lock:
            if is_mount_point(target):
                raise StorageError(
                    409, f"Volume '{vid}' is already attached at data/{volume.folder}."
                )
            if volume.folder in self.rclone.attached:
                raise StorageError(
                    409, f"data/{volume.folder} is used by your connection '{volume.folder}'."
                )
            try:
                await self.mounter.attach(source, target)
            except MountError as e:
                raise StorageError(500, f"Volume '{vid}' could not be attached: {e}.") from None
        return await self.volume(vid)

    async def detach_volume(self, vid: str) -> dict[str, Any]:
        """Unmount a hosted volume (lazily if a kernel still reads from it)."""
        if self.broker is not None:
            answer = await self._broker_call(self.broker.detach(vid))
            self._allowed = None
            await self._ask_broker()
            volume = self._entries().get(vid)
            if volume is None or not self._may_read(volume):
                # Detached, and no longer readable (access ended while it was attached).
                return {**answer, "mounted": False}
            return await self.volume(vid)
        volume = self._volume(vid)
        target = self.data_dir / volume.folder
        async with self._volume_lock:
            if not is_mount_point(target):
                raise StorageError(409, f"Volume '{vid}' is not attached.")
            try:
                await self.mounter.detach(target)
            except MountError as e:
                raise StorageError(500, f"Volume '{vid}' could not be detached: {e}.") from None
        return await self.volume(vid)

    async def _broker_call(self, call: Any) -> dict[str, Any]:
        try:
            return await call
        except AccessError as e:
            raise StorageError.from_broker(e) from None

    async def browse_volume(self, vid: str, path: str = "") -> dict[str, Any]:
        """List a folder of a volume through fsspec, without mounting it (through the broker
        when this session cannot see the archive)."""
        await self._ask_broker()
        volume = self._volume(vid)
        if self._archive_by_broker() and self.broker is not None:
            return await self._broker_call(self.broker.browse(vid, path))
        source = self._source(volume)
        try:
            return await asyncio.to_thread(browse_folder, volume.id, source, path)
        except BrowseError as e:
            raise StorageError(e.status, e.message) from None

    # -- connections ---------------------------------------------------------------------------

    def _store(self) -> CredentialStore:
        if self.store is None:
            raise StorageError(
                503,
                "Connections are not available: the operator has not configured a credentials "
                "key (DatalabsSpawnerMixin.credentials_master_key).",
            )
        return self.store

    def _keep_refreshed_token(self, connection: Connection, token: str) -> None:
        if self.store is None:
            return
        options = {**connection.options, "token": token}
        self.store.put(replace(connection, options=options))

    def _get(self, name: str) -> Connection:
        try:
            connection = self._store().get(name)
        except CredentialError as e:
            raise StorageError(500, str(e)) from None
        if connection is None:
            raise StorageError(404, f"There is no connection '{name}'.")
        return connection

    def _validate(self, doc: Any) -> Connection:
        try:
            return validate(doc, self.network_policy)
        except InvalidConnection as e:
            raise StorageError(400, f"{e.field}: {e.message}.", reason=e.field) from None

    async def _test(self, connection: Connection) -> None:
        if connection.spec.kernel:
            raise StorageError(
                501,
                f"{connection.backend} connections are mounted by the kernel's NFS client, "
                "which this session does not have; ask the operator to publish the export "
                "as a hosted volume instead.",
            )
        try:
            await self.rclone.test(connection)
        except RcloneError as e:
            raise StorageError(e.status, e.message, reason=e.kind) from None

    async def _brokered(self) -> dict[str, dict[str, Any]]:
        """The connections the broker mounted for this session, by name (empty when the
        session mounts its own)."""
        if not self.connections_by_broker or self.broker is None:
            return {}
        found = await self._broker_call(self.broker.connections())
        return {str(c.get("name")): c for c in found}

    async def _is_attached(self, name: str) -> bool:
        if self.connections_by_broker:
            return name in await self._brokered()
        return name in self.rclone.attached

    async def _describe_connection(
        self,
        connection: Connection,
        health: bool = True,
        brokered: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        out = connection.redacted()
        if self.connections_by_broker:
            if brokered is None:
                brokered = await self._brokered()
            mounted = brokered.get(connection.name)
            out["attached"] = mounted is not None
            out["mount"] = f"data/{connection.name}"
            out["read_only"] = (
                bool(mounted.get("read_only", True)) if mounted else not connection.writable
            )
            out["health"] = (mounted.get("health") if mounted and health else None) or None
            return out
        attached = self.rclone.attached.get(connection.name)
        out["attached"] = attached is not None
        out["mount"] = self._connection_label(connection.name)
        out["read_only"] = attached.read_only if attached else not connection.writable
        if attached and health:
            out["health"] = (await self.rclone.health(connection.name)).to_json()
        else:
            out["health"] = None
        return out

    def _connection_label(self, name: str) -> str:
        """``data/<name>``: where the connection appears, relative to the server's root."""
        return os.path.relpath(self.connections_dir / name, self.data_dir.parent)

    async def connections(self) -> list[dict[str, Any]]:
        """Every connection of the user, secrets redacted, with attached state and health."""
        try:
            stored = self._store().list()
        except CredentialError as e:
            raise StorageError(500, str(e)) from None
        brokered = await self._brokered() if stored else {}
        return list(
            await asyncio.gather(*(self._describe_connection(c, brokered=brokered) for c in stored))
        )

    async def connection(self, name: str) -> dict[str, Any]:
        """One connection, secrets redacted."""
        return await self._describe_connection(self._get(name))

    async def create_connection(self, doc: Any) -> dict[str, Any]:
        """Validate, test and save a new connection."""
        connection = self._validate(doc)
        if self._store().get(connection.name) is not None:
            raise StorageError(
                409, f"A connection '{connection.name}' exists already; PATCH it or pick a name."
            )
        await self._test(connection)
        self._store().put(connection)
        return await self._describe_connection(connection, health=False)

    async def update_connection(self, name: str, patch: Any) -> dict[str, Any]:
        """Change a connection (not while attached); tested again before it is saved."""
        current = self._get(name)
        if await self._is_attached(name):
            raise StorageError(409, f"Detach '{name}' before changing it.")
        try:
            doc = merge_patch(current, patch)
        except InvalidConnection as e:
            raise StorageError(400, f"{e.field}: {e.message}.", reason=e.field) from None
        connection = self._validate(doc)
        await self._test(connection)
        self._store().put(connection)
        return await self._describe_connection(connection, health=False)

    async def delete_connection(self, name: str) -> None:
        """Detach (if attached) and forget a connection."""
        self._get(name)
        if await self._is_attached(name):
            await self.detach_connection(name)
        self._store().delete(name)

    async def test_connection(self, name: str) -> dict[str, Any]:
        """Test a saved connection; StorageError says what is wrong."""
        await self._test(self._get(name))
        return {"name": name, "ok": True}

    async def attach_connection(self, name: str, writable: bool | None = None) -> dict[str, Any]:
        """Mount a connection at ``data/<name>``: read-only unless the user asks for writes."""
        connection = self._get(name)
        if connection.spec.kernel:
            await self._test(connection)
        if self.connections_by_broker and self.broker is not None:
            # The broker reads the connection from the user's own store itself; the name
            # only picks one of theirs.
            await self._broker_call(self.broker.attach_connection(name, writable))
            return await self._describe_connection(connection)
        read_only = not (connection.writable if writable is None else writable)
        target = self.connections_dir / name
        label = self._connection_label(name)
        if name in self.rclone.attached:
            raise StorageError(409, f"'{name}' is already attached at {label}.")
        if is_mount_point(target):
            raise StorageError(409, f"{label} is already used by a volume.")
        if target.exists() and any(target.iterdir()):
            raise StorageError(
                409, f"{label} is a folder with files in it; rename it or the connection."
            )
        try:
            await self.rclone.attach(connection, target, read_only=read_only)
        except RcloneError as e:
            raise StorageError(e.status, e.message, reason=e.kind) from None
        return await self._describe_connection(connection)

    async def detach_connection(self, name: str) -> dict[str, Any]:
        """Unmount a connection."""
        connection = self._get(name)
        if self.connections_by_broker and self.broker is not None:
            await self._broker_call(self.broker.detach_connection(name))
            return await self._describe_connection(connection, health=False)
        try:
            await self.rclone.detach(name)
        except RcloneError as e:
            raise StorageError(e.status, e.message, reason=e.kind) from None
        return await self._describe_connection(connection, health=False)

    async def close(self) -> None:
        """Unmount every connection and stop rclone (hosted volumes are the spawner's)."""
        await self.rclone.close()


def as_mapping(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a JSON object, else an empty one (for optional request bodies)."""
    return value if isinstance(value, Mapping) else {}
