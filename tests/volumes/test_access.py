"""The access policy (``datalabs_volumes.access``): the one decision spawn and the broker make."""

from __future__ import annotations

from datetime import date

import pytest

from datalabs_volumes.access import AccessError, Who, authorize_volume, readable
from datalabs_volumes.models import Access, ChosenVolume, Volume, VolumeSource, VolumeVersion

LOCAL = VolumeSource("local", "open")
NFS = VolumeSource("nfs", "/export/x", server="nas.example.org")
ENTRIES = {
    v.id: v
    for v in (
        Volume("open", "Open", "M", LOCAL),
        Volume("team", "Team", "M", VolumeSource("local", "team"), access=Access(("team",))),
        Volume("mine", "Mine", "M", VolumeSource("local", "mine"), access=Access(users=("bob",))),
        Volume(
            "embargoed",
            "Embargoed",
            "M",
            VolumeSource("local", "emb"),
            access=Access(("team",), embargo_until=date(2030, 1, 1)),
        ),
        Volume(
            "versioned",
            "Versioned",
            "M",
            LOCAL,
            versions=(
                VolumeVersion("v1", VolumeSource("local", "v1")),
                VolumeVersion("v2", NFS, default=True),
            ),
        ),
    )
}
ALICE = Who("alice", ("team",))
BOB = Who("bob")
TODAY = date(2026, 12, 3)


def refusal(vid: str) -> str:
    return f"Volume '{vid}' does not exist or you may not read it."


def test_a_readable_volume_resolves_to_its_default_version():
    assert authorize_volume(ENTRIES, ALICE, "team", today=TODAY) == ChosenVolume(
        ENTRIES["team"], None, ENTRIES["team"].source
    )
    chosen = authorize_volume(ENTRIES, BOB, "versioned", "v1", today=TODAY)
    assert (chosen.version, chosen.source) == ("v1", VolumeSource("local", "v1"))


@pytest.mark.parametrize(
    ("who", "vid"),
    [(BOB, "team"), (ALICE, "mine"), (BOB, "embargoed"), (ALICE, "no-such-volume")],
)
def test_unknown_and_forbidden_volumes_are_refused_in_the_same_words(who, vid):
    with pytest.raises(AccessError) as err:
        authorize_volume(ENTRIES, who, vid, today=TODAY)
    assert (err.value.status, err.value.message) == (403, refusal(vid))


def test_an_operator_grant_and_the_end_of_an_embargo_open_a_volume():
    granted = Who("bob", (), frozenset({"team"}))
    assert authorize_volume(ENTRIES, granted, "team", today=TODAY).id == "team"
    assert authorize_volume(ENTRIES, BOB, "embargoed", today=date(2030, 1, 1)).id == "embargoed"


def test_an_unknown_version_is_a_400_naming_the_versions():
    with pytest.raises(AccessError) as err:
        authorize_volume(ENTRIES, BOB, "versioned", "v9", today=TODAY)
    assert err.value.status == 400
    assert err.value.message == "Volume 'versioned' has no version 'v9' (versions: v1, v2)."


def test_a_source_the_engine_cannot_attach_is_a_400_after_the_access_check():
    local_only = lambda c: c.source.type == "local"  # noqa: E731 - the local spawner's rule
    with pytest.raises(AccessError) as err:
        authorize_volume(ENTRIES, BOB, "versioned", today=TODAY, mountable=local_only)
    assert err.value.status == 400
    assert err.value.message == (
        "Volume 'versioned' has a nfs source, which this hub's spawner cannot attach."
    )
    # v1 is local: the same volume at that version is fine.
    assert authorize_volume(ENTRIES, BOB, "versioned", "v1", TODAY, local_only).version == "v1"
    # A forbidden volume is refused as forbidden, never as unattachable (that would tell).
    with pytest.raises(AccessError) as err:
        authorize_volume(ENTRIES, BOB, "team", today=TODAY, mountable=lambda c: False)
    assert err.value.status == 403


def test_readable_lists_what_each_user_may_read_in_catalogue_order():
    assert [v.id for v in readable(ENTRIES, ALICE, TODAY)] == [
        "open",
        "team",
        "embargoed",
        "versioned",
    ]
    assert [v.id for v in readable(ENTRIES, BOB, TODAY)] == ["open", "mine", "versioned"]
