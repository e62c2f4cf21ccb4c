"""``/datalabs/api/connections`` on a real jupyter-server against real rclone servers.

The canary secret is the password of every server; the last test of the module checks that
it never reached a log, an answer, a command line or a file other than rclone's 0600 config.
"""

from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path

import pytest

from datalabs_volumes.mount.local import is_mount_point
from datalabs_volumes.remotes import REDACTED
from tests.servers import CANARY, free_port

pytestmark = pytest.mark.slow
KINDS = ["webdav", "ftp", "sftp", "s3"]


def doc(server, name, password=CANARY, **extra):
    return {
        "name": name,
        "backend": server.kind,
        "options": server.options(password),
        "path": server.path,
        **extra,
    }


def wait_for(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached in {timeout} s")


def health_of(lab, name):
    r = lab.api("GET", f"connections/{name}")
    assert r.status_code == 200, r.text
    return r.json()["health"]


@pytest.mark.parametrize("kind", KINDS)
def test_connect_attach_read_detach_delete(lab, serve, kind):
    server = serve(kind)
    name = f"my-{kind}"
    r = lab.api("POST", "connections", json=doc(server, name))
    assert r.status_code == 201, r.text
    shown = r.json()
    assert shown["options"]["pass" if kind != "s3" else "secret_access_key"] == REDACTED
    assert shown["attached"] is False and shown["read_only"] is True
    assert name in [c["name"] for c in lab.api("GET", "connections").json()]

    r = lab.api("POST", f"connections/{name}/test")
    assert r.status_code == 200 and r.json() == {"name": name, "ok": True}

    r = lab.api("POST", f"connections/{name}/attach")
    assert r.status_code == 200, r.text
    assert r.json()["attached"] is True and r.json()["health"]["state"] == "ok"
    # The file browser (the contents API) sees the storage at data/<name>.
    listing = lab.contents(f"data/{name}").json()
    assert sorted(c["name"] for c in listing["content"]) == ["hello.txt", "sub"]
    hello = lab.contents(f"data/{name}/hello.txt").json()
    assert hello["content"] == f"hello from {kind}\n"
    # Read-only unless asked: a save fails and nothing reaches the server.
    r = lab.contents(
        f"data/{name}/new.txt",
        method="PUT",
        json={"type": "file", "format": "text", "content": "x"},
    )
    assert r.status_code >= 400
    assert not (server.files / "new.txt").exists()
    lab.contents(f"data/{name}/hello.txt/checkpoints", method="POST")
    assert not (server.files / ".ipynb_checkpoints").exists()

    r = lab.api("POST", f"connections/{name}/detach")
    assert r.status_code == 200 and r.json()["attached"] is False
    assert not (lab.root / "data" / name).exists()
    r = lab.api("DELETE", f"connections/{name}")
    assert r.status_code == 204
    assert lab.api("GET", f"connections/{name}").status_code == 404


def test_write_access_on_own_storage_when_asked(lab, serve):
    server = serve("webdav")
    assert lab.api("POST", "connections", json=doc(server, "rw", writable=True)).status_code == 201
    try:
        r = lab.api("POST", "connections/rw/attach")
        assert r.status_code == 200 and r.json()["read_only"] is False
        r = lab.contents(
            "data/rw/result.txt",
            method="PUT",
            json={"type": "file", "format": "text", "content": "42"},
        )
        assert r.status_code in (200, 201), r.text
        assert lab.api("POST", "connections/rw/detach").status_code == 200
        assert (server.files / "result.txt").read_text() == "42"
    finally:
        lab.api("DELETE", "connections/rw")


def test_wrong_password_is_refused_before_saving(lab, serve):
    server = serve("sftp")
    r = lab.api("POST", "connections", json=doc(server, "wrong", password="N0tTheRightOne"))
    assert r.status_code == 400, r.text
    assert "refused the user name or password" in r.json()["message"]
    assert r.json()["reason"] == "credentials"
    assert "N0tTheRightOne" not in r.text
    assert lab.api("GET", "connections/wrong").status_code == 404


def test_unreachable_host_and_missing_folder_are_told_apart(lab, serve):
    dead = {"url": f"http://127.0.0.1:{free_port()}", "pass": CANARY}
    r = lab.api("POST", "connections", json={"name": "dead", "backend": "webdav", "options": dead})
    assert r.status_code == 502, r.text
    assert "cannot be reached" in r.json()["message"]
    server = serve("webdav")
    r = lab.api("POST", "connections", json=doc(server, "nofolder", path="no/such/folder"))
    assert r.status_code == 404, r.text
    assert "does not exist" in r.json()["message"]


@pytest.mark.parametrize(
    "body,field",
    [
        (
            {"name": "../escape", "backend": "webdav", "options": {"url": "http://127.0.0.1"}},
            "name",
        ),
        ({"name": "x", "backend": "local", "options": {}}, "backend"),
        (
            {"name": "x", "backend": "sftp", "options": {"host": "127.0.0.1", "key_file": "/x"}},
            "options.key_file",
        ),
        ({"name": "x", "backend": "webdav", "options": {"url": "http://10.0.0.1/"}}, "options.url"),
        (
            {
                "name": "x",
                "backend": "webdav",
                "options": {"url": "http://127.0.0.1/", "pass": "a\n[evil]\ntype = local"},
            },
            "options.pass",
        ),
    ],
)
def test_invalid_connections_are_refused_with_the_field_named(lab, body, field):
    r = lab.api("POST", "connections", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["reason"] == field
    assert r.json()["message"].startswith(f"{field}:")


@pytest.mark.parametrize("name", ["..", "..%2F..%2Fetc", "UPPER", "a%00b"])
def test_names_in_urls_are_never_paths(lab, name):
    for method, suffix in [("GET", ""), ("DELETE", ""), ("POST", "/attach"), ("POST", "/test")]:
        r = lab.api(method, f"connections/{name}{suffix}")
        # 403/405: the client normalised ".." away and the request reached another route.
        assert r.status_code in (400, 403, 404, 405), (method, suffix, r.text)
    data = lab.root / "data"
    assert not data.exists() or list(data.iterdir()) == []


def test_bad_bodies_get_json_errors(lab):
    r = lab.api("POST", "connections", data="{not json")
    assert r.status_code == 400 and "not valid JSON" in r.json()["message"]
    r = lab.api("POST", "connections", data="")
    assert r.status_code == 400 and "needs a JSON body" in r.json()["message"]


def test_requests_without_the_token_are_refused(lab):
    import requests

    r = requests.get(f"{lab.url}/datalabs/api/connections", timeout=10)
    assert r.status_code == 403


def test_patch_is_tested_again_and_refused_while_attached(lab, serve):
    server = serve("webdav")
    assert lab.api("POST", "connections", json=doc(server, "patchme")).status_code == 201
    try:
        r = lab.api("PATCH", "connections/patchme", json={"options": {"pass": "Wr0ng"}})
        assert r.status_code == 400 and "refused" in r.json()["message"]
        # The stored connection is unchanged and still works.
        assert lab.api("POST", "connections/patchme/test").status_code == 200
        r = lab.api(
            "PATCH", "connections/patchme", json={"path": "sub", "options": {"pass": REDACTED}}
        )
        assert r.status_code == 200 and r.json()["path"] == "sub", r.text
        assert lab.api("POST", "connections/patchme/attach").status_code == 200
        assert (lab.root / "data" / "patchme" / "data.csv").exists()
        r = lab.api("PATCH", "connections/patchme", json={"path": ""})
        assert r.status_code == 409 and "Detach" in r.json()["message"]
    finally:
        # Deleting an attached connection detaches it first.
        assert lab.api("DELETE", "connections/patchme").status_code == 204
    assert not (lab.root / "data" / "patchme").exists()


def test_dead_remote_is_broken_the_session_keeps_working_and_reattach_works(lab, serve):
    server = serve("webdav")
    assert lab.api("POST", "connections", json=doc(server, "flaky")).status_code == 201
    try:
        assert lab.api("POST", "connections/flaky/attach").status_code == 200
        assert lab.contents("data/flaky").status_code == 200
        server.kill()
        health = wait_for(
            lambda: (h := health_of(lab, "flaky"))["state"] == "broken" and h, what="broken"
        )
        assert "cannot be reached" in health["reason"]
        # The file browser still answers for data/ and the rest of the workspace.
        t = time.monotonic()
        assert lab.contents("data").status_code == 200
        assert lab.contents("").status_code == 200
        assert time.monotonic() - t < 10
        server.restart()
        assert lab.api("POST", "connections/flaky/detach").status_code == 200
        assert lab.api("POST", "connections/flaky/attach").status_code == 200
        assert health_of(lab, "flaky")["state"] == "ok"
        assert lab.contents("data/flaky/hello.txt").json()["content"] == "hello from webdav\n"
    finally:
        lab.api("DELETE", "connections/flaky")


def _rcd_pid(lab) -> int:
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == lab.process.pid and b"rcd" in argv:
            return int(pid)
    raise AssertionError("the session's rclone rcd is not running")


def test_killed_rclone_is_restarted_with_its_mounts(lab, serve):
    server = serve("ftp")
    assert lab.api("POST", "connections", json=doc(server, "survivor")).status_code == 201
    try:
        assert lab.api("POST", "connections/survivor/attach").status_code == 200
        old = _rcd_pid(lab)
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: _rcd_pid_or_none(lab) not in (None, old), what="a new rcd")
        wait_for(lambda: health_of(lab, "survivor")["state"] == "ok", what="mount restored")
        assert is_mount_point(lab.root / "data" / "survivor")
        assert lab.contents("data/survivor/hello.txt").json()["content"] == "hello from ftp\n"
    finally:
        lab.api("DELETE", "connections/survivor")


def _rcd_pid_or_none(lab):
    try:
        return _rcd_pid(lab)
    except AssertionError:
        return None


def test_zz_the_canary_never_leaks(lab):
    """Runs last in the module: everything above used the canary as its password."""
    secret = CANARY.encode()
    assert lab.seen, "no answers were recorded"
    assert not any(CANARY in text for text in lab.seen), "an API answer held the secret"
    assert secret not in lab.log.read_bytes(), "the server log holds the secret"
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                assert secret not in Path(f"/proc/{pid}/cmdline").read_bytes(), pid
            except OSError:
                pass
    config = None
    for f in lab.state.rglob("*"):
        if f.is_file() and not f.is_symlink():
            if f.name == "rclone.conf":
                config = f
            assert secret not in f.read_bytes(), f"{f} holds the secret in clear"
    store = lab.root / ".datalabs" / "connections.json"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    if config is not None:
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
