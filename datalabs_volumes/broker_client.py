"""The session's side of the broker: asks the hub's broker, with the user's own hub token,
to attach and detach volumes and to say which volumes the user may read.

The session never decides access itself: whatever it sends, the broker checks the hub's own
users, groups and catalogue, and answers 403 for what the user may not have. Errors come back
as ``AccessError`` with the broker's status and message, which the session passes on.

The broker lives in the hub process, so while the hub restarts (an upgrade, a crash) it does
not answer. That is told apart from a refusal: a 503 whose ``retry_after`` is set, with a
message saying the hub is restarting and to try again, so that a client knows the same
request may succeed a few seconds later.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from .access import AccessError

#: Seconds a user is told to wait when the hub does not answer (a restart of the embedded hub
#: takes a few seconds); they may then need to try again.
RETRY_AFTER = 5
#: Answers from something in front of a hub that is down (a proxy), not from the broker.
_GATEWAY_DOWN = (502, 503, 504)
#: Tornado's code for "no HTTP answer": the connection closed, or the request timed out.
_NO_ANSWER = 599


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
            if e.code == _NO_ANSWER:
                raise hub_unavailable(during=True) from None
            if e.code in _GATEWAY_DOWN and e.response is not None and not _from_hub(e):
                raise hub_unavailable(during=False) from None
            raise AccessError(e.code, _message(e)) from None
        except OSError:
            # Refused or unreachable: the request never reached the hub.
            raise hub_unavailable(during=False) from None
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

    async def volume_size(self, vid: str) -> dict[str, Any]:
        """The size of volume ``vid`` (``{"bytes", "files", "complete"}``), read by the hub."""
        return await self._call("GET", self._url("volumes", vid, "size"))

    async def browse(self, vid: str, path: str = "") -> dict[str, Any]:
        """A listing of folder ``path`` of volume ``vid``, read by the hub."""
        query = "?" + urlencode({"path": path}) if path else ""
        return await self._call("GET", self._url("volumes", vid, "browse") + query)

    async def connections(self) -> list[dict[str, Any]]:
        """The user's connections the hub mounted into their session (a sandboxed one), each
        ``{"name", "path", "attached", "read_only", "health"}``."""
        answer = await self._call("GET", self._url("connections"))
        return list(answer.get("connections", []))

    async def attach_connection(self, name: str, writable: bool | None = None) -> dict[str, Any]:
        """Ask the broker to mount the user's own connection ``name`` into their session."""
        body = {} if writable is None else {"writable": writable}
        return await self._call("POST", self._url("connections", name, "attach"), body)

    async def detach_connection(self, name: str) -> dict[str, Any]:
        """Ask the broker to unmount the user's connection ``name`` from their session."""
        return await self._call("POST", self._url("connections", name, "detach"), {})


def hub_unavailable(during: bool) -> AccessError:
    """The retryable error of a hub that does not answer; ``during``: it stopped answering in
    the middle of the request, so whether the hub finished it is not known."""
    if during:
        what = (
            "The hub stopped answering before it finished your request (it may be restarting). "
            f"Try again in {RETRY_AFTER} seconds; if the volume already shows the change by "
            "then, the hub made it before it stopped."
        )
    else:
        what = (
            "The hub is not answering (it may be restarting), so nothing was changed. "
            f"Try again in {RETRY_AFTER} seconds."
        )
    return AccessError(503, what, retry_after=RETRY_AFTER)


def _from_hub(error: HTTPClientError) -> bool:
    """Whether an error answer is JupyterHub's own (a JSON body with a message), not a proxy's."""
    assert error.response is not None
    return "json" in error.response.headers.get("Content-Type", "")


def _message(error: HTTPClientError) -> str:
    """The broker's own message (JupyterHub's JSON error body), else the HTTP reason."""
    body = error.response.body if error.response is not None else b""
    try:
        message = json.loads(body or b"{}").get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message) if message else f"The hub's volume broker answered {error.code}."
