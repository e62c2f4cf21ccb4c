"""The session's side of the broker: asks the hub's broker, with the user's own hub token,
to attach and detach volumes and to say which volumes the user may read.

The session never decides access itself: whatever it sends, the broker checks the hub's own
users, groups and catalogue, and answers 403 for what the user may not have. Errors come back
as ``AccessError`` with the broker's status and message, which the session passes on.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from .access import AccessError


class BrokerClient:
    """Calls to the broker at ``url`` (its versioned root) as ``user`` with ``token``."""

    def __init__(self, url: str, user: str, token: str, timeout: float = 60.0):
        self.url = url if url.endswith("/") else url + "/"
        self.user = user
        self._token = token
        self.timeout = timeout

    def _url(self, *parts: str) -> str:
        return self.url + "/".join(quote(p, safe="") for p in ("users", self.user, *parts))

    async def _call(self, method: str, url: str, body: Any = None) -> Any:
        request = HTTPRequest(
            url,
            method=method,
            headers={"Authorization": f"token {self._token}", "Content-Type": "application/json"},
            body=None if body is None else json.dumps(body),
            request_timeout=self.timeout,
            follow_redirects=False,
        )
        try:
            response = await AsyncHTTPClient().fetch(request)
        except HTTPClientError as e:
            raise AccessError(e.code, _message(e)) from None
        except OSError as e:
            raise AccessError(
                503, f"The hub's volume broker cannot be reached ({e.strerror or e})."
            ) from None
        return json.loads(response.body or b"null")

    async def readable(self) -> list[str]:
        """Ids of the volumes the user may read, in catalogue order."""
        answer = await self._call("GET", self._url("volumes"))
        return [str(v["id"]) for v in answer.get("volumes", [])]

    async def attach(self, vid: str, version: str | None = None) -> dict[str, Any]:
        """Ask the broker to attach ``vid`` (at ``version``) to the user's session."""
        body = {"version": version} if version else {}
        return await self._call("POST", self._url("volumes", vid, "attach"), body)

    async def detach(self, vid: str) -> dict[str, Any]:
        """Ask the broker to detach ``vid`` from the user's session."""
        return await self._call("POST", self._url("volumes", vid, "detach"), {})


def _message(error: HTTPClientError) -> str:
    """The broker's own message (JupyterHub's JSON error body), else the HTTP reason."""
    body = error.response.body if error.response is not None else b""
    try:
        message = json.loads(body or b"{}").get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message) if message else f"The hub's volume broker answered {error.code}."
