"""A sandboxed session cannot see the archive root, so the broker reads volumes for it (size,
browse) for volumes the user may read. Real hub with ``sandbox=True``."""

from __future__ import annotations

import contextlib
import os

import pytest

from datalabs_volumes.archive import folder_size
from datalabs_volumes.mount.local import mounts_under
from tests.conftest import made_accounts
from tests.e2e.hubprocess import start_sessions
from tests.e2e.test_broker import Broker, user_token

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.root]


@pytest.fixture(scope="module")
def sandbox_hub(tmp_path_factory, demo_archive):
    """The embedded hub with sandboxed sessions for alice and bob (no volumes at start)."""
    assert os.geteuid() == 0, "this test needs root (accounts, mounts); run it as CI does"
    # Its own accounts: another test run on the same machine shares and removes dltest- ones.
    state = tmp_path_factory.mktemp("sandbox-archive-state")
    with made_accounts("dlarch-") as prefix, contextlib.ExitStack() as cleanup:
        args = [
            "--DatalabsLocalSpawner.sandbox=True",
            f"--DatalabsLocalSpawner.account_prefix={prefix}",
        ]
        hub = start_sessions(cleanup, state, demo_archive, args)
        hub.prefix = prefix  # type: ignore[attr-defined]
        yield hub
    assert mounts_under(state) == []


def test_a_sandboxed_session_sizes_and_browses_volumes_through_the_broker(
    sandbox_hub, demo_archive
):
    """The archive root does not exist in alice's sandbox, yet her Data panel shows
    psa-rosetta's true size and lists its folders before attaching it (the broker reads them);
    bob is refused rosetta-restricted at his session and at the broker, and nobody browses out
    of a volume."""
    hub = sandbox_hub
    api = "datalabs/api/"
    source = demo_archive / "psa-rosetta"
    expected = folder_size(source)
    r = hub.server("alice", "GET", api + "volumes")
    assert r.status_code == 200, r.text
    listed = {v["id"]: v for v in r.json()}
    assert listed["psa-rosetta"]["mounted"] is False
    assert listed["psa-rosetta"]["size"] == expected.to_json(), listed["psa-rosetta"]
    assert expected.files > 0

    r = hub.server("alice", "GET", api + "volumes/psa-rosetta/browse")
    assert r.status_code == 200, r.text
    top = r.json()
    assert sorted(e["name"] for e in top["entries"]) == sorted(p.name for p in source.iterdir())
    folder = next(p for p in source.iterdir() if p.is_dir())
    r = hub.server("alice", "GET", api + "volumes/psa-rosetta/browse", params={"path": folder.name})
    assert r.status_code == 200, r.text
    inside = {e["name"]: e for e in r.json()["entries"]}
    assert sorted(inside) == sorted(p.name for p in folder.iterdir())
    for p in folder.iterdir():
        if p.is_file():
            assert inside[p.name]["size"] == p.stat().st_size
    r = hub.server(
        "alice", "GET", api + "volumes/psa-rosetta/browse", params={"path": "../psa-rosetta"}
    )
    assert r.status_code == 400, r.text

    # bob: refused at his session and at the broker with his own token, in the same words.
    r = hub.server("bob", "GET", api + "volumes/rosetta-restricted/browse")
    assert r.status_code == 403, r.text
    broker = Broker(hub)
    bob = user_token(hub, "bob")
    refusal = "Volume 'rosetta-restricted' does not exist or you may not read it."
    for what in ("size", "browse"):
        r = broker.request("GET", f"users/bob/volumes/rosetta-restricted/{what}", bob)
        assert r.status_code == 403 and r.json()["message"] == refusal, r.text
        r = broker.request("GET", f"users/alice/volumes/psa-rosetta/{what}", bob)
        assert r.status_code == 403, r.text
    r = broker.request(
        "GET", "users/bob/volumes/psa-rosetta/browse", bob, params={"path": "../../etc"}
    )
    assert r.status_code == 400, r.text
    r = broker.request("GET", "users/bob/volumes/psa-rosetta/browse", bob, params={"path": "/etc"})
    assert r.status_code == 404, r.text  # etc inside the volume, which has none
    r = broker.request("GET", "users/bob/volumes/psa-rosetta/size", bob)
    assert r.status_code == 200 and r.json()["bytes"] == expected.bytes, r.text
