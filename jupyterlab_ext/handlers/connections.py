"""``/datalabs/api/connections``: the user's own storage (WebDAV, FTP, SFTP, S3, ...).

- ``GET connections``: every connection, secrets redacted, with attached state and health
- ``POST connections``: create ``{"name", "backend", "options", "path", "writable"}``; it is
  tested before it is saved
- ``GET|PATCH|DELETE connections/<name>``
- ``POST connections/<name>/test``
- ``POST connections/<name>/attach`` (optional ``{"writable": true}``) and ``.../detach``:
  the connection appears at ``data/<name>``
- ``GET backends``: the backends and options users may use

Secrets arrive in clear over the authenticated API, are encrypted at rest, reach rclone only
over its private socket, and are never sent back (redacted as ``********``).
"""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from datalabs_volumes.remotes import BACKENDS
from datalabs_volumes.session import as_mapping

from .base import DatalabsHandler
from .volumes import setup, shutdown  # noqa: F401 - one storage service for both modules

_NAME = r"(?P<name>[^/]+)"


class ConnectionsHandler(DatalabsHandler):
    @web.authenticated
    @authorized
    async def get(self):
        await self.run(self.storage.connections)

    @web.authenticated
    @authorized
    async def post(self):
        await self.run(lambda: self.storage.create_connection(self.body()), status=201)


class ConnectionHandler(DatalabsHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str):
        await self.run(lambda: self.storage.connection(name))

    @web.authenticated
    @authorized
    async def patch(self, name: str):
        await self.run(lambda: self.storage.update_connection(name, self.body()))

    @web.authenticated
    @authorized
    async def delete(self, name: str):
        await self.run(lambda: self.storage.delete_connection(name))


class ConnectionTestHandler(DatalabsHandler):
    @web.authenticated
    @authorized
    async def post(self, name: str):
        await self.run(lambda: self.storage.test_connection(name))


class ConnectionAttachHandler(DatalabsHandler):
    @web.authenticated
    @authorized
    async def post(self, name: str):
        async def call():
            writable = as_mapping(self.body(required=False)).get("writable")
            return await self.storage.attach_connection(
                name, None if writable is None else bool(writable)
            )

        await self.run(call)


class ConnectionDetachHandler(DatalabsHandler):
    @web.authenticated
    @authorized
    async def post(self, name: str):
        await self.run(lambda: self.storage.detach_connection(name))


class BackendsHandler(DatalabsHandler):
    @web.authenticated
    @authorized
    async def get(self):
        async def call():
            return [
                {
                    "backend": b.type,
                    "title": b.title,
                    "options": sorted(b.options),
                    "secrets": sorted(b.secrets),
                    "required": sorted(b.required),
                    "choices": {k: sorted(v) for k, v in b.choices.items()},
                }
                for b in BACKENDS.values()
            ]

        await self.run(call)


default_handlers = [
    ("backends", BackendsHandler),
    ("connections", ConnectionsHandler),
    (f"connections/{_NAME}", ConnectionHandler),
    (f"connections/{_NAME}/test", ConnectionTestHandler),
    (f"connections/{_NAME}/attach", ConnectionAttachHandler),
    (f"connections/{_NAME}/detach", ConnectionDetachHandler),
]
