"""The spawn form: datalab cards and a multi-select volume picker, grouped by mission."""

from __future__ import annotations

from collections.abc import Mapping
from itertools import groupby
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from datalabs_volumes.models import Volume

from .catalogue import Datalab

#: Volume rows shown at once (before a search, and per search); the chosen ones come on top.
#: Laying out every row of a 10,000-volume catalogue took seconds on each keystroke.
SHOWN_VOLUMES = 200

_env = Environment(
    loader=PackageLoader("datalabs_spawner", "templates"),
    autoescape=select_autoescape(["html"]),
    # No blank lines and indentation from the template's own tags, which padded every row.
    trim_blocks=True,
    lstrip_blocks=True,
)


def render_form(
    datalabs: list[Datalab],
    volumes: list[Volume],
    previous: Mapping[str, Any] | None = None,
) -> str:
    """HTML for the spawn page.

    ``previous`` holds the user's last (already validated) user_options, so a restart offers
    the same choice again; otherwise the first datalab and its default volumes are selected.
    """
    previous = previous or {}
    slugs = [d.slug for d in datalabs]
    selected = previous.get("profile") if previous.get("profile") in slugs else None
    if selected is None and datalabs:
        selected = datalabs[0].slug
    if "volumes" in previous and previous.get("profile") == selected:
        chosen = {str(v).partition("@")[0] for v in previous.get("volumes") or []}
    else:
        by_slug = {d.slug: d for d in datalabs}
        chosen = set(by_slug[selected].default_volumes) if selected else set()
    images = {}
    if selected and previous.get("image"):
        images[selected] = previous["image"]
    ordered = sorted(volumes, key=lambda v: (v.mission.lower(), v.title.lower()))
    by_mission = [(m, list(vs)) for m, vs in groupby(ordered, key=lambda v: v.mission)]
    shown = {v.id for v in ordered[:SHOWN_VOLUMES]} | (chosen & {v.id for v in ordered})
    data = [
        {
            "id": v.id,
            "title": v.title,
            "mission": v.mission,
            "description": v.description,
            "restricted": v.access.restricted,
            "versions": [version.name for version in v.versions],
            "default_version": v.default_version.name if v.default_version else None,
        }
        for v in ordered
    ]
    return _env.get_template("form.html").render(
        datalabs=datalabs,
        volumes_by_mission=by_mission,
        volume_count=len(ordered),
        shown_volumes=shown,
        volume_data=data,
        shown_limit=SHOWN_VOLUMES,
        selected_datalab=selected,
        selected_image=images,
        selected_volumes=chosen,
    )
