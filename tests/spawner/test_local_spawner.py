"""DatalabsLocalSpawner on this machine: real bind mounts (as root), real rclone FUSE mounts.

The single-user command is a stand-in process here (a sleep) because these tests are about what
the spawner does around it; tests/e2e starts real hubs and real JupyterLab servers.
"""

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tornado import web

from datalabs_spawner.spawner import DatalabsLocalSpawner, process_start
from datalabs_volumes.mount.local import LocalMounter, is_mount_point, mounts_under
from tests.helpers import datalab_yaml, volume_yaml, write

SLEEP = [sys.executable, "-c", "import time; time.sleep(120)"]


@pytest.fixture
def archive(tmp_path):
    root = tmp_path / "archive"
    for vid in ("psa", "spice", "secret"):
        (root / vid).mkdir(parents=True)
        (root / vid / "README.txt").write_text(f"{vid} data\n")
    return root


@pytest.fixture
def catalogue_dir(tmp_path):
    cat = tmp_path / "catalogue"
    write(cat, "m/datalabs/lab.yaml", datalab_yaml("Lab", "default_volumes: [psa]\n"))
    for vid in ("psa", "spice"):
        write(cat, f"m/volumes/{vid}.yaml", volume_yaml(vid))
    write(cat, "m/volumes/secret.yaml", volume_yaml("secret", extra="access: {groups: [team]}\n"))
    write(cat, "m/volumes/gone.yaml", volume_yaml("gone"))
    write(
        cat, "m/volumes/nfs.yaml", "id: nfs\ntitle: N\nsource: {type: nfs, server: s, path: /p}\n"
    )
    return cat


@pytest.fixture
def make_spawner(hub_user, tmp_path, archive, catalogue_dir):
    made = []

    def make(name="alice", groups=(), user=None, **kw):
        # user: another spawner's user, as a restarted hub makes a new spawner for it
        user = user or hub_user(name, groups)
        kw.setdefault("cmd", SLEEP)
        kw.setdefault("pipeline_run_slots_dir", str(tmp_path / "run-slots"))
        spawner = user._new_spawner(
            "",
            spawner_class=DatalabsLocalSpawner,
            catalogue_dirs=[str(catalogue_dir)],
            catalogue_refresh_seconds=0,
            workspace_root=str(tmp_path / "workspaces"),
            volume_root=str(archive),
            interrupt_timeout=1,
            term_timeout=1,
            kill_timeout=1,
            **kw,
        )
        made.append(spawner)
        return spawner

    yield make
    for spawner in made:
        # Never leave mounts behind, whatever a test did.
        for point in mounts_under(Path(spawner.workspace_root)):
            os.system(f"umount -l '{point}'")


def require_root():
    # Bind mounts need root; CI runs as root. Fail loudly rather than skip.
    assert os.geteuid() == 0, "these tests need root (bind mounts); run them as CI does"


async def events_of(spawner):
    return [e["message"] async for e in spawner._datalabs_progress()]


async def test_start_mounts_chosen_volumes_read_only_and_stop_unmounts(make_spawner):
    require_root()
    spawner = make_spawner()
    spawner.user_options = {"profile": "lab", "volumes": ["psa", "spice"]}
    await spawner.start()
    try:
        data = Path(spawner.workspace) / "data"
        for vid in ("psa", "spice"):
            assert is_mount_point(data / vid)
            assert (data / vid / "README.txt").read_text() == f"{vid} data\n"
            with pytest.raises(OSError, match="Read-only file system"):
                (data / vid / "new.txt").write_text("x")
        assert await spawner.poll() is None
        env = spawner.get_env()
        assert json.loads(env["DATALABS_VOLUMES"]) == [
            {
                "id": "psa",
                "title": "Volume psa",
                "mission": "m",
                "version": None,
                "path": str(data / "psa"),
                "read_only": True,
            },
            {
                "id": "spice",
                "title": "Volume spice",
                "mission": "m",
                "version": None,
                "path": str(data / "spice"),
                "read_only": True,
            },
        ]
        assert env["HOME"] == str(spawner.workspace) == env["JUPYTERHUB_ROOT_DIR"]
        assert "--allow-root" in spawner.get_args()
        messages = await events_of(spawner)
        assert "Attached volume psa at data/psa (read-only, bind mount)" in messages
        assert "Attached volume spice at data/spice (read-only, bind mount)" in messages
    finally:
        await spawner.stop()
    assert mounts_under(Path(spawner.workspace)) == []
    assert not (Path(spawner.workspace) / "data" / "psa").exists()
    # The archive itself is untouched
    assert (Path(spawner.volume_root) / "psa" / "README.txt").exists()


async def test_forbidden_volume_is_refused_before_anything_starts(make_spawner):
    spawner = make_spawner("bob")
    spawner.user_options = {"profile": "lab", "volumes": ["psa", "secret"]}
    with pytest.raises(web.HTTPError) as err:
        await spawner.start()
    assert err.value.status_code == 403
    assert "Volume 'secret' does not exist or you may not read it." in str(err.value)
    assert spawner.proc is None
    root = Path(spawner.workspace_root)
    assert not root.exists() or mounts_under(root) == []


async def test_group_member_may_mount_the_restricted_volume(make_spawner):
    require_root()
    spawner = make_spawner("alice", groups=["team"])
    spawner.user_options = {"volumes": ["secret"]}
    await spawner.start()
    try:
        assert (Path(spawner.workspace) / "data" / "secret" / "README.txt").exists()
    finally:
        await spawner.stop()


async def test_missing_source_fails_clearly_and_leaves_nothing_mounted(make_spawner):
    require_root()
    spawner = make_spawner()
    spawner.user_options = {"volumes": ["psa", "gone"]}
    with pytest.raises(web.HTTPError) as err:
        await spawner.start()
    message = str(err.value)
    assert "Volume 'gone' could not be attached" in message
    assert "does not exist" in message and "No volume was left attached" in message
    assert mounts_under(Path(spawner.workspace)) == []
    assert spawner.proc is None


async def test_nfs_volume_is_refused_by_the_local_spawner(make_spawner):
    spawner = make_spawner()
    spawner.user_options = {"volumes": ["nfs"]}
    with pytest.raises(web.HTTPError) as err:
        await spawner.start()
    assert err.value.status_code == 400
    assert "Volume 'nfs' has a nfs source" in str(err.value)
    assert 'value="nfs"' not in spawner._render_datalabs_form()


async def test_stale_mounts_are_cleaned_at_start(make_spawner, archive):
    require_root()
    spawner = make_spawner()
    stale = Path(spawner.workspace) / "data" / "old"
    stale.mkdir(parents=True)
    assert os.system(f"mount --bind '{archive / 'spice'}' '{stale}'") == 0
    spawner.user_options = {"volumes": ["psa"]}
    await spawner.start()
    try:
        assert not is_mount_point(stale) and not stale.exists()
        assert is_mount_point(Path(spawner.workspace) / "data" / "psa")
    finally:
        await spawner.stop()


async def test_symlink_escaping_the_archive_is_refused(make_spawner, archive, tmp_path):
    require_root()
    outside = tmp_path / "outside"
    outside.mkdir()
    (archive / "spice").rename(archive / "spice-real")
    (archive / "spice").symlink_to(outside)
    spawner = make_spawner()
    spawner.user_options = {"volumes": ["spice"]}
    with pytest.raises(web.HTTPError, match="outside the archive root"):
        await spawner.start()
    assert mounts_under(Path(spawner.workspace)) == []


async def test_rclone_fallback_mounts_read_only(make_spawner):
    spawner = make_spawner(mount_method="rclone")
    spawner.user_options = {"volumes": ["psa"]}
    await spawner.start()
    try:
        target = Path(spawner.workspace) / "data" / "psa"
        assert is_mount_point(target)
        assert (target / "README.txt").read_text() == "psa data\n"
        with pytest.raises(OSError):
            (target / "new.txt").write_text("x")
        assert "Attached volume psa at data/psa (read-only, rclone mount)" in await events_of(
            spawner
        )
    finally:
        await spawner.stop()
    assert mounts_under(Path(spawner.workspace)) == []


async def test_progress_streams_each_volume_while_start_runs(make_spawner):
    require_root()
    spawner = make_spawner()
    spawner.user_options = {"volumes": ["psa", "spice"]}
    starting = asyncio.ensure_future(spawner.start())
    await asyncio.sleep(0)  # let start() begin, as JupyterHub does before asking for progress
    events = [e async for e in spawner.progress()]
    await starting
    try:
        messages = [e["message"] for e in events]
        assert messages == [
            "Attaching volume psa (1/2)",
            "Attached volume psa at data/psa (read-only, bind mount)",
            "Attaching volume spice (2/2)",
            "Attached volume spice at data/spice (read-only, bind mount)",
            "Starting Lab",
        ]
        progress = [e["progress"] for e in events]
        assert progress == sorted(progress) and progress[-1] == 80
    finally:
        await spawner.stop()


def test_a_broken_catalogue_file_is_logged_and_the_rest_is_served(
    make_spawner, catalogue_dir, caplog
):
    spawner = make_spawner()
    write(catalogue_dir, "m/volumes/broken.yaml", "id: broken\ntitle: [oops\n")
    with caplog.at_level("WARNING"):
        html = spawner._render_datalabs_form()
    assert any(
        "m/volumes/broken.yaml: (yaml): not valid YAML" in r.getMessage() for r in caplog.records
    )
    assert 'value="psa"' in html and 'value="spice"' in html


async def test_the_session_learns_what_hot_attach_and_connections_need(make_spawner):
    from datalabs_volumes.credentials import CredentialStore, new_master_key

    master = new_master_key()
    alice = make_spawner(
        "alice",
        ("staff",),
        credentials_master_key=master,
        connection_allowed_networks=["127.0.0.1/32"],
        group_volume_access={"staff": ["psa"]},
    )
    bob = make_spawner("bob", credentials_master_key=master)
    env = alice.storage_env()
    assert json.loads(env["DATALABS_CATALOGUE_DIRS"]) == alice.catalogue_dirs
    assert env["DATALABS_ARCHIVE_ROOT"] == alice.volume_root
    # One key per user: bob's key does not open alice's connections.
    assert env["DATALABS_CREDENTIALS_KEY"] != bob.storage_env()["DATALABS_CREDENTIALS_KEY"]
    CredentialStore("/nonexistent/c.json", env["DATALABS_CREDENTIALS_KEY"])  # a valid key
    alice.user_options = {"profile": "lab", "volumes": []}
    choice = alice.resolve_user_options()
    venv = alice.volume_env(choice, {})
    # Access is the broker's to decide: the session is told no groups and no grants (its
    # environment is the user's to change), and the operator's grant holds at the broker.
    assert not {"DATALABS_USER_GROUPS", "DATALABS_GRANTED_VOLUMES"} & {*venv, *env}
    assert alice.authorize_volume("psa").id == "psa"
    assert json.loads(venv["DATALABS_ALLOWED_NETWORKS"]) == ["127.0.0.1/32"]
    # Runs are kept where the file browser can open their outputs.
    assert venv["DATALABS_PIPELINES_HOME"] == "~/pipeline-runs"
    # Without a master key, connections are off and no key is handed out.
    assert "DATALABS_CREDENTIALS_KEY" not in make_spawner("carol").storage_env()


@pytest.mark.parametrize(
    ("vid", "status", "words"),
    [
        ("secret", 403, "Volume 'secret' does not exist or you may not read it."),
        ("no-such", 403, "Volume 'no-such' does not exist or you may not read it."),
        ("nfs", 400, "Volume 'nfs' has a nfs source, which this hub's spawner cannot attach."),
    ],
)
def test_spawn_and_the_broker_refuse_a_volume_in_the_same_words(make_spawner, vid, status, words):
    from datalabs_volumes.access import AccessError

    bob = make_spawner("bob")
    bob.user_options = {"profile": "lab", "volumes": [vid]}
    with pytest.raises(web.HTTPError) as at_spawn:
        bob.resolve_user_options()
    with pytest.raises(AccessError) as at_broker:
        bob.authorize_volume(vid)
    assert (at_spawn.value.status_code, at_spawn.value.jupyterhub_message) == (status, words)
    assert (at_broker.value.status, at_broker.value.message) == (status, words)
    assert [v.id for v in bob.readable_volumes()] == ["gone", "psa", "spice"]


async def test_the_broker_attaches_only_into_a_running_session(make_spawner):
    from datalabs_volumes.access import AccessError

    alice = make_spawner("alice", groups=["team"])
    with pytest.raises(AccessError) as err:
        await alice.hot_attach(alice.authorize_volume("secret"))
    assert err.value.status == 409 and "Start your session" in err.value.message
    assert not (alice.data_dir / "secret").exists()


async def test_the_session_is_told_the_pipeline_run_limits(make_spawner, tmp_path):
    from traitlets import TraitError

    env = make_spawner("alice", pipeline_runs_per_user=1, pipeline_runs_machine=3).get_env()
    assert env["DATALABS_PIPELINES_MAX_RUNS"] == "1"
    assert env["DATALABS_PIPELINES_MACHINE_RUNS"] == "3"
    slots = Path(env["DATALABS_PIPELINES_SLOTS_DIR"])
    assert slots == tmp_path / "run-slots"
    assert sorted(p.name for p in slots.iterdir()) == ["slot-0", "slot-1", "slot-2"]
    # By default: two runs per user, and as many on the machine as it has cores.
    env = make_spawner("bob").get_env()
    assert env["DATALABS_PIPELINES_MAX_RUNS"] == "2"
    assert env["DATALABS_PIPELINES_MACHINE_RUNS"] == str(len(os.sched_getaffinity(0)))
    assert "DATALABS_PIPELINES_MACHINE_RUNS" not in (
        make_spawner("carol", pipeline_runs_machine=0).get_env()
    )
    with pytest.raises(TraitError, match="pipeline_runs_per_user must be at least 1"):
        make_spawner("dave", pipeline_runs_per_user=0)
    # The workspace quota travels the same way (none by default).
    assert "DATALABS_WORKSPACE_QUOTA_BYTES" not in env
    quota = make_spawner("erin", workspace_quota_bytes=5 * 2**30).get_env()
    assert quota["DATALABS_WORKSPACE_QUOTA_BYTES"] == str(5 * 2**30)
    with pytest.raises(TraitError, match="workspace_quota_bytes must be 0"):
        make_spawner("fay", workspace_quota_bytes=-1)
    # So does the memory limit of one run, with the cgroup its runs' cgroups go under.
    assert "DATALABS_PIPELINES_MEMORY_LIMIT" not in env
    memory = make_spawner("gus", pipeline_memory_limit=2**30).get_env()
    assert memory["DATALABS_PIPELINES_MEMORY_LIMIT"] == str(2**30)
    assert memory["DATALABS_PIPELINES_CGROUP"] == "/sys/fs/cgroup/memory/datalabs"
    with pytest.raises(TraitError, match="at least 128 MiB"):
        make_spawner("hal", pipeline_memory_limit=2**20)


async def test_a_server_that_dies_while_starting_leaves_no_mount(make_spawner):
    """The hub checks poll() and calls stop() only for a live process: poll() must clean up."""
    require_root()
    crash = [sys.executable, "-c", "import sys; sys.exit(3)"]
    spawner = make_spawner(cmd=crash)
    spawner.user_options = {"profile": "lab", "volumes": ["psa", "spice"]}
    await spawner.start()
    workspace = Path(spawner.workspace)
    deadline = asyncio.get_running_loop().time() + 30
    while (status := await spawner.poll()) is None:
        assert asyncio.get_running_loop().time() < deadline, "the crashing server never exited"
        await asyncio.sleep(0.05)
    assert status == 3
    assert mounts_under(workspace) == []
    assert not (workspace / "data" / "psa").exists()


async def test_a_restarted_hub_finds_the_session_from_its_state_never_a_reused_pid(make_spawner):
    """What a restarted hub does: a new spawner, load_state() of what the database holds."""
    require_root()
    first = make_spawner()
    first.user_options = {"profile": "lab", "volumes": ["psa"]}
    await first.start()
    data = Path(first.workspace) / "data"
    try:
        # Stored as soon as the process started, not only once start() returned to the hub.
        stored = dict(first.orm_spawner.state)
        assert stored == {"pid": first.pid, "pid_started": process_start(first.pid)}

        again = make_spawner(user=first.user)
        again.load_state(stored)
        assert await again.poll() is None
        assert is_mount_point(data / "psa")
        await again.stop()
        assert process_start(first.pid) is None
        assert mounts_under(data) == []
    finally:
        await first.stop()

    # A pid the kernel has since given to another process (started at another time) is not
    # the session: shown stopped, and never signalled.
    other = subprocess.Popen(SLEEP)
    try:
        stranger = make_spawner(user=first.user)
        stranger.load_state({"pid": other.pid, "pid_started": process_start(other.pid) - 1})
        assert await stranger.poll() == 0
        await stranger.stop(now=True)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


async def test_poll_cleans_the_mounts_of_a_start_the_hub_never_finished(make_spawner, archive):
    """A hub killed while it mounted left a volume mounted and no pid: the restarted hub's
    poll() says stopped and unmounts it (JupyterHub calls stop() only for a live process)."""
    require_root()
    spawner = make_spawner()
    data = Path(spawner.workspace) / "data"
    await LocalMounter("bind").attach(archive / "psa", data / "psa")
    spawner.load_state({})
    assert await spawner.poll() == 0
    assert mounts_under(data) == []


def test_process_start_tells_a_running_process_from_an_ended_one(tmp_path):
    assert isinstance(process_start(os.getpid()), int)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 30
        # Not reaped yet: a zombie, which kill(pid, 0) still finds.
        while process_start(child.pid) is not None:
            assert time.monotonic() < deadline, "the child never ended"
            time.sleep(0.01)
        os.kill(child.pid, 0)
    finally:
        child.wait()
    assert process_start(child.pid) is None
