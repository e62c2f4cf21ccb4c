"""A memory limit per pipeline run: each run in its own memory cgroup.

A step that uses more memory than the machine can give is killed by the kernel's OOM killer
with SIGKILL. cwltool then only sees a step that "completed permanentFail", and on a shared
machine the kernel may pick another user's process instead. With a limit set by the operator,
every run (cwltool and all its steps) gets its own cgroup ``<parent>/run-<id>`` with that limit:
the kernel kills inside the run that went over it, and the cgroup's own count of OOM kills
(``memory.oom_control`` on cgroup v1, ``memory.events`` on v2) tells the executor for certain
that the run was killed for lack of memory, so it can say so.

Configured by the hub through the session's environment: ``DATALABS_PIPELINES_MEMORY_LIMIT``
(bytes; unset or 0: no limit) and ``DATALABS_PIPELINES_CGROUP`` (the parent cgroup folder,
default ``/sys/fs/cgroup/memory/datalabs``). Creating cgroups needs root, or a parent cgroup
delegated to the session's account (:func:`delegate`; the hub does it for sandboxed sessions).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_MEMORY_LIMIT = "DATALABS_PIPELINES_MEMORY_LIMIT"
ENV_CGROUP = "DATALABS_PIPELINES_CGROUP"
DEFAULT_PARENT = "/sys/fs/cgroup/memory/datalabs"
#: What a step killed for lack of memory is told, in the step's and the run's reason.
OOM_REASON = "killed: out of memory"


def mib(size: int) -> str:
    """``size`` bytes as a person reads a memory limit (``256 MiB``)."""
    return f"{size / 2**20:.0f} MiB" if size % 2**20 == 0 else f"{size} bytes"


@dataclass(frozen=True)
class MemoryLimit:
    """``limit`` bytes for each run, in cgroups made under ``parent``."""

    limit: int
    parent: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MemoryLimit | None:
        """The limit the hub set for this session, or None when there is none."""
        env = os.environ if environ is None else environ
        raw = env.get(ENV_MEMORY_LIMIT, "").strip()
        if not raw or raw == "0":
            return None
        try:
            limit = int(raw)
        except ValueError:
            raise ValueError(f"{ENV_MEMORY_LIMIT} must be a number of bytes, not {raw!r}") from None
        if limit < 0:
            raise ValueError(f"{ENV_MEMORY_LIMIT} must be 0 (no limit) or more, not {limit}")
        return cls(limit, Path(env.get(ENV_CGROUP, "").strip() or DEFAULT_PARENT))

    def create(self, run_id: str) -> RunCgroup:
        """Make the run's cgroup with the limit set; OSError when this process may not."""
        path = self.parent / f"run-{run_id}"
        path.mkdir(parents=True, exist_ok=True)
        v2 = (path / "memory.max").exists()
        try:
            if v2:
                (path / "memory.max").write_text(str(self.limit))
                # The limit is on memory: without this the kernel swaps the run out instead.
                if (path / "memory.swap.max").exists():
                    (path / "memory.swap.max").write_text("0")
            else:
                (path / "memory.limit_in_bytes").write_text(str(self.limit))
                if (path / "memory.memsw.limit_in_bytes").exists():
                    (path / "memory.memsw.limit_in_bytes").write_text(str(self.limit))
        except OSError:
            RunCgroup(path, self.limit).remove(timeout=0)
            raise
        return RunCgroup(path, self.limit)


def delegate(folder: Path, limit: int, uid: int, gid: int) -> Path:
    """Make ``folder`` a memory cgroup holding at most ``limit`` bytes that the account
    ``uid``/``gid`` may make run cgroups in and move its processes into (the hub does this, as
    root, for a sandboxed session). The account cannot raise ``limit`` itself: the limit's own
    file stays root's. Returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    v2 = (folder / "memory.max").exists()
    (folder / ("memory.max" if v2 else "memory.limit_in_bytes")).write_text(str(limit))
    # A new child cgroup's files belong to the owner of its parent folder: the account.
    for name in ("", "cgroup.procs", "tasks", "cgroup.subtree_control", "cgroup.threads"):
        path = folder / name if name else folder
        if path.exists():
            os.chown(path, uid, gid)
    return folder


@dataclass(frozen=True)
class RunCgroup:
    """One run's memory cgroup."""

    path: Path
    limit: int

    def enter(self, pid: int) -> None:
        """Move process ``pid`` into the cgroup. The run's cwltool process calls it for itself
        before it starts cwltool, so that every process of the run is inside from its first
        instruction (no window in which a step runs unlimited); OSError when it may not."""
        (self.path / "cgroup.procs").write_text(f"{pid}\n")

    def oom_kills(self) -> int:
        """How many processes of the run the kernel killed for going over the limit."""
        for name in ("memory.events", "memory.oom_control"):
            try:
                text = (self.path / name).read_text()
            except OSError:
                continue
            for line in text.splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def remove(self, timeout: float = 5.0) -> bool:
        """Remove the cgroup once its processes are gone (killed ones take a moment to leave);
        returns whether it is gone."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.path.rmdir()
                return True
            except FileNotFoundError:
                return True
            except OSError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)
