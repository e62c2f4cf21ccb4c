"""The unprivileged session sandbox: account names and the bubblewrap command line (pure), then
real sessions of DatalabsLocalSpawner run in real bubblewrap as real system accounts (root).

The single-user command of the real sessions is a probe: a small Python program that, from
inside the sandbox, does what a curious user would (who am I, which processes can I see, can I
read the hub's state or another workspace) and writes what it found into its workspace.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tornado import web

from datalabs_spawner.examples import install_examples
from datalabs_spawner.sandbox import (
    Account,
    AccountError,
    SandboxSpec,
    account_comment,
    account_name,
    bwrap_argv,
    check_account,
    useradd_argv,
    validate_prefix,
)
from datalabs_spawner.spawner import DatalabsLocalSpawner
from datalabs_volumes.credentials import new_master_key, user_key
from datalabs_volumes.mount.local import LocalMounter, mounts_under
from jupyterlab_ext.storage import read_key
from tests.helpers import datalab_yaml, volume_yaml, write

# -- account names (pure) --------------------------------------------------------------------


def test_a_plain_hub_name_becomes_prefix_and_name():
    assert account_name("alice", "dl-") == "dl-alice"
    assert account_name("bob-2", "dl-") == "dl-bob-2"
    assert account_name("x_y", "jupyter-") == "jupyter-x_y"


def test_names_useradd_refuses_become_slug_and_hash():
    assert account_name("Alice", "dl-") == "dl-alice--3bc5106297"
    assert account_name("a.b@x.org", "dl-") == "dl-a-b-x-org--76b246c433"
    assert account_name("x--y", "dl-") == "dl-x-y--6484a281af"
    long = account_name("a" * 40, "dl-")
    assert long == "dl-aaaaaaaaaaaaaaaaa--e33cdf9c7f" and len(long) == 32


def test_distinct_hub_names_get_distinct_accounts():
    # Names that a lossy mapping would fold together: case, punctuation, the "--" marker.
    names = [
        "alice",
        "Alice",
        "ALICE",
        "a.lice",
        "a-lice",
        "a_lice",
        "alice--x",
        "alice-x",
        "ü",
        "u",
    ]
    accounts = [account_name(n, "dl-") for n in names]
    assert len(set(accounts)) == len(names)
    for a in accounts:
        assert len(a) <= 32 and a.startswith("dl-")


def test_a_bad_prefix_or_empty_name_is_refused_clearly():
    for prefix in ("", "Dl-", "1dl-", "dl--", "dl/", "a" * 17):
        with pytest.raises(ValueError, match="account_prefix"):
            validate_prefix(prefix)
    with pytest.raises(AccountError, match="empty hub user name"):
        account_name("", "dl-")


def test_the_spawner_refuses_a_bad_prefix_at_configuration():
    with pytest.raises(Exception, match="account_prefix 'Root' must start with a lower-case"):
        DatalabsLocalSpawner(account_prefix="Root")


def _passwd(name, uid, gecos):
    return pwd.struct_passwd((name, "x", uid, uid, gecos, "/w", "/bin/bash"))


def test_an_existing_account_is_used_only_if_made_for_that_hub_user():
    ok = check_account(_passwd("dl-alice", 1234, account_comment("alice")), "alice")
    assert ok == Account("dl-alice", 1234, 1234)
    with pytest.raises(AccountError, match="not made by Datalabs for hub user 'alice'"):
        check_account(_passwd("dl-alice", 1234, "Alice Smith"), "alice")
    with pytest.raises(AccountError, match="not made by Datalabs for hub user 'Alice'"):
        check_account(_passwd("dl-alice", 1234, account_comment("alice")), "Alice")
    with pytest.raises(AccountError, match="never run as root"):
        check_account(_passwd("dl-root", 0, account_comment("root")), "root")


def test_useradd_command():
    assert useradd_argv("dl-alice", "alice", "/srv/ws/alice") == [
        "useradd",
        "--no-create-home",
        "--home-dir",
        "/srv/ws/alice",
        "--shell",
        "/bin/bash",
        "--user-group",
        "--comment",
        "Datalabs alice",
        "dl-alice",
    ]


# -- the bubblewrap command line (pure) --------------------------------------------------------


def test_bwrap_argv_shows_only_what_is_listed_and_drops_to_the_account():
    spec = SandboxSpec(
        account=Account("dl-alice", 1001, 1002),
        workspace="/srv/state/workspaces/alice",
        read_only=("/root/.pyenv/versions/3.11.7", "/usr/lib/python3/dist-packages", "/srv/cat"),
        system=("/usr", "/etc", "/bin", "/lib64"),
        links=(("/bin", "usr/bin"),),
    )
    assert bwrap_argv(spec, ["python3", "-m", "jupyterhub.singleuser", "--port=9"]) == [
        "bwrap",
        "--die-with-parent",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--ro-bind-try", "/usr", "/usr",
        "--ro-bind-try", "/etc", "/etc",
        "--ro-bind-try", "/lib64", "/lib64",
        "--symlink", "usr/bin", "/bin",
        "--proc", "/proc",
        "--dev", "/dev",
        "--perms", "1777", "--tmpfs", "/tmp",
        "--perms", "1777", "--tmpfs", "/dev/shm",
        # Parents bubblewrap would make root-only are made 0755; /usr's content is not.
        "--perms", "0755", "--dir", "/root",
        "--perms", "0755", "--dir", "/root/.pyenv",
        "--perms", "0755", "--dir", "/root/.pyenv/versions",
        "--ro-bind", "/root/.pyenv/versions/3.11.7", "/root/.pyenv/versions/3.11.7",
        "--perms", "0755", "--dir", "/srv",
        "--ro-bind", "/srv/cat", "/srv/cat",
        "--perms", "0755", "--dir", "/srv/state",
        "--perms", "0755", "--dir", "/srv/state/workspaces",
        "--bind", "/srv/state/workspaces/alice", "/srv/state/workspaces/alice",
        "--chdir", "/srv/state/workspaces/alice",
        "--",
        "setpriv",
        "--reuid=1001",
        "--regid=1002",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
        "python3", "-m", "jupyterhub.singleuser", "--port=9",
    ]  # fmt: skip


def test_bwrap_argv_makes_parents_under_the_private_tmp():
    spec = SandboxSpec(Account("dl-a", 5, 5), "/tmp/hub/ws/a", system=("/usr",))
    argv = bwrap_argv(spec, ["true"])
    tail = argv[argv.index("/dev/shm") + 1 : argv.index("--chdir")]
    assert tail == [
        "--perms", "0755", "--dir", "/tmp/hub",
        "--perms", "0755", "--dir", "/tmp/hub/ws",
        "--bind", "/tmp/hub/ws/a", "/tmp/hub/ws/a",
    ]  # fmt: skip


# -- what the hub, as root, does in a workspace the user controls --------------------------------


def test_examples_are_never_copied_through_a_link_the_user_made(tmp_path):
    source = tmp_path / "notebooks" / "lab"
    (source / "sub").mkdir(parents=True)
    (source / "a.ipynb").write_text("{}")
    (source / "sub" / "b.ipynb").write_text("{}")
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    ws = tmp_path / "ws"
    (ws / "examples").mkdir(parents=True)
    (ws / "examples" / "lab").symlink_to(elsewhere)
    assert install_examples(source, ws / "examples" / "lab", ws) == []
    assert list(elsewhere.iterdir()) == []
    # A link deeper down only stops what lies below it.
    (ws / "examples" / "lab").unlink()
    (ws / "examples" / "lab").mkdir()
    (ws / "examples" / "lab" / "sub").symlink_to(elsewhere)
    assert install_examples(source, ws / "examples" / "lab", ws) == [ws / "examples/lab/a.ipynb"]
    assert list(elsewhere.iterdir()) == []


def test_the_server_reads_its_key_from_the_pipe_once(monkeypatch):
    read_end, write_end = os.pipe()
    os.write(write_end, b"the-key\n")
    os.close(write_end)
    monkeypatch.setenv("DATALABS_CREDENTIALS_KEY_FD", str(read_end))
    monkeypatch.delenv("DATALABS_CREDENTIALS_KEY", raising=False)
    assert read_key() == "the-key"
    assert "DATALABS_CREDENTIALS_KEY_FD" not in os.environ
    with pytest.raises(OSError):
        os.fstat(read_end)  # closed: nothing the server starts later inherits it


# -- real sessions in real bubblewrap (root) ---------------------------------------------------

PROBE = r"""
import errno, json, os, sys, time
ws = os.getcwd()
canaries = json.loads(sys.argv[1])

def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]

def report(name, out):
    with open(name + ".tmp", "w") as f:
        json.dump(out, f)
    os.rename(name + ".tmp", name)

out = {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups()}
lines = open("/proc/self/status").read().splitlines()
status = dict(line.split(":\t", 1) for line in lines if ":\t" in line)
out["no_new_privs"] = status["NoNewPrivs"].strip()
out["cap_eff"] = status["CapEff"].strip()
out["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
out["environ_has_key"] = canaries["key"].encode() in open("/proc/self/environ", "rb").read()
fd = os.environ.get("DATALABS_CREDENTIALS_KEY_FD")
out["key_from_fd"] = os.read(int(fd), 4096).decode().strip() if fd else None
out["read"] = {p: attempt(lambda p=p: open(p).read()) for p in canaries["unreadable"]}
out["list"] = {p: attempt(lambda p=p: os.listdir(p)) for p in canaries["unlistable"]}
out["write_workspace"] = attempt(lambda: open(os.path.join(ws, "mine.txt"), "w").write("x"))
out["write_tmp"] = attempt(lambda: open("/tmp/mine.txt", "w").write("x"))
out["volume"] = open("data/psa/README.txt").read()
out["write_volume"] = attempt(lambda: open("data/psa/new.txt", "w").write("x"))
report("probe.json", out)
# Hot attach: wait (bounded) for the hub to attach "spice" into this running sandbox.
deadline = time.monotonic() + 60
while not os.path.exists("data/spice/README.txt") and time.monotonic() < deadline:
    time.sleep(0.05)
report("attached.json", {
    "volume": attempt(lambda: open("data/spice/README.txt").read()),
    "write": attempt(lambda: open("data/spice/new.txt", "w").write("x")),
})
deadline = time.monotonic() + 60
while os.path.exists("data/spice/README.txt") and time.monotonic() < deadline:
    time.sleep(0.05)
report("detached.json", {"gone": not os.path.exists("data/spice/README.txt")})
time.sleep(600)
"""


def require_root():
    # Accounts, bind mounts and the sandbox need root; CI runs as root. Fail, never skip.
    assert os.geteuid() == 0, "these tests need root (accounts, mounts); run them as CI does"


@pytest.fixture
def layout(tmp_path):
    """An archive, a hub state folder with secrets, bob's workspace and a canary in /root."""
    archive = tmp_path / "archive"
    for vid in ("psa", "spice", "secret"):
        (archive / vid).mkdir(parents=True)
        (archive / vid / "README.txt").write_text(f"{vid} data\n")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "jupyterhub_cookie_secret").write_text(secrets.token_hex(32))
    (state / "credentials.key").write_text(new_master_key())
    bob = state / "workspaces" / "bob"
    bob.mkdir(parents=True, mode=0o700)
    (bob / "notes.txt").write_text("bob's notes\n")
    cat = tmp_path / "catalogue"
    write(cat, "m/datalabs/lab.yaml", datalab_yaml("Lab", "default_volumes: [psa]\n"))
    for vid in ("psa", "spice"):
        write(cat, f"m/volumes/{vid}.yaml", volume_yaml(vid))
    root_canary = Path("/root") / f"datalabs-canary-{secrets.token_hex(4)}"
    root_canary.write_text("root's\n")
    yield {"archive": archive, "state": state, "catalogue": cat, "root_canary": root_canary}
    root_canary.unlink()
    # Never leave a mount behind, whatever a failing test (or a broken spawner) made.
    for point in mounts_under(tmp_path):
        subprocess.run(["umount", "-l", str(point)], check=False)


def wait_for(path: Path, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return json.loads(path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear in {timeout} s")


def processes_of(uid: int, timeout: float = 10) -> list[str]:
    """The account's processes, once there are none or ``timeout`` has passed (bubblewrap's
    PID namespace ends with a SIGKILL to each process, which the kernel delivers as it can)."""
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(["pgrep", "-u", str(uid)], capture_output=True, text=True).stdout
        if not out.split() or time.monotonic() > deadline:
            return out.split()
        time.sleep(0.05)


async def test_a_sandboxed_session_sees_only_its_workspace_and_volumes(hub_user, layout, accounts):
    require_root()
    state, archive = layout["state"], layout["archive"]
    master = new_master_key()
    key = user_key(master, "alice")
    canaries = {
        "key": key,
        "unreadable": [
            str(state / "jupyterhub_cookie_secret"),
            str(state / "credentials.key"),
            str(state / "workspaces" / "bob" / "notes.txt"),
            str(archive / "secret" / "README.txt"),
            str(layout["root_canary"]),
            "/etc/shadow",
        ],
        "unlistable": [str(archive), str(state / "workspaces" / "bob"), "/home", "/var"],
    }
    user = hub_user("alice")
    spawner = user._new_spawner(
        "",
        spawner_class=DatalabsLocalSpawner,
        cmd=[sys.executable, "-c", PROBE, json.dumps(canaries)],
        sandbox=True,
        account_prefix=accounts,
        catalogue_dirs=[str(layout["catalogue"])],
        catalogue_refresh_seconds=0,
        workspace_root=str(state / "workspaces"),
        volume_root=str(archive),
        credentials_master_key=master,
        interrupt_timeout=1,
        term_timeout=1,
        kill_timeout=1,
    )
    spawner.user_options = {"profile": "lab", "volumes": ["psa"]}
    ws = state / "workspaces" / "alice"
    await spawner.start()
    account = pwd.getpwnam(accounts + "alice")
    try:
        assert account.pw_gecos == "Datalabs alice"
        st = ws.stat()
        assert (st.st_uid, st.st_mode & 0o777) == (account.pw_uid, 0o700)
        assert (ws / "data").stat().st_uid == account.pw_uid

        found = wait_for(ws / "probe.json")
        assert (found["uid"], found["euid"], found["gid"]) == (
            account.pw_uid,
            account.pw_uid,
            account.pw_gid,
        )
        assert found["uid"] != 0 and found["groups"] in ([], [account.pw_gid])
        assert found["no_new_privs"] == "1" and int(found["cap_eff"], 16) == 0
        # Its own PID namespace: bubblewrap's init, the probe, nothing else on the machine.
        assert len(found["pids"]) <= 3, found["pids"]
        # The key came through the pipe, and is not in the process's environment.
        assert found["key_from_fd"] == key
        assert found["environ_has_key"] is False
        assert set(found["read"].values()) <= {"ENOENT", "EACCES"}, found["read"]
        assert set(found["list"].values()) <= {"ENOENT", "EACCES"}, found["list"]
        assert found["write_workspace"] == "ok" and (ws / "mine.txt").stat().st_uid == (
            account.pw_uid
        )
        assert found["write_tmp"] == "ok"
        assert not Path("/tmp/mine.txt").exists() or Path("/tmp/mine.txt").stat().st_uid != (
            account.pw_uid
        )  # /tmp inside is private
        assert found["volume"] == "psa data\n" and found["write_volume"] == "EROFS"

        # Hot attach from the hub's side (what the broker will do): a read-only bind made on
        # the host under the session's data/ appears inside the running sandbox, read-only,
        # and its detach disappears from it.
        mounter = LocalMounter("bind")
        await mounter.attach(archive / "spice", ws / "data" / "spice")
        attached = wait_for(ws / "attached.json")
        assert attached == {"volume": "ok", "write": "EROFS"}
        await mounter.detach(ws / "data" / "spice")
        assert wait_for(ws / "detached.json") == {"gone": True}
    finally:
        await spawner.stop()
    # Nothing of the session outlives it: no process of the account, no mount.
    assert processes_of(account.pw_uid) == []
    assert mounts_under(state) == []


async def test_stopping_a_sandboxed_session_interrupts_its_server_first(hub_user, layout, accounts):
    # bubblewrap forwards no signal: without care, its server would be SIGKILLed and never
    # shut its kernels down.
    require_root()
    state = layout["state"]
    spawner = hub_user("alice")._new_spawner(
        "",
        spawner_class=DatalabsLocalSpawner,
        cmd=[
            sys.executable,
            "-c",
            "import os, signal, sys, time\n"
            "def stop(n, f):\n"
            "    open('stopped-by.txt', 'w').write(str(n))\n"
            "    sys.exit(0)\n"
            "signal.signal(signal.SIGINT, stop)\n"
            "open('ready.txt', 'w').close()\n"
            "time.sleep(600)",
        ],
        sandbox=True,
        account_prefix=accounts,
        catalogue_dirs=[str(layout["catalogue"])],
        workspace_root=str(state / "workspaces"),
        volume_root=str(layout["archive"]),
        interrupt_timeout=20,
        term_timeout=1,
        kill_timeout=1,
    )
    spawner.user_options = {"profile": "lab", "volumes": ["psa"]}
    ws = state / "workspaces" / "alice"
    await spawner.start()
    try:
        deadline = time.monotonic() + 60
        while not (ws / "ready.txt").exists():
            assert time.monotonic() < deadline, "the sandboxed command never started"
            time.sleep(0.05)
    finally:
        await spawner.stop()
    assert (ws / "stopped-by.txt").read_text() == str(int(signal.SIGINT))
    assert await spawner.poll() is not None
    assert mounts_under(state) == []


async def test_a_link_the_user_left_in_data_is_never_mounted_over(hub_user, layout, accounts):
    require_root()
    state = layout["state"]
    elsewhere = state.parent / "elsewhere"
    elsewhere.mkdir()
    ws = state / "workspaces" / "alice"
    (ws / "data").mkdir(parents=True)
    (ws / "data" / "psa").symlink_to(elsewhere)
    spawner = hub_user("alice")._new_spawner(
        "",
        spawner_class=DatalabsLocalSpawner,
        cmd=[sys.executable, "-c", "import time; time.sleep(600)"],
        sandbox=True,
        account_prefix=accounts,
        catalogue_dirs=[str(layout["catalogue"])],
        workspace_root=str(state / "workspaces"),
        volume_root=str(layout["archive"]),
    )
    spawner.user_options = {"profile": "lab", "volumes": ["psa"]}
    try:
        with pytest.raises(web.HTTPError) as refused:
            await spawner.start()
    finally:
        await spawner.stop()  # if it did start after all
    assert "Volume 'psa' could not be attached: psa in the session's folder is a symbolic link" in (
        refused.value.jupyterhub_message
    )
    assert mounts_under(elsewhere) == [] and mounts_under(state) == []
    assert list(elsewhere.iterdir()) == []


async def test_two_users_get_two_accounts_and_cannot_read_each_other(hub_user, layout, accounts):
    require_root()
    state = layout["state"]
    started = []
    for name in ("alice", "bob"):
        spawner = hub_user(name)._new_spawner(
            "",
            spawner_class=DatalabsLocalSpawner,
            cmd=[
                sys.executable,
                "-c",
                "import json,os,sys,time\n"
                "o=sys.argv[1]\n"
                "try: r=os.listdir(o)\n"
                "except OSError as e: r=e.strerror\n"
                "json.dump({'uid':os.getuid(),'other':r},open('who.json.tmp','w'))\n"
                "os.rename('who.json.tmp','who.json'); time.sleep(600)",
                str(state / "workspaces" / ("bob" if name == "alice" else "alice")),
            ],
            sandbox=True,
            account_prefix=accounts,
            catalogue_dirs=[str(layout["catalogue"])],
            workspace_root=str(state / "workspaces"),
            volume_root=str(layout["archive"]),
            interrupt_timeout=1,
            term_timeout=1,
            kill_timeout=1,
        )
        spawner.user_options = {"profile": "lab", "volumes": []}
        started.append(spawner)
        await spawner.start()
    try:
        alice = wait_for(state / "workspaces" / "alice" / "who.json")
        bob = wait_for(state / "workspaces" / "bob" / "who.json")
        assert alice["uid"] == pwd.getpwnam(accounts + "alice").pw_uid
        assert bob["uid"] == pwd.getpwnam(accounts + "bob").pw_uid != alice["uid"]
        assert alice["other"] == bob["other"] == "No such file or directory"
    finally:
        for spawner in started:
            await spawner.stop()
    assert mounts_under(state) == []


def test_the_run_slots_are_shown_read_only_at_a_fixed_path_not_their_own():
    # Bound at its host path (/var/lib/datalabs/run-slots by default), the folder would make
    # /var appear in the sandbox; at a fixed path under /run only the slots themselves show.
    from datalabs_spawner.sandbox import RUN_SLOTS_INSIDE, Account, SandboxSpec, bwrap_argv

    account = Account("dl-alice", 1234, 1234)
    spec = SandboxSpec(account, "/srv/ws/alice", run_slots="/var/lib/datalabs/run-slots")
    argv = bwrap_argv(spec, ["true"])
    i = argv.index("/var/lib/datalabs/run-slots")
    assert argv[i - 1 : i + 2] == ["--ro-bind", "/var/lib/datalabs/run-slots", RUN_SLOTS_INSIDE]
    assert not any(a.startswith("/var") for a in argv if a != "/var/lib/datalabs/run-slots")


#: Runs ``datalabs-pipeline run greedy.cwl`` in the sandbox and reports the run as the store has it.
OOM_PROBE = r"""
import json, os, subprocess, sys
from datalabs_pipelines.runs import RunStore
home = os.path.join(os.getcwd(), "pipeline-runs")
env = dict(os.environ, DATALABS_PIPELINES_HOME=home)
cli = [sys.executable, "-c", "import sys, datalabs_pipelines.cli as c; sys.exit(c.main())"]
done = subprocess.run([*cli, "run", "--quiet", "greedy.cwl", "--mib", "1024"], env=env)
run = RunStore(os.path.join(home, "runs.db")).list(limit=1)[0]
steps = RunStore(os.path.join(home, "runs.db")).steps(run.id)
report = {"code": done.returncode, "state": run.state, "reason": run.exit_reason,
          "steps": {s.name: [s.state, s.message] for s in steps}}
with open("oom.json.tmp", "w") as f:
    json.dump(report, f)
os.rename("oom.json.tmp", "oom.json")
import time; time.sleep(600)
"""


async def test_a_sandboxed_sessions_runs_get_the_memory_limit_in_a_delegated_cgroup(
    hub_user, layout, accounts
):
    """An unprivileged session cannot make cgroups under the machine's: the hub delegates one
    to its account (holding pipeline_runs_per_user runs' worth) and shows it in the sandbox."""
    require_root()
    memory_root = Path("/sys/fs/cgroup/memory")
    assert (memory_root / "cgroup.procs").exists(), "needs the cgroup v1 memory controller"
    parent = memory_root / f"datalabs-test-{secrets.token_hex(4)}"
    state = layout["state"]
    ws = state / "workspaces" / "alice"
    data = Path(__file__).resolve().parents[1] / "pipelines" / "data"
    spawner = hub_user("alice")._new_spawner(
        "",
        spawner_class=DatalabsLocalSpawner,
        cmd=[sys.executable, "-c", OOM_PROBE],
        sandbox=True,
        account_prefix=accounts,
        catalogue_dirs=[str(layout["catalogue"])],
        workspace_root=str(state / "workspaces"),
        volume_root=str(layout["archive"]),
        pipeline_memory_limit=256 * 2**20,
        pipeline_memory_cgroup=str(parent),
        pipeline_runs_per_user=2,
        pipeline_runs_machine=0,
        interrupt_timeout=1,
        term_timeout=1,
        kill_timeout=1,
    )
    spawner.user_options = {"profile": "lab", "volumes": []}
    ws.mkdir(parents=True, mode=0o700)
    for name in ("greedy.cwl", "echo.cwl"):
        (ws / name).write_text((data / name).read_text())
    await spawner.start()
    account = pwd.getpwnam(accounts + "alice")
    delegated = parent / account.pw_name
    try:
        found = wait_for(ws / "oom.json", timeout=120)
        assert found["state"] == "failed" and found["code"] != 0, found
        assert found["reason"].startswith(
            "killed: out of memory: step 'greedy' needed more than the 256 MiB"
        ), found
        assert found["steps"]["greedy"] == [
            "failed",
            "killed: out of memory (over the run's 256 MiB)",
        ]
        # The account's cgroup: its own, limited to two runs' worth, which it cannot raise.
        assert delegated.stat().st_uid == account.pw_uid
        assert (delegated / "memory.limit_in_bytes").read_text().strip() == str(512 * 2**20)
        assert (delegated / "memory.limit_in_bytes").stat().st_uid == 0
        assert [p.name for p in delegated.iterdir() if p.is_dir()] == []  # the run's is gone
    finally:
        await spawner.stop()
        if delegated.exists():
            for child in delegated.iterdir():
                if child.is_dir():
                    child.rmdir()
            delegated.rmdir()
        if parent.exists():
            parent.rmdir()


def test_the_delegated_memory_cgroup_is_bound_writable_at_a_fixed_path():
    from datalabs_spawner.sandbox import MEMORY_CGROUP_INSIDE

    account = Account("dl-alice", 1234, 1234)
    host = "/sys/fs/cgroup/memory/datalabs/dl-alice"
    argv = bwrap_argv(SandboxSpec(account, "/srv/ws/alice", memory_cgroup=host), ["true"])
    i = argv.index(host)
    assert argv[i - 1 : i + 2] == ["--bind", host, MEMORY_CGROUP_INSIDE]
    assert host not in bwrap_argv(SandboxSpec(account, "/srv/ws/alice"), ["true"])
