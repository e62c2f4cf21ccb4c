"""A user's choice for a session: which datalab, which image version, which volumes.

The spawn form and the REST API both end up with ``user_options`` of the form::

    {"profile": "<datalab-slug>", "image": "<image version>", "volumes": ["<id>", "<id>@<version>"]}

and both are checked here, by the same function, before anything starts. Everything in this
module is pure: it takes the catalogue and who the user is, and returns values or raises
ChoiceError.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from datalabs_volumes.access import AccessError, Who, authorize_volume, may_read, readable
from datalabs_volumes.models import ChosenVolume, Volume

from .catalogue import Catalogue, Datalab
from .desktop import desktop_env

KNOWN_OPTIONS = ("profile", "image", "volumes")
#: More volumes than this in one session is a mistake or an attack, not a use case.
MAX_VOLUMES = 64


#: A choice the user may not make, with the HTTP status the hub should answer with: the access
#: policy's own error, so that a volume is refused in the same words at every door.
ChoiceError = AccessError


@dataclass(frozen=True)
class SessionChoice:
    """A validated choice, ready for a spawner to act on."""

    datalab: Datalab
    image_version: str | None
    image: str
    volumes: tuple[ChosenVolume, ...]

    def to_user_options(self) -> dict[str, Any]:
        vols = [v.id if v.version is None else f"{v.id}@{v.version}" for v in self.volumes]
        out: dict[str, Any] = {"profile": self.datalab.slug, "volumes": vols}
        if self.image_version:
            out["image"] = self.image_version
        return out


def readable_volumes(catalogue: Catalogue, who: Who, today: date | None = None) -> list[Volume]:
    """The catalogue's volumes ``who`` may read, in catalogue order."""
    return readable(catalogue.volumes.entries, who, today)


def usable_datalabs(catalogue: Catalogue, who: Who, today: date | None = None) -> list[Datalab]:
    return catalogue.datalabs.usable_by(who.name, who.groups, today)


def resolve_choice(
    user_options: Any,
    catalogue: Catalogue,
    who: Who,
    today: date | None = None,
    mountable: Callable[[ChosenVolume], bool] | None = None,
) -> SessionChoice:
    """Check ``user_options`` for ``who`` and resolve it against the catalogue.

    Empty options mean the first datalab the user may use, with its default volumes. A
    ``volumes`` list, even an empty one, is taken exactly; absent, the datalab's default
    volumes that the user may read are used. Each volume goes through
    ``datalabs_volumes.access.authorize_volume`` (with ``mountable``, the spawner's engine
    rule), the check the broker makes for hot attach.
    """
    if user_options is None:
        user_options = {}
    if not isinstance(user_options, Mapping):
        raise ChoiceError(
            400,
            "Session options must be a JSON object such as "
            '{"profile": "<datalab>", "volumes": ["<volume id>"]}.',
        )
    unknown = sorted(set(user_options) - set(KNOWN_OPTIONS))
    if unknown:
        raise ChoiceError(
            400,
            f"Unknown session option(s): {', '.join(map(str, unknown))}. "
            f"Known options: {', '.join(KNOWN_OPTIONS)}.",
        )

    datalabs = usable_datalabs(catalogue, who, today)
    slug = user_options.get("profile")
    datalab: Datalab | None
    if slug in (None, ""):
        if not datalabs:
            raise ChoiceError(403, f"There is no datalab that {who.name} may start.")
        datalab = datalabs[0]
    else:
        if not isinstance(slug, str):
            raise ChoiceError(400, "'profile' must be the slug of a datalab (a string).")
        datalab = next((d for d in datalabs if d.slug == slug), None)
        if datalab is None:
            raise ChoiceError(403, f"Datalab '{slug}' does not exist or you may not use it.")

    image_version = user_options.get("image")
    if image_version in (None, ""):
        image_version = None
        default = datalab.default_image_version
        if default:
            image_version = default.name
    try:
        image = datalab.image_for(image_version)
    except KeyError:
        names = ", ".join(v.name for v in datalab.image_versions) or "none"
        raise ChoiceError(
            400,
            f"Datalab '{datalab.slug}' has no image version '{image_version}' (versions: {names}).",
        ) from None

    requested = user_options.get("volumes")
    if requested is None:
        entries = catalogue.volumes.entries
        chosen = [
            authorize_volume(entries, who, vid, None, today, mountable)
            for vid in datalab.default_volumes
            if vid in entries and may_read(entries[vid], who, today)
        ]
    else:
        chosen = _resolve_volumes(requested, catalogue, who, today, mountable)
    return SessionChoice(datalab, image_version, image, tuple(chosen))


def _resolve_volumes(
    requested: Any,
    catalogue: Catalogue,
    who: Who,
    today: date | None,
    mountable: Callable[[ChosenVolume], bool] | None,
) -> list[ChosenVolume]:
    if isinstance(requested, str) or not isinstance(requested, Iterable):
        raise ChoiceError(400, "'volumes' must be a list of volume ids.")
    requested = list(requested)
    if len(requested) > MAX_VOLUMES:
        raise ChoiceError(400, f"At most {MAX_VOLUMES} volumes can be attached to a session.")
    chosen: dict[str, ChosenVolume] = {}
    for item in requested:
        if not isinstance(item, str) or not item:
            raise ChoiceError(400, f"Volume ids are strings; got {item!r}.")
        vid, _, version = item.partition("@")
        picked = authorize_volume(
            catalogue.volumes.entries, who, vid, version or None, today, mountable
        )
        if vid in chosen and chosen[vid].version != picked.version:
            raise ChoiceError(400, f"Volume '{vid}' is asked for twice, in two versions.")
        chosen[vid] = picked
    folders: dict[str, str] = {}
    for c in chosen.values():
        if c.volume.folder in folders:
            raise ChoiceError(
                400,
                f"Volumes '{folders[c.volume.folder]}' and '{c.id}' would be "
                f"mounted at the same folder '{c.volume.folder}'.",
            )
        folders[c.volume.folder] = c.id
    return list(chosen.values())


def options_from_form(formdata: Mapping[str, list[str]]) -> dict[str, Any]:
    """Turn the spawn form's fields into user_options (not yet validated).

    The form sends one ``profile`` radio, an ``image--<slug>`` select per datalab with image
    versions, and one ``volumes`` checkbox per volume (with ``volume-version--<id>`` selects).
    KubeSpawner's own parser keeps a single value per field, hence this one.
    """
    slug = (formdata.get("profile") or [""])[0]
    options: dict[str, Any] = {"profile": slug}
    image = (formdata.get(f"image--{slug}") or [""])[0]
    if image:
        options["image"] = image
    volumes = []
    for vid in formdata.get("volumes", []):
        version = (formdata.get(f"volume-version--{vid}") or [""])[0]
        volumes.append(f"{vid}@{version}" if version else vid)
    # An empty list is a choice too: the user unticked every volume.
    options["volumes"] = volumes
    return options


def make_profile_list(
    datalabs: Iterable[Datalab], extra_override: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """KubeSpawner profiles for the datalabs a user may start (derived, never hand-written)."""
    profiles = []
    for d in datalabs:
        override: dict[str, Any] = {"image": d.image}
        if d.default_url:
            override["default_url"] = d.default_url
        res = d.resources
        if res.cpu_limit is not None:
            override["cpu_limit"] = float(res.cpu_limit)
        if res.cpu_guarantee is not None:
            override["cpu_guarantee"] = float(res.cpu_guarantee)
        if res.mem_limit:
            override["mem_limit"] = res.mem_limit
        if res.mem_guarantee:
            override["mem_guarantee"] = res.mem_guarantee
        if d.kind == "desktop":
            # A desktop's command is the application on the desktop, not the server: it goes
            # to the session in the environment (KubeSpawner merges this dict into its own, and
            # str.format()s the values, hence the doubled braces).
            env = desktop_env(d)
            if env:
                override["environment"] = {
                    k: v.replace("{", "{{").replace("}", "}}") for k, v in env.items()
                }
        elif d.command:
            override["cmd"] = list(d.command)
        override.update(extra_override or {})
        profile: dict[str, Any] = {
            "display_name": d.title,
            "slug": d.slug,
            "description": d.abstract,
            "kubespawner_override": override,
        }
        if d.image_versions:
            profile["profile_options"] = {
                "image": {
                    "display_name": "Image version",
                    "choices": {
                        v.name: {
                            "display_name": v.name,
                            "default": v is d.default_image_version,
                            "kubespawner_override": {"image": v.image},
                        }
                        for v in d.image_versions
                    },
                }
            }
        profiles.append(profile)
    if profiles:
        profiles[0]["default"] = True
    return profiles
