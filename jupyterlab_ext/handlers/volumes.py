"""``/datalabs/api/volumes``: hosted archive volumes of the running session.

- ``GET volumes``: the volumes the user may read, with mounted state, size and health
- ``GET volumes?limit=N[&q=words][&state=attached|available|broken][&collapsed=Mission]...``:
  one page of them for the Data panel, searched and grouped by mission on the server
- ``GET volumes/<id>``: one of them
- ``POST volumes/<id>/attach`` (optional body ``{"version": "v2"}``) and ``POST .../detach``
- ``GET volumes/<id>/browse?path=<folder>``: a listing through fsspec, without mounting

In a hub session this server decides nothing: it asks the hub's broker
(``datalabs_spawner.broker``) with the user's own hub token, and the broker checks the hub's
users, groups and catalogue and does the mounting. Outside a hub (a server its owner runs) the
same policy function is applied here.
"""

from __future__ import annotations

import os

from jupyter_server.auth.decorator import authorized
from jupyter_server.utils import url_path_join
from tornado import web

from datalabs_volumes import contract
from datalabs_volumes.session import StorageError, as_mapping

from .base import DatalabsHandler

_ID = r"(?P<vid>[^/]+)"


class VolumesHandler(DatalabsHandler):
    @web.authenticated
    @authorized
    async def get(self):
        limit = self.get_argument("limit", None)
        if limit is None:
            await self.run(self.storage.volumes)
            return
        try:
            rows = int(limit)
        except ValueError:
            self.fail(StorageError(400, f"The page limit must be a number, not '{limit}'."))
            return
        await self.run(
            lambda: self.storage.volume_page(
                query=self.get_argument("q", ""),
                state=self.get_argument("state", "all"),
                limit=rows,
                collapsed=self.get_arguments("collapsed"),
            )
        )


class VolumeHandler(DatalabsHandler):
    @web.authenticated
    @authorized
    async def get(self, vid: str):
        await self.run(lambda: self.storage.volume(vid))


class VolumeAttachHandler(DatalabsHandler):
    @web.authenticated
    @authorized
    async def post(self, vid: str):
        async def call():
            version = as_mapping(self.body(required=False)).get("version")
            return await self.storage.attach_volume(vid, str(version) if version else None)

        await self.run(call)


class VolumeDetachHandler(DatalabsHandler):
    @web.authenticated
    @authorized
    async def post(self, vid: str):
        await self.run(lambda: self.storage.detach_volume(vid))


class VolumeBrowseHandler(DatalabsHandler):
    @web.authenticated
    @authorized
    async def get(self, vid: str):
        path = self.get_query_argument("path", "")
        await self.run(lambda: self.storage.browse_volume(vid, path))


def setup(app) -> None:
    """Create the session's storage service once, for both storage resources.

    Also tells kernels started from now on where the API is (``DATALABS_API_URL``, and the
    server's token if it has one), for ``from datalabs_volumes import volumes``.
    """
    if "datalabs_storage" not in app.settings:
        from ..storage import DatalabsStorage

        config = DatalabsStorage(parent=app)
        app.settings["datalabs_storage"] = config.build(app.serverapp.root_dir)
        serverapp = app.serverapp
        # A server listening on every address is reached on loopback from its own kernels.
        host = serverapp.ip if serverapp.ip not in ("", "0.0.0.0", "*", "::") else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        os.environ[contract.API_URL] = url_path_join(
            f"http://{host}:{serverapp.port}", serverapp.base_url, "datalabs/api/"
        )
        token = getattr(serverapp.identity_provider, "token", "")
        if token:
            os.environ[contract.API_TOKEN] = token


async def shutdown(app) -> None:
    """Unmount the session's connections and stop its rclone."""
    storage = app.settings.pop("datalabs_storage", None)
    if storage is not None:
        await storage.close()


default_handlers = [
    ("volumes", VolumesHandler),
    (f"volumes/{_ID}", VolumeHandler),
    (f"volumes/{_ID}/attach", VolumeAttachHandler),
    (f"volumes/{_ID}/detach", VolumeDetachHandler),
    (f"volumes/{_ID}/browse", VolumeBrowseHandler),
]
