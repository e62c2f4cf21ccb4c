"""The Data panel's page of volumes: search, state filter, groups, limit (``datalabs_volumes.
listing``), and the session answering it from a catalogue that changes under it."""

from __future__ import annotations

import asyncio
import time

import pytest

from datalabs_volumes.access import Who
from datalabs_volumes.catalogue import VolumeCatalogue
from datalabs_volumes.listing import index, page
from datalabs_volumes.session import StorageError, StorageSession
from tests.helpers import volume_yaml, write

#: id, mission folder, mission, title, description, who may read (a group, or everyone).
VOLUMES = [
    ("psa-rosetta", "rosetta", "Rosetta", "PSA Rosetta", "PDS4 products of the comet", ""),
    ("rosetta-navcam", "rosetta", "Rosetta", "NAVCAM images", "Images of the comet", ""),
    ("spice-juice", "juice", "JUICE", "SPICE kernels", "Ganymede and Callisto", ""),
    ("juice-janus", "juice", "JUICE", "JANUS", "Camera of the comet-free mission", "team"),
    ("staff-comet", "juice", "JUICE", "Staff comet data", "internal", "staff"),
    ("mex-hrsc", "mex", "Mars Express", "HRSC", "Stereo images of Mars", ""),
]


def write_catalogue(root):
    for vid, folder, mission, title, doc, group in VOLUMES:
        extra = f"mission: {mission}\ndescription: {doc}\n"
        if group:
            extra += f"access: {{groups: [{group}]}}\n"
        text = volume_yaml(vid, extra=extra).replace(f"Volume {vid}", title)
        write(root, f"{folder}/volumes/{vid}.yaml", text)


def readable(tmp_path):
    write_catalogue(tmp_path)
    cat = VolumeCatalogue([tmp_path])
    cat.refresh()
    return index([v for v in cat.entries.values() if v.id != "staff-comet"])


def ids(found):
    return [v.id for v in found.volumes]


def test_sorted_by_mission_then_title_and_every_word_must_match(tmp_path):
    indexed = readable(tmp_path)
    everything = page(indexed)
    assert ids(everything) == [
        "juice-janus",
        "spice-juice",
        "mex-hrsc",
        "rosetta-navcam",
        "psa-rosetta",
    ]
    assert [(g.mission, g.total) for g in everything.groups] == [
        ("JUICE", 2),
        ("Mars Express", 1),
        ("Rosetta", 2),
    ]
    assert (everything.total, everything.matching, everything.hidden) == (5, 5, 0)
    # Words in any of id, title, mission and description, in any case, all of them.
    assert ids(page(indexed, "COMET")) == ["juice-janus", "rosetta-navcam", "psa-rosetta"]
    assert ids(page(indexed, "comet rosetta")) == ["rosetta-navcam", "psa-rosetta"]
    assert ids(page(indexed, "  ganymede  ")) == ["spice-juice"]
    found = page(indexed, "nothing-like-this")
    assert (found.total, found.matching, found.groups, found.volumes) == (5, 0, [], [])


def test_limit_hands_out_rows_first_come_and_counts_the_rest(tmp_path):
    indexed = readable(tmp_path)
    found = page(indexed, limit=2)
    assert ids(found) == ["juice-janus", "spice-juice"]
    assert found.hidden == 3
    # Group counts and the match count do not depend on the limit.
    assert [g.total for g in found.groups] == [2, 1, 2] and found.matching == 5


def test_collapsed_missions_keep_their_count_and_give_their_rows_to_others(tmp_path):
    indexed = readable(tmp_path)
    found = page(indexed, limit=2, collapsed=["JUICE"])
    assert ids(found) == ["mex-hrsc", "rosetta-navcam"]
    assert found.groups[0].mission == "JUICE" and found.groups[0].collapsed
    assert found.groups[0].total == 2
    assert found.hidden == 1  # psa-rosetta; JUICE's rows are collapsed, not hidden


def test_state_filter_asks_the_session_what_is_mounted_and_broken(tmp_path):
    indexed = readable(tmp_path)
    mounted = {"psa-rosetta", "mex-hrsc"}
    broken = {"mex-hrsc"}

    def of(state):
        return ids(
            page(
                indexed,
                state=state,
                mounted=lambda v: v.id in mounted,
                broken=lambda v: v.id in broken,
            )
        )

    assert of("attached") == ["mex-hrsc", "psa-rosetta"]
    assert of("available") == ["juice-janus", "spice-juice", "rosetta-navcam"]
    assert of("broken") == ["mex-hrsc"]
    assert len(of("all")) == 5


ALICE = Who("alice", ("team",))


def session(tmp_path, refresh: float, who: Who = ALICE) -> StorageSession:
    catalogue = tmp_path / "catalogue"
    write_catalogue(catalogue)
    archive = tmp_path / "archive"
    for vid, *_ in VOLUMES:
        (archive / vid).mkdir(parents=True)
        (archive / vid / "readme.txt").write_text(f"{vid}\n")
    (tmp_path / "data").mkdir()
    return StorageSession(
        tmp_path / "data",
        who,
        [str(catalogue)],
        str(archive),
        catalogue_refresh_seconds=refresh,
    )


def test_a_page_never_counts_or_shows_what_the_user_may_not_read(tmp_path):
    s = session(tmp_path, 0, who=Who("bob", ()))
    found = asyncio.run(s.volume_page("comet", limit=50))
    assert [v["id"] for v in found["volumes"]] == ["rosetta-navcam", "psa-rosetta"]
    assert found["total"] == 4 and found["matching"] == 2  # not janus (team), not staff
    assert "staff" not in str(found)
    # The rows are described as GET volumes describes them, size included.
    row = found["volumes"][1]
    assert row["path"] == "data/psa-rosetta" and row["mounted"] is False
    assert row["size"] == {"bytes": len("psa-rosetta\n"), "files": 1, "complete": True}


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        ({"state": "mounted"}, "Unknown state filter 'mounted'"),
        ({"limit": 0}, "between 1 and 1000, not 0"),
        ({"limit": 5000}, "between 1 and 1000, not 5000"),
    ],
)
def test_a_bad_page_request_says_what_to_ask_instead(tmp_path, kwargs, problem):
    s = session(tmp_path, 0)
    with pytest.raises(StorageError) as e:
        asyncio.run(s.volume_page(**kwargs))
    assert e.value.status == 400 and problem in e.value.message


def test_a_published_volume_appears_without_the_answer_waiting_for_the_rescan(tmp_path):
    s = session(tmp_path, refresh=0.2)

    async def matching(query: str) -> int:
        return (await s.volume_page(query))["matching"]

    async def scenario():
        assert await matching("venus") == 0
        write(
            tmp_path / "catalogue",
            "vex/volumes/vex-vmc.yaml",
            volume_yaml("vex-vmc", path="mex-hrsc", extra="mission: Venus Express\n"),
        )
        # The catalogue is rescanned in the background, at most every 0.2 s: the volume shows
        # within a few answers, and no answer waits for a rescan.
        deadline = time.monotonic() + 10
        while await matching("venus") == 0:
            assert time.monotonic() < deadline, "the new volume never appeared"
            await asyncio.sleep(0.05)
        (tmp_path / "catalogue" / "vex" / "volumes" / "vex-vmc.yaml").unlink()
        deadline = time.monotonic() + 10
        while await matching("venus") == 1:
            assert time.monotonic() < deadline, "the removed volume never went"
            await asyncio.sleep(0.05)

    asyncio.run(scenario())


def test_an_unchanged_catalogue_keeps_its_entries_and_so_the_search_index(tmp_path):
    write_catalogue(tmp_path)
    cat = VolumeCatalogue([tmp_path])
    cat.refresh()
    before = cat.entries
    cat.refresh()
    assert cat.entries is before
    write(tmp_path, "mex/volumes/mex-marsis.yaml", volume_yaml("mex-marsis"))
    cat.refresh()
    assert cat.entries is not before and "mex-marsis" in cat.entries
