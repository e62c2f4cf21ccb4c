"""Choosing a session: the same checks for the spawn form and the REST API."""

import pytest

from datalabs_spawner.catalogue import Catalogue
from datalabs_spawner.form import render_form
from datalabs_spawner.options import (
    ChoiceError,
    Who,
    make_profile_list,
    options_from_form,
    readable_volumes,
    resolve_choice,
    usable_datalabs,
)
from tests.helpers import checked, datalab_yaml, offered, volume_yaml, write

ALICE = Who("alice", ("rosetta-team",))
BOB = Who("bob", ())


@pytest.fixture
def catalogue(tmp_path):
    write(
        tmp_path,
        "rosetta/datalabs/planetary.yaml",
        datalab_yaml(
            "Planetary",
            """\
default_volumes: [psa, secret]
options:
  image_versions:
    - {name: "2", image: example/planetary:2, default: true}
    - {name: "1", image: example/planetary:1}
""",
        ),
    )
    write(
        tmp_path,
        "rosetta/datalabs/team-only.yaml",
        datalab_yaml("Team", "access: {groups: [rosetta-team]}\n"),
    )
    write(
        tmp_path,
        "rosetta/volumes/psa.yaml",
        volume_yaml(
            "psa",
            extra="""\
versions:
  - {name: v1}
  - {name: v2, default: true, source: {type: local, path: psa-v2}}
""",
        ),
    )
    write(
        tmp_path,
        "rosetta/volumes/secret.yaml",
        volume_yaml("secret", extra="access: {groups: [rosetta-team]}\n"),
    )
    write(tmp_path, "juice/volumes/spice.yaml", volume_yaml("spice"))
    cat = Catalogue([tmp_path])
    cat.refresh()
    assert cat.problems == []
    return cat


def test_empty_options_give_the_first_datalab_and_its_readable_defaults(catalogue):
    alice = resolve_choice({}, catalogue, ALICE)
    assert alice.datalab.slug == "planetary"
    assert alice.image == "example/planetary:2"
    assert [(v.id, v.version) for v in alice.volumes] == [("psa", "v2"), ("secret", None)]
    # bob cannot read 'secret': a default he may not read is simply not attached
    bob = resolve_choice({}, catalogue, BOB)
    assert [v.id for v in bob.volumes] == ["psa"]


def test_explicit_choice_with_versions(catalogue):
    choice = resolve_choice(
        {"profile": "planetary", "image": "1", "volumes": ["spice", "psa@v1"]}, catalogue, BOB
    )
    assert choice.image == "example/planetary:1"
    assert [(v.id, v.version, v.source.path) for v in choice.volumes] == [
        ("spice", None, "spice"),
        ("psa", "v1", "psa"),
    ]
    assert choice.to_user_options() == {
        "profile": "planetary",
        "image": "1",
        "volumes": ["spice", "psa@v1"],
    }
    assert resolve_choice({"profile": "planetary", "volumes": []}, catalogue, BOB).volumes == ()


@pytest.mark.parametrize(
    ("options", "status", "message"),
    [
        (
            {"profile": "planetary", "volumes": ["secret"]},
            403,
            "Volume 'secret' does not exist or you may not read it.",
        ),
        (
            {"profile": "planetary", "volumes": ["nope"]},
            403,
            "Volume 'nope' does not exist or you may not read it.",
        ),
        (
            {"profile": "team-only"},
            403,
            "Datalab 'team-only' does not exist or you may not use it.",
        ),
        (
            {"profile": "planetary", "image": "9"},
            400,
            "Datalab 'planetary' has no image version '9' (versions: 2, 1).",
        ),
        (
            {"profile": "planetary", "volumes": ["psa@v9"]},
            400,
            "Volume 'psa' has no version 'v9' (versions: v1, v2).",
        ),
        (
            {"profile": "planetary", "volumes": "psa"},
            400,
            "'volumes' must be a list of volume ids.",
        ),
        (
            {"profile": "planetary", "volumes": [{"id": "psa"}]},
            400,
            "Volume ids are strings; got {'id': 'psa'}.",
        ),
        (
            {"profile": "planetary", "volumes": ["psa@v1", "psa@v2"]},
            400,
            "Volume 'psa' is asked for twice, in two versions.",
        ),
        (
            {"profile": "planetary", "gpu": True},
            400,
            "Unknown session option(s): gpu. Known options: profile, image, volumes.",
        ),
        (["planetary"], 400, None),
        ({"profile": 3}, 400, "'profile' must be the slug of a datalab (a string)."),
        (
            {"volumes": ["../../etc"]},
            403,
            "Volume '../../etc' does not exist or you may not read it.",
        ),
    ],
)
def test_refusals_name_what_is_refused(catalogue, options, status, message):
    with pytest.raises(ChoiceError) as err:
        resolve_choice(options, catalogue, BOB)
    assert err.value.status == status
    if message:
        assert err.value.message == message


def test_operator_grant_opens_a_volume(catalogue):
    carol = Who("carol", ("staff",), frozenset({"secret"}))
    choice = resolve_choice({"volumes": ["secret"]}, catalogue, carol)
    assert [v.id for v in choice.volumes] == ["secret"]


def test_profile_list_is_derived_and_filtered_by_group(catalogue):
    assert [p["slug"] for p in make_profile_list(usable_datalabs(catalogue, BOB))] == ["planetary"]
    profiles = make_profile_list(usable_datalabs(catalogue, ALICE))
    assert [p["slug"] for p in profiles] == ["planetary", "team-only"]
    assert profiles[0] == {
        "display_name": "Planetary",
        "slug": "planetary",
        "description": "",
        "default": True,
        "kubespawner_override": {"image": "example/lab:1"},
        "profile_options": {
            "image": {
                "display_name": "Image version",
                "choices": {
                    "2": {
                        "display_name": "2",
                        "default": True,
                        "kubespawner_override": {"image": "example/planetary:2"},
                    },
                    "1": {
                        "display_name": "1",
                        "default": False,
                        "kubespawner_override": {"image": "example/planetary:1"},
                    },
                },
            }
        },
    }


def test_form_fields_become_user_options():
    form = {
        "profile": ["planetary"],
        "image--planetary": ["1"],
        "image--other": ["x"],
        "volumes": ["psa", "spice"],
        "volume-version--psa": ["v1"],
    }
    assert options_from_form(form) == {
        "profile": "planetary",
        "image": "1",
        "volumes": ["psa@v1", "spice"],
    }
    assert options_from_form({"profile": ["planetary"]}) == {"profile": "planetary", "volumes": []}


def test_form_shows_only_what_the_user_may_use_and_escapes_text(catalogue, tmp_path):
    html = render_form(usable_datalabs(catalogue, BOB), readable_volumes(catalogue, BOB))
    assert offered(html, "profile") == ["planetary"]
    assert offered(html, "volumes") == ["spice", "psa"]  # grouped by mission: juice, rosetta
    # The first datalab and its default volumes the user may read are pre-selected
    assert checked(html, "profile") == ["planetary"]
    assert checked(html, "volumes") == ["psa"]
    write(
        tmp_path,
        "evil/volumes/x.yaml",
        volume_yaml("x", extra="description: <script>alert(1)</script>\n"),
    )
    catalogue.refresh()
    html = render_form(usable_datalabs(catalogue, BOB), readable_volumes(catalogue, BOB))
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_form_preselects_the_previous_choice(catalogue):
    html = render_form(
        usable_datalabs(catalogue, ALICE),
        readable_volumes(catalogue, ALICE),
        {"profile": "team-only", "volumes": ["spice"]},
    )
    assert checked(html, "profile") == ["team-only"]
    assert checked(html, "volumes") == ["spice"]
