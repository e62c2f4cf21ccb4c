"""``/datalabs/api/volumes`` on a real jupyter-server: list, hot attach, detach, browse."""

from __future__ import annotations

import pytest

from datalabs_volumes.mount.local import is_mount_point

pytestmark = pytest.mark.slow


def test_lists_the_volumes_alice_may_read_with_their_state(lab):
    r = lab.api("GET", "volumes")
    assert r.status_code == 200, r.text
    volumes = {v["id"]: v for v in r.json()}
    assert sorted(volumes) == ["open-data", "team-data"]  # not staff-data
    v = volumes["open-data"]
    assert v["path"] == "data/open-data" and v["mounted"] is False and v["read_only"] is True
    assert v["size"] == {
        "bytes": len("open-data\n") + len("x,y\n1,2\n"),
        "files": 2,
        "complete": True,
    }


def test_a_page_of_volumes_is_searched_and_grouped_on_the_server(lab):
    r = lab.api("GET", "volumes?limit=1")
    assert r.status_code == 200, r.text
    page = r.json()
    # staff-data is neither shown nor counted.
    assert (page["total"], page["matching"], page["hidden"]) == (2, 2, 1)
    assert page["groups"] == [{"mission": "demo", "total": 2, "collapsed": False}]
    assert [v["id"] for v in page["volumes"]] == ["open-data"]
    assert page["volumes"][0]["size"]["files"] == 2
    r = lab.api("GET", "volumes?limit=50&q=TEAM")
    assert [v["id"] for v in r.json()["volumes"]] == ["team-data"]
    r = lab.api("GET", "volumes?limit=50&q=staff")
    assert r.json()["matching"] == 0 and r.json()["volumes"] == []
    r = lab.api("GET", "volumes?limit=50&state=attached")
    assert r.json()["matching"] == 0
    r = lab.api("GET", "volumes?limit=50&collapsed=demo")
    assert r.json()["groups"][0]["collapsed"] is True and r.json()["volumes"] == []


@pytest.mark.parametrize(
    "query, problem",
    [
        ("limit=ten", "must be a number, not 'ten'"),
        ("limit=0", "between 1 and 1000"),
        ("limit=5&state=gone", "Unknown state filter 'gone'"),
    ],
)
def test_a_bad_page_request_is_refused_with_the_reason(lab, query, problem):
    r = lab.api("GET", f"volumes?{query}")
    assert r.status_code == 400
    assert problem in r.json()["message"]


def test_hot_attach_then_detach_a_hosted_volume(lab):
    r = lab.api("POST", "volumes/team-data/attach")
    assert r.status_code == 200, r.text
    assert r.json()["mounted"] is True and r.json()["health"]["state"] == "ok"
    try:
        attached = lab.api("GET", "volumes?limit=50&state=attached").json()
        assert [v["id"] for v in attached["volumes"]] == ["team-data"]
        assert is_mount_point(lab.root / "data" / "team-data")
        listing = lab.contents("data/team-data").json()
        assert sorted(c["name"] for c in listing["content"]) == ["readme.txt", "sub"]
        # Read-only, as at spawn.
        r = lab.contents(
            "data/team-data/new.txt",
            method="PUT",
            json={"type": "file", "format": "text", "content": "x"},
        )
        assert r.status_code >= 400
        # JupyterLab checkpoints a file it opens; jupyter-server refuses to for a file it
        # cannot write, so nothing is ever written inside a read-only volume.
        lab.contents("data/team-data/readme.txt/checkpoints", method="POST")
        assert not (lab.root / "data" / "team-data" / ".ipynb_checkpoints").exists()
        r = lab.api("POST", "volumes/team-data/attach")
        assert r.status_code == 409 and "already attached" in r.json()["message"]
    finally:
        r = lab.api("POST", "volumes/team-data/detach")
    assert r.status_code == 200, r.text
    assert r.json()["mounted"] is False
    assert not is_mount_point(lab.root / "data" / "team-data")
    names = [c["name"] for c in lab.contents("data").json()["content"]]
    assert "team-data" not in names
    r = lab.api("POST", "volumes/team-data/detach")
    assert r.status_code == 409 and "not attached" in r.json()["message"]


@pytest.mark.parametrize("vid", ["staff-data", "no-such-volume", "..", "%2e%2e%2fstaff-data"])
def test_a_volume_alice_may_not_read_is_refused_and_nothing_is_mounted(lab, vid):
    for action in ("attach", "detach"):
        r = lab.api("POST", f"volumes/{vid}/{action}")
        assert r.status_code in (403, 404), r.text
    r = lab.api("POST", "volumes/staff-data/attach")
    assert r.status_code == 403
    assert r.json()["message"] == "Volume 'staff-data' does not exist or you may not read it."
    assert lab.api("GET", "volumes/staff-data/browse").status_code == 403
    assert not (lab.root / "data" / "staff-data").exists()


def test_browse_lists_a_volume_without_mounting_it(lab):
    r = lab.api("GET", "volumes/open-data/browse")
    assert r.status_code == 200, r.text
    entries = {e["name"]: e for e in r.json()["entries"]}
    assert entries["sub"]["type"] == "directory"
    assert entries["readme.txt"] == {"name": "readme.txt", "type": "file", "size": 10}
    r = lab.api("GET", "volumes/open-data/browse", params={"path": "sub"})
    assert [e["name"] for e in r.json()["entries"]] == ["table.csv"]
    assert not is_mount_point(lab.root / "data" / "open-data")


@pytest.mark.parametrize(
    "path,status",
    [
        ("..", 400),
        ("../staff-data", 400),
        ("sub/../../staff-data", 400),
        ("/etc", 404),  # leading slashes are stripped: /etc means the volume's own etc/
        ("escape", 400),  # a symbolic link leading out of the volume
        ("nowhere", 404),
        ("readme.txt", 400),
    ],
)
def test_browse_never_leaves_the_volume(lab, path, status):
    r = lab.api("GET", "volumes/open-data/browse", params={"path": path})
    assert r.status_code == status, r.text
    assert "staff-data\n" not in r.text
