"""The embedded hub with ``DatalabsLocalSpawner.sandbox = True``: alice's server starts as her own
system account in bubblewrap, JupyterLab answers through the proxy, and a real kernel (Jupyter's
kernel protocol) finds no root, no hub secret, no other workspace, and her volume read-only."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import subprocess
import time
from pathlib import Path

import pytest

from datalabs_volumes.credentials import user_key
from datalabs_volumes.mount.local import mounts_under
from tests.e2e.hubprocess import running_hub, start_sessions
from tests.helpers import kernel_client

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.root]

CSV = "ra,dec,magnitude,name\n10.68,41.27,3.4,M31\n148.97,69.68,12.1,faint\n"

PROBE = """
import errno, json, os
def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
secrets = json.loads(SECRETS)
out = {"uid": os.getuid(), "euid": os.geteuid()}
pids = [p for p in os.listdir("/proc") if p.isdigit()]
out["commands"] = []
out["key_in_an_environ"] = False
for p in pids:
    try:
        cmdline = open(f"/proc/{p}/cmdline", "rb").read()
        out["commands"].append(cmdline.replace(b"\\0", b" ").decode())
        if secrets["key"].encode() in open(f"/proc/{p}/environ", "rb").read():
            out["key_in_an_environ"] = True
    except OSError:
        pass
out["key_in_env"] = any(secrets["key"] in v for v in os.environ.values())
out["read"] = {p: attempt(lambda p=p: open(p, "rb").read()) for p in secrets["files"]}
def listing(p):
    try:
        return sorted(os.listdir(p))
    except OSError as e:
        return errno.errorcode[e.errno]
out["list"] = {p: listing(p) for p in secrets["folders"]}
out["volume"] = sorted(os.listdir("data/psa-rosetta"))
out["write_volume"] = attempt(lambda: open("data/psa-rosetta/x.txt", "w").write("x"))
out["write_home"] = attempt(lambda: open("mine.txt", "w").write("x"))
print("RESULT" + json.dumps(out))
"""


@contextlib.contextmanager
def kernel(hub, workspace: Path, user: str = "alice", timeout: float = 120):
    """A real kernel in ``user``'s session, through the Jupyter kernel protocol; yields a
    function that runs code in it and returns what it printed. Shut down at the end."""
    r = hub.server(user, "POST", "api/kernels", json={"name": "python3"})
    assert r.status_code == 201, r.text
    kid = r.json()["id"]
    connection = workspace / ".local" / "share" / "jupyter" / "runtime" / f"kernel-{kid}.json"
    try:
        with kernel_client(connection, timeout) as execute:
            yield execute
    finally:
        hub.server(user, "DELETE", f"api/kernels/{kid}")


FOLDER_PROBE = """
import errno, json, os
args = json.loads(args)
folder = os.path.join("data", args["name"])
def attempt(fn):
    try:
        return fn()
    except OSError as e:
        return errno.errorcode[e.errno]
def write():
    with open(os.path.join(folder, "written-in-the-kernel.txt"), "w") as f:
        f.write("x")
    return "ok"
def read():
    with open(os.path.join(folder, args["read"])) as f:
        return f.read()
print("RESULT" + json.dumps({
    "data": sorted(os.listdir("data")),
    "listing": attempt(lambda: sorted(os.listdir(folder))),
    "read": attempt(read) if args["read"] else None,
    "write": attempt(write),
}))
"""


def folder_probe(execute, name: str, read: str | None = None) -> dict:
    """What a kernel sees of ``data/<name>``: the names in ``data/``, the folder's listing, the
    text of its file ``read`` (if named) and whether it may write there; errors as errno names."""
    args = json.dumps({"name": name, "read": read})
    return json.loads(execute(f"args = {args!r}\n" + FOLDER_PROBE).split("RESULT", 1)[1])


def run_in_kernel(hub, workspace, code: str, timeout: float = 120) -> str:
    with kernel(hub, workspace, "alice", timeout) as execute:
        return execute(code)


def test_alices_sandboxed_kernel_runs_as_her_and_sees_no_secret(
    tmp_path_factory, demo_archive, accounts
):
    assert os.geteuid() == 0, "this test needs root (accounts, mounts); run it as CI does"
    state = tmp_path_factory.mktemp("sandbox-hub-state")
    bob = state / "workspaces" / "bob"
    bob.mkdir(parents=True, mode=0o700)
    (bob / "notes.txt").write_text("bob's notes\n")
    canary = Path("/root") / f"datalabs-canary-{os.getpid()}"
    args = [
        "--DatalabsLocalSpawner.sandbox=True",
        f"--DatalabsLocalSpawner.account_prefix={accounts}",
    ]
    canary.write_text("root's own\n")
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(canary.unlink, missing_ok=True)
        hub = cleanup.enter_context(running_hub(state, demo_archive, args))
        r = hub.api(
            "POST",
            "users/alice/server",
            json={"profile": "planetary-lab", "volumes": ["psa-rosetta"]},
        )
        assert r.status_code in (201, 202), r.text
        try:
            hub.wait_ready("alice")
            workspace = state / "workspaces" / "alice"
            account = pwd.getpwnam(accounts + "alice")
            # JupyterLab answers through the proxy.
            r = hub.server("alice", "GET", "lab")
            assert r.status_code == 200 and "JupyterLab" in r.text
            # The connection key reached the server (through its pipe): connections work.
            r = hub.server("alice", "GET", "datalabs/api/connections")
            assert r.status_code == 200, r.text
            key = user_key((state / "credentials.key").read_text().strip(), "alice")
            secrets = {
                "key": key,
                "files": [
                    str(state / "jupyterhub.sqlite"),
                    str(state / "jupyterhub_cookie_secret"),
                    str(state / "credentials.key"),
                    str(bob / "notes.txt"),
                    str(next((demo_archive / "rosetta-restricted").iterdir())),
                    str(canary),
                ],
                "folders": [str(state), str(bob), str(demo_archive), "/root"],
            }
            out = run_in_kernel(
                hub, workspace, f"SECRETS = {json.dumps(json.dumps(secrets))}\n" + PROBE
            )
            found = json.loads(out.split("RESULT", 1)[1])
            assert found["uid"] == found["euid"] == account.pw_uid != 0
            # Only the session's own processes: bubblewrap, the server, the kernel.
            assert not [c for c in found["commands"] if "jupyterhub -f" in c]
            assert not [c for c in found["commands"] if "configurable-http-proxy" in c]
            assert len(found["commands"]) <= 4, found["commands"]
            assert found["key_in_env"] is False and found["key_in_an_environ"] is False
            assert set(found["read"].values()) <= {"ENOENT", "EACCES"}, found["read"]
            # The state folder exists inside only as the path to her workspace; /root at most
            # as the path to the Python environment the server runs from.
            assert found["list"][str(state)] == ["workspaces"]
            assert found["list"][str(bob)] == found["list"][str(demo_archive)] == "ENOENT"
            assert canary.name not in found["list"]["/root"]
            expected = sorted(p.name for p in (demo_archive / "psa-rosetta").iterdir())
            assert found["volume"] == expected
            assert found["write_volume"] == "EROFS"
            assert found["write_home"] == "ok"
            assert (workspace / "mine.txt").stat().st_uid == account.pw_uid

            # A pipeline run (real cwltool) runs inside the sandbox too, as her account.
            r = hub.server(
                "alice",
                "PUT",
                "api/contents/sources.csv",
                json={"type": "file", "format": "text", "content": CSV},
            )
            assert r.status_code in (200, 201), r.text
            r = hub.server(
                "alice",
                "POST",
                "datalabs/api/runs",
                json={
                    "pipeline": "esasky/bright-sources",
                    "inputs": {"catalogue": "sources.csv", "magnitude_limit": 5.0},
                },
            )
            assert r.status_code == 201, r.text
            run_id = r.json()["id"]
            deadline = time.monotonic() + 180
            while True:
                run = hub.server("alice", "GET", f"datalabs/api/runs/{run_id}").json()
                if run["state"] not in ("queued", "running"):
                    break
                assert time.monotonic() < deadline, f"run still {run['state']} after 180 s"
                time.sleep(0.2)
            assert run["state"] == "success", run
            output = Path(run["outputs"]["sources"]["path"])
            assert output.is_relative_to(workspace)
            assert output.stat().st_uid == account.pw_uid
        finally:
            hub.stop_server("alice")
        # Nothing of the session outlives it: no process of her account (the kernel included).
        deadline = time.monotonic() + 10
        left = ["?"]
        while left and time.monotonic() < deadline:
            left = subprocess.run(
                ["pgrep", "-u", str(account.pw_uid)], capture_output=True, text=True
            ).stdout.split()
            time.sleep(0.05)
        assert left == []
    assert mounts_under(state) == []


def test_the_broker_attaches_into_running_sandboxes_read_only_and_only_what_is_allowed(
    tmp_path_factory, demo_archive, accounts
):
    """alice hot-attaches psa-rosetta through her sandboxed session's API (the session asks
    the broker, which mounts on the host): her running kernel then reads it and cannot write
    it, and detach makes it disappear inside. bob's sandboxed session is refused
    rosetta-restricted, and nothing appears in his data/."""
    assert os.geteuid() == 0, "this test needs root (accounts, mounts); run it as CI does"
    state = tmp_path_factory.mktemp("sandbox-broker-state")
    args = [
        "--DatalabsLocalSpawner.sandbox=True",
        f"--DatalabsLocalSpawner.account_prefix={accounts}",
    ]
    expected = sorted(p.name for p in (demo_archive / "psa-rosetta").iterdir())
    with contextlib.ExitStack() as cleanup:
        hub = start_sessions(cleanup, state, demo_archive, args)
        alice = state / "workspaces" / "alice"
        bob = state / "workspaces" / "bob"

        with kernel(hub, alice, "alice") as execute:
            before = folder_probe(execute, "psa-rosetta")
            assert "psa-rosetta" not in before["data"]
            log_before = hub.log.stat().st_size
            r = hub.server("alice", "POST", "datalabs/api/volumes/psa-rosetta/attach", json={})
            assert r.status_code == 200, r.text
            # The session reads its own (the sandbox's) mount table: the mount is there.
            assert r.json()["mounted"] is True, r.text
            with open(hub.log, "rb") as f:
                f.seek(log_before)
                assert b"Broker: attached psa-rosetta for alice" in f.read()
            # The kernel, started before the attach, reads the volume and cannot write it.
            attached = folder_probe(execute, "psa-rosetta")
            assert attached["listing"] == expected
            assert attached["write"] == "EROFS"
            assert not (demo_archive / "psa-rosetta" / "written-in-the-kernel.txt").exists()

            r = hub.server("alice", "POST", "datalabs/api/volumes/psa-rosetta/detach", json={})
            assert r.status_code == 200 and r.json()["mounted"] is False, r.text
            detached = folder_probe(execute, "psa-rosetta")
            assert "psa-rosetta" not in detached["data"]
            assert detached["listing"] == "ENOENT"
        assert mounts_under(alice / "data") == [alice / "data"]  # only data/'s own self-bind

        r = hub.server("bob", "POST", "datalabs/api/volumes/rosetta-restricted/attach", json={})
        assert r.status_code == 403, r.text
        assert r.json()["message"] == (
            "Volume 'rosetta-restricted' does not exist or you may not read it."
        )
        assert mounts_under(bob / "data") == [bob / "data"]
        assert not (bob / "data" / "rosetta-restricted").exists()
    assert mounts_under(state) == []
