"""Your own storage from a notebook: create, test, attach and detach connections.

    from datalabs_volumes import connections
    connections.create("my-dav", "webdav", url="https://dav.example.org", user="me",
                       pass_="secret")           # tested before it is saved
    connections.attach("my-dav")                 # appears at data/my-dav (read-only)
    connections.detach("my-dav")

Option names are rclone's own for the backend; ``pass`` is spelled ``pass_`` here because
``pass`` is a Python keyword (or give ``options={"pass": ...}``). Secrets are never shown back.
"""

from __future__ import annotations

import builtins
from typing import Any

from .client import Client, DatalabsError, quote

__all__ = ["DatalabsError", "attach", "create", "delete", "detach", "get", "list", "test", "update"]


def _options(options: dict[str, Any] | None, extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(options or {})
    for key, value in extra.items():
        out[key.rstrip("_")] = value
    return out


def list(client: Client | None = None) -> builtins.list[dict[str, Any]]:  # noqa: A001
    """Your connections (secrets redacted), with attached state and health."""
    return (client or Client()).call("GET", "connections")


def get(name: str, client: Client | None = None) -> dict[str, Any]:
    """One connection, secrets redacted."""
    return (client or Client()).call("GET", f"connections/{quote(name)}")


def create(
    name: str,
    backend: str,
    options: dict[str, Any] | None = None,
    path: str = "",
    writable: bool = False,
    client: Client | None = None,
    **option_values: Any,
) -> dict[str, Any]:
    """Define a connection; it is tested first and saved only if it works."""
    body = {
        "name": name,
        "backend": backend,
        "options": _options(options, option_values),
        "path": path,
        "writable": writable,
    }
    return (client or Client()).call("POST", "connections", body)


def update(name: str, client: Client | None = None, **changes: Any) -> dict[str, Any]:
    """Change ``path``, ``writable`` or ``options={...}`` of a connection (tested again)."""
    return (client or Client()).call("PATCH", f"connections/{quote(name)}", changes)


def delete(name: str, client: Client | None = None) -> None:
    """Forget a connection (detaching it first if attached)."""
    (client or Client()).call("DELETE", f"connections/{quote(name)}")


def test(name: str, client: Client | None = None) -> bool:
    """True when the connection reaches its storage; DatalabsError says why not."""
    return (client or Client()).call("POST", f"connections/{quote(name)}/test", {})["ok"]


def attach(name: str, writable: bool | None = None, client: Client | None = None) -> str:
    """Mount a connection at ``data/<name>``; returns that path."""
    body = {} if writable is None else {"writable": writable}
    return (client or Client()).call("POST", f"connections/{quote(name)}/attach", body)["mount"]


def detach(name: str, client: Client | None = None) -> None:
    """Unmount a connection."""
    (client or Client()).call("POST", f"connections/{quote(name)}/detach", {})
