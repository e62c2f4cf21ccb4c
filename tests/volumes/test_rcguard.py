"""The rc guard of the Kubernetes rclone sidecar: what passes, what is refused, and a real
guarded rclone serving a real WebDAV mount (the guard runs as the sidecar runs it)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from datalabs_volumes.mount.local import is_mount_point
from datalabs_volumes.mount.rcguard import Policy, Refused
from datalabs_volumes.mount.rclone import RcClient, RcloneError
from datalabs_volumes.remotes import parse_networks, validate
from tests.helpers import free_port, write
from tests.servers import CANARY

LOOPBACK = parse_networks(["127.0.0.1/32"])
DAV = {"url": "http://127.0.0.1:8080", "vendor": "rclone", "user": "u", "pass": CANARY}


def policy(tmp_path: Path) -> Policy:
    (tmp_path / "mnt").mkdir(exist_ok=True)
    return Policy(str(tmp_path / "mnt"), LOOPBACK, remotes={"mine"})


def create(name: str = "mine", backend: str = "webdav", **parameters: str) -> dict:
    return {
        "name": name,
        "type": backend,
        "parameters": parameters or DAV,
        "opt": {"obscure": True, "nonInteractive": True},
    }


def test_the_engines_calls_pass_as_it_makes_them(tmp_path):
    guard = policy(tmp_path)
    connection = validate({"name": "mine", "backend": "webdav", "options": DAV}, LOOPBACK)
    made = create(**{"name": "test_0a1b2c3d"}, **connection.rclone_parameters())
    assert guard.check("config/create", made) == made
    point = str(tmp_path / "mnt" / "mine")
    mount = {
        "fs": "mine:sub/folder",
        "mountPoint": point,
        "mountType": "mount2",
        "vfsOpt": {"ReadOnly": True, "CacheMode": "off", "WriteBack": "0s", "ChunkSize": "16M"},
        "mountOpt": {"AllowOther": True, "MaxReadAhead": "512K"},
    }
    assert guard.check("mount/mount", mount) == mount
    listing = {"fs": "mine:", "remote": "", "opt": {}}
    assert guard.check("operations/list", listing) == listing
    assert guard.check("vfs/stats", {"fs": "mine:"}) == {"fs": "mine:"}
    assert guard.check("mount/unmount", {"mountPoint": point}) == {"mountPoint": point}
    assert guard.check("config/delete", {"name": "mine"}) == {"name": "mine"}
    assert guard.check("fscache/clear", {}) == {}
    assert guard.check("rc/noop", {}) == {}


@pytest.mark.parametrize(
    "method",
    [
        "config/dump",
        "config/get",
        "config/show",
        "config/update",
        "config/password",
        "core/command",
        "operations/copyfile",
        "operations/deletefile",
        "sync/copy",
        "options/set",
        "backend/command",
        "mount/point",
        "rc/../config/dump",
    ],
)
def test_calls_that_show_secrets_or_reach_the_sidecar_are_refused(tmp_path, method):
    with pytest.raises(Refused, match="not allowed through the guard") as refused:
        policy(tmp_path).check(method, {"name": "mine"})
    assert refused.value.status == 403


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        (create(backend="local"), "backend 'local' is not offered"),
        (create(backend="alias", remote="/"), "backend 'alias' is not offered"),
        (create(backend="crypt", remote="mine:"), "backend 'crypt' is not offered"),
        (create(**{**DAV, "bearer_token_command": "sh -c id"}), "bearer_token_command"),
        (create(**{**DAV, "url": "http://10.0.0.5/"}), "private"),
        (create(name="../x"), "not a connection name"),
        (create(name="a:b"), "not a connection name"),
        ({**create(), "opt": {"obscure": False, "all": True}}, "'all' is not allowed"),
    ],
)
def test_config_create_takes_only_what_a_user_connection_may_be(tmp_path, params, reason):
    with pytest.raises(Refused) as refused:
        policy(tmp_path).check("config/create", params)
    assert reason in refused.value.message
    assert CANARY not in refused.value.message


@pytest.mark.parametrize(
    "fs",
    [
        "/etc",  # a bare path is rclone's local file system
        ":local:/",
        ":webdav,url='http://127.0.0.1:1':",
        "mine,url='http://127.0.0.1:1':",
        "other:",  # not defined through the guard
        "mine:../../etc",
        "mine:a\nb",
    ],
)
def test_only_this_sessions_connections_are_listed_or_mounted(tmp_path, fs):
    guard = policy(tmp_path)
    with pytest.raises(Refused):
        guard.check("operations/list", {"fs": fs, "remote": "", "opt": {}})
    with pytest.raises(Refused):
        guard.check("mount/mount", {"fs": fs, "mountPoint": str(tmp_path / "mnt" / "x")})


def test_mounts_stay_below_the_mount_root(tmp_path):
    guard = policy(tmp_path)
    (tmp_path / "mnt" / "link").symlink_to("/etc")
    for point in [
        "/etc",
        str(tmp_path / "mnt"),
        str(tmp_path / "mnt" / ".." / "x"),
        str(tmp_path / "mnt-other" / "x"),
        str(tmp_path / "mnt" / "link" / "x"),
        "relative/x",
    ]:
        with pytest.raises(Refused, match="mountPoint"):
            guard.check("mount/unmount", {"mountPoint": point})
    base = {"fs": "mine:", "mountPoint": str(tmp_path / "mnt" / "x")}
    with pytest.raises(Refused, match="'AllowNonEmpty' is not allowed"):
        guard.check("mount/mount", {**base, "mountOpt": {"AllowNonEmpty": True}})
    with pytest.raises(Refused, match="'CacheDir' is not allowed"):
        guard.check("mount/mount", {**base, "vfsOpt": {"CacheDir": "/"}})
    with pytest.raises(Refused, match="'nfsmount' is not allowed"):
        guard.check("mount/mount", {**base, "mountType": "nfsmount"})


def test_a_remote_exists_once_rclone_created_it_and_until_it_is_deleted(tmp_path):
    guard = Policy(str(tmp_path), LOOPBACK)
    listing = {"fs": "mine:", "remote": "", "opt": {}}
    with pytest.raises(Refused, match="not a connection of this session"):
        guard.check("operations/list", listing)
    guard.forwarded("config/create", guard.check("config/create", create()))
    guard.check("operations/list", listing)
    guard.forwarded("config/delete", {"name": "mine"})
    with pytest.raises(Refused):
        guard.check("operations/list", listing)


# -- a real guarded rclone -------------------------------------------------------------------


def _rclone_pids_with(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"rcd" in cmd and marker.encode() in cmd:
                found.append(int(pid))
    return found


class Sidecar:
    """The guard started as the sidecar starts it, with its folders and a client for it."""

    def __init__(
        self,
        tmp_path: Path,
        root: Path | None = None,
        extra_args: tuple[str, ...] = (),
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.shared, self.private = tmp_path / "shared", tmp_path / "private"
        self.root, self.log = root or tmp_path / "mnt", tmp_path / "guard.log"
        self.shared.mkdir()
        self.root.mkdir(parents=True)
        self.socket = self.shared / "rc.sock"
        env = dict(os.environ, RCLONE_RC_USER="datalabs", RCLONE_RC_PASS="rc-secret-for-test")
        env.update(extra_env or {})
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "datalabs_volumes.mount.rcguard",
                    "--listen",
                    str(self.socket),
                    "--mount-root",
                    str(self.root),
                    "--runtime-dir",
                    str(self.private),
                    "--allow-network",
                    "127.0.0.1/32",
                    *extra_args,
                ],
                env=env,
                stdout=log,
                stderr=log,
            )
        self.client = RcClient(self.socket, "datalabs", "rc-secret-for-test")

    async def ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, self.log.read_text()
            try:
                await self.client.call("rc/noop", {}, timeout=2)
                return
            except RcloneError:
                assert time.monotonic() < deadline, self.log.read_text()
                await asyncio.sleep(0.1)

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(timeout=15)


@pytest.mark.slow
async def test_a_guarded_rclone_mounts_a_connection_and_refuses_the_rest(serve, tmp_path):
    server = serve("webdav")
    sidecar = Sidecar(tmp_path)
    client, shared, private, root = sidecar.client, sidecar.shared, sidecar.private, sidecar.root
    socket_path = sidecar.socket
    try:
        await sidecar.ready()
        # rclone's own socket is in the private folder, not where the user's code can reach.
        assert sorted(p.name for p in shared.iterdir()) == ["rc.sock"]
        assert (private / "rc.sock").is_socket()

        wrong = RcClient(socket_path, "datalabs", "guess")
        with pytest.raises(RcloneError) as denied:
            await wrong.call("rc/noop", {})
        assert denied.value.status == 401

        connection = validate(
            {"name": "mine", "backend": "webdav", "options": server.options()}, LOOPBACK
        )
        await client.call("config/create", create(**connection.rclone_parameters()))
        listed = await client.call("operations/list", {"fs": "mine:", "remote": "", "opt": {}})
        assert sorted(e["Name"] for e in listed["list"]) == ["hello.txt", "sub"]
        target = root / "mine"
        await client.call(
            "mount/mount",
            {"fs": "mine:", "mountPoint": str(target), "mountType": "mount2",
             "vfsOpt": {"ReadOnly": True}, "mountOpt": {"AllowOther": os.geteuid() == 0}},
        )  # fmt: skip
        assert is_mount_point(target)
        assert (target / "hello.txt").read_text() == "hello from webdav\n"

        for method, params in [
            ("config/dump", {}),
            ("config/get", {"name": "mine"}),
            ("core/command", {"command": "version"}),
            ("operations/list", {"fs": "/", "remote": "etc", "opt": {}}),
            ("config/create", create(name="root", backend="local")),
            ("mount/mount", {"fs": "mine:", "mountPoint": str(tmp_path / "elsewhere")}),
        ]:
            with pytest.raises(RcloneError) as refused:
                await client.call(method, params)
            assert refused.value.status == 403, (method, refused.value.message)
            assert CANARY not in refused.value.message

        await client.call("mount/unmount", {"mountPoint": str(target)})
        assert not is_mount_point(target) and not target.exists()
        await client.call("config/delete", {"name": "mine"})
        with pytest.raises(RcloneError) as gone:
            await client.call("operations/list", {"fs": "mine:", "remote": "", "opt": {}})
        assert gone.value.status == 404
        assert _rclone_pids_with(str(private))
    finally:
        code = sidecar.stop()
    # Stopping the guard stops its rclone and removes the secrets-holding config.
    assert code == 0, sidecar.log.read_text()
    assert _rclone_pids_with(str(private)) == []
    assert not (private / "rclone.conf").exists()
    assert not socket_path.exists()
    assert CANARY not in sidecar.log.read_text()


@pytest.mark.slow
async def test_the_guard_refuses_the_endpoints_the_spawner_refuses(serve, tmp_path):
    # The session refuses the hub's API (and the operator's refused endpoints) when a
    # connection is saved; the user's code can call the guard without the session, so the
    # sidecar is given the same list (--refuse-endpoint) and refuses them too, even inside an
    # allowed network. Before, the guard had only --allow-network and let them through.
    hub_api, storage = serve("webdav"), serve("webdav")
    sidecar = Sidecar(tmp_path, extra_args=("--refuse-endpoint", f"127.0.0.1:{hub_api.port}"))
    try:
        await sidecar.ready()
        params = {**hub_api.options(), "pass": "x"}
        with pytest.raises(RcloneError) as refused:
            await sidecar.client.call("config/create", create(**params))
        assert refused.value.status == 403, refused.value.message
        assert "reserved for the platform" in refused.value.message
        # another port of the same allowed address is the user's storage, and passes
        connection = validate(
            {"name": "mine", "backend": "webdav", "options": storage.options()}, LOOPBACK
        )
        await sidecar.client.call("config/create", create(**connection.rclone_parameters()))
        listed = await sidecar.client.call(
            "operations/list", {"fs": "mine:", "remote": "", "opt": {}}
        )
        assert "hello.txt" in [e["Name"] for e in listed["list"]]
    finally:
        sidecar.stop()


@pytest.mark.slow
async def test_the_guard_exits_when_its_rclone_dies_so_kubernetes_restarts_it(tmp_path):
    sidecar = Sidecar(tmp_path)
    try:
        await sidecar.ready()
        [rcd] = _rclone_pids_with(str(sidecar.private))
        os.kill(rcd, 9)
        code = await asyncio.to_thread(sidecar.process.wait, 15)
    finally:
        if sidecar.process.poll() is None:
            sidecar.stop()
    assert code != 0
    assert "rclone rcd exited with code -9" in sidecar.log.read_text()
    assert not sidecar.socket.exists()


@pytest.mark.root
@pytest.mark.slow
async def test_a_stopped_sidecar_leaves_nothing_bound_in_the_shared_folder(tmp_path):
    # In a pod the shared folder is Bidirectional: a bind left there at the end outlives the
    # sidecar in the node's emptyDir, which the kubelet then cannot remove.
    if os.geteuid() != 0:
        pytest.fail("this test bind-mounts: run it as root (CI does)")
    archive = tmp_path / "archive"
    write(archive, "rosetta/psa/readme.txt", "PSA\n")
    port, token = free_port(), "t" * 32
    sidecar = Sidecar(
        tmp_path,
        extra_args=("--archive-root", str(archive), "--hub-listen", f"127.0.0.1:{port}"),
        extra_env={"DATALABS_HUB_BIND_TOKEN": token},
    )
    target = sidecar.root / "psa"
    try:
        await sidecar.ready()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/datalabs/v1/bind",
            json.dumps({"folder": "psa", "source": "rosetta/psa"}).encode(),
            {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
        assert is_mount_point(target)
        assert sidecar.stop() == 0
        assert not is_mount_point(target)
        assert (archive / "rosetta/psa/readme.txt").read_text() == "PSA\n"
    finally:
        if sidecar.process.poll() is None:
            sidecar.stop()
        if is_mount_point(target):
            subprocess.run(["umount", "-l", str(target)], check=False)
