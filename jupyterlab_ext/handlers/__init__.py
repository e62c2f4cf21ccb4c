"""REST handlers, one module per resource, each ending with its route table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jupyter_server.auth.identity import IdentityProvider, PasswordIdentityProvider
from jupyter_server.base.handlers import APIHandler
from tornado import web

from datalabs_pipelines.references import ReferenceRefused, check_references
from datalabs_pipelines.settings import default_user

from ..app import API_BASE, PipelineServices

#: How deep a request body may nest (a workflow graph needs about 15 levels).
MAX_JSON_DEPTH = 128


def nesting_exceeds(value: Any, limit: int) -> bool:
    """Whether lists and objects in ``value`` nest deeper than ``limit`` (no recursion)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


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
        """The request's JSON, or None when it is not JSON (the caller answers 400).

        JSON nested deeper than Python's recursion limit (``[[[[...]]]]`` 100,000 deep) makes
        ``json.loads`` raise RecursionError, not ValueError; JSON nested less deeply than that
        but deeper than :data:`MAX_JSON_DEPTH` would make the code that walks it (the CWL
        writer, the launcher) raise it later. Both are a 400 saying so.
        """
        try:
            value = json.loads(self.request.body or b"{}")
        except ValueError:
            return None
        except RecursionError:
            value = None
            too_deep = True
        else:
            too_deep = nesting_exceeds(value, MAX_JSON_DEPTH)
        if too_deep:
            raise web.HTTPError(
                400, f"the request body is nested deeper than {MAX_JSON_DEPTH} levels"
            )
        return value

    def reference_roots(self) -> list[Path]:
        """Where a user's CWL may point: the workspace, mounted volumes, the catalogue."""
        workspace = self.services.workspace
        return [
            Path(workspace.root),
            *(v.path for v in workspace.volumes),
            *self.services.catalogue.roots,
        ]

    def refused_reference(self, document: Path) -> str | None:
        """Why the user's CWL file ``document`` may not be loaded, or None when it may.

        Checked before cwltool or the editor reads it, since both follow ``$include``,
        ``$import``, ``run`` and default ``location`` references wherever they point.
        """
        try:
            check_references(document, self.reference_roots())
        except ReferenceRefused as exc:
            return (
                f"{exc}. References in your CWL ($include, $import, run, default file "
                "locations) must stay inside your workspace, your mounted volumes or the "
                "pipeline catalogue."
            )
        return None
