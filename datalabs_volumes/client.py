"""A small client of the session's storage API, for notebooks and scripts.

Inside a session the server extension exports where its API is (``DATALABS_API_URL``) and a
token for it (``DATALABS_API_TOKEN``); in a hub session the server's own
``JUPYTERHUB_API_TOKEN`` and ``JUPYTERHUB_SERVICE_URL`` work too. Every call goes through the
REST API, so a notebook gets exactly the checks the Data panel gets (access rules, validation,
connection tests). Standard library only: it must import in any kernel.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from . import contract


class DatalabsError(RuntimeError):
    """The API refused a request; ``status`` is the HTTP status, the message says why."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{message} (HTTP {status})")
        self.status = status
        self.message = message


def _default_url() -> str:
    url = os.environ.get(contract.API_URL)
    if url:
        return url
    service = os.environ.get("JUPYTERHUB_SERVICE_URL")
    if service:
        return service.rstrip("/") + "/datalabs/api/"
    raise DatalabsError(
        0,
        "No Datalabs API in this environment: DATALABS_API_URL is not set (is this a notebook "
        "in a Datalabs session?)",
    )


def _default_token() -> str:
    return os.environ.get(contract.API_TOKEN) or os.environ.get("JUPYTERHUB_API_TOKEN", "")


class Client:
    """Calls to ``<url>/<path>`` with ``token``; both default to the session's environment."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 120):
        self.url = (url or _default_url()).rstrip("/") + "/"
        self.token = _default_token() if token is None else token
        self.timeout = timeout

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
    ) -> Any:
        """One API request; the decoded JSON answer, or DatalabsError with the API's message."""
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"token {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                raw = answer.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                message = json.loads(raw).get("message") or e.reason
            except ValueError:
                message = str(e.reason)
            raise DatalabsError(e.code, message) from None
        return json.loads(raw) if raw.strip() else None


def quote(name: str) -> str:
    """A path segment: never lets a name add a segment of its own."""
    return urllib.parse.quote(name, safe="")
