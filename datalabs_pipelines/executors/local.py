"""The local executor: each run is a cwltool process on this machine.

Every run gets a *supervisor*: a small Python process in its own session that starts cwltool
(itself in a new session, so a cancel can kill its whole process group), turns its log into step
events, and records the outcome. cwltool is a fork of the supervisor (:func:`start_cwltool`), not
a new interpreter: it skips Python's start-up and the modules both share. Supervisors do not
depend on the process that launched them, so a jupyter-server restart loses no run; a run whose
supervisor vanished is found by :func:`reconcile` and marked failed with that reason.

The queue needs no daemon: runs wait in state ``queued``; :func:`dispatch` claims as many as the
limit allows in one SQLite write transaction, and every supervisor calls it again when its run
ends, so the queue drains even with no server running. The CLI runs in the foreground instead
(:func:`execute` in its own process) after claiming a slot the same way.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import filecmp
import gc
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import traceback
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, NoReturn

from ..crate import (
    VolumeRef,
    build_crate,
    copy_workflow,
    describe_path,
    job_paths,
    output_files,
    write_crate,
)
from ..cwlmain import ENV_UNHASHED_ROOTS
from ..events import DISK_FULL_ERRNOS, LOG_FILE, Event, RunLog
from ..runs import (
    ACTIVE_STATES,
    CANCELLED,
    CANCELLING,
    FAILED,
    FINAL_STATES,
    QUEUED,
    RUNNING,
    SUCCESS,
    Run,
    RunStore,
    new_run_id,
)
from ..settings import Settings
from .memory import OOM_REASON, MemoryLimit, RunCgroup, mib
from .slots import MachineSlots

#: cwltool's exit code for "this implementation does not support a requirement".
UNSUPPORTED_EXIT = 33
#: Seconds between SIGTERM and SIGKILL when a run is cancelled.
CANCEL_GRACE = 3.0
#: A claimed run whose supervisor never recorded itself within this time is declared lost.
START_GRACE = 60.0

OUTPUTS_FILE = "outputs.json"
JOB_FILE = "job.json"
#: Where cwltool's own CWLProv bag goes (runs of the Kubernetes executor, and older runs).
PROVENANCE_DIR = "provenance"
#: Written when a run is created: whether it gets a provenance crate, the volumes attached at
#: that moment (the supervisor runs in another process) and the checksum size limit.
PROVENANCE_PLAN = "provenance-plan.json"
SUPERVISOR_LOG = "supervisor.log"
#: How long a run's supervisor keeps trying to record the run's end while the disk stays full
#: (the user may free space meanwhile); after it, the run is found lost by :func:`reconcile`.
FULL_DISK_PATIENCE = 600.0
#: What a tool, cwltool or SQLite says when the disk is full or a quota is reached.
_DISK_FULL_WORDS = ("No space left on device", "Disk quota exceeded", "database or disk is full")
#: ``argv[0]`` of runs that are Calrissian Jobs (the Kubernetes executor's); they share the store
#: but have no supervisor here, so :func:`reconcile` must leave them to that executor.
CALRISSIAN_ARGV0 = "calrissian"


def on_kubernetes(run: Run) -> bool:
    """Whether ``run`` is a Calrissian Job followed by the Kubernetes executor."""
    return bool(run.argv) and run.argv[0] == CALRISSIAN_ARGV0


class CwltoolProcess:
    """A run's cwltool process (see :func:`start_cwltool`): its pid (which is also its process
    group's and session's id), its log as a byte stream, and :meth:`wait`."""

    def __init__(self, pid: int, stderr: IO[bytes]) -> None:
        self.pid = pid
        self.stderr = stderr
        self.returncode: int | None = None

    def wait(self) -> int:
        """Its exit code once it ended (minus the signal number if a signal ended it)."""
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        self.stderr.close()
        return self.returncode


def start_cwltool(
    argv: list[str], cwd: str, outputs: Path, unhashed: list[str], cgroup: RunCgroup | None
) -> CwltoolProcess:
    """Start cwltool for a run: cwltool's own ``main.run`` through
    :mod:`datalabs_pipelines.cwlmain` (archive inputs unhashed for the cache), with ``argv``,
    in ``cwd``, its stdout (the output object) into ``outputs``, its log on a pipe, in a new
    session, inside ``cgroup`` when there is one.

    A fork of this process rather than a new interpreter (``python -m
    datalabs_pipelines.cwlmain``, as before): the supervisor and the foreground CLI have already
    loaded Python and the standard modules cwltool imports, which a new interpreter loaded again
    at every run (about a third of cwltool's start-up; the fixed cost measured in issue 11). It is
    safe here because the only callers are the supervisor and the foreground CLI, processes of
    one thread that exist to run this one run; the child never returns into their code (it ends
    with ``os._exit``), keeps none of their files open (all but 0-2 are closed) and never
    collects their objects (``gc.freeze``), so it cannot flush, write or close anything of
    theirs. It runs as the same user, in the same sandbox, as the exec'd interpreter did.
    """
    if threading_count() != 1:
        raise RuntimeError("start_cwltool forks: call it from a process with one thread")
    read, write = os.pipe()
    ready, started = os.pipe()
    out = os.open(outputs, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    for stream in (sys.stdout, sys.stderr):  # nothing buffered may be written twice
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()
    # The parent's handlers (the CLI's and the supervisor's ``stop``, which write to the run
    # store) must never run in the child: both signals wait until the child has its own.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _CHILD_SIGNALS)
    try:
        pid = os.fork()
        if pid == 0:
            _cwltool_child(argv, cwd, unhashed, cgroup, (devnull, out, write), started, blocked)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    for fd in (write, out, devnull, started):
        os.close(fd)
    # Returns once the child leads its own session (and is in the cgroup), as Popen returned
    # after the exec: a cancel that kills the process group right after must find it.
    with open(ready, "rb") as f:
        f.read(1)  # or nothing, if the child ended before
    return CwltoolProcess(pid, open(read, "rb"))


#: Signals whose handlers in the parent are replaced in cwltool's process by an interpreter's own.
_CHILD_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def threading_count() -> int:
    """How many threads this process runs (1 when ``threading`` was never imported)."""
    threading = sys.modules.get("threading")
    return 1 if threading is None else threading.active_count()


def _cwltool_child(
    argv: list[str],
    cwd: str,
    unhashed: list[str],
    cgroup: RunCgroup | None,
    fds: tuple[int, int, int],
    started: int,
    mask: set[int | signal.Signals],
) -> NoReturn:
    """The child of :func:`start_cwltool`: what a new interpreter's start gave cwltool, then
    cwltool, then the end of a process without a return into the parent's code."""
    code = 1
    try:
        gc.freeze()  # the parent's objects are never collected (or finalised) here
        os.setsid()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        # Into the run's memory cgroup before any of cwltool runs, as the ``/bin/sh`` wrapper
        # did before it exec'd the interpreter (its steps inherit it); a refusal ends up in the
        # run's log, as the shell's did.
        if cgroup is not None:
            cgroup.enter(os.getpid())
        os.write(started, b"1")
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.chdir(cwd)
        os.environ[ENV_UNHASHED_ROOTS] = json.dumps(unhashed)
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 - fd 0 stays open
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stderr = open(  # noqa: SIM115
            2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False
        )
        from .. import cwlmain

        sys.argv = [cwlmain.__file__, *argv]
        code = cwlmain.main(argv)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            with contextlib.suppress(Exception):
                print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - reported as an interpreter would, then the end
        with contextlib.suppress(Exception):
            traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            atexit._run_exitfuncs()  # what an interpreter's exit runs (logging's flush)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
        os._exit(code & 0xFF if isinstance(code, int) else 1)


def unhashed_roots(rundir: Path) -> list[str]:
    """The folders of the volumes attached when the run was asked for (from its plan): read-only
    archive data that cwltool keys for its cache by size and mtime (see ``cwlmain``)."""
    try:
        plan = json.loads((rundir / PROVENANCE_PLAN).read_text(encoding="utf-8"))
        return [VolumeRef.from_json(v).path for v in plan.get("volumes") or []]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return []


@dataclass
class RunRequest:
    """What a user asked to run. Paths are absolute; ``inputs`` is the job object."""

    pipeline: str
    pipeline_path: str
    inputs: dict[str, Any] = field(default_factory=dict)
    #: An existing job file to hand to cwltool as is (the CLI's JOB argument, whose relative
    #: paths resolve against its own folder); when None, ``inputs`` is written to ``job.json``.
    job_path: str | None = None
    outdir: str | None = None
    cwd: str | None = None
    #: cwltool options before the pipeline (from the CLI command line only, never from the API).
    cwltool_args: list[str] = field(default_factory=list)
    #: Arguments after the pipeline and job (tool inputs given as options, CLI only).
    tool_args: list[str] = field(default_factory=list)
    rerun_of: str | None = None
    #: The archive volumes attached to the session when the run was asked for: inputs on them
    #: are named in the provenance by volume and path.
    volumes: tuple[VolumeRef, ...] = ()


_RUN_REF = re.compile(r"""run:\s*["']?([^\s"'#{}]+\.cwl)""")


def _pipeline_mentions(pipeline_path: str, words: tuple[str, ...]) -> set[str]:
    """Which of ``words`` the pipeline or a tool it runs (followed through ``run:`` files)
    contains (a text scan: cheap, and errs towards caution)."""
    found: set[str] = set()
    pending = [pipeline_path.partition("#")[0]]
    seen: set[str] = set()
    while pending and len(seen) < 200 and len(found) < len(words):
        path = pending.pop()
        if path in seen or "://" in path:
            continue
        seen.add(path)
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")[:2_000_000]
        except OSError:
            continue
        found.update(word for word in words if word in text)
        pending += [str(Path(path).parent / ref) for ref in _RUN_REF.findall(text)]
    return found


def unsafe_features(request: RunRequest) -> dict[str, str]:
    """cwltool features that would change this run's result, each with the reason.

    The cache key leaves out requirements given in the job document (``cwl:requirements``);
    steps that update their inputs in place have effects that neither a cached result nor
    ``--provenance`` (which captures the data it sees) leaves intact. Both found by the CWL
    conformance tests. cwltool's cache does not keep a job's exit code: a cached job hands
    ``runtime.exitCode`` the value ``true`` (``CallbackJob.run`` in cwltool's
    ``command_line_tool.py`` passes its ``compute_checksum`` flag where ``collect_output_ports``
    takes the exit code; cwltool issue #1173), so a tool that reads it cannot be cached.
    """
    unsafe: dict[str, str] = {}
    if any(str(k).endswith("requirements") for k in request.inputs):
        unsafe["cache"] = "the job carries its own requirements"
    mentions = _pipeline_mentions(request.pipeline_path, ("InplaceUpdateRequirement", "exitCode"))
    if "exitCode" in mentions:
        unsafe["cache"] = "a tool reads runtime.exitCode, which cwltool's cache does not keep"
    if "InplaceUpdateRequirement" in mentions:
        unsafe["cache"] = unsafe["provenance"] = "a step updates its inputs in place"
    return unsafe


def build_argv(
    settings: Settings,
    rundir: Path,
    outdir: str,
    job_path: str | None,
    request: RunRequest,
) -> list[str]:
    """cwltool's arguments for a run (after ``python -m cwltool``)."""
    argv = ["--disable-color"]
    unsafe = unsafe_features(request)
    if settings.no_container:
        argv.append("--no-container")
    # No ``--provenance``: cwltool's would copy every input and output into the run folder (a
    # 1 GiB archive input made a 1.1 GiB run folder and a 2.6x slower run); the supervisor
    # writes a crate that names them instead (see ``record_provenance``).
    if settings.cache and "cache" not in unsafe:
        argv += ["--cachedir", str(settings.cache_dir(settings.user))]
    argv += ["--outdir", outdir]
    argv += list(settings.cwltool_args)
    argv += list(request.cwltool_args)
    argv.append(request.pipeline_path)
    if job_path is not None:
        argv.append(job_path)
    argv += list(request.tool_args)
    return argv


def create_run(store: RunStore, settings: Settings, request: RunRequest, detached: bool) -> Run:
    """Record a new queued run and prepare its folder."""
    run_id = new_run_id()
    rundir = settings.runs_dir / run_id
    rundir.mkdir(parents=True)
    try:
        return _create_run(store, settings, request, detached, run_id, rundir)
    except BaseException:
        # A full disk (say) must not leave a run folder without a run behind.
        shutil.rmtree(rundir, ignore_errors=True)
        raise


def _create_run(
    store: RunStore,
    settings: Settings,
    request: RunRequest,
    detached: bool,
    run_id: str,
    rundir: Path,
) -> Run:
    outdir = request.outdir or str(rundir / "outputs")
    job_path = request.job_path
    if job_path is None and (request.inputs or not request.tool_args):
        job_path = str(rundir / JOB_FILE)
        Path(job_path).write_text(json.dumps(request.inputs, indent=2), encoding="utf-8")
    plan = {
        "write": settings.provenance and "provenance" not in unsafe_features(request),
        "volumes": [v.to_json() for v in request.volumes],
        "checksum_limit": settings.checksum_limit,
    }
    (rundir / PROVENANCE_PLAN).write_text(json.dumps(plan, indent=2), encoding="utf-8")
    run = Run(
        id=run_id,
        user=settings.user,
        pipeline=request.pipeline,
        pipeline_path=request.pipeline_path,
        inputs=request.inputs,
        job_path=job_path,
        state=QUEUED,
        created=time.time(),
        rundir=str(rundir),
        outdir=outdir,
        cwd=request.cwd or str(rundir),
        argv=build_argv(settings, rundir, outdir, job_path, request),
        detached=detached,
        rerun_of=request.rerun_of,
    )
    return store.add(run)


# -- processes -------------------------------------------------------------------------------


def process_started(pid: int) -> float | None:
    """The start time of process ``pid`` (to tell it apart from a later process with its pid),
    in seconds since the epoch, as psutil's ``create_time`` gives it.

    Read from ``/proc`` (psutil's own formula: the process's start in clock ticks after boot,
    field 22 of ``/proc/<pid>/stat``, plus ``btime`` of ``/proc/stat``) rather than through
    psutil: the foreground ``datalabs-pipeline run`` calls this for itself on every run (its
    claim of a slot), and importing psutil was 10-20 ms of that process's fixed cost. psutil
    remains the fallback where ``/proc`` says nothing (another system).
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open("/proc/stat", "rb") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith(b"btime "))
        # The command name (field 2) may hold spaces and ")": count fields after its last ")",
        # where field 3 comes first.
        ticks = int(stat.rpartition(b")")[2].split()[22 - 3])
        return ticks / os.sysconf("SC_CLK_TCK") + boot
    except (OSError, ValueError, IndexError, StopIteration):
        pass
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def process_alive(pid: int | None, started: float | None) -> bool:
    """Whether ``pid`` is still the process that started at ``started`` and not a zombie."""
    if pid is None:
        return False
    import psutil  # only here and below: the foreground CLI never needs it (see above)

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) < 1.0
    except psutil.Error:
        return False


def group_alive(pgid: int | None) -> bool:
    """Whether any process is left in process group ``pgid``."""
    if not pgid:
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    import psutil

    # A group whose only members are zombies is finished for our purposes.
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(proc.info["pid"]) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.Error, OSError):
            continue
    return False


def kill_group(pgid: int | None, sig: int) -> None:
    """Send ``sig`` to a whole process group, if it still exists."""
    if not pgid:
        return
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def terminate_group(pgid: int | None, grace: float = CANCEL_GRACE) -> None:
    """SIGTERM the group, then SIGKILL whatever is left after ``grace`` seconds."""
    if not pgid:
        return
    kill_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return
        time.sleep(0.05)
    kill_group(pgid, signal.SIGKILL)


# -- running ---------------------------------------------------------------------------------


def _last_error(lines: list[str]) -> str:
    for line in reversed(lines):
        text = line.strip()
        if text.startswith(("ERROR", "CRITICAL")) or "Exception" in text or "Error" in text:
            return text.removeprefix("ERROR ").removeprefix("CRITICAL ")[:500]
    return lines[-1].strip()[:500] if lines else ""


def _failure(states: dict[str, str], log: RunLog, recent: list[str]) -> str:
    """Why the run failed, as a person wants it: the failed step and the last thing its tool
    said (``no column 'time'``), else cwltool's last error."""
    for step, state in states.items():
        said = log.tool_output.get(step)
        if state == "failed" and said:
            return f"step '{step}' failed; its tool said: {said[-1][:500]}"
    return _last_error(recent)


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is a write refused because the disk is full (or a quota is reached)."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        return True
    return isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc)


def _nearly_full(path: str) -> bool:
    """Whether the filesystem of ``path`` has less than 1 MiB (or 1%) left."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < max(2**20, st.f_blocks * st.f_frsize // 100)


def _disk_bytes(path: Path) -> int:
    """The disk space the files under ``path`` take."""
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
    return total


def give_back_space(run: Run, cache_entries: set[str]) -> int:
    """Remove what a run that failed for lack of space left unfinished; returns the bytes freed.

    That is the cache entries of its jobs that did not succeed (cwltool would never reuse them)
    and its partial outputs, when they are in the run's own folder (never an ``--outdir`` the
    user gave the CLI). Without this the run's own leftovers keep the disk full, and the run
    store, the user's notebooks and their next run cannot write either.
    """
    freed = 0
    for entry in sorted(cache_entries):
        try:
            finished = Path(f"{entry}.status").read_text(encoding="utf-8").strip() == "success"
        except OSError:
            finished = False
        size = 0 if finished else _disk_bytes(Path(entry))
        if not finished and _drop_cache_entry(entry):
            freed += size
    outdir = Path(run.outdir)
    if outdir.is_relative_to(run.rundir) and outdir.is_dir():
        freed += _disk_bytes(outdir)
        shutil.rmtree(outdir, ignore_errors=True)
    return freed


def _disk_full_reason(states: dict[str, str], freed: int) -> str:
    failed = [step for step, state in states.items() if state in ("failed", "running")]
    who = f"step '{failed[0]}'" if len(failed) == 1 else "the run"
    return (
        f"no space left on the workspace disk: {who} could not write its files. The run's "
        f"unfinished files were removed ({freed / 2**20:.1f} MiB given back); free some space "
        "in your workspace and run it again"
    )


def _until_recorded(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call`` (a run store write), tried again while the disk is full, for at most
    :data:`FULL_DISK_PATIENCE` seconds: the run's end must not be lost for want of a page."""
    deadline = time.monotonic() + FULL_DISK_PATIENCE
    while True:
        try:
            return call(*args, **kwargs)
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc) or time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def _note(text: str) -> None:
    """A line for the supervisor's log, which a full disk may refuse."""
    with contextlib.suppress(OSError):
        print(text, file=sys.stderr)


def _append_run_event(rundir: str, state: str, reason: str | None = None) -> None:
    record = {"time": time.time(), "kind": "run", "state": state}
    if reason:
        record["message"] = reason
    try:
        with open(Path(rundir) / "events.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    except OSError:
        pass


#: cwltool's log names every cache entry a run fills or reads.
_CACHE_ENTRY = re.compile(
    r"\[job [^\]]+\] (?:Output of job will be cached in|Using cached output in) (?P<dir>/.+?)\s*$"
)


def _outside_paths(value: Any, entry: str) -> bool:
    """Whether a File or Directory in ``value`` has an absolute path outside ``entry``."""
    if isinstance(value, list):
        return any(_outside_paths(v, entry) for v in value)
    if not isinstance(value, dict):
        return False
    if value.get("class") in ("File", "Directory"):
        where = value.get("path")
        if where is None and str(value.get("location", "")).startswith("file://"):
            where = urllib.parse.unquote(urllib.parse.urlparse(value["location"]).path)
        if isinstance(where, str) and where.startswith("/"):
            where = os.path.normpath(where)
            if where != entry and not where.startswith(entry + "/"):
                return True
    return any(_outside_paths(v, entry) for v in value.values())


def replayable(entry: Path) -> bool:
    """Whether cwltool can hand back the outputs cached in ``entry`` on a later run.

    A tool that writes its outputs to ``cwl.output.json`` may name its input files there, at the
    path cwltool staged them to for that run (``/tmp/<random>/stg<uuid>/whale.txt``). On a cache
    hit cwltool reads that file again, but stages the inputs elsewhere, so it refuses the run:
    "Output file path ... must be within designated output directory ... or an input file pass
    through" (``revmap_file`` in cwltool's ``command_line_tool.py``, reached from
    ``CallbackJob.run``; cwltool issue #1573). Without a cache the same run succeeds.
    """
    try:
        outputs = json.loads((entry / "cwl.output.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True  # no cwl.output.json (or one cwltool itself refused on the first run)
    return not _outside_paths(outputs, os.path.normpath(str(entry)))


def forget_unreplayable(entries: set[str]) -> list[str]:
    """Drop the cache entries cwltool could not replay (see :func:`replayable`); returns them.

    The next run then runs those jobs again instead of failing. An entry another run holds
    (cwltool locks ``<entry>.status``) is left alone: that run checks it when it ends.
    """
    return [e for e in sorted(entries) if not replayable(Path(e)) and _drop_cache_entry(e)]


def _drop_cache_entry(entry: str) -> bool:
    """Empty a cache entry's status and remove it, unless a running cwltool holds it."""
    try:
        with open(f"{entry}.status", "r+", encoding="utf-8") as status:
            try:
                fcntl.flock(status.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            # cwltool reuses an entry only while its status says "success".
            status.seek(0)
            status.truncate()
            shutil.rmtree(entry, ignore_errors=True)
    except OSError:
        return False
    return True


def _same_file(a: Path, b: Path) -> bool:
    try:
        sa, sb = a.stat(), b.stat()
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def store_outputs_once(outputs: dict[str, Any] | None, entries: set[str]) -> list[str]:
    """Make each output file that is also in the cache one file (hard links); returns them.

    With ``--cachedir`` cwltool always copies a job's outputs from its cache entry to
    ``--outdir`` (it sets ``move_outputs = "copy"``), so every final output was stored twice.
    An output is linked only to a cache file of the same name with identical bytes (compared,
    not guessed); the link replaces the copy atomically (``os.replace``), so a crash leaves
    either the copy or the link. The shared file is made read-only: a tool or a person that
    rewrote it in place would otherwise change the cache, and later cache hits, too (editors,
    JupyterLab included, save by writing a new file, which breaks the link).
    """
    if not outputs or not entries:
        return []
    by_name: dict[tuple[str, int], list[Path]] = {}
    for entry in entries:
        root = Path(entry)
        if not root.is_dir():
            continue
        for path in root.rglob("*"):
            try:
                if path.is_file() and not path.is_symlink():
                    by_name.setdefault((path.name, path.stat().st_size), []).append(path)
            except OSError:
                continue
    linked = []
    for item in output_files(outputs):
        paths: list[Path] = []
        if item.get("class") == "File" and isinstance(item.get("path"), str):
            paths.append(Path(item["path"]))
        elif item.get("class") == "Directory" and isinstance(item.get("path"), str):
            paths += [p for p in Path(item["path"]).rglob("*") if p.is_file()]
        for out in paths:
            try:
                if out.is_symlink() or not out.is_file():
                    continue
                size = out.stat().st_size
            except OSError:
                continue
            for cached in by_name.get((out.name, size), []):
                if _same_file(out, cached):
                    break
                tmp = out.with_name(f".{out.name}.{os.getpid()}.link")
                try:
                    if not filecmp.cmp(out, cached, shallow=False):
                        continue
                    cached.chmod(cached.stat().st_mode & ~0o222)
                    os.link(cached, tmp)
                    os.replace(tmp, out)
                except OSError:
                    tmp.unlink(missing_ok=True)
                    continue  # another filesystem, or no permission: keep the copy
                linked.append(str(out))
                break
    return linked


def record_provenance(
    run: Run, outputs: dict[str, Any] | None, state: str, finished: float
) -> bool:
    """Write the run's RO-Crate (see :mod:`datalabs_pipelines.crate`) if its plan asks for one.

    Inputs are stat'ed (and hashed only under the plan's size limit), never copied; outputs are
    described where cwltool left them. Returns whether a crate was written.
    """
    rundir = Path(run.rundir)
    try:
        plan = json.loads((rundir / PROVENANCE_PLAN).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(plan, dict) or not plan.get("write"):
        return False
    volumes = [VolumeRef.from_json(v) for v in plan.get("volumes") or []]
    limit = int(plan.get("checksum_limit", 0))
    base = str(Path(run.job_path).parent) if run.job_path else run.cwd
    described = {}
    inputs = []
    for name, path in job_paths(run.inputs, base):
        if path not in described:
            described[path] = describe_path(path, limit)
        inputs.append((name, described[path]))
    workflow = copy_workflow(run.pipeline_path, rundir / "workflow")
    log = LOG_FILE if (rundir / LOG_FILE).is_file() else None
    crate = build_crate(
        run_id=run.id,
        pipeline=run.pipeline,
        workflow_file=workflow,
        job=run.inputs if isinstance(run.inputs, dict) else {},
        inputs=inputs,
        volumes=volumes,
        outputs=outputs,
        root=str(rundir),
        state=state,
        started=run.started,
        finished=finished,
        extra_parts=[log] if log else [],
    )
    write_crate(rundir, crate)
    return True


def execute(
    store: RunStore,
    run: Run,
    echo: IO[str] | None = None,
    on_started: Callable[[CwltoolProcess], None] | None = None,
) -> Run:
    """Run cwltool for a claimed run, following its log until it ends; returns the final run.

    ``echo`` receives cwltool's log as it comes (the CLI's stderr when not ``--quiet``). When
    the hub set a machine-wide limit (:mod:`.slots`), the run first waits for a free slot.
    """
    slots = MachineSlots.from_env()
    if slots is None:
        return _execute(store, run, echo, on_started)
    fd = slots.try_acquire()
    if fd is None:
        _append_run_event(
            run.rundir,
            RUNNING,
            f"waiting for a free run slot ({slots.count} runs at once on this machine, "
            "all users together)",
        )

        def cancelled() -> bool:  # cancelling, or already closed by someone else
            return store.get(run.id, with_steps=False).state != RUNNING

        fd = slots.acquire(give_up=cancelled)
    if fd is None:  # cancelled while it waited: it never started
        reason = store.get(run.id, with_steps=False).exit_reason or "cancelled"
        if store.set_state_if(
            run.id, ACTIVE_STATES, state=CANCELLED, finished=time.time(), exit_reason=reason
        ):
            _append_run_event(run.rundir, CANCELLED, reason)
        return store.get(run.id)
    try:
        return _execute(store, run, echo, on_started)
    finally:
        os.close(fd)  # frees the slot (the kernel would also free it when this process ends)


def record_event(
    event: Event,
    states: dict[str, str],
    log: RunLog,
    upsert_step: Callable[..., Any],
) -> None:
    """Record what one cwltool log line reported: the step's state in the run store
    (``upsert_step(step, **fields)``) and the event in the run's event file, once per change
    (``states``: each step's state so far). Local runs and cluster runs (whose cwltool log the
    Kubernetes executor replays) record their steps alike."""
    if event.step is None:
        log.emit_event(event)
        return
    if event.kind == "step" and event.state == "running":
        # Every line of a job mentions its step; only the first one starts it.
        if event.step not in states:
            states[event.step] = "running"
            upsert_step(event.step, state="running", started=time.time())
            log.emit_event(event)
        if event.cached:
            upsert_step(event.step, cached=1)
    elif event.kind == "step":
        # "[job s1] completed" and "[step s1] completed" report the same thing twice.
        if states.get(event.step) != event.state:
            states[event.step] = event.state or ""
            upsert_step(event.step, state=event.state, finished=time.time())
            log.emit_event(event)
    elif event.kind == "memory":
        upsert_step(event.step, peak_memory_mib=event.peak_memory_mib)
        log.emit_event(event)


def _execute(
    store: RunStore,
    run: Run,
    echo: IO[str] | None,
    on_started: Callable[[CwltoolProcess], None] | None,
) -> Run:
    rundir = Path(run.rundir)
    log = RunLog(rundir)
    log.emit("run", state=RUNNING)
    recent: list[str] = []
    states: dict[str, str] = {}
    cache_entries: set[str] = set()
    disk_full = False

    def record(call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """A run store write while the run goes on; a full disk skips it (the run's end
        records what matters) instead of ending the supervisor."""
        nonlocal disk_full
        try:
            call(*args, **kwargs)
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                raise
            disk_full = True

    cgroup = _run_cgroup(run, log)
    proc = start_cwltool(run.argv, run.cwd, rundir / OUTPUTS_FILE, unhashed_roots(rundir), cgroup)
    record(store.update, run.id, pgid=proc.pid)
    if on_started is not None:
        on_started(proc)
    # A cancel that came between the claim and now found no process group to kill.
    if store.get(run.id, with_steps=False).state == CANCELLING:
        kill_group(proc.pid, signal.SIGTERM)
    for raw in proc.stderr:
        line = raw.decode("utf-8", "replace").rstrip("\n")
        if echo is not None:
            try:
                echo.write(line + "\n")
                echo.flush()
            except (OSError, ValueError):
                echo = None  # the reader went away; the run goes on and is still logged
        recent.append(line)
        if len(recent) > 50:
            del recent[:25]
        if entry := _CACHE_ENTRY.search(line):
            cache_entries.add(entry["dir"])
        _step, event = log.write_line(line)
        if event is not None:
            record_event(
                event, states, log, lambda step, **kw: record(store.upsert_step, run.id, step, **kw)
            )
    code = proc.wait()
    log.flush()
    # Tools may leave background processes behind; they belong to this run and end with it.
    kill_group(proc.pid, signal.SIGKILL)
    out_of_memory = cgroup is not None and cgroup.oom_kills() > 0
    if cgroup is not None and not cgroup.remove():
        _note(f"could not remove the memory cgroup {cgroup.path}")
    # Entries cwltool would refuse to reuse go now, so that the next run repeats those jobs.
    dropped = forget_unreplayable(cache_entries)
    outputs: dict[str, Any] | None = None
    try:
        text = (rundir / OUTPUTS_FILE).read_text(encoding="utf-8").strip()
        if text:
            outputs = json.loads(text)
    except (OSError, ValueError):
        outputs = None
    if code == 0:
        store_outputs_once(outputs, cache_entries - set(dropped))
    current = store.get(run.id, with_steps=False)
    finished = time.time()
    if current.state == CANCELLING:
        state, reason = CANCELLED, current.exit_reason or "cancelled"
    elif code == 0:
        state, reason = SUCCESS, None
    elif out_of_memory:
        assert cgroup is not None
        state, reason = FAILED, _out_of_memory(store, run.id, states, cgroup)
    elif (
        disk_full or log.disk_full or any(w in line for line in recent for w in _DISK_FULL_WORDS)
    ) and _nearly_full(run.rundir):
        state, reason = FAILED, _disk_full_reason(states, give_back_space(run, cache_entries))
    elif code == UNSUPPORTED_EXIT:
        state, reason = FAILED, f"unsupported CWL feature: {_last_error(recent)}"
    else:
        state, reason = FAILED, f"cwltool exited with code {code}: {_failure(states, log, recent)}"
    try:
        record_provenance(replace(run, started=current.started), outputs, state, finished)
    except (OSError, ValueError) as exc:
        # The run's result stands; its supervisor log (or the CLI's stderr) says what is missing.
        _note(f"could not write the provenance of run {run.id}: {exc}")
    _until_recorded(
        store.update,
        run.id,
        state=state,
        finished=finished,
        exit_code=code,
        exit_reason=reason,
        outputs=outputs,
    )
    _until_recorded(
        store.close_open_steps, run.id, "failed" if state != SUCCESS else "success", finished
    )
    log.emit("run", state=state, message=reason, exit_code=code)
    log.close()
    return store.get(run.id)


def _run_cgroup(run: Run, log: RunLog) -> RunCgroup | None:
    """The run's memory cgroup when the hub set a limit (see :mod:`.memory`); a run whose
    cgroup cannot be made runs without the limit and its events say why."""
    try:
        memory = MemoryLimit.from_env()
        return None if memory is None else memory.create(run.id)
    except (OSError, ValueError) as exc:
        log.emit("run", state=RUNNING, message=f"the memory limit is not applied: {exc}")
        return None


def _out_of_memory(store: RunStore, run_id: str, states: dict[str, str], cgroup: RunCgroup) -> str:
    """Mark the steps the OOM killer ended (those cwltool saw fail, or that were still running
    when cwltool itself was killed) and say why the run failed."""
    killed = [step for step, state in states.items() if state in ("failed", "running")]
    message = f"{OOM_REASON} (over the run's {mib(cgroup.limit)})"
    for step in killed:
        store.upsert_step(run_id, step, message=message)
    which = f"step '{killed[0]}'" if len(killed) == 1 else "the run"
    return (
        f"{OOM_REASON}: {which} needed more than the {mib(cgroup.limit)} a run may use on this "
        "machine (the kernel killed it); use less memory, or ask the operator for a larger "
        "pipeline_memory_limit"
    )


def claim(store: RunStore, run_id: str, limit: int) -> bool:
    """Move a queued run to running if fewer than ``limit`` runs are active."""
    with store.transaction() as db:
        if store.count_active(db) >= limit:
            return False
        cur = db.execute(
            "UPDATE runs SET state = ?, started = ?, supervisor_pid = ?, supervisor_started = ? "
            "WHERE id = ? AND state = ?",
            (RUNNING, time.time(), os.getpid(), process_started(os.getpid()), run_id, QUEUED),
        )
        return cur.rowcount == 1


def supervisor_command(settings: Settings, run_id: str) -> list[str]:
    """The command line of a run's supervisor process."""
    return [
        sys.executable,
        "-m",
        "datalabs_pipelines.executors.local",
        "--home",
        str(settings.home),
        "--max-runs",
        str(settings.max_concurrent),
        run_id,
    ]


def dispatch(store: RunStore, settings: Settings) -> list[subprocess.Popen[bytes]]:
    """Start queued background runs while there are free slots; returns the supervisors started.

    The caller may reap them (the server does); a supervisor outlives the caller if it must.
    """
    with store.transaction() as db:
        free = settings.max_concurrent - store.count_active(db)
        if free <= 0:
            return []
        # A run identical to one under way (a re-run of a running run) waits for it: both would
        # fill the same entries of the user's cache, and cwltool's cache lets the second one
        # delete what the first is still copying out (a failed run, seen in a test here). Once
        # the first is done, the second finds every step cached.
        marks = ", ".join("?" for _ in ACTIVE_STATES)
        busy = {
            tuple(row)  # rows are sqlite3.Row, which never equals a tuple
            for row in db.execute(
                f"SELECT user, pipeline_path, inputs FROM runs WHERE state IN ({marks})",
                ACTIVE_STATES,
            )
        }
        ids: list[str] = []
        for run_id, *same in db.execute(
            "SELECT id, user, pipeline_path, inputs FROM runs WHERE state = ? AND detached = 1 "
            "ORDER BY created, rowid",
            (QUEUED,),
        ):
            if len(ids) == free:
                break
            if tuple(same) not in busy:
                busy.add(tuple(same))
                ids.append(run_id)
        now = time.time()
        for run_id in ids:
            db.execute(
                "UPDATE runs SET state = ?, started = ? WHERE id = ?", (RUNNING, now, run_id)
            )
    started = []
    for run_id in ids:
        run = store.get(run_id, with_steps=False)
        try:
            with open(Path(run.rundir) / SUPERVISOR_LOG, "ab") as err:
                proc = subprocess.Popen(
                    supervisor_command(settings, run_id),
                    stdin=subprocess.DEVNULL,
                    stdout=err,
                    stderr=err,
                    cwd=run.rundir,
                    start_new_session=True,
                )
        except OSError as exc:
            store.update(
                run_id, state=FAILED, finished=time.time(), exit_reason=f"could not start: {exc}"
            )
            continue
        store.update(run_id, supervisor_pid=proc.pid, supervisor_started=process_started(proc.pid))
        started.append(proc)
    return started


def cancel(store: RunStore, run_id: str, user: str, grace: float = CANCEL_GRACE) -> Run:
    """Cancel a run: a queued one never starts; a running one has its process group killed.

    Returns the run once it reached a final state (or after ``2 * grace`` seconds).
    """
    run = store.get(run_id, user, with_steps=False)
    if run.state in FINAL_STATES:
        return store.get(run_id, user)
    now = time.time()
    if store.set_state_if(
        run_id, (QUEUED,), state=CANCELLED, finished=now, exit_reason="cancelled before it started"
    ):
        _append_run_event(run.rundir, CANCELLED, "cancelled before it started")
        return store.get(run_id, user)
    store.set_state_if(run_id, (RUNNING,), state=CANCELLING, exit_reason="cancelled by the user")
    _append_run_event(run.rundir, CANCELLING, "cancelled by the user")
    run = store.get(run_id, user, with_steps=False)
    terminate_group(run.pgid, grace)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        run = store.get(run_id, user, with_steps=False)
        if run.state in FINAL_STATES:
            break
        if not process_alive(run.supervisor_pid, run.supervisor_started):
            _finish_lost(store, run)
            break
        time.sleep(0.05)
    return store.get(run_id, user)


def _finish_lost(store: RunStore, run: Run) -> None:
    """Close a run whose supervisor is gone (its processes are killed first)."""
    kill_group(run.pgid, signal.SIGKILL)
    now = time.time()
    if run.state == CANCELLING:
        state, reason = CANCELLED, run.exit_reason or "cancelled"
    else:
        state = FAILED
        reason = (
            "the run's process disappeared while it was running "
            "(killed, or the machine restarted); see its log"
        )
    if store.set_state_if(run.id, ACTIVE_STATES, state=state, finished=now, exit_reason=reason):
        store.close_open_steps(run.id, "failed", now)
        _append_run_event(run.rundir, state, reason)


def reconcile(store: RunStore, start_grace: float = START_GRACE) -> list[str]:
    """Mark active runs whose supervisor is gone as failed (or cancelled); returns their ids."""
    lost = []
    now = time.time()
    for run in store.list(states=ACTIVE_STATES, limit=100_000):
        if on_kubernetes(run):
            continue
        if run.supervisor_pid is None:
            if run.started is not None and now - run.started < start_grace:
                continue
        elif process_alive(run.supervisor_pid, run.supervisor_started):
            continue
        _finish_lost(store, run)
        lost.append(run.id)
    return lost


def rerun_request(run: Run) -> RunRequest:
    """A request that runs the same pipeline with a copy of ``run``'s inputs (and the volumes
    that were attached for it)."""
    try:
        plan = json.loads((Path(run.rundir) / PROVENANCE_PLAN).read_text(encoding="utf-8"))
        volumes = tuple(VolumeRef.from_json(v) for v in plan.get("volumes") or [])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        volumes = ()
    return RunRequest(
        pipeline=run.pipeline,
        pipeline_path=run.pipeline_path,
        inputs=dict(run.inputs),
        rerun_of=run.id,
        volumes=volumes,
    )


class LocalExecutor:
    """Runs pipelines as supervised cwltool processes; what the server extension talks to."""

    name = "local"

    def __init__(self, settings: Settings, store: RunStore | None = None) -> None:
        self.settings = settings
        self.store = store or RunStore(settings.db_path)
        self._children: list[subprocess.Popen[bytes]] = []

    def submit(self, request: RunRequest, user: str | None = None) -> Run:
        """Queue a run for ``user`` (default: the settings' user) and start it if a slot is free."""
        settings = self.settings if user is None else replace(self.settings, user=user)
        run = create_run(self.store, settings, request, detached=True)
        try:
            self.tick()
        except (OSError, sqlite3.OperationalError) as exc:
            if not is_disk_full(exc):
                raise
            # The run is queued all the same: a later tick starts it once there is room.
        return self.store.get(run.id)

    def rerun(self, user: str, run_id: str) -> Run:
        """Queue a new run of the same pipeline with the same inputs."""
        old = self.store.get(run_id, user, with_steps=False)
        return self.submit(rerun_request(old), user=user)

    def cancel(self, user: str, run_id: str) -> Run:
        """Cancel a run of ``user`` (see :func:`cancel`)."""
        run = cancel(self.store, run_id, user)
        self.tick()
        return run

    def tick(self) -> None:
        """Reap finished supervisors, mark lost runs, start queued ones."""
        self._children = [p for p in self._children if p.poll() is None]
        reconcile(self.store)
        self._children += dispatch(self.store, self.settings)

    def close(self) -> None:
        self._children = [p for p in self._children if p.poll() is None]
        self.store.close()


# -- the supervisor process ------------------------------------------------------------------


def _supervise(home: Path, max_runs: int, run_id: str) -> int:
    store = RunStore(home / "runs.db")
    run = store.get(run_id, with_steps=False)
    settings = Settings(home=home, user=run.user, max_concurrent=max_runs)
    store.update(
        run_id, supervisor_pid=os.getpid(), supervisor_started=process_started(os.getpid())
    )
    proc_holder: list[CwltoolProcess] = []

    def stop(signum: int, _frame: object) -> None:
        # Stopping the supervisor stops its run: nothing would watch it otherwise.
        reason = f"stopped by signal {signal.Signals(signum).name}"
        store.set_state_if(run_id, (RUNNING,), state=CANCELLING, exit_reason=reason)
        for p in proc_holder:
            kill_group(p.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        final = execute(store, run, on_started=proc_holder.append)
    finally:
        dispatch(store, settings)
    return 0 if final.state == SUCCESS else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of a run's supervisor process (started by :func:`dispatch`)."""
    import argparse

    parser = argparse.ArgumentParser(prog="datalabs-pipeline-supervisor")
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--max-runs", type=int, default=4)
    parser.add_argument("run_id")
    args = parser.parse_args(argv)
    return _supervise(args.home, args.max_runs, args.run_id)


if __name__ == "__main__":
    sys.exit(main())
