"""Fixtures for the storage engine tests.

- ``serve(kind, password=CANARY)``: a real ``rclone serve <kind>`` (webdav, ftp, sftp, s3) on
  127.0.0.1 with a ``hello.txt`` and a ``sub/`` folder; stopped at the end of the test.
- ``engine``: a ``SessionRclone`` (one ``rclone rcd``) in a temporary runtime folder; closed at
  the end of the test, which must leave no mount and no rclone process behind.
"""

from __future__ import annotations

import contextlib

import pytest

from datalabs_volumes.mount.local import mounts_under
from datalabs_volumes.mount.rclone import SessionRclone
from tests.servers import CANARY, rclone_serve


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


@pytest.fixture
async def engine(tmp_path):
    session = SessionRclone(tmp_path / "rclone-runtime", watch_interval=0.2)
    try:
        yield session
    finally:
        pid = session.daemon.pid
        await session.close()
        assert not session.daemon.alive
        assert mounts_under(tmp_path) == [], "a mount was left behind"
        if pid:
            with pytest.raises(ProcessLookupError):
                import os

                os.kill(pid, 0)
