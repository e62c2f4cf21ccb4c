"""Step events from cwltool's log.

cwltool has no event API; what it does is visible only in its log lines (run with
``--disable-color``): ``[step s1] start``, ``[job s1] completed success``, ``Final process status
is success``. :func:`parse_line` turns one line into an :class:`Event`; :class:`RunLog` writes the
plain log, a log per step and the JSON-lines event file of one run.
"""

from __future__ import annotations

import errno
import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

EVENTS_FILE = "events.jsonl"
LOG_FILE = "cwltool.log"
STEPS_DIR = "steps"

_LEVELS = r"(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) "
_LEVEL = f"(?:{_LEVELS})?"
#: A line of cwltool's own logger; other lines are what a running tool wrote to its stderr,
#: which cwltool passes through unless the CWL captures it.
_CWLTOOL_LINE = re.compile(_LEVELS)
#: Lines of a tool's own output kept per step, for the reason a failed run gives.
TOOL_LINES_KEPT = 5
#: The errors of a write to a full disk (or over a filesystem quota).
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_STEP_START = re.compile(_LEVEL + r"\[step (?P<name>[^\]]+)\] start\s*$")
_STEP_DONE = re.compile(_LEVEL + r"\[(?:step|job) (?P<name>[^\]]+)\] completed (?P<status>\w+)\s*$")
_STEP_SKIP = re.compile(_LEVEL + r"\[step (?P<name>[^\]]+)\] will be skipped")
_JOB_LINE = re.compile(_LEVEL + r"\[job (?P<name>[^\]]+)\] (?P<rest>.*)$")
_STEP_LINE = re.compile(_LEVEL + r"\[step (?P<name>[^\]]+)\] ")
_MEMORY = re.compile(r"Max memory used: (?P<mib>\d+)MiB")
_CACHED = re.compile(r"Using cached output in ")
_FINAL = re.compile(_LEVEL + r"Final process status is (?P<status>\w+)")

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def step_log_name(step: str) -> str:
    """A file name for a step's log that cannot leave the steps folder."""
    name = _SAFE_NAME.sub("_", step).strip(".") or "step"
    return name[:120] + ".log"


def _state_of(status: str) -> str:
    # cwltool says success, permanentFail, temporaryFail, skipped.
    if status == "success":
        return "success"
    if status == "skipped":
        return "skipped"
    return "failed"


@dataclass(frozen=True)
class Event:
    """Something that happened in a run.

    ``kind`` is ``step`` (a step changed state), ``memory`` (peak memory of a step), ``final``
    (cwltool's overall status) or ``run`` (the run changed state; written by the executor).
    """

    kind: str
    step: str | None = None
    state: str | None = None
    message: str | None = None
    peak_memory_mib: int | None = None
    cached: bool = False


def parse_line(line: str) -> tuple[str | None, Event | None]:
    """The step a log line belongs to (if any) and the event it reports (if any)."""
    if m := _STEP_START.match(line):
        return m["name"], Event("step", step=m["name"], state="running")
    if m := _STEP_DONE.match(line):
        return m["name"], Event("step", step=m["name"], state=_state_of(m["status"]))
    if m := _STEP_SKIP.match(line):
        return m["name"], Event("step", step=m["name"], state="skipped")
    if m := _JOB_LINE.match(line):
        name, rest = m["name"], m["rest"]
        if mm := _MEMORY.search(rest):
            return name, Event("memory", step=name, peak_memory_mib=int(mm["mib"]))
        if _CACHED.match(rest):
            return name, Event("step", step=name, state="running", cached=True)
        # The first line of a job (its command line) also starts it: a lone CommandLineTool has
        # no "[step] start" line.
        return name, Event("step", step=name, state="running")
    if m := _STEP_LINE.match(line):
        return m["name"], None
    if m := _FINAL.match(line):
        return None, Event("final", state=_state_of(m["status"]), message=line.strip())
    return None, None


class RunLog:
    """The files of one run's log: ``cwltool.log``, ``steps/<step>.log``, ``events.jsonl``."""

    def __init__(self, rundir: Path) -> None:
        self.rundir = Path(rundir)
        (self.rundir / STEPS_DIR).mkdir(parents=True, exist_ok=True)
        self._log = open(self.rundir / LOG_FILE, "a", encoding="utf-8")  # noqa: SIM115
        self._events = open(self.rundir / EVENTS_FILE, "a", encoding="utf-8")  # noqa: SIM115
        self._step_files: dict[str, IO[str]] = {}
        self._current_step: str | None = None
        #: The last lines each step's tool wrote to stderr (at most TOOL_LINES_KEPT).
        self.tool_output: dict[str, list[str]] = {}
        #: Whether a write found the disk full; lines are then dropped, not the run.
        self.disk_full = False

    def _put(self, f: IO[str], text: str | None = None) -> None:
        """Write ``text`` (if any) to ``f`` and flush; a full disk drops it (and sets
        ``disk_full``) instead of ending the supervisor, which must still record the run."""
        try:
            if text is not None:
                f.write(text)
            f.flush()
        except OSError as exc:
            if exc.errno not in DISK_FULL_ERRNOS:
                raise
            self.disk_full = True

    def write_line(self, line: str) -> tuple[str | None, Event | None]:
        """Record one log line; returns what :func:`parse_line` found in it."""
        text = line if line.endswith("\n") else line + "\n"
        if line[:1] in (" ", "\t"):
            # Continuation of a multi-line message (a long command line): same step as before.
            step, event = self._current_step, None
        elif not _CWLTOOL_LINE.match(line):
            # The running tool's own stderr: it belongs to the step that started it.
            step, event = self._current_step, None
            if step is not None and line.strip():
                kept = self.tool_output.setdefault(step, [])
                kept.append(line.strip())
                del kept[:-TOOL_LINES_KEPT]
        else:
            step, event = parse_line(line)
            # After "[job s] completed ...", s's tool has ended: what comes next is not its.
            ended = event is not None and event.kind == "step" and event.state != "running"
            self._current_step = None if ended else step
        # Readers (GET runs/<id>/log) follow the files while the run goes on; a step may then
        # stay silent for hours, so nothing waits in a buffer.
        self._put(self._log, text)
        if step is not None:
            f = self._step_files.get(step)
            if f is None:
                try:
                    f = open(self.rundir / STEPS_DIR / step_log_name(step), "a", encoding="utf-8")  # noqa: SIM115
                except OSError as exc:
                    if exc.errno not in DISK_FULL_ERRNOS:
                        raise
                    self.disk_full = True
                    return step, event
                self._step_files[step] = f
            self._put(f, text)
        return step, event

    def emit(self, kind: str, **data: Any) -> None:
        """Append an event to ``events.jsonl`` (flushed at once: the server tails it live)."""
        record = {
            "time": time.time(),
            "kind": kind,
            **{k: v for k, v in data.items() if v is not None},
        }
        self._put(self._events, json.dumps(record) + "\n")

    def emit_event(self, event: Event) -> None:
        data = {k: v for k, v in asdict(event).items() if k != "kind" and v not in (None, False)}
        self.emit(event.kind, **data)

    def flush(self) -> None:
        for f in (self._log, *self._step_files.values()):
            self._put(f)

    def close(self) -> None:
        for f in (self._log, self._events, *self._step_files.values()):
            self._put(f)
            try:
                f.close()
            except OSError as exc:  # what a full disk still held back is lost
                if exc.errno not in DISK_FULL_ERRNOS:
                    raise
                self.disk_full = True


def read_events(rundir: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Complete event lines of a run from byte ``offset``; returns them and the next offset."""
    path = Path(rundir) / EVENTS_FILE
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1  # a line still being written is read next time
    events = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
    return events, offset + end


def tail_text(path: Path, max_bytes: int = 2_000_000) -> str:
    """The end of a log file (at most ``max_bytes``), or an empty string if it does not exist."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            f.seek(max(0, size - max_bytes))
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
