"""Terminals and desktop datalabs in a sandboxed session (``DatalabsLocalSpawner.sandbox``).

Both are children of the user's server, so they should be inside the same sandbox; these tests
check it the way a user would meet it. A terminal opened through Jupyter's terminals API (its
real websocket) runs as alice's account and sees only her processes. A desktop datalab
(TOPCAT) answers on its VNC websocket through the proxy, and every part of it (X/VNC server,
window manager, TOPCAT, the session script) runs as her account in the sandbox's own PID
namespace, never as root on the host; stopping the session leaves none of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import time
from pathlib import Path

import pytest
import websocket

from tests.e2e.hubprocess import running_hub
from tests.e2e.test_desktop import assert_nothing_left, desktop_part, session_processes

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.root]


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def ws_url(hub, user: str, path: str) -> str:
    return f"{hub.url.replace('http://', 'ws://', 1)}/user/{user}/{path}"


def status_uid(pid: int) -> int:
    """The real uid of a process, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def terminal_says(hub, user: str, command: str, marker: str, timeout: float = 60) -> str:
    """Open a terminal in ``user``'s session, type ``command``, and return what the terminal
    printed up to the line ``marker`` (which the command must echo last)."""
    r = hub.server(user, "POST", "api/terminals")
    assert r.status_code == 200, r.text
    name = r.json()["name"]
    ws = websocket.create_connection(
        ws_url(hub, user, f"terminals/websocket/{name}"),
        header=[f"Authorization: token {hub.token}"],
        timeout=timeout,
    )
    try:
        ws.send(json.dumps(["stdin", command + "\r"]))
        out = ""
        deadline = time.monotonic() + timeout
        # The typed command line is echoed too; the marker counts only at a line's start.
        while not re.search(rf"(?m)^{re.escape(marker)}$", out):
            assert time.monotonic() < deadline, f"the terminal never printed {marker}: {out!r}"
            kind, *rest = json.loads(ws.recv())
            if kind == "stdout":
                # Without bash's bracketed-paste switches and the terminal's carriage returns.
                out += ANSI.sub("", rest[0]).replace("\r", "")
        return out
    finally:
        ws.close()
        hub.server(user, "DELETE", f"api/terminals/{name}")


@pytest.fixture
def sandboxed_hub(tmp_path_factory, demo_archive, accounts):
    assert os.geteuid() == 0, "this test needs root (accounts, mounts); run it as CI does"
    state = tmp_path_factory.mktemp("sandbox-apps-state")
    args = [
        "--DatalabsLocalSpawner.sandbox=True",
        f"--DatalabsLocalSpawner.account_prefix={accounts}",
    ]
    with running_hub(state, demo_archive, args) as hub:
        yield hub, accounts


def test_a_terminal_in_a_sandboxed_session_is_the_users_own_account(sandboxed_hub):
    hub, prefix = sandboxed_hub
    r = hub.api("POST", "users/alice/server", json={"profile": "planetary-lab"})
    assert r.status_code in (201, 202), r.text
    try:
        hub.wait_ready("alice")
        account = pwd.getpwnam(prefix + "alice")
        # Each value on a line of its own, between markers, so the echo of the typed command
        # cannot be taken for the answer.
        out = terminal_says(
            hub,
            "alice",
            "echo UID=$(id -u); echo PIDS=$(ls /proc | grep -c '^[0-9]'); echo DONE-MARK",
            "DONE-MARK",
        )
        uid = re.search(r"(?m)^UID=(\d+)", out)
        pids = re.search(r"(?m)^PIDS=(\d+)", out)
        assert uid and int(uid[1]) == account.pw_uid, out
        # Its own PID namespace: the server, the terminal's shell and what it runs, a handful;
        # the host has hundreds (the hub, the proxy, other tests' processes).
        host_pids = sum(1 for p in os.listdir("/proc") if p.isdigit())
        assert pids and int(pids[1]) < 20 < host_pids, (out, host_pids)
    finally:
        hub.stop_server("alice")


def test_a_desktop_datalab_runs_whole_inside_the_sandbox(sandboxed_hub):
    hub, prefix = sandboxed_hub
    home = hub.state / "workspaces" / "alice"
    r = hub.api("POST", "users/alice/server", json={"profile": "topcat"})
    assert r.status_code in (201, 202), r.text
    try:
        hub.wait_ready("alice", timeout=120)
        account = pwd.getpwnam(prefix + "alice")
        # The desktop starts on the first connection to its websocket (noVNC's): the VNC server
        # answers with the RFB protocol's greeting, through the proxy.
        ws = websocket.create_connection(
            ws_url(hub, "alice", "desktop-websockify/"),
            header=[f"Authorization: token {hub.token}"],
            subprotocols=["binary"],
            timeout=90,
        )
        with contextlib.closing(ws):
            greeting = ws.recv()
            assert isinstance(greeting, bytes) and greeting.startswith(b"RFB 003."), greeting

            # Every part of the desktop comes up, as alice, in the sandbox's PID namespace.
            wanted = {"X/VNC server", "window manager", "TOPCAT", "session script"}
            deadline = time.monotonic() + 90
            parts: dict[int, str] = {}
            while time.monotonic() < deadline:
                parts = {
                    pid: part
                    for pid, cmd in session_processes(home).items()
                    if (part := desktop_part(cmd))
                }
                if wanted <= set(parts.values()):
                    break
                time.sleep(0.5)
            assert wanted <= set(parts.values()), parts
            host_ns = os.readlink("/proc/self/ns/pid")
            for pid, part in parts.items():
                with contextlib.suppress(FileNotFoundError):  # gone meanwhile (a helper)
                    assert status_uid(pid) == account.pw_uid, f"{part} ({pid}) is not alice's"
                    assert os.readlink(f"/proc/{pid}/ns/pid") != host_ns, f"{part} on the host"
    finally:
        hub.stop_server("alice")
    assert_nothing_left(home)
