"""Hosted archive volumes from a notebook: what the Data panel does, as functions.

from datalabs_volumes import volumes
volumes.list()                      # the volumes you may read, with mounted state
volumes.search("comet pds4")        # those matching every word (id, title, mission, text)
volumes.attach("psa-rosetta")       # appears read-only at data/psa-rosetta
volumes.browse("psa-rosetta", "data")
volumes.detach("psa-rosetta")
"""

from __future__ import annotations

import builtins
from typing import Any

from .client import Client, DatalabsError, quote

__all__ = ["DatalabsError", "attach", "browse", "detach", "get", "list", "search"]


def list(client: Client | None = None) -> builtins.list[dict[str, Any]]:  # noqa: A001
    """The volumes you may read: id, title, path, mounted, size, health."""
    return (client or Client()).call("GET", "volumes")


def search(
    query: str = "",
    state: str = "all",
    limit: int = 100,
    client: Client | None = None,
) -> builtins.list[dict[str, Any]]:
    """The volumes matching every word of ``query`` in their id, title, mission or description
    (``state``: ``all``, ``attached``, ``available`` or ``broken``), sorted by mission and
    title, at most ``limit`` (up to 1000) of them; searched on the server, as the Data panel
    does."""
    answer = (client or Client()).call(
        "GET", "volumes", query={"limit": str(limit), "q": query, "state": state}
    )
    return answer["volumes"]


def get(volume_id: str, client: Client | None = None) -> dict[str, Any]:
    """One volume."""
    return (client or Client()).call("GET", f"volumes/{quote(volume_id)}")


def attach(volume_id: str, version: str | None = None, client: Client | None = None) -> str:
    """Attach a volume read-only to this session; returns its path (``data/<folder>``)."""
    body = {"version": version} if version else {}
    answer = (client or Client()).call("POST", f"volumes/{quote(volume_id)}/attach", body)
    return answer["path"]


def detach(volume_id: str, client: Client | None = None) -> None:
    """Detach a volume from this session."""
    (client or Client()).call("POST", f"volumes/{quote(volume_id)}/detach", {})


def browse(volume_id: str, path: str = "", client: Client | None = None) -> builtins.list[dict]:
    """The entries (name, type, size) of a folder of a volume, without attaching it."""
    answer = (client or Client()).call(
        "GET", f"volumes/{quote(volume_id)}/browse", query={"path": path}
    )
    return answer["entries"]
