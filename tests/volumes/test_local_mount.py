"""LocalMounter's read-only bind mounts against a user who swaps folders for links (real mounts;
root, as CI runs).

The user owns ``data/`` and, while their session runs, can replace ``data/<folder>`` with a
symbolic link at any moment, e.g. between the hub's check and its mount. Each test plays that
race at a fixed point of ``LocalMounter.attach`` (a hook on the real calls), so it is
deterministic; the mounts themselves are real.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from datalabs_volumes.mount import local
from datalabs_volumes.mount.local import LocalMounter, MountError, is_mount_point, mounts_under


def require_root():
    # Bind mounts need root; CI runs as root. Fail, never skip.
    assert os.geteuid() == 0, "these tests need root (bind mounts); run them as CI does"


@pytest.fixture
def folders(tmp_path):
    """An archive volume, a host folder the user must never cover, and a workspace's data/."""
    archive = tmp_path / "archive" / "psa"
    archive.mkdir(parents=True)
    (archive / "a.txt").write_text("volume")
    host = tmp_path / "host"
    host.mkdir()
    (host / "host.txt").write_text("host")
    data = tmp_path / "ws" / "data"
    data.mkdir(parents=True)
    yield {"archive": archive, "host": host, "data": data}
    for point in mounts_under(tmp_path):
        subprocess.run(["umount", "-l", str(point)], check=False)


def swap_for_link(target: Path, link_to: Path) -> None:
    """What the user does: move the folder away (if there is one yet) and put a link to a host
    folder in its place."""
    if target.exists():
        target.rename(target.with_name("moved"))
    target.symlink_to(link_to)


async def test_a_link_swapped_in_after_the_check_is_not_followed(folders, monkeypatch):
    require_root()
    target = folders["data"] / "psa"
    real_run = local.run_command

    async def run_and_race(*argv, **kw):
        result = await real_run(*argv, **kw)
        # After the pre-checks, while the read-only staging mount is made.
        if argv[:2] == ("mount", "-o") and not target.is_symlink():
            swap_for_link(target, folders["host"])
        return result

    monkeypatch.setattr(local, "run_command", run_and_race)
    with pytest.raises(MountError, match="psa in the session's folder is a symbolic link"):
        await LocalMounter("auto").attach(folders["archive"], target)
    assert mounts_under(folders["host"]) == []
    assert sorted(p.name for p in folders["host"].iterdir()) == ["host.txt"]
    assert not is_mount_point(folders["data"] / "moved")


async def test_a_folder_swapped_after_it_was_opened_is_never_mounted_through_the_link(
    folders, monkeypatch
):
    require_root()
    target = folders["data"] / "psa"
    real_open = local.open_mount_point

    def open_and_race(path):
        fd = real_open(path)
        swap_for_link(path, folders["host"])
        return fd

    monkeypatch.setattr(local, "open_mount_point", open_and_race)
    with pytest.raises(MountError, match="psa in the session's folder was moved"):
        await LocalMounter("auto").attach(folders["archive"], target)
    assert mounts_under(folders["host"]) == []
    assert mounts_under(folders["data"]) == []


async def test_the_mount_lands_on_the_opened_folder_whatever_its_path_became(folders):
    # bind_onto_descriptor itself: the folder opened, then renamed and replaced by a link.
    require_root()
    target = folders["data"] / "psa"
    fd = local.open_mount_point(target)
    try:
        swap_for_link(target, folders["host"])
        local.bind_onto_descriptor(folders["archive"], fd)
    finally:
        os.close(fd)
    assert mounts_under(folders["host"]) == []
    assert is_mount_point(folders["data"] / "moved")
    assert (folders["data"] / "moved" / "a.txt").read_text() == "volume"


async def test_a_plain_attach_is_read_only_and_detach_removes_it(folders):
    require_root()
    target = folders["data"] / "psa"
    mounted = await LocalMounter("bind").attach(folders["archive"], target)
    assert mounted.method == "bind" and is_mount_point(target)
    assert (target / "a.txt").read_text() == "volume"
    with pytest.raises(OSError, match="Read-only file system"):
        (target / "new.txt").write_text("x")
    await LocalMounter("bind").detach(target)
    assert not target.exists() and mounts_under(folders["data"]) == []


async def test_staging_folders_of_a_dead_process_are_swept_and_a_live_ones_kept(folders, tmp_path):
    """What a hub killed between the two mount steps leaves (a staging folder with the volume
    bound in it) is unmounted and removed; a live hub's staging folder, and anything not made
    by the mounter, stay."""
    require_root()
    staging = tmp_path / "tmp"
    staging.mkdir()
    dead = subprocess.Popen(["sleep", "60"])
    started = local.process_start(dead.pid)
    assert started is not None
    dead.kill()
    dead.wait()
    left = staging / f"{local.STAGE_PREFIX}{dead.pid}.{started}-x1"
    left.mkdir()
    subprocess.run(["mount", "--bind", str(folders["archive"]), str(left)], check=True)
    live = staging / f"{local.STAGE_PREFIX}{local._me()}-x2"
    live.mkdir()
    link = staging / f"{local.STAGE_PREFIX}{dead.pid}.{started}-x3"
    link.symlink_to(folders["host"])
    # Another account names a folder of its own like a dead hub's staging folder.
    planted = staging / f"{local.STAGE_PREFIX}{dead.pid}.{started}-x4"
    planted.mkdir()
    os.chown(planted, 65534, 65534)

    assert await local.sweep_stages(staging) == [left]
    assert not left.exists() and mounts_under(staging) == []
    assert live.is_dir() and link.is_symlink() and (folders["host"] / "host.txt").exists()
    assert planted.is_dir()
