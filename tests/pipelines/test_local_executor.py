"""The local executor with real cwltool processes: states, steps, logs, cancel, queue, cache."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import psutil
import pytest

from datalabs_pipelines.events import EVENTS_FILE, LOG_FILE, STEPS_DIR
from datalabs_pipelines.executors.local import (
    LocalExecutor,
    RunRequest,
    group_alive,
    process_alive,
    process_started,
    reconcile,
)
from datalabs_pipelines.runs import FINAL_STATES, RunNotFound, RunStore
from datalabs_pipelines.settings import Settings

from ..helpers import check_run_crate

DATA = Path(__file__).parent / "data"


def _request(data_dir: Path, name: str, **inputs: object) -> RunRequest:
    return RunRequest(pipeline=name, pipeline_path=str(data_dir / name), inputs=dict(inputs))


def _wait_final(store: RunStore, run_id: str, wait_for, timeout: float = 120):
    return wait_for(
        lambda: (r := store.get(run_id)).state in FINAL_STATES and r,
        timeout=timeout,
        what=f"run {run_id} to end",
    )


def _processes_with(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if any(marker in part for part in proc.info["cmdline"] or []):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def test_run_records_steps_events_logs_and_provenance(executor, store, data_dir, wait_for):
    run = executor.submit(_request(data_dir, "two-steps.cwl", a="hello", b="world"))
    assert run.state in ("queued", "running")

    run = _wait_final(store, run.id, wait_for)

    assert run.state == "success", run.exit_reason
    assert [(s.name, s.state) for s in run.steps] == [("first", "success"), ("second", "success")]
    assert all(s.started and s.finished and s.finished >= s.started for s in run.steps)
    result = Path(run.outputs["result"]["path"])
    assert result.read_text() == "hello\nworld\n"
    assert result.is_relative_to(run.outdir)
    rundir = Path(run.rundir)
    events = [json.loads(line) for line in (rundir / EVENTS_FILE).read_text().splitlines()]
    assert ("step", "first", "running") in [
        (e["kind"], e.get("step"), e.get("state")) for e in events
    ]
    assert events[-1]["kind"] == "run" and events[-1]["state"] == "success"
    assert "[job second]" in (rundir / STEPS_DIR / "second.log").read_text()
    assert "Final process status is success" in (rundir / LOG_FILE).read_text()
    # A Workflow Run RO-Crate kept per run, naming the output where it is.
    entities = check_run_crate(rundir)
    output = entities[str(result.relative_to(rundir))]
    assert output["contentSize"] == "12" and output["exampleOfWork"] == {"@id": "#output-result"}


def test_failed_run_keeps_the_reason(executor, store, data_dir, wait_for):
    run = executor.submit(_request(data_dir, "fails.cwl"))
    run = _wait_final(store, run.id, wait_for)
    assert run.state == "failed"
    assert run.exit_code not in (0, None)
    assert "cwltool exited with code" in run.exit_reason
    # What the tool wrote to stderr is in its step's log and in the reason.
    assert run.exit_reason.endswith("step 'fails.cwl' failed; its tool said: broken")
    step_log = (Path(run.rundir) / STEPS_DIR / "fails.cwl.log").read_text()
    assert "broken\n" in step_log and "exited with status: 3" in step_log


def test_cancel_kills_the_whole_process_group(executor, store, data_dir, wait_for):
    marker = f"{random.randint(5000, 9000)}.{os.getpid() % 1000}"  # a unique sleep duration
    run = executor.submit(_request(data_dir, "sleepy.cwl", marker=marker))
    # Both the step's shell, its background sleep and the foreground sleep are up.
    wait_for(lambda: len(_processes_with(marker)) >= 3, timeout=60, what="the step's processes")
    cwltool_pgid = store.get(run.id).pgid

    cancelled = executor.cancel("alice", run.id)

    assert cancelled.state == "cancelled"
    assert cancelled.exit_reason == "cancelled by the user"
    assert [s.state for s in cancelled.steps] == ["failed"]
    wait_for(lambda: not _processes_with(marker), timeout=10, what="no process left")
    wait_for(lambda: not group_alive(cwltool_pgid), timeout=10, what="cwltool's group gone")


def test_cwltool_is_a_session_of_its_own_holding_none_of_its_supervisors_files(
    executor, store, settings, data_dir, wait_for
):
    """cwltool is a fork of the run's supervisor (no new interpreter): it must hold what an
    exec'd cwltool held (the job's output file on stdout, its log pipe on stderr) and none of
    the supervisor's files (the run store, the run's log and events), in a session of its own."""
    marker = f"{random.randint(5000, 9000)}.{os.getpid() % 1000}"
    run = executor.submit(_request(data_dir, "sleepy.cwl", marker=marker))
    wait_for(lambda: len(_processes_with(marker)) >= 3, timeout=60, what="the step's processes")
    current = store.get(run.id)
    cwltool = psutil.Process(current.pgid)

    assert cwltool.ppid() == current.supervisor_pid
    assert os.getsid(cwltool.pid) == cwltool.pid
    rundir = Path(current.rundir)
    assert os.readlink(f"/proc/{cwltool.pid}/fd/1") == str(rundir / "outputs.json")
    assert os.readlink(f"/proc/{cwltool.pid}/fd/2").startswith("pipe:")
    held = {f.path for f in cwltool.open_files()}
    supervisors = {f.path for f in psutil.Process(current.supervisor_pid).open_files()}
    assert str(settings.db_path) in supervisors and str(rundir / LOG_FILE) in supervisors
    assert held & supervisors == set(), held
    assert not any(path.startswith(str(settings.db_path)) for path in held)

    assert executor.cancel("alice", run.id).state == "cancelled"


#: Starts cwltool on a step that sleeps 9 s and at once kills its process group, as a cancel does.
_CANCEL_AT_ONCE = """
import signal, sys
from pathlib import Path
from datalabs_pipelines.executors.local import kill_group, start_cwltool
argv = ["--no-container", sys.argv[1], "--marker", "9"]
proc = start_cwltool(argv, sys.argv[2], Path(sys.argv[2]) / "outputs.json", [], None)
kill_group(proc.pid, signal.SIGTERM)
print(proc.wait())
"""


def test_a_cancel_right_after_cwltool_started_finds_its_process_group(tmp_path, data_dir):
    """cwltool is a fork that makes itself a session (and process group) leader; the executor
    records that group and a cancel kills it. ``start_cwltool`` returns only once the group
    exists, as ``Popen`` returned after the exec; otherwise a kill at once found no group and
    the run went on (seen as a cancel that never ended)."""
    done = subprocess.run(
        [sys.executable, "-c", _CANCEL_AT_ONCE, str(data_dir / "sleepy.cwl"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == str(-signal.SIGTERM), done.stderr


def test_cancel_a_queued_run_never_starts_it(tmp_path, data_dir, wait_for):
    settings = Settings(home=tmp_path / "h", user="alice", max_concurrent=1)
    store = RunStore(settings.db_path)
    executor = LocalExecutor(settings, store)
    marker = f"{random.randint(5000, 9000)}.{os.getpid() % 1000 + 1}"
    first = executor.submit(_request(data_dir, "sleepy.cwl", marker=marker))
    second = executor.submit(_request(data_dir, "echo.cwl", text="never"))
    assert store.get(second.id).state == "queued"
    assert executor.cancel("alice", second.id).state == "cancelled"
    assert executor.cancel("alice", first.id).state == "cancelled"
    time.sleep(0.5)
    executor.tick()
    assert store.get(second.id).state == "cancelled"
    assert store.get(second.id).started is None
    store.close()


def test_a_rerun_of_a_running_run_waits_for_it_then_finds_its_steps_cached(
    executor, store, data_dir, wait_for
):
    # Both would fill the same cache entries at once; cwltool's cache then lets one delete
    # what the other is still copying out. A different run starts beside it as before.
    marker = f"{random.randint(5000, 9000)}.{os.getpid() % 1000 + 2}"
    first = executor.submit(_request(data_dir, "sleepy.cwl", marker=marker))
    wait_for(lambda: len(_processes_with(marker)) >= 3, timeout=60, what="the first run's step")
    again = executor.rerun("alice", first.id)
    other = executor.submit(_request(data_dir, "echo.cwl", text="beside"))
    executor.tick()
    assert store.get(again.id).state == "queued"
    assert _wait_final(store, other.id, wait_for).state == "success"
    assert store.get(again.id).state == "queued"

    executor.cancel("alice", first.id)
    executor.tick()
    wait_for(lambda: store.get(again.id).state != "queued", timeout=30, what="the re-run to start")
    executor.cancel("alice", again.id)


def test_another_users_run_is_not_found(executor, store, data_dir, wait_for):
    run = executor.submit(_request(data_dir, "echo.cwl", text="mine"))
    with pytest.raises(RunNotFound):
        store.get(run.id, user="bob")
    with pytest.raises(RunNotFound):
        executor.cancel("bob", run.id)
    assert store.list(user="bob") == []
    _wait_final(store, run.id, wait_for)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "0123456789abcdef/..", "", "A" * 16])
def test_run_ids_are_checked_before_any_lookup(store, bad):
    with pytest.raises(RunNotFound):
        store.get(bad)


def test_lost_supervisor_is_marked_failed_with_reason(executor, store, data_dir, wait_for):
    marker = f"{random.randint(5000, 9000)}.{os.getpid() % 1000 + 2}"
    run = executor.submit(_request(data_dir, "sleepy.cwl", marker=marker))
    wait_for(lambda: len(_processes_with(marker)) >= 3, timeout=60, what="the step's processes")
    run = store.get(run.id)
    os.kill(run.supervisor_pid, signal.SIGKILL)  # as if the machine lost the process
    wait_for(
        lambda: (
            not psutil.pid_exists(run.supervisor_pid)
            or psutil.Process(run.supervisor_pid).status() == psutil.STATUS_ZOMBIE
        ),
        timeout=10,
    )

    assert reconcile(store) == [run.id]

    run = store.get(run.id)
    assert run.state == "failed"
    assert "process disappeared" in run.exit_reason
    wait_for(lambda: not _processes_with(marker), timeout=10, what="the orphaned step killed")
    executor.tick()  # reaps the killed supervisor


@pytest.mark.slow
def test_twenty_runs_with_a_limit_of_four_all_finish(tmp_path, data_dir, wait_for):
    settings = Settings(home=tmp_path / "h", user="alice", max_concurrent=4)
    store = RunStore(settings.db_path)
    executor = LocalExecutor(settings, store)
    runs = [
        executor.submit(_request(data_dir, "short.cwl", seconds="0.5", text=f"run {i}"))
        for i in range(20)
    ]
    assert sum(store.get(r.id).state == "queued" for r in runs) >= 16

    finished = [_wait_final(store, r.id, wait_for, timeout=300) for r in runs]

    assert [r.state for r in finished] == ["success"] * 20
    texts = {Path(r.outputs["out"]["path"]).read_text() for r in finished}
    assert texts == {f"run {i}\n" for i in range(20)}
    # Never more than four at once: count overlaps at every start.
    spans = [(r.started, r.finished) for r in finished]
    peak = max(sum(1 for s, f in spans if s <= start < f) for start, _ in spans)
    assert peak <= 4
    executor.close()


def test_rerun_with_changed_input_reuses_finished_steps(executor, store, data_dir, wait_for):
    first = executor.submit(_request(data_dir, "two-steps.cwl", a="same", b="one"))
    first = _wait_final(store, first.id, wait_for)
    assert first.state == "success"

    again = executor.rerun("alice", first.id)
    assert again.inputs == first.inputs and again.rerun_of == first.id
    again = _wait_final(store, again.id, wait_for)
    assert again.state == "success"
    assert all(s.cached for s in again.steps)

    changed = executor.submit(_request(data_dir, "two-steps.cwl", a="same", b="two"))
    changed = _wait_final(store, changed.id, wait_for)
    steps = {s.name: s for s in changed.steps}
    assert steps["first"].cached and not steps["second"].cached
    assert Path(changed.outputs["result"]["path"]).read_text() == "same\ntwo\n"


def test_killed_launcher_does_not_lose_runs(settings, data_dir, wait_for, tmp_path):
    """A process that launched runs dies; a new one finds every run in its right state."""
    script = (
        "import sys, time\n"
        "from datalabs_pipelines.executors.local import LocalExecutor, RunRequest\n"
        "from datalabs_pipelines.settings import Settings\n"
        f"ex = LocalExecutor(Settings(home=__import__('pathlib').Path({str(settings.home)!r}),"
        " user='alice'))\n"
        f"for name, inputs in [('echo.cwl', {{'text': 'quick'}}),"
        f" ('short.cwl', {{'seconds': '4', 'text': 'slow'}})]:\n"
        f"    r = ex.submit(RunRequest(pipeline=name, pipeline_path={str(data_dir)!r} + '/' + name,"
        " inputs=inputs))\n"
        "    print(r.id, flush=True)\n"
        "time.sleep(600)\n"
    )
    launcher = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        quick_id = launcher.stdout.readline().strip()
        slow_id = launcher.stdout.readline().strip()
    finally:
        launcher.kill()
        launcher.wait()

    store = RunStore(settings.db_path)
    executor = LocalExecutor(settings, store)
    executor.tick()
    ids = {r.id for r in store.list(user="alice")}
    assert {quick_id, slow_id} <= ids
    assert store.get(slow_id).state in ("running", "queued")
    quick = _wait_final(store, quick_id, wait_for)
    slow = _wait_final(store, slow_id, wait_for)
    assert (quick.state, slow.state) == ("success", "success")
    store.close()


def test_cache_and_provenance_are_left_out_where_they_would_change_results(
    tmp_path, settings, store
):
    from datalabs_pipelines.executors.local import build_argv, create_run

    def crate_planned(request: RunRequest) -> bool:
        run = create_run(store, settings, request, detached=False)
        return json.loads((Path(run.rundir) / "provenance-plan.json").read_text())["write"]

    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "touch.cwl").write_text(
        "cwlVersion: v1.2\nclass: CommandLineTool\n"
        "requirements: {InplaceUpdateRequirement: {inplaceUpdate: true}}\n"
        "baseCommand: 'true'\ninputs: []\noutputs: []\n"
    )
    (tmp_path / "wf.cwl").write_text(
        "cwlVersion: v1.2\nclass: Workflow\ninputs: []\noutputs: []\n"
        "steps:\n  s:\n    run: tools/touch.cwl\n    in: {}\n    out: []\n"
    )
    inplace = RunRequest(pipeline="wf", pipeline_path=str(tmp_path / "wf.cwl"))
    argv = build_argv(settings, tmp_path / "run", "/out", None, inplace)
    assert "--cachedir" not in argv and not crate_planned(inplace)

    own_requirements = RunRequest(
        pipeline="echo",
        pipeline_path=str(DATA / "echo.cwl"),
        inputs={"text": "x", "cwl:requirements": [{"class": "EnvVarRequirement"}]},
    )
    argv = build_argv(settings, tmp_path / "run", "/out", None, own_requirements)
    assert "--cachedir" not in argv and crate_planned(own_requirements)

    exit_code = RunRequest(pipeline="exit", pipeline_path=str(DATA / "exit-seven.cwl"))
    argv = build_argv(settings, tmp_path / "run", "/out", None, exit_code)
    assert "--cachedir" not in argv and crate_planned(exit_code)

    plain = RunRequest(pipeline="echo", pipeline_path=str(DATA / "echo.cwl"), inputs={"text": "x"})
    argv = build_argv(settings, tmp_path / "run", "/out", None, plain)
    assert "--cachedir" in argv and crate_planned(plain)
    # cwltool's own provenance is never asked for: it copies every input into the run folder.
    assert "--provenance" not in argv


def test_cache_entries_cwltool_cannot_replay_are_dropped(tmp_path):
    from datalabs_pipelines.executors.local import forget_unreplayable

    def entry(name: str, outputs: dict) -> str:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "cwl.output.json").write_text(json.dumps(outputs))
        (tmp_path / f"{name}.status").write_text("success")
        return str(folder)

    def file(where: str) -> dict:
        return {"class": "File", "path": where}

    staged_input = entry("a", {"rec": {"f": file("/tmp/x1/stg0/whale.txt")}})
    input_by_location = entry("b", {"f": {"class": "File", "location": "file:///data/whale.txt"}})
    listed = entry("c", {"d": {"class": "Directory", "path": "d", "listing": [file("/x/y")]}})
    own = entry("d", {"f": file(str(tmp_path / "d" / "out.txt")), "g": file("rel.txt"), "n": 1})
    glob_only = str(tmp_path / "e")
    (tmp_path / "e").mkdir()
    (tmp_path / "e.status").write_text("success")

    dropped = forget_unreplayable({staged_input, input_by_location, listed, own, glob_only})

    assert dropped == [staged_input, input_by_location, listed]
    for gone in dropped:
        assert not Path(gone).exists() and Path(f"{gone}.status").read_text() == ""
    for kept in (own, glob_only):
        assert Path(kept).is_dir() and Path(f"{kept}.status").read_text() == "success"


MIB = 1024 * 1024


def _random_file(path: Path, mib: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(MIB))
    return path


def _stored_bytes(folder: Path) -> int:
    """Bytes stored under ``folder``, each file counted once however many links it has."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for path in folder.rglob("*"):
        st = path.lstat()
        if path.is_file() and not path.is_symlink() and (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def test_archive_input_is_named_by_reference_never_copied(
    executor, store, data_dir, wait_for, tmp_path
):
    from datalabs_pipelines.crate import VolumeRef

    volume = tmp_path / "archive" / "psa-rosetta"
    big = _random_file(volume / "data" / "big.bin", 50)
    mtime = big.stat().st_mtime
    request = RunRequest(
        pipeline="count-bytes.cwl",
        pipeline_path=str(data_dir / "count-bytes.cwl"),
        inputs={"data": {"class": "File", "path": str(big)}},
        volumes=(VolumeRef("psa-rosetta", str(volume), "Rosetta PSA", "3.1"),),
    )
    run = _wait_final(store, executor.submit(request).id, wait_for)

    assert run.state == "success", run.exit_reason
    assert Path(run.outputs["count"]["path"]).read_text().strip() == str(50 * MIB)
    rundir = Path(run.rundir)
    # The input's bytes are not in the run folder: it grows by far less than the input.
    assert _stored_bytes(rundir) < MIB
    entities = check_run_crate(rundir)
    named = entities["file://" + str(big)]
    assert named["@type"] == "File"
    assert named["isPartOf"] == {"@id": "#volume-psa-rosetta"}
    assert named["volumePath"] == "data/big.bin"
    assert named["contentSize"] == str(50 * MIB)
    assert datetime.fromisoformat(named["dateModified"]).timestamp() == pytest.approx(mtime)
    assert "sha1" not in named  # 50 MiB is above the default limit: never read to hash it
    assert entities["#volume-psa-rosetta"] == {
        "@id": "#volume-psa-rosetta",
        "@type": "Collection",
        "identifier": "psa-rosetta",
        "name": "Rosetta PSA",
        "version": "3.1",
        "description": "An archive volume, read in place (mounted read-only).",
    }
    action = next(e for e in entities.values() if e["@type"] == "CreateAction")
    assert {"@id": "file://" + str(big)} in action["object"]
    assert action["actionStatus"] == {"@id": "http://schema.org/CompletedActionStatus"}


NAME_ONLY_TOOL = """cwlVersion: v1.2
class: CommandLineTool
doc: Names its input without reading it.
baseCommand: [echo]
arguments: [$(inputs.data.basename)]
inputs:
  data: File
outputs:
  name: stdout
stdout: name.txt
"""


def _made_unread(path: Path) -> None:
    """Give ``path`` an access time the next read of its bytes will move (relatime moves it
    when it is older than the modification time)."""
    st = path.stat()
    os.utime(path, ns=(st.st_mtime_ns - 3 * 86400 * 10**9, st.st_mtime_ns))


def test_an_archive_input_the_step_does_not_read_is_not_read_for_the_cache_either(
    executor, store, settings, wait_for, tmp_path
):
    # cwltool's cache hashes every input file whole before the step runs; an archive file
    # (read-only, versioned) is keyed by its size and mtime instead, so naming a 1 GiB file
    # costs nothing, and a second run with it is still a cache hit.
    from datalabs_pipelines.crate import VolumeRef

    assert settings.cache
    volume = tmp_path / "archive" / "psa"
    # Above the crate's checksum limit, so the crate does not read it either.
    big = _random_file(volume / "big.bin", settings.checksum_limit // MIB + 1)
    control = _random_file(tmp_path / "control.bin", 1)
    _made_unread(control)
    before = control.stat().st_atime_ns
    control.read_bytes()
    assert control.stat().st_atime_ns != before, "reads do not move access times here"
    tool = tmp_path / "name-only.cwl"
    tool.write_text(NAME_ONLY_TOOL)
    request = RunRequest(
        pipeline="name-only.cwl",
        pipeline_path=str(tool),
        inputs={"data": {"class": "File", "path": str(big)}},
        volumes=(VolumeRef("psa", str(volume), "PSA", "1"),),
    )
    _made_unread(big)
    unread = big.stat().st_atime_ns
    first = _wait_final(store, executor.submit(request).id, wait_for)
    assert first.state == "success", first.exit_reason
    assert Path(first.outputs["name"]["path"]).read_text() == "big.bin\n"
    assert big.stat().st_atime_ns == unread, "the archive file was read to run a step that names it"
    again = _wait_final(store, executor.submit(request).id, wait_for)
    assert again.state == "success", again.exit_reason
    assert [s.cached for s in store.get(again.id).steps] == [True]
    assert big.stat().st_atime_ns == unread


def test_small_inputs_get_a_checksum_and_a_rerun_keeps_the_volumes(
    executor, store, data_dir, wait_for, tmp_path
):
    import hashlib

    from datalabs_pipelines.crate import VolumeRef

    volume = tmp_path / "archive" / "open"
    small = volume / "x.txt"
    volume.mkdir(parents=True)
    small.write_text("hello\n")
    request = RunRequest(
        pipeline="count-bytes.cwl",
        pipeline_path=str(data_dir / "count-bytes.cwl"),
        inputs={"data": {"class": "File", "path": str(small)}},
        volumes=(VolumeRef("open", str(volume)),),
    )
    first = _wait_final(store, executor.submit(request).id, wait_for)
    again = _wait_final(store, executor.rerun("alice", first.id).id, wait_for)
    for run in (first, again):
        assert run.state == "success", run.exit_reason
        named = check_run_crate(Path(run.rundir))["file://" + str(small)]
        assert named["sha1"] == hashlib.sha1(b"hello\n").hexdigest()
        assert named["isPartOf"] == {"@id": "#volume-open"} and named["volumePath"] == "x.txt"


def test_outputs_are_stored_once_not_in_both_cache_and_run_folder(
    executor, store, settings, data_dir, wait_for, tmp_path
):
    source = _random_file(tmp_path / "workspace" / "source.bin", 8)
    request = RunRequest(
        pipeline="copy-file.cwl",
        pipeline_path=str(data_dir / "copy-file.cwl"),
        inputs={"data": {"class": "File", "path": str(source)}},
    )
    first = _wait_final(store, executor.submit(request).id, wait_for)
    assert first.state == "success", first.exit_reason
    output = Path(first.outputs["copy"]["path"])
    assert output.read_bytes() == source.read_bytes()
    # The cache keeps the output for later runs; the run's output is the same file, not a copy
    # (and no copy of the input or output sits in the provenance either).
    assert _stored_bytes(settings.home) < 8 * MIB + MIB
    assert output.stat().st_nlink == 2
    # The shared file cannot be changed in place by the user's tools (sessions are not root).
    assert not output.stat().st_mode & 0o222

    # A re-run is served from the cache, with the right bytes, and still stores them once.
    again = _wait_final(store, executor.rerun("alice", first.id).id, wait_for)
    assert again.state == "success", again.exit_reason
    assert [s.cached for s in again.steps] == [True]
    assert Path(again.outputs["copy"]["path"]).read_bytes() == source.read_bytes()
    assert _stored_bytes(settings.home) < 8 * MIB + MIB


def test_start_times_read_from_proc_are_the_ones_psutil_compares(tmp_path):
    """A run records its supervisor's start time (read from ``/proc``); :func:`process_alive`
    later compares it with psutil's. A command name with a space and a parenthesis (field 2 of
    ``/proc/<pid>/stat``) must not shift the fields read after it."""
    odd = tmp_path / "a) b"
    odd.write_bytes(Path("/bin/sleep").read_bytes())
    odd.chmod(0o755)
    proc = subprocess.Popen([str(odd), "30"])
    try:
        for pid in (os.getpid(), proc.pid):
            started = process_started(pid)
            assert started is not None
            assert abs(started - psutil.Process(pid).create_time()) < 0.01
            assert process_alive(pid, started)
        assert not process_alive(proc.pid, process_started(proc.pid) - 5)  # a reused pid
    finally:
        proc.kill()
        proc.wait()
    assert process_started(proc.pid) is None
