"""A real hub: alice starts a datalab with volumes through the REST API; bob is refused."""

import pytest
import requests

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_alice_starts_a_datalab_with_two_read_only_volumes(demo_hub, demo_archive):
    r = demo_hub.api(
        "POST",
        "users/alice/server",
        json={"profile": "planetary-lab", "volumes": ["psa-rosetta", "spice-juice"]},
    )
    assert r.status_code in (201, 202), r.text
    try:
        demo_hub.wait_ready("alice")
        # The volumes are there, listed by the single-user server's own contents API
        listing = demo_hub.server("alice", "GET", "api/contents/data").json()
        assert sorted(c["name"] for c in listing["content"]) == ["psa-rosetta", "spice-juice"]
        spice = demo_hub.server("alice", "GET", "api/contents/data/spice-juice").json()
        expected = sorted(p.name for p in (demo_archive / "spice-juice").iterdir())
        assert sorted(c["name"] for c in spice["content"]) == expected
        # ... and read-only: saving a file there fails, and nothing reaches the archive
        r = demo_hub.server(
            "alice",
            "PUT",
            "api/contents/data/psa-rosetta/notes.txt",
            json={"type": "file", "format": "text", "content": "hello"},
        )
        assert r.status_code >= 400, r.text
        assert not (demo_archive / "psa-rosetta" / "notes.txt").exists()
        # ... while her workspace itself is writable
        r = demo_hub.server(
            "alice",
            "PUT",
            "api/contents/notes.txt",
            json={"type": "file", "format": "text", "content": "hello"},
        )
        assert r.status_code in (200, 201), r.text
    finally:
        demo_hub.stop_server("alice")


def test_bob_is_refused_the_restricted_volume_and_nothing_starts(demo_hub):
    r = demo_hub.api(
        "POST",
        "users/bob/server",
        json={"profile": "planetary-lab", "volumes": ["psa-rosetta", "rosetta-restricted"]},
    )
    assert r.status_code == 403, r.text
    assert "rosetta-restricted" in r.json()["message"]
    model = demo_hub.api("GET", "users/bob").json()
    assert model["servers"] == {} and not model["pending"]


def test_unknown_datalab_is_refused_by_name(demo_hub):
    r = demo_hub.api("POST", "users/bob/server", json={"profile": "no-such-lab"})
    assert r.status_code == 403, r.text
    assert "Datalab 'no-such-lab'" in r.json()["message"]


def test_a_forged_spawn_form_is_refused_on_the_form(demo_hub):
    """bob's form does not offer the restricted volume; posting it anyway is refused."""
    s = requests.Session()
    login = s.get(f"{demo_hub.url}/hub/login", timeout=30)
    xsrf = s.cookies.get("_xsrf") or login.text.split('name="_xsrf" value="')[1].split('"')[0]
    r = s.post(
        f"{demo_hub.url}/hub/login",
        timeout=30,
        data={"username": "bob", "password": demo_hub.password, "_xsrf": xsrf},
    )
    assert r.status_code == 200 and "/hub/login" not in r.url, r.url
    form = s.get(f"{demo_hub.url}/hub/spawn", timeout=30)
    assert 'value="psa-rosetta"' in form.text and "rosetta-restricted" not in form.text
    r = s.post(
        f"{demo_hub.url}/hub/spawn",
        timeout=30,
        data={
            "_xsrf": s.cookies.get("_xsrf"),
            "profile": "planetary-lab",
            "volumes": ["psa-rosetta", "rosetta-restricted"],
        },
    )
    assert (
        "Volume &#39;rosetta-restricted&#39; does not exist or you may not read it." in r.text
        or "Volume 'rosetta-restricted' does not exist or you may not read it." in r.text
    )
    model = demo_hub.api("GET", "users/bob").json()
    assert model["servers"] == {} and not model["pending"]


def test_only_the_demo_users_log_in(demo_hub):
    def log_in(user, password):
        s = requests.Session()
        s.get(f"{demo_hub.url}/hub/login", timeout=30)
        return s.post(
            f"{demo_hub.url}/hub/login",
            timeout=30,
            data={"username": user, "password": password, "_xsrf": s.cookies.get("_xsrf")},
        )

    assert "/hub/login" not in log_in("alice", demo_hub.password).url
    assert "Invalid username or password" in log_in("carol", demo_hub.password).text
    assert "Invalid username or password" in log_in("alice", "wrong-password").text
