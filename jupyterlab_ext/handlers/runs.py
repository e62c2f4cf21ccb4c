"""``/datalabs/api/runs``: launch pipelines and watch, cancel and re-run their runs.

A user sees only their own runs: every lookup goes through the run store with the caller's user
name, so another user's run id is answered like an unknown one (404).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from tornado import web
from tornado.iostream import StreamClosedError

from datalabs_pipelines.crate import METADATA_FILE, crate_parts
from datalabs_pipelines.events import LOG_FILE, STEPS_DIR, read_events, step_log_name, tail_text
from datalabs_pipelines.executors.kubernetes_executor import KubernetesAPIError
from datalabs_pipelines.executors.local import PROVENANCE_DIR, RunRequest, is_disk_full
from datalabs_pipelines.launcher import JobRejected, validate_job
from datalabs_pipelines.runs import FINAL_STATES, Run, RunNotFound

from . import DatalabsHandler, route

RUN_ID = r"(?P<run_id>[^/]+)"
#: Seconds between looks at a live run's event file, and between keep-alive comments.
EVENTS_POLL = 0.25
KEEPALIVE = 15.0


class RunBase(DatalabsHandler):
    async def find_run(self, run_id: str, with_steps: bool = True) -> Run | None:
        """The caller's run, or None after answering 404."""
        try:
            return await asyncio.to_thread(
                self.services.executor.store.get, run_id, self.user_name, with_steps
            )
        except RunNotFound:
            self.send_error_json(404, f"no run {run_id!r} (it may belong to another user)")
            return None

    def user_cwl_refused(self, document: Path) -> str | None:
        """Why a pipeline file the user wrote may not run (see ``refused_reference``).

        Only files in the workspace are the user's own (their published pipelines and editor
        drafts live in it); the mission catalogue's files are the operator's.
        """
        root = Path(os.path.realpath(self.services.workspace.root))
        real = Path(os.path.realpath(document))
        if real != root and not real.is_relative_to(root):
            return None
        return self.refused_reference(real)

    async def queue(self, submit: Callable[[], Run]) -> Run | None:
        """``submit()`` (which creates a run) off the event loop; a full disk is answered 507
        with what to do, instead of a 500."""
        try:
            return await asyncio.to_thread(submit)
        except (OSError, sqlite3.OperationalError) as exc:
            if not is_disk_full(exc):
                raise
            self.send_error_json(
                507,
                "The workspace disk is full, so the run could not be created. Delete files you "
                "no longer need (old runs' outputs too) and try again.",
            )
            return None

    async def workspace_full(self) -> bool:
        """Whether the workspace is over its quota (then answered 507 with what to do)."""
        quota = self.services.quota
        message = quota and await asyncio.to_thread(quota.refusal)
        if message:
            self.send_error_json(507, message)
            return True
        return False


class RunsHandler(RunBase):
    """``GET runs``: the caller's runs, newest first. ``POST runs``: launch a pipeline."""

    @web.authenticated
    async def get(self) -> None:
        runs = await asyncio.to_thread(self.services.executor.store.list, self.user_name, None, 500)
        self.send_json({"runs": [r.to_json(with_steps=False) for r in runs]})

    @web.authenticated
    async def post(self) -> None:
        if await self.workspace_full():
            return
        body = self.json_body()
        if not isinstance(body, dict) or not isinstance(body.get("pipeline"), str):
            self.send_error_json(
                400, 'send a JSON object {"pipeline": "<mission>/<name>", "inputs": {...}}'
            )
            return
        pipeline = await asyncio.to_thread(self.services.catalogue.get, body["pipeline"])
        if pipeline is None:
            self.send_error_json(404, f"no pipeline {body['pipeline']!r} in the catalogue")
            return
        reason = await asyncio.to_thread(self.user_cwl_refused, Path(pipeline.path))
        if reason:
            self.send_error_json(400, reason)
            return
        try:
            job = validate_job(pipeline, body.get("inputs") or {}, self.services.workspace)
        except JobRejected as rejected:
            self.send_error_json(
                400,
                str(rejected),
                problems=[{"input": p.input, "message": p.message} for p in rejected.problems],
            )
            return
        request = RunRequest(
            pipeline=pipeline.id,
            pipeline_path=pipeline.uri,
            inputs=job,
            volumes=tuple(v.ref() for v in self.services.workspace.volumes),
        )
        run = await self.queue(lambda: self.services.executor.submit(request, self.user_name))
        if run is None:
            return
        self.set_header("Location", self.request.path.rstrip("/") + "/" + run.id)
        self.send_json(run.to_json(), status=201)


class RunHandler(RunBase):
    """``GET runs/<id>``: state, times, outputs and steps."""

    @web.authenticated
    async def get(self, run_id: str) -> None:
        run = await self.find_run(run_id)
        if run is not None:
            self.send_json(run.to_json())


class RunEventsHandler(RunBase):
    """``GET runs/<id>/events``: server-sent events, live until the run ends.

    Each event's ``id`` is a byte offset in the run's event file; a client that reconnects with
    ``Last-Event-ID`` continues where it stopped.
    """

    @web.authenticated
    async def get(self, run_id: str) -> None:
        run = await self.find_run(run_id, with_steps=False)
        if run is None:
            return
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        try:
            offset = max(0, int(self.request.headers.get("Last-Event-ID", "0")))
        except ValueError:
            offset = 0
        store = self.services.executor.store
        loop = asyncio.get_running_loop()
        last_write = loop.time()
        try:
            while True:
                state = (await asyncio.to_thread(store.get, run_id, self.user_name, False)).state
                events, new_offset = await asyncio.to_thread(read_events, Path(run.rundir), offset)
                for event in events:
                    self.write(f"event: {event.get('kind', 'message')}\n")
                    self.write(f"data: {json.dumps(event)}\n\n")
                if events:
                    self.write(f"id: {new_offset}\n\n")
                    offset = new_offset
                    last_write = loop.time()
                    await self.flush()
                if state in FINAL_STATES and not events:
                    self.write(f"event: end\ndata: {json.dumps({'state': state})}\n\n")
                    await self.flush()
                    break
                if loop.time() - last_write > KEEPALIVE:
                    self.write(": keep-alive\n\n")
                    await self.flush()
                    last_write = loop.time()
                await asyncio.sleep(EVENTS_POLL)
        except StreamClosedError:
            return
        self.finish()


class RunLogHandler(RunBase):
    """``GET runs/<id>/log[?step=NAME]``: the run's cwltool log, or one step's log, as text."""

    @web.authenticated
    async def get(self, run_id: str) -> None:
        run = await self.find_run(run_id, with_steps=False)
        if run is None:
            return
        step = self.get_query_argument("step", None)
        base = Path(run.rundir)
        path = base / STEPS_DIR / step_log_name(step) if step else base / LOG_FILE
        text = await asyncio.to_thread(tail_text, path)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(text)


class RunCancelHandler(RunBase):
    """``POST runs/<id>/cancel``: stop a queued or running run (its whole process group)."""

    @web.authenticated
    async def post(self, run_id: str) -> None:
        if await self.find_run(run_id, with_steps=False) is None:
            return
        try:
            run = await asyncio.to_thread(self.services.executor.cancel, self.user_name, run_id)
        except KubernetesAPIError as exc:
            # The Job could not be deleted: say so rather than claim the run stopped.
            self.send_error_json(502, f"could not cancel the run's Kubernetes Job: {exc}")
            return
        self.send_json(run.to_json())


class RunRerunHandler(RunBase):
    """``POST runs/<id>/rerun``: a new run of the same pipeline with the same inputs."""

    @web.authenticated
    async def post(self, run_id: str) -> None:
        old = await self.find_run(run_id, with_steps=False)
        if old is None or await self.workspace_full():
            return
        # The file may have changed since the first run: check it again.
        document = Path(old.pipeline_path.partition("#")[0])  # no #<process> of a package
        reason = await asyncio.to_thread(self.user_cwl_refused, document)
        if reason:
            self.send_error_json(400, reason)
            return
        run = await self.queue(lambda: self.services.executor.rerun(self.user_name, run_id))
        if run is not None:
            self.send_json(run.to_json(), status=201)


def _zip_folder(folder: Path) -> str:
    fd, name = tempfile.mkstemp(suffix=".zip")
    os.close(fd)
    with zipfile.ZipFile(name, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink():
                archive.write(path, Path("provenance") / path.relative_to(folder))
    return name


def _zip_crate(rundir: Path) -> str:
    """The run's RO-Crate as a zip: the metadata at the top, then the parts in the run folder
    (the CWL, the outputs, the log). Inputs are named in the metadata, not included."""
    fd, name = tempfile.mkstemp(suffix=".zip")
    os.close(fd)
    root = rundir.resolve()
    with zipfile.ZipFile(name, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in crate_parts(rundir):
            archive.write(path, path.relative_to(root))
    return name


class RunProvenanceHandler(RunBase):
    """``GET runs/<id>/provenance``: the run's research object as a zip download: a Workflow
    Run RO-Crate (local runs), or cwltool's CWLProv bag (Kubernetes runs, older runs)."""

    @web.authenticated
    async def get(self, run_id: str) -> None:
        run = await self.find_run(run_id, with_steps=False)
        if run is None:
            return
        rundir = Path(run.rundir)
        crate = (rundir / METADATA_FILE).is_file()
        if run.state not in FINAL_STATES or not (
            crate or (rundir / PROVENANCE_DIR / "bagit.txt").exists()
        ):
            self.send_error_json(
                404,
                "no provenance for this run yet: it is written when the run ends "
                "(and only when provenance is enabled)",
            )
            return
        if crate:
            name = await asyncio.to_thread(_zip_crate, rundir)
        else:
            name = await asyncio.to_thread(_zip_folder, rundir / PROVENANCE_DIR)
        try:
            self.set_header("Content-Type", "application/zip")
            self.set_header(
                "Content-Disposition", f'attachment; filename="run-{run.id}-provenance.zip"'
            )
            with open(name, "rb") as f:
                while chunk := await asyncio.to_thread(f.read, 1 << 16):
                    self.write(chunk)
                    await self.flush()
            self.finish()
        finally:
            os.unlink(name)


default_handlers = [
    (route("runs"), RunsHandler),
    (route(f"runs/{RUN_ID}"), RunHandler),
    (route(f"runs/{RUN_ID}/events"), RunEventsHandler),
    (route(f"runs/{RUN_ID}/log"), RunLogHandler),
    (route(f"runs/{RUN_ID}/cancel"), RunCancelHandler),
    (route(f"runs/{RUN_ID}/rerun"), RunRerunHandler),
    (route(f"runs/{RUN_ID}/provenance"), RunProvenanceHandler),
]
