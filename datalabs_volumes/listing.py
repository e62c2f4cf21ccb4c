"""One page of the volume list, searched and grouped by mission on the server.

The Data panel asks for a page instead of the whole catalogue: with 10,000 volumes the whole
list is about 3 MB of JSON, sizing every volume walks 10,000 folders, and the browser would
parse and index all of it on every open. Here each volume's search text and sort key are made
once per catalogue (:func:`index`), a search is one pass of ``in`` over them, and only the
page's volumes are described (:func:`page`). Pure: no file system, no Jupyter.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .models import Volume

#: Which volumes the state filter keeps: ``attached``, ``available`` (not attached), ``broken``.
StateFilter = Literal["all", "attached", "available", "broken"]
STATES: tuple[str, ...] = ("all", "attached", "available", "broken")
#: Most rows one page may hold.
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Indexed:
    volume: Volume
    #: Lower-cased id, title, mission and description, one per line.
    text: str


def index(volumes: Collection[Volume]) -> list[Indexed]:
    """The volumes sorted by mission, then title, then id (case-folded), with their search
    text."""
    ordered = sorted(volumes, key=lambda v: (v.mission.casefold(), v.title.casefold(), v.id))
    return [
        Indexed(v, "\n".join((v.id, v.title, v.mission, v.description)).casefold()) for v in ordered
    ]


@dataclass
class Group:
    mission: str
    #: Matching volumes of this mission.
    total: int = 0
    collapsed: bool = False


@dataclass
class Page:
    #: Volumes the user may read.
    total: int
    #: Of those, the ones matching the query and the state filter.
    matching: int
    groups: list[Group] = field(default_factory=list)
    #: The rows handed out, in order: at most ``limit``, none from collapsed groups.
    volumes: list[Volume] = field(default_factory=list)
    #: Matching volumes of expanded groups left out by the limit.
    hidden: int = 0

    def as_json(self, describe: Callable[[Volume], dict[str, Any]]) -> dict[str, Any]:
        return {
            "total": self.total,
            "matching": self.matching,
            "groups": [
                {"mission": g.mission, "total": g.total, "collapsed": g.collapsed}
                for g in self.groups
            ],
            "volumes": [describe(v) for v in self.volumes],
            "hidden": self.hidden,
        }


def page(
    indexed: Sequence[Indexed],
    query: str = "",
    state: StateFilter = "all",
    limit: int = 50,
    collapsed: Collection[str] = (),
    mounted: Callable[[Volume], bool] = lambda v: False,
    broken: Callable[[Volume], bool] = lambda v: False,
) -> Page:
    """The volumes matching every word of ``query`` and ``state``, grouped by mission in the
    index's order, with at most ``limit`` rows handed out first come first served (so that a
    page costs the same for 100 volumes as for 10,000). ``mounted`` and ``broken`` tell a
    volume's state; they are asked only when the state filter needs them."""
    words = query.casefold().split()
    shut = set(collapsed)
    out = Page(total=len(indexed), matching=0)
    current: Group | None = None
    budget = limit
    for item in indexed:
        v = item.volume
        if not all(w in item.text for w in words):
            continue
        if state == "attached" and not mounted(v):
            continue
        if state == "available" and mounted(v):
            continue
        if state == "broken" and not broken(v):
            continue
        out.matching += 1
        if current is None or current.mission != v.mission:
            current = Group(v.mission, collapsed=v.mission in shut)
            out.groups.append(current)
        current.total += 1
        if current.collapsed:
            continue
        if budget > 0:
            out.volumes.append(v)
            budget -= 1
        else:
            out.hidden += 1
    return out
