"""Fixtures for the storage engine tests (``serve`` is in ``tests/conftest.py``).

- ``engine``: a ``SessionRclone`` (one ``rclone rcd``) in a temporary runtime folder; closed at
  the end of the test, which must leave no mount and no rclone process behind.
"""

from __future__ import annotations

import pytest

from datalabs_volumes.egress import NetworkPolicy
from datalabs_volumes.mount.local import mounts_under
from datalabs_volumes.mount.rclone import SessionRclone


@pytest.fixture
async def engine(tmp_path):
    session = SessionRclone(
        tmp_path / "rclone-runtime",
        watch_interval=0.2,
        # The test servers listen on 127.0.0.1, which the default policy refuses.
        network_policy=NetworkPolicy.from_strings(["127.0.0.1/32"]),
    )
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
