"""Who a user is, and whether they may have a hosted volume: the platform's one access policy.

Every door uses these functions and nothing else: the spawn form and the hub's REST API
(``datalabs_spawner.options.resolve_choice``) and hot attach in a running session (the broker,
``datalabs_spawner.broker``, which the session asks on the user's behalf). A volume refused at
spawn is therefore refused later too, with the same words. Pure: no I/O, no Jupyter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date

from .models import ChosenVolume, Volume, choose


@dataclass(frozen=True)
class Who:
    """The user a choice is made for."""

    name: str
    groups: tuple[str, ...] = ()
    #: Extra volume ids the operator grants through group_volume_access.
    granted: frozenset[str] = frozenset()


class AccessError(ValueError):
    """A volume or choice the user may not have: ``status`` for HTTP, ``message`` for them.

    ``retry_after``: seconds after which the same request may succeed (the hub's broker is
    restarting); None when trying again would not help.
    """

    def __init__(self, status: int, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


def may_read(volume: Volume, who: Who, today: date | None = None) -> bool:
    """Whether ``who`` may read ``volume`` on ``today``: an operator grant or the entry's rule."""
    return volume.id in who.granted or volume.access.allows(who.name, who.groups, today)


def refuse_volume(vid: str) -> AccessError:
    """The refusal of a volume: unknown and forbidden read the same, so that the answer does
    not tell who has what."""
    return AccessError(403, f"Volume '{vid}' does not exist or you may not read it.")


def authorize_volume(
    entries: Mapping[str, Volume],
    who: Who,
    vid: str,
    version: str | None = None,
    today: date | None = None,
    mountable: Callable[[ChosenVolume], bool] | None = None,
) -> ChosenVolume:
    """The volume ``vid`` at ``version`` (its default when None) for ``who``, or AccessError.

    The checks, in order: the volume exists and ``who`` may read it (403, same words either
    way); the version exists (400, naming the versions there are); the chosen version's source
    can be attached by this hub's engine, ``mountable`` (400; on one machine only ``local``
    sources can be).
    """
    volume = entries.get(vid)
    if volume is None or not may_read(volume, who, today):
        raise refuse_volume(vid)
    try:
        chosen = choose(volume, version or None)
    except KeyError:
        names = ", ".join(v.name for v in volume.versions) or "none"
        raise AccessError(
            400, f"Volume '{vid}' has no version '{version}' (versions: {names})."
        ) from None
    if mountable is not None and not mountable(chosen):
        raise AccessError(
            400,
            f"Volume '{vid}' has a {chosen.source.type} source, which this hub's spawner "
            "cannot attach.",
        )
    return chosen


def readable(entries: Mapping[str, Volume], who: Who, today: date | None = None) -> list[Volume]:
    """The volumes of ``entries`` that ``who`` may read, in catalogue order."""
    return [v for v in entries.values() if may_read(v, who, today)]
