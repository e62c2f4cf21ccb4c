"""Connections (the user's own remote storage, through rclone and FUSE) in sandboxed sessions.

Inside bubblewrap ``fusermount3`` cannot mount (no_new_privs stops the set-uid helper), so the
hub's broker mounts the connection on the host, as the user's own account, under their
``data/``, and the mount propagates into the running sandbox. Real hub with ``sandbox=True``,
real kernels, real ``rclone serve webdav`` on 127.0.0.1 as the user's storage.

The accounts are ``dlconn-<user>``, not the ``dltest-<user>`` of other sandbox tests: these
tests count the processes of an account, and another test run on the same machine would share
(and remove) ``dltest-`` accounts.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from datalabs_volumes.mount.local import mount_points, mounts_under
from tests.conftest import made_accounts
from tests.e2e.hubprocess import running_hub, start_sessions
from tests.e2e.test_broker import Broker, user_token
from tests.e2e.test_hub_restart import wait_answering
from tests.e2e.test_sandbox_hub import folder_probe, kernel
from tests.servers import CANARY

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.root]


@pytest.fixture
def accounts():
    """The account prefix of these tests (``dlconn-``, see ``made_accounts``)."""
    with made_accounts("dlconn-") as prefix:
        yield prefix


def wait_for(condition, what, timeout: float = 60.0):
    """Poll ``condition`` until it is true; fail with ``what`` (a text, or a function giving
    one) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what() if callable(what) else what} (after {timeout:.0f} s)")
        time.sleep(0.1)


def processes_of(uid: int) -> list[str]:
    out = subprocess.run(["pgrep", "-a", "-u", str(uid)], capture_output=True, text=True)
    return out.stdout.splitlines()


def fuse_mounts_under(folder: Path) -> list[Path]:
    return [p for p in mount_points() if p == folder or folder in p.parents]


def test_the_hub_mounts_alices_connection_into_her_sandbox_and_nobody_elses(
    tmp_path_factory, demo_archive, accounts, serve
):
    """alice's kernel, started before the attach, reads her WebDAV file under data/my-dav
    (read-only), the FUSE mount belongs to her account, and the password appears in no
    command line, log or answer. bob, with his own token, can neither mount nor see it (not
    by naming it, not through a link to her store, not with a copy of her store). Detach
    removes it; killing alice's server makes the hub unmount it and stop its rclone."""
    assert os.geteuid() == 0, "this test needs root (accounts, mounts); run it as CI does"
    dav = serve("webdav")
    state = tmp_path_factory.mktemp("sandbox-connections-state")
    args = [
        "--DatalabsLocalSpawner.sandbox=True",
        f"--DatalabsLocalSpawner.account_prefix={accounts}",
        # The hub notices a server that died at its next poll.
        "--DatalabsLocalSpawner.poll_interval=1",
    ]
    with contextlib.ExitStack() as cleanup:
        hub = start_sessions(cleanup, state, demo_archive, args)
        alice = state / "workspaces" / "alice"
        bob = state / "workspaces" / "bob"
        alice_uid = pwd.getpwnam(accounts + "alice").pw_uid
        api = "datalabs/api/"
        answers = []

        conn = {"name": "my-dav", "backend": "webdav", "options": dav.options()}
        r = hub.server("alice", "POST", api + "connections", json=conn)
        assert r.status_code == 201, r.text
        answers.append(r.text)

        with kernel(hub, alice, "alice") as execute:
            assert "my-dav" not in folder_probe(execute, "my-dav", read="hello.txt")["data"]
            r = hub.server("alice", "POST", api + "connections/my-dav/attach")
            answers.append(r.text)
            assert r.status_code == 200, r.text
            assert r.json()["attached"] is True and r.json()["read_only"] is True, r.text
            assert r.json()["health"]["state"] == "ok", r.text
            # Inside her sandbox, in the kernel started before the attach.
            found = folder_probe(execute, "my-dav", read="hello.txt")
            assert found["read"] == "hello from webdav\n", found
            assert found["write"] in ("EROFS", "EPERM", "EACCES"), found
            assert not (dav.files / "written-in-the-kernel.txt").exists()
            # On the host: a FUSE mount of her own account at data/my-dav, made by the hub.
            with open("/proc/self/mountinfo", encoding="utf-8") as f:
                lines = [ln for ln in f if f" {alice / 'data' / 'my-dav'} " in ln]
            assert lines and "fuse.rclone" in lines[-1], lines
            assert f"user_id={alice_uid}" in lines[-1], lines
            assert [p for p in processes_of(alice_uid) if "rclone rcd" in p], processes_of(
                alice_uid
            )
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                with contextlib.suppress(OSError):
                    assert CANARY.encode() not in cmdline.read_bytes(), cmdline
            r = hub.server("alice", "GET", api + "connections")
            answers.append(r.text)
            listed = {c["name"]: c for c in r.json()}
            assert listed["my-dav"]["attached"] is True, r.text

            # bob, straight to the broker with his own token.
            broker = Broker(hub)
            bob_token = user_token(hub, "bob")
            for path in ("connections/my-dav/attach", "connections/my-dav/detach"):
                r = broker.request("POST", f"users/alice/{path}", bob_token)
                assert r.status_code == 403, r.text
            r = broker.request("GET", "users/alice/connections", bob_token)
            assert r.status_code == 403, r.text
            # Naming her connection in his own name: he has none of that name.
            r = broker.request("POST", "users/bob/connections/my-dav/attach", bob_token)
            assert r.status_code == 404, r.text
            r = broker.request("GET", "users/bob/connections", bob_token)
            assert r.status_code == 200 and r.json()["connections"] == [], r.text
            # A link to her store in his workspace (he owns it: his kernel could make it).
            store = alice / ".datalabs" / "connections.json"
            assert store.is_file()
            (bob / ".datalabs").mkdir(exist_ok=True)
            os.chown(bob / ".datalabs", *owner(bob))
            (bob / ".datalabs" / "connections.json").symlink_to(store)
            r = broker.request("POST", "users/bob/connections/my-dav/attach", bob_token)
            assert r.status_code == 400 and "link" in r.json()["message"], r.text
            # A copy of her store: his key does not open it.
            (bob / ".datalabs" / "connections.json").unlink()
            shutil.copyfile(store, bob / ".datalabs" / "connections.json")
            os.chown(bob / ".datalabs" / "connections.json", *owner(bob))
            r = broker.request("POST", "users/bob/connections/my-dav/attach", bob_token)
            assert r.status_code == 400 and "decrypted" in r.json()["message"], r.text
            answers.append(r.text)
            assert fuse_mounts_under(bob / "data") == [bob / "data"]
            assert not (bob / "data" / "my-dav").exists()
            r = hub.server("bob", "GET", api + "connections")
            assert r.status_code in (200, 500), r.text
            assert "hello" not in r.text

            # Detach: gone inside and on the host.
            r = hub.server("alice", "POST", api + "connections/my-dav/detach")
            assert r.status_code == 200 and r.json()["attached"] is False, r.text
            after = folder_probe(execute, "my-dav", read="hello.txt")
            assert "my-dav" not in after["data"] and after["read"] == "ENOENT", after
            assert mounts_under(alice / "data") == [alice / "data"]

        # Attached again, then her server is killed: the hub unmounts and stops rclone.
        r = hub.server("alice", "POST", api + "connections/my-dav/attach")
        assert r.status_code == 200, r.text
        assert alice / "data" / "my-dav" in mounts_under(alice / "data")
        servers = [p for p in processes_of(alice_uid) if "datalabs_spawner.singleuser" in p]
        assert servers, processes_of(alice_uid)
        for line in servers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line.split()[0]), signal.SIGKILL)
        wait_for(
            lambda: alice / "data" / "my-dav" not in mounts_under(alice / "data"),
            "the connection is still mounted after her server died",
        )
        wait_for(lambda: processes_of(alice_uid) == [], "processes of her account are left")
        # The hub removes the folder (rclone's config in it) just after rclone has stopped.
        wait_for(
            lambda: not list(Path("/tmp").glob(f"datalabs-connections-{alice_uid}-*")),
            "her connections folder is left",
        )

        # The password never shows: not in an answer, the hub's log, or any command line.
        assert not [a for a in answers if CANARY in a]
        assert CANARY.encode() not in hub.log.read_bytes()
    assert mounts_under(state) == []


def owner(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_uid, info.st_gid


#: What the refused host answers; it must never reach the user.
REFUSED_BODY = "RefusedHostBody" + os.urandom(6).hex()


@contextlib.contextmanager
def http_server(answer, host: str = "127.0.0.1"):
    """A plain HTTP server on ``host`` answering every request with ``answer(path)``; yields
    (its URL, the paths it was asked for)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _any(self):
            asked.append(self.path)
            status, headers, body = answer(self.path)
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_PROPFIND = do_HEAD = do_OPTIONS = _any

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer((host, 0), Handler)
    Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://{host}:{httpd.server_address[1]}", asked
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_broker_checks_the_stored_connection_again_and_rclone_obeys_the_network_policy(
    tmp_path_factory, demo_archive, accounts
):
    """alice can write anything into her own store (her key reaches her session, so her code
    can find it). A connection with an option users may not set (webdav's
    ``bearer_token_command``, which rclone would run as her account outside the sandbox) is
    refused by the broker, and nothing runs; a connection to an allowed server that redirects
    to a refused address fails with the policy's words, and the refused host is never asked:
    the hub's rclone goes through the egress proxy like a session's."""
    from datalabs_volumes.credentials import CredentialStore, user_key
    from datalabs_volumes.remotes import Connection

    state = tmp_path_factory.mktemp("sandbox-policy-state")
    args = [
        "--DatalabsLocalSpawner.sandbox=True",
        f"--DatalabsLocalSpawner.account_prefix={accounts}",
    ]
    refused_host = contextlib.ExitStack()
    with contextlib.ExitStack() as cleanup:
        # 127.0.0.2 is loopback, outside the demo's allowed 127.0.0.1/32.
        target, target_asked = cleanup.enter_context(
            http_server(
                lambda p: (500, {"Content-Type": "text/plain"}, REFUSED_BODY.encode()), "127.0.0.2"
            )
        )
        redirector, redirector_asked = cleanup.enter_context(
            http_server(lambda p: (302, {"Location": target + p}, b"moved"))
        )
        cleanup.enter_context(refused_host)
        hub = cleanup.enter_context(running_hub(state, demo_archive, args))
        r = hub.api("POST", "users/alice/server", json={"profile": "planetary-lab", "volumes": []})
        assert r.status_code in (201, 202), r.text
        cleanup.callback(hub.stop_server, "alice")
        hub.wait_ready("alice")
        alice = state / "workspaces" / "alice"
        account = pwd.getpwnam(accounts + "alice")
        pwned = Path("/tmp") / f"datalabs-pwned-{os.getpid()}"
        key = user_key((state / "credentials.key").read_text().strip(), "alice")
        store_file = alice / ".datalabs" / "connections.json"
        store = CredentialStore(store_file, key)
        store.put(
            Connection(
                "cmd",
                "webdav",
                {"url": redirector, "vendor": "other", "bearer_token_command": f"touch {pwned}"},
            )
        )
        store.put(Connection("moved", "webdav", {"url": redirector, "vendor": "other"}))
        os.chown(store_file.parent, account.pw_uid, account.pw_gid)
        os.chown(store_file, account.pw_uid, account.pw_gid)
        api = "datalabs/api/"

        r = hub.server("alice", "POST", api + "connections/cmd/attach")
        assert r.status_code == 400, r.text
        assert "bearer_token_command" in r.json()["message"], r.text
        assert not pwned.exists()
        assert redirector_asked == []

        r = hub.server("alice", "POST", api + "connections/moved/attach")
        assert r.status_code == 403, r.text
        assert r.json()["reason"] == "policy" or "network policy" in r.json()["message"], r.text
        assert redirector_asked, "the allowed server was never asked"
        assert target_asked == [], "the refused host was contacted"
        assert REFUSED_BODY not in r.text
        assert mounts_under(alice / "data") == [alice / "data"]
    assert mounts_under(state) == []


def test_after_a_hub_restart_a_connection_attaches_again_and_the_old_rclone_is_gone(
    tmp_path_factory, demo_archive, accounts, serve
):
    """Sessions outlive a hub restart, but the hub's rclone for alice's connection does not
    (it is killed with the hub's process): her data/my-dav is left a dead mount, and the old
    rclone's folder (its config, her obscured password) stays in the host's /tmp. Under the
    new hub process she attaches it again: the dead mount is replaced, the folder removed, and
    the file reads; stopping her session leaves nothing."""
    dav = serve("webdav")
    state = tmp_path_factory.mktemp("sandbox-restart-state")
    args = [
        "--DatalabsLocalSpawner.sandbox=True",
        f"--DatalabsLocalSpawner.account_prefix={accounts}",
    ]
    api = "datalabs/api/"
    with running_hub(state, demo_archive, args) as hub:
        r = hub.api("POST", "users/alice/server", json={"profile": "planetary-lab", "volumes": []})
        assert r.status_code in (201, 202), r.text
        hub.wait_ready("alice")
        uid = pwd.getpwnam(accounts + "alice").pw_uid
        conn = {"name": "my-dav", "backend": "webdav", "options": dav.options()}
        r = hub.server("alice", "POST", api + "connections", json=conn)
        assert r.status_code == 201, r.text
        r = hub.server("alice", "POST", api + "connections/my-dav/attach")
        assert r.status_code == 200, r.text
        old = list(Path("/tmp").glob(f"datalabs-connections-{uid}-*"))
        assert len(old) == 1, old

        hub.process.restart()
        wait_answering(hub, "alice")
        wait_for(
            lambda: not [p for p in processes_of(uid) if str(old[0]) in p],
            lambda: f"the old rclone outlived the hub: {processes_of(uid)}",
        )
        assert old[0].exists(), "nothing was left to clean: the test proves nothing"
        r = hub.server("alice", "GET", api + "connections")
        assert r.status_code == 200 and r.json()[0]["attached"] is False, r.text

        r = hub.server("alice", "POST", api + "connections/my-dav/attach")
        assert r.status_code == 200 and r.json()["health"]["state"] == "ok", r.text
        hello = hub.server("alice", "GET", "api/contents/data/my-dav/hello.txt").json()
        assert hello["content"] == "hello from webdav\n", hello
        assert not old[0].exists()
        hub.stop_server("alice")
        wait_for(lambda: processes_of(uid) == [], "processes of her account are left")
        wait_for(
            lambda: not list(Path("/tmp").glob(f"datalabs-connections-{uid}-*")),
            "her connections folder is left",
        )
    assert mounts_under(state) == []
