"""Hot attach of archive volumes on Kubernetes: the sidecar's hub-only bind API and its client.

A running pod's volumes are fixed, so a volume attached after the start cannot be a new pod
volume. The privileged rclone sidecar can bind-mount it instead: the archive claim is mounted
read-only in the sidecar (never in the user container), and a bind mount of one of its folders
into the shared folder (Bidirectional) reaches the user container (HostToContainer), read-only.

Who may ask: only the hub's broker, after it authorized the volume for the pod's user
(``DatalabsSpawnerMixin.authorize_volume``, the very check made at spawn). The sidecar serves
this API on its own TCP port (the hub is in another pod), with a per-pod token that the hub
made at the pod's start and gave the sidecar alone (a ``secretKeyRef`` to the session Secret):
the user container never gets it, and the rc socket the user's code reaches has no bind call
at all (the rc guard refuses every method it does not know). The user's code can reach the
port too (it is in the pod's network namespace), but without the token gets 401; and even with
it, the sidecar binds only folders below the archive it holds, read-only, into the shared
folder.

API (JSON bodies, ``Authorization: Bearer <token>``):

- ``POST /datalabs/v1/bind`` ``{"folder": "<volume folder>", "source": "<path in the archive>"}``
- ``POST /datalabs/v1/unbind`` ``{"folder": "<volume folder>"}``
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.web import Application, RequestHandler

from ..access import AccessError
from ..models import ID_RE
from .kubernetes import HUB_BIND_PORT, HUB_TOKEN_ENV
from .local import LocalMounter, MountError, is_mount_point

log = logging.getLogger("datalabs.hubbind")

#: The sidecar's hub-only port (the NetworkPolicy admits the hub to session pods), and the
#: environment variable the sidecar reads its token from (popped at start).
__all__ = ["HUB_BIND_PORT", "TOKEN_ENV", "BindPolicy", "HubBindServer", "request_bind"]
TOKEN_ENV = HUB_TOKEN_ENV


class BindRefused(Exception):
    """A bind request the sidecar does not carry out; the message is the caller's answer."""

    def __init__(self, message: str, status: int = 403):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class BindPolicy:
    """Which binds are allowed: folders of ``archive_root`` onto ``mount_root/<folder>``."""

    archive_root: str
    mount_root: str

    def target(self, params: Any) -> Path:
        folder = params.get("folder") if isinstance(params, dict) else None
        if not isinstance(folder, str) or not ID_RE.match(folder):
            raise BindRefused(f"'folder' {folder!r} is not a volume folder name", 400)
        return Path(self.mount_root, folder)

    def source(self, params: Any) -> Path:
        """The archive folder to bind: relative, inside the archive once links are resolved."""
        value = params.get("source") if isinstance(params, dict) else None
        if not isinstance(value, str) or not value or "\x00" in value:
            raise BindRefused("'source' must be a path inside the archive", 400)
        relative = posixpath.normpath(value.lstrip("/"))
        if relative == ".." or relative.startswith("../"):
            raise BindRefused(f"source {value!r} is outside the archive")
        root = os.path.realpath(self.archive_root)
        real = os.path.realpath(os.path.join(root, relative))
        if real != root and not real.startswith(root + os.sep):
            raise BindRefused(f"source {value!r} is outside the archive")
        return Path(real)


class _BindHandler(RequestHandler):
    def initialize(self, server: HubBindServer) -> None:
        self.server = server

    def check_xsrf_cookie(self) -> None:  # a token API: no cookies, no forms
        pass

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    async def post(self, action: str) -> None:
        if not self.server.authorized(self.request.headers.get("Authorization", "")):
            self._answer(401, {"error": "only the hub may bind volumes"})
            return
        try:
            params = json.loads(self.request.body or b"{}")
            target = self.server.policy.target(params)
            if action == "bind":
                await self.server.bind(self.server.policy.source(params), target)
            else:
                await self.server.unbind(target)
        except ValueError:
            self._answer(400, {"error": "the body is not JSON"})
            return
        except BindRefused as e:
            log.warning("refused %s: %s", action, e.message)
            self._answer(e.status, {"error": e.message})
            return
        self._answer(200, {"folder": target.name, "bound": action == "bind"})


class HubBindServer:
    """The sidecar's hub-only bind API (see the module docstring)."""

    def __init__(self, policy: BindPolicy, token: str, mounter: LocalMounter | None = None):
        if len(token) < 16:
            raise ValueError(f"the hub bind token ({TOKEN_ENV}) is missing or too short")
        self.policy = policy
        self._expected = f"Bearer {token}"
        self.mounter = mounter or LocalMounter("bind")
        self.app = Application([(r"/datalabs/v1/(bind|unbind)", _BindHandler, {"server": self})])

    def authorized(self, header: str) -> bool:
        return hmac.compare_digest(header.encode(), self._expected.encode())

    async def bind(self, source: Path, target: Path) -> None:
        if is_mount_point(target):
            raise BindRefused(f"{target.name} is already attached", 409)
        try:
            await self.mounter.attach(source, target)
        except MountError as e:
            raise BindRefused(f"could not attach {target.name}: {e}", 500) from None
        log.info("bound %s read-only at %s", source, target)

    async def unbind(self, target: Path) -> None:
        if not is_mount_point(target):
            raise BindRefused(f"{target.name} is not attached", 409)
        try:
            await self.mounter.detach(target)
        except MountError as e:
            raise BindRefused(f"could not detach {target.name}: {e}", 500) from None


async def request_bind(
    url: str, token: str, action: str, body: dict[str, str], timeout: float = 30.0
) -> dict[str, Any]:
    """The broker's request to a sidecar (``url``: ``http://<pod ip>:<port>``); AccessError
    with the sidecar's answer when it refuses, 502 when it cannot be reached."""
    request = HTTPRequest(
        f"{url.rstrip('/')}/datalabs/v1/{action}",
        method="POST",
        body=json.dumps(body),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        request_timeout=timeout,
        connect_timeout=min(timeout, 5.0),
    )
    try:
        response = await AsyncHTTPClient().fetch(request)
    except HTTPClientError as e:
        if e.response is None:
            raise AccessError(502, f"The session's sidecar did not answer ({e}).") from None
        try:
            message = json.loads(e.response.body or b"{}").get("error", str(e))
        except ValueError:
            message = str(e)
        raise AccessError(e.code if e.code in (400, 409) else 500, message) from None
    except OSError as e:
        raise AccessError(502, f"The session's sidecar did not answer ({e.strerror}).") from None
    answer: dict[str, Any] = json.loads(response.body)
    return answer
