"""The desktop session script (vncserver's xstartup) with real processes standing in for X.

The process tree is the one vncserver builds: a "Jupyter server" that leads its own session
(as JupyterHub starts it), under it a "vncserver -fg" in the same session, which starts the
session script in a new session. The X server is a process named in an X lock file. The browser
test does the same with the real Xtigervnc; these tests make each rule fail on its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from datalabs_spawner import desktop_session
from datalabs_spawner.desktop_session import command_from_env

SCRIPT = Path(desktop_session.__file__)

# "vncserver -fg": starts the session script in a session of its own, notes its pid, waits.
VNCSERVER = (
    "import subprocess, sys\n"
    "p = subprocess.Popen([sys.argv[1]], start_new_session=True)\n"
    "open(sys.argv[2], 'w').write(str(p.pid))\n"
    "p.wait()\n"
)
# "jupyter-server": starts "vncserver", then just runs until it is killed.
JUPYTER = (
    "import subprocess, sys, time\n"
    "subprocess.Popen([sys.executable, '-c', sys.argv[1], sys.argv[2], sys.argv[3]])\n"
    "time.sleep(600)\n"
)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def read(path: Path) -> str:
    return path.read_text().strip() if path.exists() else ""


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def desktop(tmp_path):
    """Start the fake tree; yield a helper; kill whatever is left at the end."""
    started: list[subprocess.Popen] = []
    sessions: list[int] = []
    lock: list[Path] = []

    def start(app: list[str]) -> dict:
        x_server = subprocess.Popen(["sleep", "600"], start_new_session=True)
        started.append(x_server)
        display = next(n for n in range(700, 800) if not Path(f"/tmp/.X{n}-lock").exists())
        Path(f"/tmp/.X{display}-lock").write_text(f"{x_server.pid:>10}\n")
        lock.append(Path(f"/tmp/.X{display}-lock"))
        env = dict(
            os.environ,
            HOME=str(tmp_path),
            DISPLAY=f":{display}",
            DATALABS_DESKTOP_COMMAND=json.dumps(app),
            DATALABS_DESKTOP_WM="[]",
        )
        session_pid_file = tmp_path / "session.pid"
        with open(tmp_path / "session.log", "wb") as log:
            jupyter = subprocess.Popen(
                [sys.executable, "-c", JUPYTER, VNCSERVER, str(SCRIPT), str(session_pid_file)],
                env=env,
                start_new_session=True,  # as JupyterHub's local spawners do
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append(jupyter)
        session = int(wait_for(lambda: read(session_pid_file), 20, "the session script"))
        sessions.append(session)
        return {"x_server": x_server, "jupyter": jupyter, "session": session}

    yield start
    for pid in sessions:
        # A test that failed may leave the script running: TERM lets it stop its application.
        if alive(pid):
            os.kill(pid, signal.SIGTERM)
            try:
                wait_for(lambda pid=pid: not alive(pid), 10, "the session script")
            except AssertionError:
                os.killpg(pid, signal.SIGKILL)
    for p in started:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    for path in lock:
        path.unlink(missing_ok=True)


def test_when_jupyter_is_killed_the_x_server_app_and_session_go(desktop, tmp_path):
    app = [sys.executable, "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(600)"]
    tree = desktop(app)
    # The application prints its pid into the session's log.
    log = tmp_path / "session.log"
    app_pid = int(
        wait_for(
            lambda: [ln for ln in read(log).splitlines() if ln.strip().isdigit()],
            20,
            "the application",
        )[0]
    )
    assert alive(app_pid)
    # ... and runs in the home folder (the workspace, where data/ is), for its file dialogs
    assert os.readlink(f"/proc/{app_pid}/cwd") == str(tmp_path)

    tree["jupyter"].kill()  # as the hub does when a server will not stop
    tree["jupyter"].wait()
    wait_for(lambda: tree["x_server"].poll() is not None, 10, "the X server to be stopped")
    wait_for(lambda: not alive(app_pid), 10, "the application to be stopped")
    wait_for(lambda: not alive(tree["session"]), 10, "the session script to end")
    assert "the Jupyter server is gone" in log.read_text()


def test_a_closed_app_is_restarted_but_a_failing_one_is_not(desktop, tmp_path):
    runs = tmp_path / "runs"
    tree = desktop([sys.executable, "-c", f"open({str(runs)!r}, 'a').write('x')"])
    log = tmp_path / "session.log"
    wait_for(lambda: "not restarting it" in log.read_text(), 20, "the session to give up")
    time.sleep(1.5)
    assert runs.read_text() == "xxx"
    # The desktop itself stays up for the user
    assert alive(tree["session"]) and tree["x_server"].poll() is None


def test_the_application_command_is_a_json_list_never_a_shell_string(monkeypatch):
    monkeypatch.setenv("DATALABS_DESKTOP_COMMAND", '["topcat", "-stilts"]')
    assert command_from_env("DATALABS_DESKTOP_COMMAND", []) == ["topcat", "-stilts"]
    for bad in ('"topcat; rm -rf ~"', "[1]", '[""]', "{}", "topcat"):
        monkeypatch.setenv("DATALABS_DESKTOP_COMMAND", bad)
        with pytest.raises(ValueError):
            command_from_env("DATALABS_DESKTOP_COMMAND", [])
    monkeypatch.delenv("DATALABS_DESKTOP_COMMAND")
    assert command_from_env("DATALABS_DESKTOP_COMMAND", ["openbox"]) == ["openbox"]
