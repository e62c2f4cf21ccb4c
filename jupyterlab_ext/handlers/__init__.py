"""REST handlers, one module per resource, each ending with its route table."""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.auth.identity import IdentityProvider, PasswordIdentityProvider
from jupyter_server.base.handlers import APIHandler

from datalabs_pipelines.settings import default_user

from ..app import API_BASE, PipelineServices


def route(path: str) -> str:
    """The URL pattern of ``path`` under the Datalabs API base (the server adds its base_url)."""
    return f"/{API_BASE}/{path}"


#: jupyter-server's own providers: one shared token or password, no user names.
_SHARED_TOKEN_PROVIDERS = (IdentityProvider, PasswordIdentityProvider)


class DatalabsHandler(APIHandler):
    """Base of the Datalabs API handlers: services, the caller's user name, JSON errors."""

    @property
    def services(self) -> PipelineServices:
        return self.settings["datalabs"]

    @property
    def user_name(self) -> str:
        """The caller, as the server's identity provider knows them.

        jupyter-server's own provider knows one shared token and names each token-only request
        a fresh random "Anonymous" user; whoever holds that token is the server's owner, so runs
        are kept under the owner's login name. JupyterHub's provider (and any other) names the
        real user.
        """
        if type(self.identity_provider) in _SHARED_TOKEN_PROVIDERS:
            return default_user()
        return self.current_user.username

    def send_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def send_error_json(self, status: int, message: str, **extra: Any) -> None:
        """A JSON error whose ``message`` tells a person what to do."""
        self.send_json({"message": message, **extra}, status=status)

    def json_body(self) -> Any:
        try:
            return json.loads(self.request.body or b"{}")
        except ValueError:
            return None
