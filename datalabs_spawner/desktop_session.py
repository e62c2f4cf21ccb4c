#!/usr/bin/env python3
"""The X session of a desktop datalab: a window manager, the datalab's application, a watchdog.

TigerVNC's ``vncserver`` runs this file as its *xstartup* once the X server is up;
jupyter-remote-desktop-proxy hands it over from ``JUPYTER_REMOTE_DESKTOP_PROXY_XSTARTUP``. It
uses the standard library only, so that a datalab image can copy this one file and need nothing
else from Datalabs.

Environment it reads:

``DATALABS_DESKTOP_COMMAND``
    The application, as a JSON list of strings (``["topcat"]``). It is run directly, never
    through a shell. Absent or empty: only the window manager runs.
``DATALABS_DESKTOP_WM``
    The window manager, as a JSON list (default ``["openbox"]``; ``[]`` for none).
``DISPLAY``
    Set by ``vncserver``.

The application starts in the home folder (the user's workspace, where ``data/`` holds the
volumes), so its file dialogs open there. When the user closes it, it is started again; when it
fails at once three times in a row, it is left closed and the desktop stays up.

The watchdog: stopping Jupyter does not stop the VNC server that jupyter-server-proxy started,
nor anything on its display. So this session watches the Jupyter server process and, when it is
gone, stops the X server, the application and the window manager, and exits.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

COMMAND_ENV = "DATALABS_DESKTOP_COMMAND"
WM_ENV = "DATALABS_DESKTOP_WM"
DEFAULT_WM = ["openbox"]
#: An application that exits sooner than this after starting has failed rather than been closed.
QUICK_EXIT_SECONDS = 5.0
#: ... and after this many quick exits in a row it is not started again.
MAX_QUICK_EXITS = 3
POLL_SECONDS = 1.0
GRACE_SECONDS = 5.0


def log(message: str) -> None:
    # vncserver sends this process's output to ~/.vnc/<host>:<display>.log
    print(f"datalabs-desktop: {message}", file=sys.stderr, flush=True)


def command_from_env(name: str, default: list[str]) -> list[str]:
    """A command from a JSON list in the environment; ValueError when it is not one."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return list(default)
    value = json.loads(raw)
    if not isinstance(value, list) or not all(isinstance(a, str) and a for a in value):
        raise ValueError(f"{name} must be a JSON list of non-empty strings, got {raw!r}")
    return value


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    # The command name is in parentheses and may itself hold spaces or parentheses.
    return text[text.rindex(")") + 2 :].split()


def process_identity(pid: int) -> tuple[int, str] | None:
    """(pid, start time): a pid can be reused, the pair cannot."""
    fields = proc_stat(pid)
    if fields is None or fields[0] == "Z":
        return None
    return pid, fields[19]  # field 22 of stat, counted from the state (field 3)


def jupyter_process(parent: int) -> tuple[int, str] | None:
    """The Jupyter server this desktop belongs to, found from our parent, ``vncserver -fg``.

    JupyterHub starts each single-user server in a session of its own (``start_new_session``),
    and neither jupyter-server-proxy nor ``vncserver -fg`` start another, so the session id of
    ``vncserver`` is the Jupyter server's pid. (We ourselves, like the X server, are put in a
    new session by ``vncserver``, hence asking our parent.) In a container the session leader
    is the container's first process, whose end ends everything anyway.
    """
    fields = proc_stat(parent)
    if fields is None:
        return None
    return process_identity(int(fields[3]))


def x_server_pid(display: str) -> int | None:
    """The X server's pid from its lock file, ``/tmp/.X<n>-lock`` for ``DISPLAY=:<n>``."""
    number = display.rpartition(":")[2].partition(".")[0]
    try:
        with open(f"/tmp/.X{number}-lock") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def start(command: list[str], cwd: str) -> subprocess.Popen | None:
    """Start ``command`` in a process group of its own (so that stopping it stops its children)."""
    if shutil.which(command[0]) is None:
        log(f"cannot start {command[0]!r}: not found on PATH")
        return None
    log(f"starting {command!r}")
    return subprocess.Popen(command, cwd=cwd, start_new_session=True, stdin=subprocess.DEVNULL)


def stop(processes: list[subprocess.Popen]) -> None:
    """TERM each process group, then KILL what is still there after a grace period."""
    live = [p for p in processes if p.poll() is None]
    for p in live:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + GRACE_SECONDS
    for p in live:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for p in live:
        try:
            # The group may outlive its leader (a launcher script's java child), so always.
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def main() -> int:
    display = os.environ.get("DISPLAY", "")
    home = os.path.expanduser("~")
    try:
        app_command = command_from_env(COMMAND_ENV, [])
        wm_command = command_from_env(WM_ENV, DEFAULT_WM)
    except ValueError as e:
        log(str(e))
        app_command, wm_command = [], DEFAULT_WM
    jupyter = jupyter_process(os.getppid())
    log(f"display {display}, watching Jupyter server {jupyter[0] if jupyter else '(none found)'}")

    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    wm = start(wm_command, home) if wm_command else None
    app = start(app_command, home) if app_command else None
    app_started = time.monotonic()
    quick_exits = 0
    x_pid = x_server_pid(display)
    reason = "stopped by a signal"
    while not stopping:
        time.sleep(POLL_SECONDS)
        if jupyter and process_identity(jupyter[0]) != jupyter:
            reason = "the Jupyter server is gone"
            if x_pid:
                # Ending the X server also ends vncserver and anything else on this display.
                try:
                    os.kill(x_pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            break
        if x_pid and process_identity(x_pid) is None:
            reason = "the X server is gone"
            break
        if app is not None and app.poll() is not None:
            lived = time.monotonic() - app_started
            quick_exits = quick_exits + 1 if lived < QUICK_EXIT_SECONDS else 0
            log(f"{app_command[0]} exited with {app.returncode} after {lived:.1f} s")
            if quick_exits >= MAX_QUICK_EXITS:
                log(f"{app_command[0]} failed {quick_exits} times in a row; not restarting it")
                app = None
            else:
                app = start(app_command, home)
                app_started = time.monotonic()
    log(f"ending the desktop: {reason}")
    stop([p for p in (app, wm) if p is not None])
    return 0


if __name__ == "__main__":
    sys.exit(main())
