"""An identity provider for tests: each token is one named user (like JupyterHub's, which names
the hub user), so per-user isolation can be checked over HTTP."""

from __future__ import annotations

from jupyter_server.auth.identity import IdentityProvider, User
from traitlets import Dict


class TokenUsers(IdentityProvider):
    users_by_token = Dict(config=True, help="token -> user name")

    def get_user(self, handler):
        header = handler.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        name = self.users_by_token.get(token) if scheme.lower() == "token" else None
        if not name:
            return None
        # A token in a header is not forgeable by another site: no XSRF check (as upstream).
        handler._token_authenticated = True
        return User(username=name)
