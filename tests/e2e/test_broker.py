"""The broker on the real embedded hub: hot attach is decided and done hub side.

alice hot-attaches volumes through her session's API and through the broker directly, and
they appear read-only under her ``data/``. bob is refused ``rosetta-restricted`` by the broker
whatever his session claims: through his session's API, directly with his own token, and from
a session he runs himself with a forged environment (``DATALABS_USER_GROUPS``/
``DATALABS_GRANTED_VOLUMES`` claiming alice's group). Tokens that are missing, someone
else's, an admin service's or narrowed to other scopes are refused; a malformed body is a 400.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import requests

from datalabs_volumes.mount.local import is_mount_point, mounts_under
from tests.e2e.hubprocess import REPO, running_hub
from tests.labserver import running_lab

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RESTRICTED = "rosetta-restricted"


def start(hub, user):
    r = hub.api("POST", f"users/{user}/server", json={"profile": "planetary-lab", "volumes": []})
    assert r.status_code in (201, 202), r.text
    hub.wait_ready(user)


def user_token(hub, user: str, **body) -> str:
    """A new hub API token owned by ``user`` (as the user makes on the hub's token page)."""
    r = hub.api("POST", f"users/{user}/tokens", json={"note": "broker test", **body})
    assert r.status_code == 201, r.text
    return r.json()["token"]


class Broker:
    """Requests straight to the broker, behind the hub's proxy."""

    def __init__(self, hub):
        self.root = f"{hub.url}/hub/datalabs/v1/"

    def request(self, method, path, token=None, **kw) -> requests.Response:
        headers = {"Authorization": f"token {token}"} if token else {}
        return requests.request(method, self.root + path, headers=headers, timeout=60, **kw)


def workspace(hub, user: str) -> Path:
    return hub.state / "workspaces" / user


def is_read_only(path: Path) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


@pytest.fixture(scope="module")
def sessions(demo_hub):
    """alice's and bob's sessions (no volumes at start), stopped at the end."""
    started = []
    try:
        for user in ("alice", "bob"):
            start(demo_hub, user)
            started.append(user)
        yield demo_hub
    finally:
        for user in started:
            demo_hub.stop_server(user)


def volume_mounts(ws: Path) -> list[Path]:
    """Mounts under a workspace other than a sandboxed session's own shared bind of ``data/``
    (which the sandbox needs while it runs, so that attaches propagate into it)."""
    return [p for p in mounts_under(ws) if p != ws / "data"]


def test_alice_hot_attaches_through_her_session_and_the_broker_mounts(sessions):
    hub = sessions
    log_before = hub.log.stat().st_size
    target = workspace(hub, "alice") / "data" / RESTRICTED
    r = hub.server("alice", "POST", f"datalabs/api/volumes/{RESTRICTED}/attach")
    assert r.status_code == 200 and r.json()["mounted"], r.text
    try:
        assert is_mount_point(target) and is_read_only(target)
        listing = hub.server("alice", "GET", f"api/contents/data/{RESTRICTED}").json()
        assert listing["content"], "the hot-attached volume is empty"
        with pytest.raises(OSError):
            (target / "written-by-alice").write_text("x")
        # The mount was asked of, and made by, the hub's broker.
        with open(hub.log, "rb") as f:
            f.seek(log_before)
            assert f"Broker: attached {RESTRICTED} for alice".encode() in f.read()
    finally:
        r = hub.server("alice", "POST", f"datalabs/api/volumes/{RESTRICTED}/detach")
    assert r.status_code == 200 and not r.json()["mounted"], r.text
    assert not is_mount_point(target)


def test_alice_attaches_and_detaches_through_the_broker_with_her_own_token(sessions):
    hub, broker = sessions, Broker(sessions)
    token = user_token(hub, "alice")
    target = workspace(hub, "alice") / "data" / "psa-rosetta"
    ids = [v["id"] for v in broker.request("GET", "users/alice/volumes", token).json()["volumes"]]
    assert {"psa-rosetta", RESTRICTED} <= set(ids)
    r = broker.request("POST", "users/alice/volumes/psa-rosetta/attach", token, json={})
    assert r.status_code == 200, r.text
    assert r.json()["path"] == "data/psa-rosetta" and r.json()["read_only"] is True
    assert is_mount_point(target) and is_read_only(target)
    r = broker.request("POST", "users/alice/volumes/psa-rosetta/attach", token)
    assert r.status_code == 409, r.text
    r = broker.request("POST", "users/alice/volumes/psa-rosetta/detach", token)
    assert r.status_code == 200 and r.json()["attached"] is False, r.text
    assert not is_mount_point(target)
    r = broker.request("POST", "users/alice/volumes/psa-rosetta/detach", token)
    assert r.status_code == 409 and "not attached" in r.json()["message"]


def test_bob_is_refused_the_restricted_volume_by_the_broker_with_his_own_token(sessions):
    hub, broker = sessions, Broker(sessions)
    token = user_token(hub, "bob")
    ids = [v["id"] for v in broker.request("GET", "users/bob/volumes", token).json()["volumes"]]
    assert "psa-rosetta" in ids and RESTRICTED not in ids
    for action in ("attach", "detach"):
        r = broker.request("POST", f"users/bob/volumes/{RESTRICTED}/{action}", token)
        assert r.status_code == 403, r.text
        # The same words for a volume that does not exist: the answer tells nothing.
        assert r.json()["message"] == (
            f"Volume '{RESTRICTED}' does not exist or you may not read it."
        )
    r = broker.request("POST", "users/bob/volumes/no-such-volume/attach", token)
    assert r.status_code == 403 and "does not exist or you may not read it" in r.text
    assert volume_mounts(workspace(hub, "bob")) == []
    # Through his session's API as well.
    r = hub.server("bob", "POST", f"datalabs/api/volumes/{RESTRICTED}/attach")
    assert r.status_code == 403 and RESTRICTED in r.json()["message"], r.text
    assert volume_mounts(workspace(hub, "bob")) == []


def test_a_session_claiming_alices_group_in_its_environment_is_still_refused(
    sessions, demo_archive, tmp_path
):
    """bob runs a server of his own with his hub token and an environment that claims the
    restricted volume's group and an operator grant: the attack a user can make on anything
    his session is told. The broker decides from the hub's groups, so nothing is mounted."""
    hub = sessions
    forged = {
        "JUPYTERHUB_API_URL": f"{hub.url}/hub/api",
        "JUPYTERHUB_API_TOKEN": user_token(hub, "bob"),
        "DATALABS_GRANTED_VOLUMES": json.dumps([RESTRICTED]),
    }
    with running_lab(
        tmp_path,
        REPO / "config" / "catalogue",
        demo_archive,
        user="bob",
        groups=("rosetta-team",),
        extra_env=forged,
    ) as lab:
        r = lab.api("POST", f"volumes/{RESTRICTED}/attach")
        assert r.status_code == 403, r.text
        assert RESTRICTED in r.json()["message"]
        assert mounts_under(lab.root) == []
        assert not (lab.root / "data" / RESTRICTED).exists()
        ids = [v["id"] for v in lab.api("GET", "volumes").json()]
        assert "psa-rosetta" in ids and RESTRICTED not in ids


def test_requests_without_the_users_own_token_are_refused(sessions):
    hub, broker = sessions, Broker(sessions)
    attach = f"users/alice/volumes/{RESTRICTED}/attach"
    r = broker.request("POST", attach)
    assert r.status_code == 401, r.text
    r = broker.request("GET", "users/alice/volumes")
    assert r.status_code == 401, r.text
    bob = user_token(hub, "bob")
    # bob's token with alice's name in the path: her volume, her session, refused.
    for method, path in (("POST", attach), ("GET", "users/alice/volumes")):
        r = broker.request(method, path, bob)
        assert r.status_code == 403, r.text
        assert "may not act for user 'alice'" in r.json()["message"]
    # An admin service's token is not alice's either.
    r = broker.request("POST", attach, hub.token)
    assert r.status_code == 403, r.text
    # A token of alice's narrowed to other scopes does not reach her session.
    narrow = user_token(hub, "alice", scopes=["read:users:name!user=alice"])
    r = broker.request("POST", attach, narrow)
    assert r.status_code == 403, r.text
    assert volume_mounts(workspace(hub, "alice")) == []


def test_a_malformed_body_is_a_400_naming_the_problem(sessions):
    hub, broker = sessions, Broker(sessions)
    token = user_token(hub, "alice")
    attach = "users/alice/volumes/psa-rosetta/attach"
    r = broker.request("POST", attach, token, data=b'{"version": ')
    assert r.status_code == 400 and "JSON" in r.json()["message"], r.text
    r = broker.request("POST", attach, token, json=["v1"])
    assert r.status_code == 400 and "JSON object" in r.json()["message"], r.text
    r = broker.request("POST", attach, token, json={"version": 2})
    assert r.status_code == 400 and "'version'" in r.json()["message"], r.text
    r = broker.request("POST", attach, token, json={"path": "/etc"})
    assert r.status_code == 400 and "path" in r.json()["message"], r.text
    r = broker.request("POST", attach, token, json={"version": "no-such-version"})
    assert r.status_code == 400 and "no-such-version" in r.json()["message"], r.text
    # Through the session too.
    r = hub.server("alice", "POST", "datalabs/api/volumes/psa-rosetta/attach", data=b"{")
    assert r.status_code == 400 and "JSON" in r.json()["message"], r.text
    assert volume_mounts(workspace(hub, "alice")) == []


def test_alices_browser_cookie_alone_does_not_reach_the_broker(sessions):
    """A page alice has open (her hub login cookie, even with the XSRF token) cannot make the
    broker act: it takes tokens only, so no cross-site request can attach for her."""
    hub, broker = sessions, Broker(sessions)
    s = requests.Session()
    login = s.get(f"{hub.url}/hub/login", timeout=30)
    xsrf = login.text.split('name="_xsrf" value="')[1].split('"')[0]
    r = s.post(
        f"{hub.url}/hub/login",
        timeout=30,
        data={"username": "alice", "password": hub.password, "_xsrf": xsrf},
    )
    assert r.status_code == 200 and "/hub/login" not in r.url, r.url
    # the cookie works for the hub itself: she is logged in
    assert s.get(f"{hub.url}/hub/home", timeout=30).url.endswith("/hub/home")
    headers = {"X-XSRFToken": xsrf}
    for method, path in (
        ("GET", "users/alice/volumes"),
        ("POST", f"users/alice/volumes/{RESTRICTED}/attach"),
    ):
        r = s.request(method, broker.root + path, headers=headers, timeout=60)
        assert r.status_code == 401, (path, r.status_code, r.text)
    assert volume_mounts(workspace(hub, "alice")) == []


def test_connections_go_through_the_broker_only_for_sandboxed_sessions(
    tmp_path, demo_archive, monkeypatch
):
    """On a hub without the sandbox (``DATALABS_SANDBOX=0``) a session mounts its own
    connections: the broker's connection calls answer 409 saying so, after checking the body."""
    monkeypatch.setenv("DATALABS_SANDBOX", "0")
    (tmp_path / "hub").mkdir()
    with running_hub(tmp_path / "hub", demo_archive) as hub:
        start(hub, "alice")
        try:
            broker = Broker(hub)
            token = user_token(hub, "alice")
            attach = "users/alice/connections/my-dav/attach"
            r = broker.request("POST", attach, token, json={"writable": "yes"})
            assert r.status_code == 400 and "'writable'" in r.json()["message"], r.text
            r = broker.request("POST", attach, token, json={"path": "/etc"})
            assert r.status_code == 400 and "only 'writable'" in r.json()["message"], r.text
            r = broker.request("POST", attach, token)
            assert r.status_code == 409 and "itself" in r.json()["message"], r.text
            r = broker.request("GET", "users/alice/connections", user_token(hub, "bob"))
            assert r.status_code == 403, r.text
        finally:
            hub.stop_server("alice")
