"""A session told by its environment that an rclone sidecar is there (as DatalabsKubeSpawner
tells it on Kubernetes) uses the sidecar's guarded socket for connections, never its own
rclone; and the user's own code, which can read the same password file and reach the same
socket, gets only what the guard allows. A real guard and a real rclone, started as the
sidecar starts them, on a local unix socket (tests/volumes/test_rcguard.py's ``Sidecar``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from datalabs_volumes import contract
from datalabs_volumes.mount.local import is_mount_point
from datalabs_volumes.mount.rclone import RcClient, RcloneError
from datalabs_volumes.mount.sidecar import SidecarDaemon, SidecarRclone
from datalabs_volumes.session import StorageError
from jupyterlab_ext.storage import DatalabsStorage
from tests.servers import CANARY
from tests.volumes.test_rcguard import Sidecar, _rclone_pids_with

pytestmark = pytest.mark.slow


def rclone_children() -> list[int]:
    """``rclone rcd`` processes this test process started itself (the sidecar's rclone is the
    guard's child, not ours)."""
    mine = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and b"\x00rcd\x00" in cmd:
            mine.append(int(pid))
    return mine


@pytest.fixture
def pod_env(tmp_path, monkeypatch):
    """The session's environment and Secret files as the spawner makes them in a pod."""
    home = tmp_path / "home"
    shared = home / "data" / "remote_storage"
    secrets = tmp_path / "run-datalabs-secrets"
    secrets.mkdir()
    key = Fernet.generate_key().decode()
    (secrets / "credentials-key").write_text(key)
    (secrets / "rc-password").write_text("rc-secret-for-test")
    for name in ("JUPYTERHUB_API_URL", contract.BROKER_URL, contract.CREDENTIALS_KEY):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(contract.CREDENTIALS_KEY_FILE, str(secrets / "credentials-key"))
    monkeypatch.setenv(contract.RCLONE_RC_PASSWORD_FILE, str(secrets / "rc-password"))
    monkeypatch.setenv(contract.CONNECTIONS_DIR, str(shared))
    monkeypatch.setenv(contract.ALLOWED_NETWORKS, json.dumps(["127.0.0.1/32"]))
    monkeypatch.setenv(contract.STANDALONE_GROUPS, "[]")
    return home, shared, key


async def test_the_session_uses_the_sidecar_and_its_guard_refuses_the_rest(
    serve, tmp_path, pod_env, monkeypatch
):
    home, shared, key = pod_env
    server = serve("webdav")
    sidecar = Sidecar(tmp_path, root=shared)
    monkeypatch.setenv(contract.RCLONE_SOCKET, str(sidecar.socket))
    session = None
    try:
        await sidecar.ready()
        session = DatalabsStorage().build(str(home))
        assert isinstance(session.rclone, SidecarRclone)
        # the key was read from the Secret's file, and its path is gone from the environment
        assert session.store is not None and contract.CREDENTIALS_KEY_FILE not in os.environ

        doc = {"name": "mine", "backend": "webdav", "options": server.options()}
        created = await session.create_connection(doc)  # tested through the sidecar
        assert created["mount"] == "data/remote_storage/mine"
        attached = await session.attach_connection("mine")
        assert attached["attached"] is True and attached["health"]["state"] == "ok"
        target = shared / "mine"
        assert is_mount_point(target)
        assert (target / "hello.txt").read_text() == "hello from webdav\n"
        # the sidecar's rclone did it: the session started no rclone of its own
        assert rclone_children() == []
        assert isinstance(session.rclone.daemon, SidecarDaemon)
        assert len(_rclone_pids_with(str(sidecar.private))) == 1

        # the user's own code: same socket, same password (it can read the file too)
        users_code = RcClient(sidecar.socket, "datalabs", "rc-secret-for-test")
        (tmp_path / "sidecar-secret.txt").write_text(CANARY)
        for method, params in [
            ("core/command", {"command": "version"}),
            ("config/dump", {}),
            ("config/get", {"name": "mine"}),
            # a remote onto the sidecar's own file system, or onto another path
            ("config/create", {"name": "root", "type": "local", "parameters": {}}),
            ("config/create", {"name": "up", "type": "alias", "parameters": {"remote": "/"}}),
            # copy the sidecar's own files into the user's mount
            (
                "operations/copyfile",
                {
                    "srcFs": "/",
                    "srcRemote": str(tmp_path / "sidecar-secret.txt")[1:],
                    "dstFs": "mine:",
                    "dstRemote": "stolen.txt",
                },
            ),
            ("operations/list", {"fs": "/", "remote": "etc", "opt": {}}),
            ("mount/mount", {"fs": "mine:", "mountPoint": str(tmp_path / "elsewhere")}),
            ("mount/mount", {"fs": ":local:/", "mountPoint": str(shared / "root")}),
        ]:
            with pytest.raises(RcloneError) as refused:
                await users_code.call(method, params)
            assert refused.value.status == 403, (method, refused.value.message)
            assert CANARY not in refused.value.message
        assert not (server.files / "stolen.txt").exists()
        assert not (tmp_path / "elsewhere").exists() and not (shared / "root").exists()

        await session.detach_connection("mine")
        assert not is_mount_point(target) and not target.exists()
    finally:
        if session is not None:
            await session.close()
        sidecar.stop()
    assert not _rclone_pids_with(str(sidecar.private))


async def test_a_wrong_rc_password_is_an_error_naming_the_sidecar(tmp_path, pod_env, monkeypatch):
    home, shared, _ = pod_env
    sidecar = Sidecar(tmp_path, root=shared)
    monkeypatch.setenv(contract.RCLONE_SOCKET, str(sidecar.socket))
    Path(os.environ[contract.RCLONE_RC_PASSWORD_FILE]).write_text("not-the-password")
    try:
        await sidecar.ready()
        session = DatalabsStorage().build(str(home))
        with pytest.raises(RcloneError) as err:
            await session.rclone.start()
        assert err.value.status == 503 and "sidecar" in err.value.message
        await session.close()
    finally:
        sidecar.stop()


async def test_a_missing_password_file_disables_connections_with_a_reason(
    tmp_path, pod_env, monkeypatch, caplog
):
    home, _, _ = pod_env
    monkeypatch.setenv(contract.RCLONE_SOCKET, str(tmp_path / "no-such.sock"))
    monkeypatch.setenv(contract.RCLONE_RC_PASSWORD_FILE, str(tmp_path / "no-such-file"))
    session = DatalabsStorage().build(str(home))
    assert session.store is None  # connections answer with the reason, no local rclone
    assert "rclone sidecar is unusable" in caplog.text and "no-such-file" in caplog.text
    with pytest.raises(StorageError) as err:
        await session.connections()
    assert err.value.status == 503
    await session.close()
