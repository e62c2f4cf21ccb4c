"""The Kubernetes executor: each run is a Calrissian Job, followed through the Kubernetes API.

It offers the same methods as :class:`~datalabs_pipelines.executors.local.LocalExecutor` that the
REST handlers call (``submit``, ``rerun``, ``cancel``, ``tick``, ``close`` and ``store``), and
records runs in the same :class:`~datalabs_pipelines.runs.RunStore`, so the Pipelines panel does
not care where a run executes.

- ``submit`` writes the job file and a copy of the pipeline's folder to the input claim (which the
  session mounts at ``input_dir``), creates the Job built by
  :func:`~datalabs_pipelines.executors.kubernetes.make_calrissian_job` and records the run as
  ``queued``. If the API refuses the Job (no such namespace, no permission, API unreachable) the
  run is recorded as ``failed`` with the API's answer as its reason, so the user sees why.
- ``tick`` (the server's periodic check) reads each live run's Job and maps its status: pods
  active -> ``running``, condition ``Complete`` -> ``success``, condition ``Failed`` ->
  ``failed`` with the condition's reason and message.
- ``cancel`` deletes the Job (propagation ``Background``, so its pod goes too) and marks the run
  ``cancelled``.

The API is spoken with kubernetes_asyncio, in a short event loop of its own per call: the
handlers already call executors from a worker thread (``asyncio.to_thread``), where there is no
running loop. Configuration: in-cluster when ``KUBERNETES_SERVICE_HOST`` is set and no kubeconfig
is given, else a kubeconfig (``kubeconfig`` or the default ``$KUBECONFIG``/``~/.kube/config``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

if TYPE_CHECKING:
    from kubernetes_asyncio.client import BatchV1Api, Configuration

# kubernetes_asyncio is imported where it is used, never at import time: every local session's
# server extension imports this module, and the import cost 2.5 s of CPU per session start on
# the 2-core machine (measured), for an executor local sessions never use.

from ..events import STEPS_DIR, RunLog, step_log_name
from ..runs import (
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
from .kubernetes import (
    CALRISSIAN_IMAGE,
    TOOL_LOGS_DIR,
    ArchiveVolume,
    CalrissianJob,
    InputNotReadable,
    job_name,
    make_calrissian_job,
    volumes_for_inputs,
)
from .local import (
    CALRISSIAN_ARGV0,
    JOB_FILE,
    PROVENANCE_DIR,
    RunRequest,
    _append_run_event,
    on_kubernetes,
    record_event,
    rerun_request,
)

T = TypeVar("T")
LIVE_STATES = (QUEUED, RUNNING, CANCELLING)
#: A step pod's phase as the state of its step (Pending is not a step's start yet).
_POD_STEP_STATES = {"Running": RUNNING, "Succeeded": SUCCESS, "Failed": FAILED}
#: In a cluster run's folder: how far its cwltool log on the output claim has been replayed,
#: and which step pods' logs have been added to the steps' logs (kept across server restarts).
FOLLOWED_FILE = "cluster-log.json"


def _map_locations(value: Any, old: str, new: str) -> Any:
    """``value`` (an output object) with every ``location`` and ``path`` under ``old``
    moved under ``new``."""
    if isinstance(value, list):
        return [_map_locations(v, old, new) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _map_locations(v, old, new) for k, v in value.items()}
    for key, prefix in (("location", "file://"), ("path", "")):
        text = value.get(key)
        if isinstance(text, str) and text.startswith(prefix + old):
            rest = text[len(prefix + old) :]
            if rest == "" or rest.startswith("/"):
                out[key] = prefix + new + rest
    return out


class _ClusterLog:
    """A cluster run's log, recorded in its run folder as a local run's is.

    Calrissian's cwltool writes the run's log to the output claim (``cwltool.log``), which the
    session mounts read-only; its new complete lines go through the same
    :class:`~datalabs_pipelines.events.RunLog` and :func:`record_event` as a local run's
    stderr (the run's log, a log per step, step events and step states). Each step pod's own
    log text, which Calrissian writes to ``steps/<step>.log`` when the step ends, is added to
    that step's log."""

    def __init__(self, rundir: Path) -> None:
        self.rundir = rundir
        self.log = RunLog(rundir)
        self.states: dict[str, str] = {}
        self.offset = 0
        self.pod_logs: list[str] = []
        try:
            followed = json.loads((rundir / FOLLOWED_FILE).read_text("utf-8"))
            self.offset = int(followed["offset"])
            self.pod_logs = list(followed["pod_logs"])
        except (OSError, ValueError, KeyError, TypeError):
            pass

    def follow(self, results: Path, upsert_step: Callable[..., Any]) -> None:
        """Record what the run's results folder gained since the last call."""
        try:
            with open(results / "cwltool.log", "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            data = b""  # not started yet, or the claim is not mounted here
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next call
        for line in data[:end].decode("utf-8", "replace").splitlines():
            _step, event = self.log.write_line(line)
            if event is not None:
                record_event(event, self.states, self.log, upsert_step)
        self.offset += end
        try:
            pod_logs = sorted(p for p in (results / TOOL_LOGS_DIR).iterdir() if p.is_file())
        except OSError:
            pod_logs = []
        for path in pod_logs:
            if path.name in self.pod_logs or not path.name.endswith(".log"):
                continue
            step = path.name[: -len(".log")]
            try:
                text = path.read_text("utf-8", "replace")
            except OSError:
                continue
            with open(self.rundir / STEPS_DIR / step_log_name(step), "a", encoding="utf-8") as f:
                f.write(f"--- the log of step {step}'s pod\n{text}")
            self.pod_logs.append(path.name)
        if end or pod_logs:
            self.log.flush()
            (self.rundir / FOLLOWED_FILE).write_text(
                json.dumps({"offset": self.offset, "pod_logs": self.pod_logs}), "utf-8"
            )

    def close(self) -> None:
        self.log.close()


class KubernetesAPIError(RuntimeError):
    """The Kubernetes API refused or could not be reached; the message says which and why."""


@dataclass(frozen=True)
class KubernetesSettings:
    """Where and how runs become Calrissian Jobs (the server extension fills it from config)."""

    namespace: str
    service_account: str = "calrissian"
    image: str = CALRISSIAN_IMAGE
    input_claim: str = "calrissian-input-data"
    tmpout_claim: str = "calrissian-tmpout"
    output_claim: str = "calrissian-output-data"
    #: Where this server sees the input and output claims (it writes the one, reads the other).
    input_dir: str = "/calrissian/input-data"
    output_dir: str = "/calrissian/output-data"
    archive_volumes: tuple[ArchiveVolume, ...] = ()
    max_ram: str = "8G"
    max_cores: int = 4
    provenance: bool = True
    #: The image of steps without a DockerRequirement (the session's datalab image).
    default_container: str = ""
    #: The broker's API root (``.../hub/datalabs/v1/``): when set, the hub creates, follows and
    #: cancels the Jobs and this server needs no Kubernetes rights at all (the default on a
    #: hub); empty: this server talks to the Kubernetes API itself.
    broker_url: str = ""
    #: The user's own hub token the broker is asked with (never logged, never shown).
    broker_token: str = field(default="", repr=False)
    #: A kubeconfig file; empty: in-cluster configuration if available, else the default one.
    kubeconfig: str = ""
    request_timeout: float = 10.0


def _api_reason(exc: BaseException) -> str:
    """One line for the user from an API error: the server's own message when it gave one."""
    from kubernetes_asyncio.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        body = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else exc.body
        message = ""
        try:
            message = json.loads(body or "{}").get("message", "")
        except (ValueError, AttributeError):
            pass
        return f"{exc.status} {exc.reason}: {message or body or 'no details'}"
    return f"{type(exc).__name__}: {exc}"


async def _json_or_raise(response: Any) -> dict[str, Any]:
    """The JSON of a raw (not preloaded) response; an error status raises ApiException.

    Raw responses are used because then no client model has to accept what the server sends,
    but the client does not raise for their error statuses by itself.
    """
    from kubernetes_asyncio.client.exceptions import ApiException

    body = await response.read()
    if response.status >= 400:
        error = ApiException(status=response.status, reason=response.reason)
        error.body = body.decode("utf-8", "replace")
        raise error
    result: dict[str, Any] = json.loads(body)
    return result


def _job_state(job: dict[str, Any]) -> tuple[str, str | None]:
    """The run state a Job's status means, with the reason for a failure."""
    status = job.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return SUCCESS, None
        if condition.get("type") == "Failed":
            parts = [condition.get("reason"), condition.get("message")]
            return FAILED, ": ".join(p for p in parts if p) or "the Job failed"
    if status.get("active"):
        return RUNNING, None
    return QUEUED, None


class KubernetesExecutor:
    """Runs pipelines as Calrissian Jobs; what the server extension talks to."""

    name = "kubernetes"

    def __init__(
        self, settings: Settings, k8s: KubernetesSettings, store: RunStore | None = None
    ) -> None:
        self.settings = settings
        self.k8s = k8s
        self.store = store or RunStore(settings.db_path)
        # Runs recorded whose Job is still being created: the periodic check runs in another
        # thread and must not take their missing Job for one deleted behind our back.
        self._submitting: set[str] = set()
        self._submitting_lock = threading.Lock()
        #: The logs of live runs being replayed, by run id (see _ClusterLog).
        self._logs: dict[str, _ClusterLog] = {}
        self._logs_lock = threading.Lock()

    # -- the Kubernetes API ----------------------------------------------------------------

    async def _configuration(self) -> Configuration:
        from kubernetes_asyncio import config as k8s_config
        from kubernetes_asyncio.client import Configuration

        configuration = Configuration()
        if not self.k8s.kubeconfig and os.environ.get("KUBERNETES_SERVICE_HOST"):
            k8s_config.load_incluster_config(client_configuration=configuration)
        else:
            await k8s_config.load_kube_config(
                config_file=self.k8s.kubeconfig or None, client_configuration=configuration
            )
        return configuration

    def _call(self, operation: Callable[[BatchV1Api], Awaitable[T]]) -> T:
        """Run one API operation to completion; any failure becomes a KubernetesAPIError."""
        from kubernetes_asyncio import config as k8s_config
        from kubernetes_asyncio.client import ApiClient, BatchV1Api
        from kubernetes_asyncio.client.exceptions import ApiException

        async def go() -> T:
            async with ApiClient(await self._configuration()) as client:
                return await operation(BatchV1Api(client))

        try:
            return asyncio.run(go())
        except ApiException as exc:
            raise KubernetesAPIError(_api_reason(exc)) from exc
        except (OSError, TimeoutError, k8s_config.ConfigException) as exc:
            raise KubernetesAPIError(_api_reason(exc)) from exc
        except Exception as exc:  # aiohttp's errors, mostly: the API could not be reached
            if type(exc).__module__.startswith("aiohttp"):
                raise KubernetesAPIError(_api_reason(exc)) from exc
            raise

    def _read_job(self, run_id: str) -> dict[str, Any] | None:
        """The run's Job as plain JSON, or None when there is none."""

        async def read(api: BatchV1Api) -> dict[str, Any] | None:
            response: Any = await api.read_namespaced_job(
                job_name(run_id),
                self.k8s.namespace,
                _preload_content=False,
                _request_timeout=self.k8s.request_timeout,
            )
            if response.status == 404:
                return None
            return await _json_or_raise(response)

        return self._call(read)

    def _delete_job(self, run_id: str) -> None:
        async def delete(api: BatchV1Api) -> None:
            from kubernetes_asyncio.client.exceptions import ApiException

            try:
                await api.delete_namespaced_job(
                    job_name(run_id),
                    self.k8s.namespace,
                    # Background: the Job goes now and the garbage collector removes its pod.
                    propagation_policy="Background",
                    _request_timeout=self.k8s.request_timeout,
                )
            except ApiException as exc:
                if exc.status != 404:  # already gone is what we wanted
                    raise

        self._call(delete)

    # -- the broker ------------------------------------------------------------------------

    def _broker(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        """One call to the broker with the user's token: ``(status, JSON answer)``; an
        unreachable broker is a KubernetesAPIError."""
        url = self.k8s.broker_url.rstrip("/") + "/" + path
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            url,
            data=data,
            method=method,
            headers={
                "Authorization": f"token {self.k8s.broker_token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.k8s.request_timeout) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                answer = json.loads(exc.read() or b"{}")
            except ValueError:
                answer = {}
            return exc.code, answer if isinstance(answer, dict) else {}
        except (OSError, ValueError) as exc:
            raise KubernetesAPIError(f"the broker could not be reached: {exc}") from exc

    def _runs_path(self, user: str, run_id: str = "") -> str:
        return f"users/{quote(user, safe='')}/runs" + (f"/{run_id}" if run_id else "")

    def _broker_submit(self, run: Run, job: Any) -> str | None:
        """Ask the broker to create the run's Job; the reason it did not, or None."""
        try:
            status, answer = self._broker(
                "POST",
                self._runs_path(run.user),
                {"run_id": run.id, "pipeline": run.pipeline, "inputs": job},
            )
        except KubernetesAPIError as exc:
            return str(exc)
        if status != 201:
            return f"the broker refused the run ({status}): {answer.get('message', 'no details')}"
        return None

    def _broker_observe(self, run: Run) -> tuple[str, str | None] | None:
        """The run's state as the broker reports it (None: no such Job), its step pods'
        states recorded as the run's steps."""
        status, answer = self._broker("GET", self._runs_path(run.user, run.id))
        if status == 404:
            return None
        if status != 200:
            raise KubernetesAPIError(f"{status}: {answer.get('message', 'no details')}")
        now = time.time()
        for pod in answer.get("pods") or []:
            step = pod.get("step")
            state = _POD_STEP_STATES.get(pod.get("phase", ""))
            if step and state:
                fields: dict[str, Any] = {"state": state}
                if state != RUNNING:
                    fields["finished"] = now
                self.store.upsert_step(run.id, step, **fields)
        return str(answer.get("state", QUEUED)), answer.get("reason")

    # -- runs ------------------------------------------------------------------------------

    def _on_archive(self, path: str) -> bool:
        """Whether the Job sees ``path`` as is: it lies on an attached archive volume."""
        for volume in self.k8s.archive_volumes:
            for root in {volume.mount_path, os.path.realpath(volume.mount_path)}:
                if Path(path).is_relative_to(root):
                    return True
        return False

    def _stage_inputs(self, value: Any, staging: Path, base: str, slots: Iterator[int]) -> Any:
        """The job object with files the Job cannot see copied into ``staging/inputs``.

        Inputs on an attached archive volume keep their paths (they are never copied: they can
        be large and the Job mounts them); other files, from the user's workspace, are copied
        to the input claim and the job names the copy.
        """
        if isinstance(value, list):
            return [self._stage_inputs(v, staging, base, slots) for v in value]
        if not isinstance(value, dict):
            return value
        if value.get("class") in ("File", "Directory") and isinstance(value.get("path"), str):
            source = Path(value["path"])
            if self._on_archive(str(source)):
                return value
            slot = next(slots)  # one folder per file: two inputs may share a name
            target = staging / "inputs" / str(slot) / source.name
            target.parent.mkdir(parents=True)
            if value["class"] == "Directory":
                shutil.copytree(source, target)
            else:
                shutil.copy2(source, target)
            return {**value, "path": f"{base}/inputs/{slot}/{source.name}"}
        return {k: self._stage_inputs(v, staging, base, slots) for k, v in value.items()}

    def _stage(self, run_id: str, request: RunRequest) -> tuple[str, str, dict[str, Any]]:
        """Write the job, its workspace files and the pipeline's folder to the input claim.

        Returns the pipeline's and the job's paths as the Job sees them, and the job. The whole
        pipeline
        folder is copied because a workflow names its steps' files relative to it.
        """
        staging = Path(self.k8s.input_dir) / run_id
        base = f"{CalrissianJob.input_mount}/{run_id}"
        # ``file.cwl#<process>`` for a packed document (an EO application package).
        file_part, hash_, process = request.pipeline_path.partition("#")
        pipeline = Path(file_part)
        shutil.copytree(pipeline.parent, staging / "pipeline", symlinks=False)
        job = self._stage_inputs(request.inputs, staging, base, itertools.count())
        (staging / JOB_FILE).write_text(json.dumps(job, indent=2), encoding="utf-8")
        return f"{base}/pipeline/{pipeline.name}{hash_}{process}", f"{base}/{JOB_FILE}", job

    def manifest(
        self, run_id: str, user: str, pipeline_path: str, job_path: str, job: Any = None
    ) -> dict:
        """The Job this executor creates for a run (public so that tests can check it).

        With ``job``, only the archive volumes its inputs lie on are attached; a path on none
        of them (nor staged) is :class:`InputNotReadable`."""
        archives = self.k8s.archive_volumes
        if job is not None:
            staged = [f"{CalrissianJob.input_mount}/{run_id}"]
            archives = volumes_for_inputs(job, archives, staged)
        return make_calrissian_job(
            CalrissianJob(
                run_id=run_id,
                user=user,
                namespace=self.k8s.namespace,
                pipeline_path=pipeline_path,
                job_path=job_path,
                archive_volumes=archives,
                image=self.k8s.image,
                default_container=self.k8s.default_container,
                service_account=self.k8s.service_account,
                input_claim=self.k8s.input_claim,
                tmpout_claim=self.k8s.tmpout_claim,
                output_claim=self.k8s.output_claim,
                max_ram=self.k8s.max_ram,
                max_cores=self.k8s.max_cores,
                provenance=self.k8s.provenance,
            )
        )

    def submit(self, request: RunRequest, user: str | None = None) -> Run:
        """Record a run of ``user`` and create its Job; a refused Job leaves a failed run."""
        settings = self.settings if user is None else replace(self.settings, user=user)
        run_id = new_run_id()
        rundir = settings.runs_dir / run_id
        rundir.mkdir(parents=True)
        now = time.time()
        reason: str | None = None
        job: Any = None
        try:
            pipeline_path, job_path, job = self._stage(run_id, request)
            if self.k8s.broker_url:
                manifest, argv = None, []  # the hub builds the Job from what it checks
            else:
                manifest = self.manifest(run_id, settings.user, pipeline_path, job_path, job)
                argv = manifest["spec"]["template"]["spec"]["containers"][0]["args"]
        except OSError as exc:
            pipeline_path, job_path, manifest = request.pipeline_path, None, None
            argv, reason = [], f"could not write the run's files to the input claim: {exc}"
        except InputNotReadable as exc:
            pipeline_path, job_path, manifest = request.pipeline_path, None, None
            argv, reason = [], str(exc)
        run = Run(
            id=run_id,
            user=settings.user,
            pipeline=request.pipeline,
            pipeline_path=request.pipeline_path,
            inputs=request.inputs,
            job_path=job_path,
            state=QUEUED,
            created=now,
            rundir=str(rundir),
            outdir=f"{self.k8s.output_dir}/{run_id}/outputs",
            cwd=str(rundir),
            # argv marks the run as ours: the store is shared with the local executor and the CLI.
            argv=[CALRISSIAN_ARGV0, *argv],
            # Not a detached *local* run: the local dispatcher must never start it as cwltool.
            detached=False,
            rerun_of=request.rerun_of,
        )
        with self._submitting_lock:
            self._submitting.add(run_id)
        try:
            self.store.add(run)
            if reason is None:
                if self.k8s.broker_url:
                    reason = self._broker_submit(run, job)
                else:
                    reason = self._create_job(manifest)
            if reason is not None:
                self._finish(run, FAILED, reason)
            else:
                _append_run_event(run.rundir, QUEUED, f"Job {job_name(run_id)} created")
        finally:
            with self._submitting_lock:
                self._submitting.discard(run_id)
        return self.store.get(run_id)

    def _create_job(self, manifest: dict[str, Any] | None) -> str | None:
        """Create the run's Job; the reason it could not be, or None."""
        if manifest is not None:
            body: Any = manifest  # the client accepts a plain dict as well as a V1Job

            async def create(api: BatchV1Api) -> dict[str, Any]:
                response = await api.create_namespaced_job(
                    self.k8s.namespace,
                    body,
                    _preload_content=False,
                    _request_timeout=self.k8s.request_timeout,
                )
                return await _json_or_raise(response)

            try:
                self._call(create)
            except KubernetesAPIError as exc:
                return f"could not create the run's Job in namespace {self.k8s.namespace!r}: {exc}"
        return None

    def rerun(self, user: str, run_id: str) -> Run:
        """A new run of the same pipeline with the same inputs."""
        old = self.store.get(run_id, user, with_steps=False)
        return self.submit(rerun_request(old), user=user)

    def cancel(self, user: str, run_id: str) -> Run:
        """Delete the run's Job and mark the run cancelled (a final run is left as it is)."""
        run = self.store.get(run_id, user, with_steps=False)
        if run.state in FINAL_STATES:
            return self.store.get(run_id, user)
        self.store.set_state_if(
            run_id, LIVE_STATES, state=CANCELLING, exit_reason="cancelled by the user"
        )
        # An API error propagates: the run stays "cancelling" and the next tick finishes it
        # if the Job goes away by other means; the user gets the error now.
        if self.k8s.broker_url:
            status, answer = self._broker("POST", self._runs_path(run.user, run_id) + "/cancel")
            if status not in (200, 404):  # 404: no Job and no pod left, which is the aim
                raise KubernetesAPIError(f"{status}: {answer.get('message', 'no details')}")
        else:
            self._delete_job(run_id)
        self._finish(run, CANCELLED, "cancelled by the user")
        return self.store.get(run_id, user)

    def tick(self) -> None:
        """Follow the Jobs of live runs; an unreachable API is retried at the next tick."""
        for run in self.store.list(states=LIVE_STATES, limit=100_000):
            if not on_kubernetes(run):
                continue  # a local run: not ours
            with self._submitting_lock:
                if run.id in self._submitting:
                    continue  # its Job is being created; the next tick follows it
            try:
                if self.k8s.broker_url:
                    observed = self._broker_observe(run)
                else:
                    job = self._read_job(run.id)
                    observed = None if job is None else _job_state(job)
            except KubernetesAPIError:
                # A missing permission or a down API must not fail runs that may be fine.
                continue
            self._follow_log(run)
            self._follow(run, observed)

    def _follow_log(self, run: Run, last: bool = False) -> None:
        """Record the new lines of the run's log (``last``: the run ended, so close it)."""
        with self._logs_lock:
            log = self._logs.get(run.id)
            if log is None:
                log = self._logs[run.id] = _ClusterLog(Path(run.rundir))
            try:
                log.follow(
                    Path(self.k8s.output_dir) / run.id,
                    lambda step, **fields: self.store.upsert_step(run.id, step, **fields),
                )
            except OSError:
                pass  # the run folder's disk is full: the next call tries again
            if last:
                log.close()
                del self._logs[run.id]

    def _follow(self, run: Run, observed: tuple[str, str | None] | None) -> None:
        """Move the run to the state its Job is in (``observed``; None: the Job is gone)."""
        if observed is None:
            if run.state == CANCELLING:
                self._finish(run, CANCELLED, run.exit_reason or "cancelled")
            else:
                self._finish(
                    run,
                    FAILED,
                    f"its Job {job_name(run.id)} disappeared from namespace "
                    f"{self.k8s.namespace!r} before it finished (deleted outside Datalabs?)",
                )
            return
        state, reason = observed
        if state == RUNNING and run.state == QUEUED:
            if self.store.set_state_if(run.id, (QUEUED,), state=RUNNING, started=time.time()):
                _append_run_event(run.rundir, RUNNING)
        elif state in FINAL_STATES and run.state != CANCELLING:
            self._finish(run, state, reason)

    def _finish(self, run: Run, state: str, reason: str | None) -> None:
        """Record a final state once, with what the run left on the output claim."""
        fields: dict[str, Any] = {"state": state, "finished": time.time(), "exit_reason": reason}
        if run.started is None:
            fields["started"] = fields["finished"]
        results = Path(self.k8s.output_dir) / run.id
        if state == SUCCESS:
            try:
                fields["outputs"] = self._take_outputs(run, results)
            except (OSError, ValueError):
                pass  # the claim may not be mounted here; the state is still right
        # The rest of the run's log, its steps' states and their pods' logs, before the steps
        # still open are closed.
        self._follow_log(run, last=True)
        if self.store.set_state_if(run.id, LIVE_STATES, **fields):
            self.store.close_open_steps(
                run.id, SUCCESS if state == SUCCESS else FAILED, fields["finished"]
            )
            # The run's provenance, for the views that read the run folder. A missing one (a
            # run that never started, a claim not mounted here) is simply not shown.
            try:
                shutil.copytree(results / PROVENANCE_DIR, Path(run.rundir) / PROVENANCE_DIR)
            except OSError:
                pass
            _append_run_event(run.rundir, state, reason)

    def _take_outputs(self, run: Run, results: Path) -> Any:
        """The run's output object, its files copied from the output claim into the run's
        folder (``outputs/``, as a local run's) and named there.

        The session mounts its folder of the output claim read-only and outside the
        workspace, where the runs viewer cannot open files (it opens outputs by their
        workspace path); the run folder is in the workspace. Copied once, when the run ends
        (the claim's copy goes with the chart's cleanup)."""
        outputs = json.loads((results / "output.json").read_text("utf-8"))
        copy = Path(run.rundir) / "outputs"
        if (results / "outputs").is_dir() and not copy.exists():
            shutil.copytree(results / "outputs", copy, symlinks=True)
        job_view = f"{CalrissianJob.output_mount}/{run.id}/outputs"
        return _map_locations(outputs, job_view, str(copy))

    def close(self) -> None:
        # Jobs go on without us: the next server's ticks pick them up by name.
        self.store.close()
