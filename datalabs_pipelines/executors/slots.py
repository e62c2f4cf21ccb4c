"""Machine-wide run slots: at most N local runs at once across every user's session.

Each session has its own run store and its own per-user limit, but all sessions' runs share the
machine's cores. The machine-wide limit needs no daemon: a folder holds N slot files
(``slot-0`` ... ``slot-<N-1>``), and a run holds an exclusive ``flock`` on one of them while it
executes. The kernel drops the lock when the holding process ends, however it ends, so a killed
run never keeps its slot. ``flock`` works on files opened read-only, so sessions only need to
*see* the folder (the hub creates it).

Configured by the hub through the session's environment: ``DATALABS_PIPELINES_MACHINE_RUNS``
(N; unset or 0: no machine-wide limit) and ``DATALABS_PIPELINES_SLOTS_DIR`` (the folder).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ENV_MACHINE_RUNS = "DATALABS_PIPELINES_MACHINE_RUNS"
ENV_SLOTS_DIR = "DATALABS_PIPELINES_SLOTS_DIR"
#: How often a waiting run tries the slots again (and checks for a cancel).
RETRY_SECONDS = 0.25


@dataclass(frozen=True)
class MachineSlots:
    """N slot files in ``directory``; see the module's docstring."""

    directory: Path
    count: int

    @classmethod
    def from_env(cls) -> MachineSlots | None:
        """The machine-wide limit the hub set for this session, or None when there is none."""
        raw = os.environ.get(ENV_MACHINE_RUNS, "").strip()
        folder = os.environ.get(ENV_SLOTS_DIR, "").strip()
        if not raw or not folder:
            return None
        try:
            count = int(raw)
        except ValueError:
            raise ValueError(f"{ENV_MACHINE_RUNS}: not a whole number: {raw!r}") from None
        if count < 0:
            raise ValueError(f"{ENV_MACHINE_RUNS}: must be 0 (no limit) or more, not {count}")
        return cls(Path(folder), count) if count else None

    def prepare(self) -> None:
        """Create the folder and its slot files (the hub does this, as their owner)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o755)
        for i in range(self.count):
            path = self.directory / f"slot-{i}"
            if not path.exists():
                path.touch(mode=0o644)

    def try_acquire(self) -> int | None:
        """A locked slot (an open file descriptor: close it to free the slot), or None."""
        for i in range(self.count):
            path = self.directory / f"slot-{i}"
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
            except OSError:
                try:
                    fd = os.open(path, os.O_RDONLY)
                except OSError:
                    continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return fd
        if not any((self.directory / f"slot-{i}").exists() for i in range(self.count)):
            raise OSError(f"no run slot files in {self.directory} (is the folder there?)")
        return None

    def acquire(self, give_up: Callable[[], bool]) -> int | None:
        """Wait for a slot; None if ``give_up()`` became true first (the run was cancelled)."""
        while True:
            fd = self.try_acquire()
            if fd is not None:
                return fd
            if give_up():
                return None
            time.sleep(RETRY_SECONDS)
