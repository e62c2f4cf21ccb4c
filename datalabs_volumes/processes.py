"""Telling a process apart from a later one with its pid (where PID 1 reaps nothing, a dead
process may stay a zombie for good)."""

from __future__ import annotations


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks after boot: field 22 of ``/proc/<pid>/stat``),
    or None when there is no such process or it has ended (a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces and parentheses.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])
