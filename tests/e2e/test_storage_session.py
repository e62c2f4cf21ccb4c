"""A real hub session: alice connects her own WebDAV storage and hot-attaches archive volumes
through the extension's REST API, behind the hub's proxy; bob is refused the restricted one."""

from __future__ import annotations

import pytest

from datalabs_volumes.mount.local import mounts_under
from tests.servers import CANARY

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def start(hub, user):
    r = hub.api("POST", f"users/{user}/server", json={"profile": "planetary-lab", "volumes": []})
    assert r.status_code in (201, 202), r.text
    hub.wait_ready(user)


def test_alice_connects_her_storage_and_hot_attaches_volumes(demo_hub, serve):
    dav = serve("webdav")
    start(demo_hub, "alice")
    try:
        api = "datalabs/api/"
        ids = [v["id"] for v in demo_hub.server("alice", "GET", api + "volumes").json()]
        assert "rosetta-restricted" in ids  # alice is in rosetta-team
        r = demo_hub.server("alice", "POST", api + "volumes/psa-rosetta/attach")
        assert r.status_code == 200 and r.json()["mounted"], r.text
        listing = demo_hub.server("alice", "GET", "api/contents/data/psa-rosetta").json()
        assert listing["content"], "the hot-attached volume is empty"

        conn = {"name": "my-dav", "backend": "webdav", "options": dav.options()}
        r = demo_hub.server("alice", "POST", api + "connections", json=conn)
        assert r.status_code == 201, r.text
        r = demo_hub.server("alice", "POST", api + "connections/my-dav/attach")
        assert r.status_code == 200 and r.json()["health"]["state"] == "ok", r.text
        hello = demo_hub.server("alice", "GET", "api/contents/data/my-dav/hello.txt").json()
        assert hello["content"] == "hello from webdav\n"
        assert CANARY not in r.text
        r = demo_hub.server("alice", "POST", api + "connections/my-dav/detach")
        assert r.status_code == 200, r.text
        r = demo_hub.server("alice", "POST", api + "volumes/psa-rosetta/detach")
        assert r.status_code == 200 and not r.json()["mounted"], r.text
    finally:
        demo_hub.stop_server("alice")
    # Stopping the server leaves no mount behind, and the canary is in no log.
    assert mounts_under(demo_hub.state) == []
    assert CANARY.encode() not in demo_hub.log.read_bytes()


def test_bob_may_not_hot_attach_the_restricted_volume(demo_hub):
    start(demo_hub, "bob")
    try:
        vols = demo_hub.server("bob", "GET", "datalabs/api/volumes").json()
        assert "rosetta-restricted" not in [v["id"] for v in vols]
        r = demo_hub.server("bob", "POST", "datalabs/api/volumes/rosetta-restricted/attach")
        assert r.status_code == 403
        assert "rosetta-restricted" in r.json()["message"]
        listing = demo_hub.server("bob", "GET", "api/contents/data")
        assert listing.status_code == 404 or listing.json()["content"] == []
    finally:
        demo_hub.stop_server("bob")
