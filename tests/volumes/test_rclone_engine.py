"""The session's rclone rcd against real servers on 127.0.0.1: test, attach, read, detach,
and what happens when the remote or rclone itself dies."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import time
from pathlib import Path

import pytest

from datalabs_volumes.mount.local import is_mount_point
from datalabs_volumes.mount.rclone import RcloneError, explain
from datalabs_volumes.remotes import parse_networks, validate
from tests.servers import CANARY, free_port

pytestmark = pytest.mark.slow
LOOPBACK = parse_networks(["127.0.0.1/32"])
KINDS = ["webdav", "ftp", "sftp", "s3"]


def connection(server, name="mine", password=CANARY, path=None, **extra):
    options = server.options(password) if hasattr(server, "options") else server
    doc = {"name": name, "backend": getattr(server, "kind", "webdav"), "options": options}
    doc["path"] = server.path if path is None else path
    doc.update(extra)
    return validate(doc, LOOPBACK)


def cmdlines() -> list[bytes]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                out.append(Path(f"/proc/{pid}/cmdline").read_bytes())
            except OSError:
                pass
    return out


async def read_in_thread(path: Path, timeout: float = 30.0):
    """Read a folder listing the way a kernel would, failing the test if it hangs."""
    return await asyncio.wait_for(asyncio.to_thread(lambda: sorted(os.listdir(path))), timeout)


@pytest.mark.parametrize("kind", KINDS)
async def test_connect_test_attach_read_detach(kind, serve, engine, tmp_path):
    server = serve(kind)
    conn = connection(server)
    await engine.test(conn)
    target = tmp_path / "data" / "mine"
    await engine.attach(conn, target)
    assert is_mount_point(target)
    assert (target / "hello.txt").read_text() == f"hello from {kind}\n"
    assert await read_in_thread(target / "sub") == ["data.csv"]
    # Read-only unless asked otherwise: the kernel refuses writes, nothing reaches the server.
    with pytest.raises(OSError):
        (target / "new.txt").write_text("x")
    assert not (server.files / "new.txt").exists()
    assert (await engine.health("mine")).state == "ok"
    await engine.detach("mine")
    assert not is_mount_point(target) and not target.exists()
    assert (await engine.health("mine")).state == "detached"
    # The canary password is nowhere but in rclone's 0600 config (obscured there).
    assert not any(CANARY.encode() in c for c in cmdlines())
    for f in engine.runtime_dir.rglob("*"):
        if f.is_file():
            assert CANARY.encode() not in f.read_bytes(), f
    config = engine.daemon.config_path
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(engine.runtime_dir.stat().st_mode) == 0o700


async def test_writable_when_the_user_asks_for_it(serve, engine, tmp_path):
    server = serve("webdav")
    target = tmp_path / "data" / "mine"
    await engine.attach(connection(server), target, read_only=False)
    (target / "results.txt").write_text("42\n")
    await engine.detach("mine")  # flushes the write-back cache before unmounting
    assert (server.files / "results.txt").read_text() == "42\n"


@pytest.mark.parametrize("kind", KINDS)
async def test_wrong_password_says_so_without_repeating_it(kind, serve, engine):
    server = serve(kind)
    with pytest.raises(RcloneError) as e:
        await engine.test(connection(server, password="Wr0ngPassw0rd"))
    assert e.value.kind == "credentials", e.value.message
    assert "refused the user name or password" in e.value.message
    assert "Wr0ngPassw0rd" not in e.value.message


async def test_unreachable_host_fails_fast_with_a_clear_message(engine):
    options = {"url": f"http://127.0.0.1:{free_port()}", "user": "u", "pass": CANARY}
    t = time.monotonic()
    with pytest.raises(RcloneError) as e:
        await engine.test(connection(options, path=""))
    assert time.monotonic() - t < 15
    assert e.value.kind == "unreachable" and "cannot be reached" in e.value.message
    assert CANARY not in e.value.message


@pytest.mark.parametrize("kind", ["webdav", "sftp", "s3"])
async def test_missing_folder_is_named_as_such(kind, serve, engine):
    server = serve(kind)
    # S3 has no folders, only buckets and prefixes: a missing bucket is the missing place.
    path = "no-such-bucket" if kind == "s3" else "nowhere"
    with pytest.raises(RcloneError) as e:
        await engine.test(connection(server, path=path))
    assert e.value.kind == "missing", e.value.message
    assert "does not exist" in e.value.message


async def test_passwords_with_equals_quotes_and_spaces_work(serve, engine, tmp_path):
    password = CANARY + """=a"b'c d;$(x)"""
    server = serve("webdav", password=password)
    conn = connection(server, password=password)
    await engine.test(conn)
    await engine.attach(conn, tmp_path / "data" / "mine")
    assert (tmp_path / "data" / "mine" / "hello.txt").exists()


async def test_killed_rclone_is_restarted_and_mounts_restored(serve, engine, tmp_path):
    server = serve("webdav")
    target = tmp_path / "data" / "mine"
    await engine.attach(connection(server), target)
    old = engine.daemon.pid
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if engine.restarts and (await engine.health("mine")).state == "ok":
            break
        await asyncio.sleep(0.2)
    assert engine.restarts == 1 and engine.daemon.pid != old
    assert (target / "hello.txt").read_text() == "hello from webdav\n"


async def test_dead_remote_shows_broken_never_hangs_and_can_be_attached_again(
    serve, engine, tmp_path
):
    server = serve("webdav")
    target = tmp_path / "data" / "mine"
    await engine.attach(connection(server), target)
    assert await read_in_thread(target) == ["hello.txt", "sub"]
    server.kill()
    health = await asyncio.wait_for(engine.health("mine"), 15)
    assert health.state == "broken" and "cannot be reached" in health.reason
    # Reading through the mount answers (from cache, or with an error) instead of hanging.
    t = time.monotonic()
    try:
        await read_in_thread(target / "sub", timeout=40)
    except OSError:
        pass
    assert time.monotonic() - t < 40
    # A detach never leaves a stale mount, even with the remote gone.
    await engine.detach("mine")
    assert not is_mount_point(target)
    server.restart()
    await engine.attach(connection(server), target)
    assert (await engine.health("mine")).state == "ok"
    assert (target / "hello.txt").read_text() == "hello from webdav\n"


async def test_detach_while_a_file_is_open_leaves_nothing_stale(serve, engine, tmp_path):
    server = serve("webdav")
    target = tmp_path / "data" / "mine"
    await engine.attach(connection(server), target)
    with open(target / "hello.txt") as f:  # a kernel holding a file open
        await engine.detach("mine")
        assert not is_mount_point(target)
        # The open file either still reads or fails at once; it never hangs.
        try:
            await asyncio.wait_for(asyncio.to_thread(f.read), 10)
        except OSError:
            pass
    assert not is_mount_point(target)
    # ... and the same folder can be attached again straight away.
    await engine.attach(connection(server), target)
    assert (target / "hello.txt").read_text() == "hello from webdav\n"


async def test_attaching_twice_or_over_a_mount_is_refused(serve, engine, tmp_path):
    server = serve("webdav")
    target = tmp_path / "data" / "mine"
    await engine.attach(connection(server), target)
    with pytest.raises(RcloneError, match="already attached"):
        await engine.attach(connection(server), tmp_path / "data" / "elsewhere")
    with pytest.raises(RcloneError, match="already in use"):
        await engine.attach(connection(server, name="other"), target)


@pytest.mark.parametrize("backend", ["dropbox", "drive"])
async def test_oauth_token_reaches_rclone_only_and_a_refreshed_one_is_kept(backend, engine):
    """Dropbox and Google Drive cannot be reached from here: check the config rclone gets,
    and that a token rclone refreshed goes back to the store."""
    import json

    token = json.dumps(
        {"access_token": "old", "token_type": "Bearer", "refresh_token": CANARY, "expiry": "x"}
    )
    conn = validate({"name": "cloud", "backend": backend, "options": {"token": token}})
    assert conn.redacted()["options"]["token"] != token
    await engine.start()
    await engine._define("cloud", conn)
    config = engine.daemon.config_path.read_text()
    assert f"type = {backend}" in config and "refresh_token" in config
    assert "env_auth" not in config and "service_account" not in config
    assert stat.S_IMODE(engine.daemon.config_path.stat().st_mode) == 0o600
    kept = []
    engine.on_token_refresh = lambda c, t: kept.append((c.name, t))
    assert await engine.refreshed_token("cloud", conn) is None  # unchanged: nothing to keep
    # rclone renews the access token itself and writes it to its config; play that part.
    fresh = token.replace('"old"', '"new"')
    await engine.daemon.call(
        "config/update",
        {"name": "cloud", "parameters": {"token": fresh}, "opt": {"nonInteractive": True}},
    )
    assert await engine.refreshed_token("cloud", conn) == fresh
    assert kept == [("cloud", fresh)]


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        # The ports are chosen to hold 401, 404 and 530: they are not status codes.
        ('Propfind "http://127.0.0.1:40163/": dial tcp 127.0.0.1:40163: connect: '
         "connection refused", "unreachable"),
        ("dial tcp 127.0.0.1:14042: connect: connection refused", "unreachable"),
        ("ftp: dial tcp 127.0.0.1:25301: i/o timeout", "unreachable"),
        ("couldn't list files: 401 Unauthorized", "credentials"),
        ("ftp: 530 Login incorrect.", "credentials"),
        ("error listing: directory not found: 404", "missing"),
    ],
)  # fmt: skip
def test_errors_are_sorted_by_what_they_say_not_by_digits_in_an_address(message, kind):
    assert explain(message)[0] == kind
