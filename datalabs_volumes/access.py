"""Who a user is, and whether they may read a hosted volume.

One access rule for every door: the spawn form, the hub's REST API and hot attach inside a
running session all call ``may_read``, so a volume refused at spawn is refused later too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from .models import Volume


@dataclass(frozen=True)
class Who:
    """The user a choice is made for."""

    name: str
    groups: tuple[str, ...] = ()
    #: Extra volume ids the operator grants through group_volume_access.
    granted: frozenset[str] = frozenset()


def may_read(volume: Volume, who: Who, today: date | None = None) -> bool:
    """Whether ``who`` may read ``volume`` on ``today``: an operator grant or the entry's rule."""
    return volume.id in who.granted or volume.access.allows(who.name, who.groups, today)
