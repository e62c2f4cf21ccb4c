"""The workspace size quota the hub sets (``DATALABS_WORKSPACE_QUOTA_BYTES``).

What it covers: once the workspace holds the quota or more, saving or uploading through
JupyterLab (the contents API) and launching pipeline runs are refused with a message saying
so. What it cannot cover without filesystem quotas (not available on every machine): files a
kernel, a terminal or a running pipeline writes directly; those are counted at the next check,
so the workspace can overshoot by what they wrote.

Usage is the disk space of the workspace's files (``st_blocks``), not crossing into other file
systems, so the read-only volumes mounted under ``data/`` are not counted.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from tornado import web

from datalabs_pipelines.settings import ENV_WORKSPACE_QUOTA as ENV_QUOTA

#: How old a measurement may be before the next check walks the workspace again.
MAX_AGE_SECONDS = 2.0


def human_size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def disk_usage(root: Path) -> int:
    """Bytes of disk the files under ``root`` use, staying on ``root``'s file system."""
    try:
        device = root.stat().st_dev
    except OSError:
        return 0
    total = 0
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_dev != device:
                continue  # a mount point: an attached volume, not the workspace
            total += st.st_blocks * 512
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
    return total


class WorkspaceQuota:
    """``limit`` bytes for the workspace at ``root``; see the module's docstring."""

    def __init__(self, root: Path, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"{ENV_QUOTA}: the quota must be at least 1 byte, not {limit}")
        self.root = Path(root)
        self.limit = limit
        self._lock = threading.Lock()
        self._used = 0
        self._measured = float("-inf")

    @classmethod
    def from_env(cls, root: Path) -> WorkspaceQuota | None:
        """The quota the hub set for this session, or None when there is none (unset or 0)."""
        raw = os.environ.get(ENV_QUOTA, "").strip()
        if not raw:
            return None
        try:
            limit = int(raw)
        except ValueError:
            raise ValueError(f"{ENV_QUOTA}: not a whole number of bytes: {raw!r}") from None
        return cls(root, limit) if limit else None

    def used(self) -> int:
        with self._lock:
            now = time.monotonic()
            if now - self._measured > MAX_AGE_SECONDS:
                self._used = disk_usage(self.root)
                self._measured = now
            return self._used

    def refusal(self, adding: int = 0) -> str | None:
        """Why more data cannot be stored now, or None if it can."""
        used = self.used()
        if used + adding <= self.limit:
            with self._lock:
                self._used += adding  # saves in quick succession count before the next walk
            return None
        return (
            f"Your workspace is full: it uses {human_size(used)} of its "
            f"{human_size(self.limit)} quota. Delete files (old pipeline runs in "
            "pipeline-runs/ too) to save or run again."
        )

    def pre_save_hook(self, model: dict[str, Any], path: str, **_: Any) -> None:
        """jupyter-server ContentsManager pre-save hook: refuse a save over the quota."""
        content = model.get("content")
        adding = len(content) if isinstance(content, str | bytes) else 0
        message = self.refusal(adding)
        if message is not None:
            raise web.HTTPError(507, message.replace("%", "%%"))
