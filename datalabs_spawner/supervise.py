"""The parent of a sandboxed session, so that the sandbox outlives the hub but not its handle.

Run as ``python -I -S supervise.py COMMAND...`` (by path: it needs nothing but the standard
library, and ``-S`` saves the start-up of ``site``): it starts COMMAND as its child, waits for
it and exits with its status.

Why: bubblewrap's ``--die-with-parent`` ends the sandbox when bubblewrap's parent dies. Started
by the hub directly, that parent is the hub, so every sandboxed session died with the hub and a
hub restart stopped them all. Without the flag, killing bubblewrap leaves the sandbox's PID
namespace running with no process the hub knows of (measured: the namespace's init and the
command carried on after ``kill -9`` of bubblewrap). Under this supervisor both hold: the
sandbox lives as long as the supervisor, which is not the hub (its parent may die, nothing
tells it to), and the hub's one handle on the session is the supervisor's pid, kept in the
spawner's state: a SIGKILL to it ends bubblewrap and, through ``--die-with-parent``, every
process of the sandbox.
"""

from __future__ import annotations

import os
import signal
import sys


def main(argv: list[str]) -> int:
    """Run ``argv`` as a child (file descriptors inherited) and return its exit code."""
    if not argv:
        print("usage: supervise.py COMMAND [ARG...]", file=sys.stderr)
        return 2
    # Its only signal from the hub is SIGKILL; anything else ends it quietly, and the sandbox.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except InterruptedError:
            continue
        code = os.waitstatus_to_exitcode(status)
        return code if code >= 0 else 128 - code  # killed by signal N: 128 + N, as shells say


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
