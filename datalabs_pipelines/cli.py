"""``datalabs-pipeline``: run CWL pipelines and look after their runs from a terminal.

``run`` speaks the cwl-runner contract (``run [--outdir DIR] [--quiet] PIPELINE [JOB]``: the
output object as JSON on stdout, exit 0 on success, 33 for an unsupported feature, non-zero
otherwise); ``datalabs-cwl-runner`` (:func:`cwl_runner`) is the same under cwl-runner's own
calling convention (``RUNNER [options] PROCESS [JOB]``, no subcommand), so standard CWL tooling
such as cwltest can drive it. Every run, from here or from JupyterLab, lands in the same run
store (``$DATALABS_PIPELINES_HOME``, by default ``~/.local/share/datalabs/pipelines``).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from .executors import local
from .runs import CANCELLING, FINAL_STATES, RUNNING, SUCCESS, Run, RunNotFound, RunStore
from .settings import Settings

#: Exit code when the command itself is misused (argparse uses 2 as well).
USAGE_EXIT = 2
ENV_CATALOGUE = "DATALABS_CATALOGUE"

_OUR_FLAGS = {"--quiet", "--detach"}
_OUR_VALUE_OPTIONS = {"--outdir"}


def _cwltool_value_options() -> set[str]:
    """cwltool options that take a value (only looked up when an unknown option needs it)."""
    from cwltool.argparser import arg_parser

    names: set[str] = set()
    for action in arg_parser()._actions:
        if action.nargs == 0 or not action.option_strings:
            continue
        names.update(action.option_strings)
    return names


def parse_run_args(args: list[str], prog: str = "datalabs-pipeline run") -> dict[str, Any]:
    """Split ``run``'s arguments into ours, cwltool's, the pipeline, the job and tool inputs
    (``prog`` names the command in error messages)."""
    opts: dict[str, Any] = {"outdir": None, "quiet": False, "detach": False, "cwltool_args": []}
    value_options: set[str] | None = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        name, has_value, value = arg.partition("=")
        if name in _OUR_FLAGS:
            opts[name[2:]] = True
        elif name in _OUR_VALUE_OPTIONS:
            if not has_value:
                i += 1
                if i >= len(args):
                    raise SystemExit(f"{prog}: {name} needs a value")
                value = args[i]
            opts[name[2:]] = value
        else:
            opts["cwltool_args"].append(arg)
            if not has_value:
                if value_options is None:
                    value_options = _cwltool_value_options()
                if name in value_options and i + 1 < len(args):
                    i += 1
                    opts["cwltool_args"].append(args[i])
        i += 1
    rest = args[i:]
    if not rest:
        raise SystemExit(f"{prog}: missing PIPELINE (a .cwl file or a catalogue id)")
    opts["pipeline"] = rest[0]
    opts["job"] = rest[1] if len(rest) > 1 and not rest[1].startswith("-") else None
    opts["tool_args"] = rest[2:] if opts["job"] is not None else rest[1:]
    return opts


def _absolute_inputs(value: Any, base: Path) -> Any:
    """Make the relative File/Directory locations of a job absolute (so a re-run finds them)."""
    if isinstance(value, list):
        return [_absolute_inputs(v, base) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _absolute_inputs(v, base) for k, v in value.items()}
    if out.get("class") in ("File", "Directory"):
        for key in ("location", "path"):
            loc = out.get(key)
            if isinstance(loc, str) and "://" not in loc and not loc.startswith(("/", "_:")):
                out[key] = str(base / loc)
    return out


def _load_job(job: str | None) -> dict[str, Any]:
    if job is None or job == "-":
        return {}
    try:
        with open(job, encoding="utf-8") as f:
            text = f.read()
        try:
            # Most jobs are JSON (the panel, the API and cwltest write JSON): read them without
            # importing a YAML parser, which cost the foreground run ~30 ms.
            data = json.loads(text)
        except ValueError:
            import yaml

            data = yaml.safe_load(text)
    except Exception:  # noqa: BLE001 - an unreadable job is cwltool's to report, not ours
        return {}
    if not isinstance(data, dict):
        return {}
    return _absolute_inputs(data, Path(job).resolve().parent)


def _resolve_pipeline(name: str) -> tuple[str, str]:
    """(display id, path) for a .cwl path or, failing that, a catalogue id."""
    path_part, _, fragment = name.partition("#")
    if os.path.exists(path_part) or "://" in name:
        if "://" in name:
            return name, name
        absolute = str(Path(path_part).resolve()) + (f"#{fragment}" if fragment else "")
        return Path(path_part).name + (f"#{fragment}" if fragment else ""), absolute
    dirs = [d for d in os.environ.get(ENV_CATALOGUE, "").split(os.pathsep) if d]
    if dirs:
        from .catalogue import Catalogue

        pipeline = Catalogue([Path(d) for d in dirs]).get(name)
        if pipeline is not None:
            return pipeline.id, pipeline.uri
    # Let cwltool produce its own "not found" message and exit code.
    return name, name


def cmd_run(args: list[str], prog: str = "datalabs-pipeline run") -> int:
    """Run a pipeline in the foreground, the cwl-runner way (see the module docstring)."""
    from .launcher import Workspace

    opts = parse_run_args(args, prog)
    settings = Settings.from_env()
    store = RunStore(settings.db_path)
    pipeline_id, pipeline_path = _resolve_pipeline(opts["pipeline"])
    job = opts["job"]
    request = local.RunRequest(
        pipeline=pipeline_id,
        pipeline_path=pipeline_path,
        inputs=_load_job(job),
        job_path=str(Path(job).resolve()) if job and job != "-" else job,
        outdir=str(Path(opts["outdir"]).resolve()) if opts["outdir"] else None,
        cwd=os.getcwd(),
        cwltool_args=opts["cwltool_args"],
        tool_args=opts["tool_args"],
        volumes=tuple(v.ref() for v in Workspace.from_env().volumes),
    )
    if opts["detach"]:
        run = local.create_run(store, settings, request, detached=True)
        local.dispatch(store, settings)
        print(run.id)
        return 0
    run = local.create_run(store, settings, request, detached=False)
    if not opts["quiet"]:
        print(f"datalabs-pipeline: run {run.id}", file=sys.stderr)
    holder: list[Any] = []

    def stop(signum: int, _frame: object) -> None:
        reason = f"interrupted ({signal.Signals(signum).name})"
        store.set_state_if(run.id, (RUNNING,), state=CANCELLING, exit_reason=reason)
        for proc in holder:
            local.kill_group(proc.pid, signal.SIGTERM)
        if not holder:
            local.cancel(store, run.id, settings.user, grace=0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    delay = 0.05
    while not local.claim(store, run.id, settings.max_concurrent):
        if store.get(run.id, with_steps=False).state in FINAL_STATES:
            return 1
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    final = local.execute(
        store,
        store.get(run.id, with_steps=False),
        echo=None if opts["quiet"] else sys.stderr,
        on_started=holder.append,
    )
    text = (Path(final.rundir) / local.OUTPUTS_FILE).read_text(encoding="utf-8")
    sys.stdout.write(text)
    sys.stdout.flush()
    # Runs waiting in the background may use the slot this one frees.
    local.dispatch(store, settings)
    if final.state == SUCCESS:
        return 0
    if final.exit_code == local.UNSUPPORTED_EXIT:
        return local.UNSUPPORTED_EXIT
    return final.exit_code or 1


def _fmt_time(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _print_run(run: Run) -> None:
    print(f"run       {run.id}")
    print(f"pipeline  {run.pipeline}")
    print(f"state     {run.state}" + (f" ({run.exit_reason})" if run.exit_reason else ""))
    print(f"created   {_fmt_time(run.created)}")
    print(f"started   {_fmt_time(run.started)}")
    print(f"finished  {_fmt_time(run.finished)}")
    print(f"outdir    {run.outdir}")
    for step in run.steps:
        mem = f" {step.peak_memory_mib} MiB" if step.peak_memory_mib is not None else ""
        cached = " (cached)" if step.cached else ""
        print(f"  step {step.name}: {step.state}{cached}{mem}")


def _open(settings: Settings) -> RunStore:
    store = RunStore(settings.db_path)
    local.reconcile(store)
    return store


def _run(args: list[str], prog: str) -> int:
    # Parsed by hand: cwltool's own options pass through untouched.
    try:
        return cmd_run(args, prog)
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return USAGE_EXIT
        raise


CWL_RUNNER_USAGE = """\
usage: datalabs-cwl-runner [--outdir DIR] [--quiet] [cwltool options] PROCESS [JOB] [inputs]

A drop-in cwl-runner: runs PROCESS (a CWL file, FILE#id, or a pipeline catalogue id) with JOB
as `datalabs-pipeline run` does, into the same run store. Prints the output object as JSON on
stdout; exits 0 on success, 33 for an unsupported CWL feature, non-zero otherwise.
"""


def cwl_runner(argv: list[str] | None = None) -> int:
    """Entry point of ``datalabs-cwl-runner``: ``datalabs-pipeline run`` under the calling
    convention of the ``cwl-runner`` interface (``RUNNER [options] PROCESS [JOB]``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv in (["--help"], ["-h"]):
        print(CWL_RUNNER_USAGE, end="")
        return 0
    if argv == ["--version"]:
        from importlib.metadata import version

        print(f"datalabs-cwl-runner {version('datalabs')} (cwltool {version('cwltool')})")
        return 0
    return _run(argv, "datalabs-cwl-runner")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``datalabs-pipeline``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run":
        return _run(argv[1:], "datalabs-pipeline run")
    import argparse  # the other commands only: ``run`` parses its arguments by hand

    parser = argparse.ArgumentParser(
        prog="datalabs-pipeline",
        description="Run CWL pipelines and follow their runs (same store as JupyterLab's panel).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "run",
        help="run a pipeline: run [--outdir DIR] [--quiet] [--detach] [cwltool options] "
        "PIPELINE [JOB]",
    )
    p_list = sub.add_parser("list", help="list your runs, newest first")
    p_list.add_argument("--limit", type=int, default=50)
    p_search = sub.add_parser("search", help="search the pipeline catalogue ($DATALABS_CATALOGUE)")
    p_search.add_argument("query", nargs="?", default="")
    p_search.add_argument("--accepts", help="only pipelines with an input of this type or format")
    p_search.add_argument("--catalogue", action="append", help="catalogue folder (repeatable)")
    for name, text in (
        ("status", "show a run and its steps"),
        ("logs", "print a run's log"),
        ("cancel", "cancel a run"),
        ("rerun", "run again with the same inputs (in the background)"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("run_id")
        p.add_argument("--json", action="store_true", help="print JSON")
        if name == "logs":
            p.add_argument("--step", help="only this step's log")
    args = parser.parse_args(argv)
    settings = Settings.from_env()

    if args.command == "search":
        from .catalogue import Catalogue

        dirs = args.catalogue or [
            d for d in os.environ.get(ENV_CATALOGUE, "").split(os.pathsep) if d
        ]
        if not dirs:
            print("no catalogue: pass --catalogue DIR or set DATALABS_CATALOGUE", file=sys.stderr)
            return USAGE_EXIT
        catalogue = Catalogue([Path(d) for d in dirs])
        for problem in catalogue.problems():
            print(f"skipped {problem.path}: {problem.reason}", file=sys.stderr)
        for pipeline in catalogue.search(args.query, accepts=args.accepts):
            print(f"{pipeline.id}\t{pipeline.label or ''}")
        return 0

    store = _open(settings)
    if args.command == "list":
        for run in store.list(settings.user, limit=args.limit):
            print(f"{run.id}  {run.state:<10}  {_fmt_time(run.created)}  {run.pipeline}")
        return 0
    try:
        if args.command == "status":
            run = store.get(args.run_id, settings.user)
            if args.json:
                print(json.dumps(run.to_json(), indent=2))
            else:
                _print_run(run)
            return 0
        if args.command == "logs":
            from .events import LOG_FILE, STEPS_DIR, step_log_name, tail_text

            run = store.get(args.run_id, settings.user, with_steps=False)
            base = Path(run.rundir)
            path = base / STEPS_DIR / step_log_name(args.step) if args.step else base / LOG_FILE
            sys.stdout.write(tail_text(path))
            return 0
        if args.command == "cancel":
            run = store.get(args.run_id, settings.user, with_steps=False)
            if local.on_kubernetes(run) and not run.is_final:
                # Only the server holds the Kubernetes configuration that can delete the Job;
                # marking the run cancelled here would leave the Job running unseen.
                print(
                    f"run {run.id} is a Kubernetes Job: cancel it from the Pipelines panel "
                    "(POST /datalabs/api/runs/<id>/cancel)",
                    file=sys.stderr,
                )
                return 1
            run = local.cancel(store, args.run_id, settings.user)
            print(f"{run.id} {run.state}")
            return 0
        if args.command == "rerun":
            old = store.get(args.run_id, settings.user, with_steps=False)
            run = local.create_run(store, settings, local.rerun_request(old), detached=True)
            local.dispatch(store, settings)
            print(run.id)
            return 0
    except RunNotFound:
        print(f"no run {args.run_id!r} for user {settings.user}", file=sys.stderr)
        return 1
    return USAGE_EXIT


if __name__ == "__main__":
    sys.exit(main())
