"""Fixtures shared by the whole suite.

- ``hub_user(name, groups)``: a JupyterHub ``User`` backed by an in-memory hub database, with
  its groups, for building spawners outside a running hub.
- ``serve(kind, password=CANARY)``: a real ``rclone serve <kind>`` (webdav, ftp, sftp, s3) on
  127.0.0.1 serving a ``hello.txt`` and a ``sub/data.csv``; stopped at the end of the test.
  Its password is the canary secret of ``tests/servers.py`` unless told otherwise.
- ``accounts``: the account prefix for sandboxed sessions (``dltest-``); every system account
  with that prefix made during the test (by ``useradd``, with the Datalabs comment) is removed
  after it.
"""

from __future__ import annotations

import contextlib
import pwd
import subprocess
from collections.abc import Iterator

import pytest
from jupyterhub import orm
from jupyterhub.objects import Hub
from jupyterhub.user import User

from tests.servers import CANARY, rclone_serve


@pytest.fixture
def hub_db():
    db = orm.new_session_factory("sqlite:///:memory:")()
    yield db
    db.close()


@pytest.fixture
def hub_user(hub_db):
    def make(name: str, groups=()) -> User:
        orm_user = orm.User(name=name)
        hub_db.add(orm_user)
        for g in groups:
            group = hub_db.query(orm.Group).filter_by(name=g).first() or orm.Group(name=g)
            hub_db.add(group)
            orm_user.groups.append(group)
        hub_db.commit()
        return User(orm_user, {"hub": Hub()})

    return make


@pytest.fixture
def serve(tmp_path):
    with contextlib.ExitStack() as stack:
        count = 0

        def start(kind: str, password: str = CANARY):
            nonlocal count
            count += 1
            root = tmp_path / f"served-{kind}-{count}"
            files = root / "bucket" if kind == "s3" else root
            (files / "sub").mkdir(parents=True)
            (files / "hello.txt").write_text(f"hello from {kind}\n")
            (files / "sub" / "data.csv").write_text("a,b\n1,2\n")
            return stack.enter_context(
                rclone_serve(kind, root, tmp_path / f"serve-state-{count}", password)
            )

        yield start


@contextlib.contextmanager
def made_accounts(prefix: str) -> Iterator[str]:
    """Yields ``prefix``, the account prefix of a sandboxed hub; the accounts made with it
    meanwhile (by ``useradd``, with the Datalabs comment) are removed afterwards. Tests that
    may run beside others on one machine take a prefix of their own."""
    before = {p.pw_name for p in pwd.getpwall()}
    try:
        yield prefix
    finally:
        for p in pwd.getpwall():
            if (
                p.pw_name not in before
                and p.pw_name.startswith(prefix)
                and p.pw_gecos.startswith("Datalabs ")
            ):
                subprocess.run(["userdel", p.pw_name], check=False, capture_output=True)


@pytest.fixture
def accounts():
    with made_accounts("dltest-") as prefix:
        yield prefix
