"""The hub reads a sandboxed user's connections file itself (as root), from a workspace the
user owns: never through a link, never a FIFO, only a regular file of their account."""

from __future__ import annotations

import os

import pytest

from datalabs_spawner.connections import read_store
from datalabs_spawner.sandbox import Account
from datalabs_volumes.access import AccessError

pytestmark = pytest.mark.root

ACCOUNT = Account("dl-alice", 54321, 54321)


@pytest.fixture
def workspace(tmp_path):
    ws = tmp_path / "alice"
    (ws / ".datalabs").mkdir(parents=True)
    return ws


def own(path, account=ACCOUNT):
    os.chown(path, account.uid, account.gid, follow_symlinks=False)


def test_her_own_file_is_read_and_a_missing_one_is_empty(workspace):
    assert os.geteuid() == 0, "chown needs root"
    assert read_store(workspace, ACCOUNT) == b""
    store = workspace / ".datalabs" / "connections.json"
    store.write_bytes(b'{"version": 1}')
    own(store)
    assert read_store(workspace, ACCOUNT) == b'{"version": 1}'


def test_a_link_a_fifo_or_a_file_of_someone_else_is_refused(workspace, tmp_path):
    assert os.geteuid() == 0, "chown needs root"
    elsewhere = tmp_path / "bob-connections.json"
    elsewhere.write_bytes(b'{"version": 1}')
    own(elsewhere)
    store = workspace / ".datalabs" / "connections.json"
    store.symlink_to(elsewhere)
    with pytest.raises(AccessError, match="not a link") as e:
        read_store(workspace, ACCOUNT)
    assert e.value.status == 400
    store.unlink()
    (workspace / ".datalabs").rmdir()
    (workspace / ".datalabs").symlink_to(tmp_path)  # a link to a folder holding a store
    (tmp_path / "connections.json").write_bytes(b"{}")
    own(tmp_path / "connections.json")
    with pytest.raises(AccessError, match="not a link"):
        read_store(workspace, ACCOUNT)
    (workspace / ".datalabs").unlink()
    (workspace / ".datalabs").mkdir()
    os.mkfifo(store)  # opening it must not wait for a writer
    own(store)
    with pytest.raises(AccessError, match="not a file of your account"):
        read_store(workspace, ACCOUNT)
    store.unlink()
    store.write_bytes(b"{}")
    own(store, Account("dl-bob", 54322, 54322))
    with pytest.raises(AccessError, match="not a file of your account"):
        read_store(workspace, ACCOUNT)
