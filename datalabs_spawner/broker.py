"""The broker: the hub-side authority on who may read which volume, and the only code that
mounts one into a user's running session.

Why handlers in the hub process (``JupyterHub.extra_handlers``) and not a managed service:

- The decision needs the hub's own users and groups (its database) and the spawner's options
  (``group_volume_access``, ``catalogue_dirs``, the workspace and archive folders, the mount
  engine). In the hub process the broker reads them from the very objects the spawner uses, so
  spawn and hot attach make the *same call* (``DatalabsSpawnerMixin.authorize_volume``, which is
  ``datalabs_volumes.access.authorize_volume`` on ``spawner.who()``), with no copy of the
  configuration and no second source of truth. A separate service would need its own token
  with ``read:users:groups`` (one more secret to keep) and a copy of the spawner's settings.
- The hub is already the privileged process (it bind-mounts volumes at spawn); a service
  would be a second root process to guard.
- The hub authenticates the caller: JupyterHub resolves the token in ``Authorization`` to its
  owner and scopes, so the broker knows whose token it is without trusting anything the
  session says.

The cost: ``extra_handlers`` is marked deprecated since JupyterHub 3.1 (it still works in 5
and 6, and logs a warning). The policy itself is pure (``datalabs_volumes.access``) and the
mounting lives on the spawner, so moving the routes into a managed service later changes
only this module.

API (versioned; documented in ``docs/api/broker.openapi.yaml``), under the hub prefix:

- ``GET  /hub/datalabs/v1/users/<user>/volumes``: the volumes the user may read
- ``POST /hub/datalabs/v1/users/<user>/volumes/<id>/attach`` (body ``{"version": "v2"}``,
  optional): mount it read-only into the user's running session, at ``data/<folder>``
- ``POST /hub/datalabs/v1/users/<user>/volumes/<id>/detach``
- ``GET  /hub/datalabs/v1/users/<user>/volumes/<id>/size`` and ``.../browse?path=<folder>``:
  a volume's size and a folder's listing, read by the hub (a sandboxed session cannot see the
  archive), only for a volume the user may read
- ``GET  /hub/datalabs/v1/users/<user>/connections``: the user's connections the hub mounted
  into their (sandboxed) session, with their health
- ``POST /hub/datalabs/v1/users/<user>/connections/<name>/attach`` (body
  ``{"writable": true}``, optional): mount the user's own connection ``<name>`` (read from their
  encrypted store, never from the request) at ``data/<name>`` of their sandboxed session
- ``POST /hub/datalabs/v1/users/<user>/connections/<name>/detach``

Every request carries a token of ``<user>`` themselves (their server's
``JUPYTERHUB_API_TOKEN``, or any token of theirs with ``access:servers`` on their default
server); a token of anyone else, an admin's or a service's included, is refused (403), and a
request without one is 401.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, NoReturn

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.scopes import has_scope

from datalabs_volumes.access import AccessError
from datalabs_volumes.archive import BrowseError, FolderSize, browse_folder, folder_size
from datalabs_volumes.contract import BROKER_PATH

from .spawner import DatalabsSpawnerMixin, _http_error

#: A volume id or user name as a path segment; the catalogue and the hub validate the rest.
_SEGMENT = r"[^/]+"


class BrokerHandler(APIHandler):
    """Base of the broker's handlers: the caller must be the user named in the path."""

    # A browser's hub cookie never acts on the broker: only tokens, whose owner and scopes the
    # hub knows, are accepted (so there is no cross-site request to forge either).
    _accept_cookie_auth = False

    def owner(self, user_name: str) -> Any:
        """The hub User ``user_name`` if the request's token is theirs, else an HTTP error."""
        caller = self.current_user
        if caller is None:
            err = _http_error(
                401, "The broker needs the user's own hub token (Authorization: token ...)."
            )
            err.headers = {"WWW-Authenticate": "token"}  # type: ignore[attr-defined]
            raise err
        is_user = getattr(caller, "kind", None) == "user"
        # access:servers on the user's default server is what their server's own token has;
        # a token the user narrowed to other scopes does not reach the broker.
        if (
            not is_user
            or caller.name != user_name
            or not has_scope(f"access:servers!server={user_name}/", self.parsed_scopes)
        ):
            self.log.warning(
                "Broker: refused a request for %s's volumes from %s %s",
                user_name,
                getattr(caller, "kind", "?"),
                getattr(caller, "name", "?"),
            )
            raise _http_error(403, f"This token may not act for user '{user_name}'.")
        return caller

    def spawner(self, user_name: str) -> DatalabsSpawnerMixin:
        spawner = self.owner(user_name).spawner
        if not isinstance(spawner, DatalabsSpawnerMixin):
            raise _http_error(501, "This hub's spawner is not a Datalabs spawner.")
        return spawner

    def reply(self, value: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(value)

    def fail(self, e: AccessError) -> NoReturn:
        raise _http_error(e.status, e.message)


class UserVolumesHandler(BrokerHandler):
    async def get(self, user_name: str):
        spawner = self.spawner(user_name)
        volumes = spawner.readable_volumes()
        self.reply(
            {
                "user": user_name,
                "volumes": [
                    {"id": v.id, "versions": [x.name for x in v.versions], "folder": v.folder}
                    for v in volumes
                ],
            }
        )


class VolumeAttachHandler(BrokerHandler):
    async def post(self, user_name: str, vid: str):
        spawner = self.spawner(user_name)
        body = self.get_json_body()
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise _http_error(400, 'The body must be a JSON object such as {"version": "v2"}.')
        unknown = sorted(set(body) - {"version"})
        if unknown:
            raise _http_error(400, f"Unknown field(s) {', '.join(unknown)}: only 'version'.")
        version = body.get("version")
        if version is not None and not isinstance(version, str):
            raise _http_error(400, "'version' must be the name of a version (a string).")
        try:
            chosen = spawner.authorize_volume(vid, version or None)
            mounted = await spawner.hot_attach(chosen)
        except AccessError as e:
            self.fail(e)
        self.log.info("Broker: attached %s for %s at %s", vid, user_name, mounted.target)
        self.reply(
            {
                "id": chosen.id,
                "version": chosen.version,
                "path": spawner.volume_path(chosen.volume.folder),
                "read_only": True,
                "method": mounted.method,
            }
        )


class VolumeDetachHandler(BrokerHandler):
    async def post(self, user_name: str, vid: str):
        spawner = self.spawner(user_name)
        try:
            volume = await spawner.hot_detach(vid)
        except AccessError as e:
            self.fail(e)
        self.log.info("Broker: detached %s for %s", vid, user_name)
        self.reply({"id": volume.id, "path": spawner.volume_path(volume.folder), "attached": False})


#: Volume sizes the broker walked, by folder: (size, when). A walk is redone after 5 minutes,
#: as in a session that sees the archive itself.
_SIZES: dict[Path, tuple[FolderSize, float]] = {}
SIZE_MAX_AGE = 300.0


class VolumeSizeHandler(BrokerHandler):
    async def get(self, user_name: str, vid: str):
        spawner = self.spawner(user_name)
        try:
            chosen = spawner.authorize_volume(vid)
            folder = spawner.volume_folder(chosen)
        except AccessError as e:
            self.fail(e)
        cached = _SIZES.get(folder)
        if cached is None or time.monotonic() - cached[1] > SIZE_MAX_AGE:
            cached = (await asyncio.to_thread(folder_size, folder), time.monotonic())
            _SIZES[folder] = cached
        self.reply({"id": chosen.id, **cached[0].to_json()})


class VolumeBrowseHandler(BrokerHandler):
    async def get(self, user_name: str, vid: str):
        spawner = self.spawner(user_name)
        path = self.get_argument("path", "")
        try:
            chosen = spawner.authorize_volume(vid)
            folder = spawner.volume_folder(chosen)
        except AccessError as e:
            self.fail(e)
        try:
            listing = await asyncio.to_thread(browse_folder, chosen.id, folder, path)
        except BrowseError as e:
            raise _http_error(e.status, e.message) from None
        self.reply(listing)


class UserConnectionsHandler(BrokerHandler):
    async def get(self, user_name: str):
        spawner = self.spawner(user_name)
        try:
            attached = await spawner.host_connections().attached()
        except AccessError as e:
            self.fail(e)
        self.reply({"user": user_name, "connections": attached})


class ConnectionAttachHandler(BrokerHandler):
    async def post(self, user_name: str, name: str):
        spawner = self.spawner(user_name)
        body = self.get_json_body()
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise _http_error(400, 'The body must be a JSON object such as {"writable": true}.')
        unknown = sorted(set(body) - {"writable"})
        if unknown:
            raise _http_error(400, f"Unknown field(s) {', '.join(unknown)}: only 'writable'.")
        writable = body.get("writable")
        if writable is not None and not isinstance(writable, bool):
            raise _http_error(400, "'writable' must be true or false.")
        try:
            answer = await spawner.host_connections().attach(name, writable)
        except AccessError as e:
            self.fail(e)
        self.log.info("Broker: attached connection %s for %s", name, user_name)
        self.reply(answer)


class ConnectionDetachHandler(BrokerHandler):
    async def post(self, user_name: str, name: str):
        spawner = self.spawner(user_name)
        try:
            answer = await spawner.host_connections().detach(name)
        except AccessError as e:
            self.fail(e)
        self.log.info("Broker: detached connection %s for %s", name, user_name)
        self.reply(answer)


_USER = rf"users/(?P<user_name>{_SEGMENT})"
_VOLUME = rf"{_USER}/volumes/(?P<vid>{_SEGMENT})"
_CONNECTION = rf"{_USER}/connections/(?P<name>{_SEGMENT})"

#: Routes relative to the hub prefix; add them with ``c.JupyterHub.extra_handlers``.
default_handlers = [
    (rf"/{BROKER_PATH}{_USER}/volumes", UserVolumesHandler),
    (rf"/{BROKER_PATH}{_VOLUME}/attach", VolumeAttachHandler),
    (rf"/{BROKER_PATH}{_VOLUME}/detach", VolumeDetachHandler),
    (rf"/{BROKER_PATH}{_VOLUME}/size", VolumeSizeHandler),
    (rf"/{BROKER_PATH}{_VOLUME}/browse", VolumeBrowseHandler),
    (rf"/{BROKER_PATH}{_USER}/connections", UserConnectionsHandler),
    (rf"/{BROKER_PATH}{_CONNECTION}/attach", ConnectionAttachHandler),
    (rf"/{BROKER_PATH}{_CONNECTION}/detach", ConnectionDetachHandler),
]
