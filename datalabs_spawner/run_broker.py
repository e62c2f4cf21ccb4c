"""The broker's pipeline runs: the hub creates each cluster run's Calrissian Job for the user.

A session never holds Kubernetes rights (z2jh's user pods have no token at all). To run a
pipeline on the cluster it stages the run's workspace files in its own folder of the input
claim and asks the broker, with the user's own hub token (the same rules as for volumes,
:class:`~datalabs_spawner.broker.BrokerHandler`). The broker, the hub identity with the
Kubernetes rights:

1. checks the job with the launcher's checks (:func:`datalabs_pipelines.launcher.validate_job`)
   against what the *hub* knows: the pipeline from the hub's catalogue, the run's staged files
   in the user's folder of the input claim, and the archive volumes the user may read
   (``spawner.readable_volumes()``, the policy of spawn and hot attach); then
   :func:`~datalabs_pipelines.executors.kubernetes.volumes_for_inputs` picks the volumes the
   inputs lie on. Any refusal happens before any object is made;
2. copies the pipeline's folder from the catalogue and writes the checked job into its own
   folder of the input claim (``.datalabs-broker-<user folder>/<run id>``, which no session
   mounts; the Job mounts it read-only at ``/calrissian/job``): the Job runs what was checked,
   and the broker never writes where the user could plant a symlink;
3. makes the user's run identity on demand (a service account and a Role that allows pods and
   their logs, nothing else: :func:`~datalabs_pipelines.executors.kubernetes.run_identity`);
4. creates the Job (:func:`~datalabs_pipelines.executors.kubernetes.make_calrissian_job`) as
   that identity, with the user's work folders, the needed volumes, the default container, the
   run's ceiling and time limit from the operator.

Cancel deletes the Job and every pod labelled with the run and its owner: a Calrissian killed
by an OOM or a lost node leaves step pods with no owner, which the Job's deletion alone never
removes.

API (``docs/api/broker.openapi.yaml``), under the hub prefix:

- ``POST /hub/datalabs/v1/users/<user>/runs``: body ``{"run_id", "pipeline", "inputs",
  "time_limit"}`` (``time_limit`` in seconds, optional) -> 201 with the Job's name
- ``GET  /hub/datalabs/v1/users/<user>/runs/<run_id>``: the run's state, from its Job and pods
- ``POST /hub/datalabs/v1/users/<user>/runs/<run_id>/cancel``

Kept apart from ``broker.py`` (volumes) so that each can change without the other.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from traitlets import Dict, Enum, Int, List, Unicode
from traitlets.config import LoggingConfigurable

from datalabs_pipelines.catalogue import Catalogue as PipelineCatalogue
from datalabs_pipelines.catalogue import Pipeline
from datalabs_pipelines.executors.kubernetes import (
    CALRISSIAN_IMAGE,
    OWNER_LABEL,
    RUN_LABEL,
    STEP_LABEL,
    ArchiveVolume,
    CalrissianJob,
    InputNotReadable,
    job_name,
    make_calrissian_job,
    run_identity,
    run_service_account,
    user_folder,
    volumes_for_inputs,
)
from datalabs_pipelines.launcher import JobRejected, Volume, Workspace, validate_job
from datalabs_volumes.contract import BROKER_PATH
from datalabs_volumes.models import Volume as CatalogueVolume
from datalabs_volumes.models import choose

from .broker import _SEGMENT, BrokerHandler
from .spawner import _http_error

#: A run id as the session's run store makes them (hex); it names folders and the Job.
RUN_ID = re.compile(r"^[0-9a-f]{8,64}$")
JOB_FILE = "job.json"
#: The broker's own folders of the input claim: the pipeline and the checked job of each run,
#: ``.datalabs-broker-<user folder>/<run id>/`` (two levels down, like the users' run folders,
#: so the chart's cleanup removes them alike). No session mounts them (a session sees only its
#: user's folder), so what a Job runs is what the broker checked, and the broker never writes
#: into a folder the user controls (where a symlink could redirect its writes).
BROKER_FOLDER = ".datalabs-broker"


class RunRefused(ValueError):
    """The broker will not run (or touch) this: ``status`` for HTTP, ``message`` for the
    user."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class RunBrokerSettings:
    """What the operator sets for cluster runs (see :class:`DatalabsRunBroker`)."""

    namespace: str
    #: Where the hub sees the input claim (read-write) and the archive claim (read-only).
    input_dir: str
    archive_dir: str
    archive_claim: str = "datalabs-archive"
    data_mount_root: str = "/data"
    image: str = CALRISSIAN_IMAGE
    input_claim: str = "calrissian-input-data"
    tmpout_claim: str = "calrissian-tmpout"
    output_claim: str = "calrissian-output-data"
    max_ram: str = "8G"
    max_cores: int = 4
    max_time_limit: int = 24 * 3600
    ttl_seconds_after_finished: int = 7 * 24 * 3600
    kubeconfig: str = ""
    request_timeout: float = 10.0
    image_pull_policy: str = ""
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()


def _map_paths(value: Any, fn: Callable[[str], str]) -> Any:
    """``value`` with ``fn`` applied to every File/Directory ``path`` and ``location``."""
    if isinstance(value, list):
        return [_map_paths(v, fn) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _map_paths(v, fn) for k, v in value.items()}
    if value.get("class") in ("File", "Directory"):
        for key in ("path", "location"):
            if isinstance(value.get(key), str):
                out[key] = fn(value[key])
    return out


def _rebase(pairs: Sequence[tuple[str, str]]) -> Callable[[str], str]:
    """A path mapper: a path under ``old`` (deepest first) moves under ``new``; a ``file:``
    URL becomes a path; anything else is left for the checks to refuse."""
    ordered = sorted(pairs, key=lambda p: len(p[0]), reverse=True)

    def move(raw: str) -> str:
        path = unquote(urlparse(raw).path) if raw.startswith("file:") else raw
        norm = os.path.normpath(path) if path.startswith("/") else path
        for old, new in ordered:
            if norm == old or norm.startswith(old.rstrip("/") + "/"):
                return new + norm[len(old) :]
        return raw

    return move


class RunBroker:
    """Creates, reads and cancels users' cluster runs with the hub's Kubernetes identity."""

    def __init__(self, settings: RunBrokerSettings) -> None:
        self.settings = settings

    # -- what the run may read ----------------------------------------------------------

    def archives(self, readable: Sequence[CatalogueVolume]) -> list[tuple[ArchiveVolume, Path]]:
        """The user's readable volumes as the Job mounts them, with where the hub sees each.

        ``local`` sources only: they are folders of the archive claim, which the hub mounts
        and so can check inputs on (a volume of another source is not offered to runs)."""
        out = []
        for volume in readable:
            source = choose(volume).source
            if source.type != "local":
                continue
            mount = f"{self.settings.data_mount_root.rstrip('/')}/{volume.folder}"
            out.append(
                (
                    ArchiveVolume(volume.id, self.settings.archive_claim, mount, source.path),
                    Path(self.settings.archive_dir) / source.path,
                )
            )
        return out

    def check(
        self,
        user: str,
        run_id: str,
        pipeline: Pipeline,
        inputs: Any,
        readable: Sequence[CatalogueVolume],
    ) -> tuple[dict[str, Any], tuple[ArchiveVolume, ...]]:
        """The job as the Job sees it and the volumes it needs, or :class:`RunRefused`."""
        if not isinstance(run_id, str) or not RUN_ID.match(run_id):
            raise RunRefused(400, "'run_id' must be the run's id (8 to 64 hex digits).")
        staged_job = f"{CalrissianJob.input_mount}/{run_id}"
        staged_hub = str(Path(self.settings.input_dir) / user_folder(user) / run_id)
        archives = self.archives(readable)
        to_hub = _rebase(
            [(staged_job, staged_hub)] + [(a.mount_path, str(hub)) for a, hub in archives]
        )
        real = [(os.path.realpath(staged_hub), staged_job)] + [
            (os.path.realpath(hub), a.mount_path) for a, hub in archives
        ]
        to_job = _rebase(real)
        workspace = Workspace(
            root=Path(staged_hub), volumes=tuple(Volume(a.id, hub) for a, hub in archives)
        )
        try:
            checked = validate_job(pipeline, _map_paths(inputs, to_hub), workspace)
        except JobRejected as exc:
            raise RunRefused(400, str(exc)) from None
        job = _map_paths(checked, to_job)
        try:
            needed = volumes_for_inputs(job, [a for a, _ in archives], [staged_job])
        except InputNotReadable as exc:
            raise RunRefused(403, str(exc)) from None
        return job, needed

    # -- the Kubernetes API -------------------------------------------------------------

    async def _client(self) -> Any:
        from kubernetes_asyncio import config as k8s_config
        from kubernetes_asyncio.client import ApiClient, Configuration

        configuration = Configuration()
        if not self.settings.kubeconfig and os.environ.get("KUBERNETES_SERVICE_HOST"):
            k8s_config.load_incluster_config(client_configuration=configuration)
        else:
            await k8s_config.load_kube_config(
                config_file=self.settings.kubeconfig or None, client_configuration=configuration
            )
        return ApiClient(configuration)

    async def _ensure_identity(
        self, client: Any, user: str, archive_folders: Sequence[str] = ()
    ) -> str:
        from kubernetes_asyncio.client import CoreV1Api, RbacAuthorizationV1Api
        from kubernetes_asyncio.client.exceptions import ApiException

        ns = self.settings.namespace
        timeout = self.settings.request_timeout
        core, rbac = CoreV1Api(client), RbacAuthorizationV1Api(client)
        params, account, role, binding = run_identity(user, ns, archive_folders)
        for create, replace, body in (
            # Replaced each time: the volumes the user may read change with their groups.
            (core.create_namespaced_config_map, core.replace_namespaced_config_map, params),
            (core.create_namespaced_service_account, None, account),
            (rbac.create_namespaced_role, rbac.replace_namespaced_role, role),
            (rbac.create_namespaced_role_binding, None, binding),
        ):
            try:
                await create(ns, body, _request_timeout=timeout)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                if replace is not None:
                    # An existing Role gets today's rules (an upgrade may have narrowed them),
                    # the policy's parameters today's readable volumes.
                    await replace(body["metadata"]["name"], ns, body, _request_timeout=timeout)
        return run_service_account(user)

    async def submit(
        self,
        user: str,
        run_id: str,
        pipeline: Pipeline,
        inputs: Any,
        readable: Sequence[CatalogueVolume],
        default_container: str = "",
        time_limit: int | None = None,
    ) -> dict[str, Any]:
        """Check the run, write the checked job, make the identity and the Job."""
        from kubernetes_asyncio.client import BatchV1Api
        from kubernetes_asyncio.client.exceptions import ApiException

        limit = self.settings.max_time_limit
        if time_limit is not None:
            if isinstance(time_limit, bool) or not isinstance(time_limit, int) or time_limit < 1:
                raise RunRefused(400, "'time_limit' must be a number of seconds (at least 1).")
            if time_limit > limit:
                raise RunRefused(
                    400, f"'time_limit' may be at most {limit} s on this hub (asked {time_limit})."
                )
            limit = time_limit
        job, needed = self.check(user, run_id, pipeline, inputs, readable)
        job_sub_path = f"{BROKER_FOLDER}-{user_folder(user)}/{run_id}"
        process = f"#{pipeline.process}" if pipeline.process else ""
        mount = CalrissianJob.job_mount
        manifest = make_calrissian_job(
            CalrissianJob(
                run_id=run_id,
                user=user,
                namespace=self.settings.namespace,
                pipeline_path=f"{mount}/pipeline/{pipeline.path.name}{process}",
                job_path=f"{mount}/{JOB_FILE}",
                job_sub_path=job_sub_path,
                archive_volumes=needed,
                image=self.settings.image,
                image_pull_policy=self.settings.image_pull_policy,
                node_selector=self.settings.node_selector,
                tolerations=self.settings.tolerations,
                default_container=default_container,
                service_account=run_service_account(user),
                input_claim=self.settings.input_claim,
                tmpout_claim=self.settings.tmpout_claim,
                output_claim=self.settings.output_claim,
                max_ram=self.settings.max_ram,
                max_cores=self.settings.max_cores,
                ttl_seconds_after_finished=self.settings.ttl_seconds_after_finished,
                active_deadline_seconds=limit,
            )
        )
        async with await self._client() as client:
            if await self._job_exists(client, run_id):
                raise RunRefused(409, f"A run with id '{run_id}' exists already.")
            folder = Path(self.settings.input_dir) / job_sub_path
            folder.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(folder, ignore_errors=True)  # a run id refused earlier
            folder.mkdir()
            shutil.copytree(pipeline.path.parent, folder / "pipeline", symlinks=False)
            (folder / JOB_FILE).write_text(json.dumps(job, indent=2), encoding="utf-8")
            folders = [a.sub_path or "" for a, _ in self.archives(readable)]
            await self._ensure_identity(client, user, [f for f in folders if f])
            try:
                await BatchV1Api(client).create_namespaced_job(
                    self.settings.namespace,
                    manifest,
                    _request_timeout=self.settings.request_timeout,
                )
            except ApiException as exc:
                if exc.status == 409:
                    raise RunRefused(409, f"A run with id '{run_id}' exists already.") from None
                raise
        return {
            "run_id": run_id,
            "job": manifest["metadata"]["name"],
            "namespace": self.settings.namespace,
            "service_account": run_service_account(user),
            "volumes": [v.id for v in needed],
            "time_limit": limit,
        }

    async def _job_exists(self, client: Any, run_id: str) -> bool:
        from kubernetes_asyncio.client import BatchV1Api

        response = await BatchV1Api(client).read_namespaced_job(
            job_name(run_id),
            self.settings.namespace,
            _preload_content=False,
            _request_timeout=self.settings.request_timeout,
        )
        if response.status == 404:
            return False
        body = await response.read()
        if response.status >= 400:
            from kubernetes_asyncio.client.exceptions import ApiException

            error = ApiException(status=response.status, reason=response.reason)
            error.body = body.decode("utf-8", "replace")
            raise error
        return True

    def _selector(self, user: str, run_id: str) -> str:
        return f"{RUN_LABEL}={run_id},{OWNER_LABEL}={user_folder(user)}"

    async def _owned_job(self, client: Any, user: str, run_id: str) -> dict[str, Any] | None:
        from kubernetes_asyncio.client import BatchV1Api

        response = await BatchV1Api(client).list_namespaced_job(
            self.settings.namespace,
            label_selector=self._selector(user, run_id),
            _preload_content=False,
            _request_timeout=self.settings.request_timeout,
        )
        items = json.loads(await response.read()).get("items") or []
        return items[0] if items else None

    async def _pods(self, client: Any, user: str, run_id: str) -> list[dict[str, Any]]:
        from kubernetes_asyncio.client import CoreV1Api

        response = await CoreV1Api(client).list_namespaced_pod(
            self.settings.namespace,
            label_selector=self._selector(user, run_id),
            _preload_content=False,
            _request_timeout=self.settings.request_timeout,
        )
        return json.loads(await response.read()).get("items") or []

    async def cancel(self, user: str, run_id: str) -> dict[str, Any]:
        """Delete the user's run's Job and every pod labelled with the run and its owner."""
        from kubernetes_asyncio.client import BatchV1Api, CoreV1Api
        from kubernetes_asyncio.client.exceptions import ApiException

        if not isinstance(run_id, str) or not RUN_ID.match(run_id):
            raise RunRefused(404, f"No run '{run_id}'.")
        async with await self._client() as client:
            job = await self._owned_job(client, user, run_id)
            if job is not None:
                try:
                    await BatchV1Api(client).delete_namespaced_job(
                        job_name(run_id),
                        self.settings.namespace,
                        propagation_policy="Background",
                        _request_timeout=self.settings.request_timeout,
                    )
                except ApiException as exc:
                    if exc.status != 404:
                        raise
            # After the Job: its Calrissian can no longer be replaced by the Job controller.
            # Step pods have no owner (Calrissian makes them): they go by their labels.
            pods = await self._pods(client, user, run_id)
            if job is None and not pods:
                raise RunRefused(404, f"No run '{run_id}' of yours on the cluster.")
            for pod in pods:
                try:
                    await CoreV1Api(client).delete_namespaced_pod(
                        pod["metadata"]["name"],
                        self.settings.namespace,
                        grace_period_seconds=0,
                        _request_timeout=self.settings.request_timeout,
                    )
                except ApiException as exc:
                    if exc.status != 404:
                        raise
        return {"run_id": run_id, "job_deleted": job is not None, "pods_deleted": len(pods)}

    async def status(self, user: str, run_id: str) -> dict[str, Any]:
        """The run's state from its Job, and each pod's phase (the steps' states)."""
        from datalabs_pipelines.executors.kubernetes_executor import _job_state

        if not isinstance(run_id, str) or not RUN_ID.match(run_id):
            raise RunRefused(404, f"No run '{run_id}'.")
        async with await self._client() as client:
            job = await self._owned_job(client, user, run_id)
            pods = await self._pods(client, user, run_id)
        if job is None:
            raise RunRefused(404, f"No run '{run_id}' of yours on the cluster.")
        state, reason = _job_state(job)
        return {
            "run_id": run_id,
            "state": state,
            "reason": reason,
            "pods": [
                {
                    "name": p["metadata"]["name"],
                    "component": (p["metadata"].get("labels") or {}).get(
                        "app.kubernetes.io/component", ""
                    ),
                    "step": (p["metadata"].get("labels") or {}).get(STEP_LABEL),
                    "phase": (p.get("status") or {}).get("phase", "Pending"),
                }
                for p in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""))
            ],
        }


class DatalabsRunBroker(LoggingConfigurable):
    """The operator's settings of cluster runs submitted by the broker."""

    namespace = Unicode(
        "",
        config=True,
        help="""Namespace of the run Jobs, their step pods and the users' run identities.
        Default: the hub's own namespace (``$POD_NAMESPACE``, as z2jh sets it).""",
    )
    input_dir = Unicode(
        "/srv/calrissian/input-data",
        config=True,
        help="""Where the hub mounts the input claim (read-write): it copies the pipeline and
        writes the checked job into ``<user folder>/<run id>/`` there, and reads what the
        session staged to check it.""",
    )
    archive_dir = Unicode(
        "/srv/archive",
        config=True,
        help="""Where the hub mounts the archive claim (read-only), to check inputs on the
        user's volumes exist before the Job is made.""",
    )
    archive_claim = Unicode(
        "datalabs-archive",
        config=True,
        help="""The claim holding the archive's ``local`` volumes (the chart's
        ``archive.claimName``).""",
    )
    data_mount_root = Unicode(
        "/data",
        config=True,
        help="""Where sessions see archive volumes (``/data/<folder>``); the Job mounts each
        volume a run needs at the same path, so inputs keep their paths.""",
    )
    calrissian_image = Unicode(
        CALRISSIAN_IMAGE,
        config=True,
        help="""The image of the run Jobs: Calrissian from PyPI with Datalabs' entry module, as
        ``make images`` builds it (config/images/calrissian/image.toml).""",
    )
    calrissian_image_pull_policy = Enum(
        ["", "Always", "IfNotPresent", "Never"],
        "",
        config=True,
        help="""``imagePullPolicy`` of the Calrissian container; empty: the cluster's default
        (``IfNotPresent`` for a tagged image). ``Never`` where images are imported into the
        nodes without a registry.""",
    )
    node_selector = Dict(
        value_trait=Unicode(),
        config=True,
        help="""Node labels the run Jobs' pods and all their step pods must have, e.g.
        ``{"datalabs.io/pool": "pipelines"}`` to keep pipelines off the session nodes.""",
    )
    tolerations = List(
        Dict(),
        config=True,
        help="""Tolerations of the run Jobs' pods and all their step pods (Kubernetes'
        form), e.g. ``[{"key": "pipelines", "operator": "Exists", "effect": "NoSchedule"}]``
        for a tainted pipelines node pool.""",
    )
    input_claim = Unicode("calrissian-input-data", config=True, help="The input work claim.")
    tmpout_claim = Unicode("calrissian-tmpout", config=True, help="The tmpout work claim.")
    output_claim = Unicode("calrissian-output-data", config=True, help="The output work claim.")
    max_ram = Unicode(
        "8G",
        config=True,
        help="""Per-run ceiling of memory (Calrissian ``--max-ram``): all step pods at once,
        and so any one step's requests and limits.""",
    )
    max_cores = Int(4, config=True, help="Per-run ceiling of cores (Calrissian ``--max-cores``).")
    max_time_limit = Int(
        24 * 3600,
        config=True,
        help="""The longest a run may take, in seconds (the Job's ``activeDeadlineSeconds``);
        a run asking for less gets what it asks for.""",
    )
    retention = Int(
        7 * 24 * 3600,
        config=True,
        help="Seconds a finished Job (and its log) is kept (``ttlSecondsAfterFinished``).",
    )
    pipeline_images = Dict(
        value_trait=Unicode(),
        config=True,
        help="""The default container of a pipeline, by catalogue id, e.g.
        ``{"rosetta/pds4-table-plot": "datalabs/planetary-lab:0.1"}``. Other pipelines' steps
        without a DockerRequirement run in the image of the session that launched them.""",
    )
    kubeconfig = Unicode(
        "",
        config=True,
        help="A kubeconfig file; empty: in-cluster configuration (the hub's service account).",
    )

    def broker(self) -> RunBroker:
        return RunBroker(
            RunBrokerSettings(
                namespace=self.namespace or os.environ.get("POD_NAMESPACE", "default"),
                input_dir=self.input_dir,
                archive_dir=self.archive_dir,
                archive_claim=self.archive_claim,
                data_mount_root=self.data_mount_root,
                image=self.calrissian_image,
                input_claim=self.input_claim,
                tmpout_claim=self.tmpout_claim,
                output_claim=self.output_claim,
                max_ram=self.max_ram,
                max_cores=self.max_cores,
                max_time_limit=self.max_time_limit,
                ttl_seconds_after_finished=self.retention,
                kubeconfig=self.kubeconfig,
                image_pull_policy=self.calrissian_image_pull_policy,
                node_selector=dict(self.node_selector),
                tolerations=tuple(dict(t) for t in self.tolerations),
            )
        )


# -- REST handlers (added to the hub with ``c.JupyterHub.extra_handlers``) ---------------------

_RUN_FIELDS = {"run_id", "pipeline", "inputs", "time_limit"}


class _RunsHandler(BrokerHandler):
    def run_settings(self) -> DatalabsRunBroker:
        cached = self.settings.get("datalabs_run_broker")
        if cached is None:
            cached = DatalabsRunBroker(config=self.settings.get("config"), log=self.log)
            self.settings["datalabs_run_broker"] = cached
        return cached

    async def call(self, coroutine: Any) -> Any:
        """The broker's answer; a refusal as its status, a Kubernetes error as a 502."""
        from kubernetes_asyncio.client.exceptions import ApiException

        try:
            return await coroutine
        except RunRefused as e:
            raise _http_error(e.status, e.message) from None
        except ApiException as e:
            self.log.error("Broker: the Kubernetes API refused a run call: %s %s", e.status, e.body)
            raise _http_error(
                502, f"The cluster refused the request ({e.status} {e.reason})."
            ) from None


class UserRunsHandler(_RunsHandler):
    async def post(self, user_name: str):
        spawner = self.spawner(user_name)
        body = self.get_json_body()
        if not isinstance(body, dict):
            raise _http_error(
                400, 'The body must be a JSON object: {"run_id", "pipeline", "inputs"}.'
            )
        unknown = sorted(set(body) - _RUN_FIELDS)
        if unknown:
            raise _http_error(
                400,
                f"Unknown field(s) {', '.join(unknown)}: only {', '.join(sorted(_RUN_FIELDS))}.",
            )
        pipeline_id = body.get("pipeline")
        if not isinstance(pipeline_id, str) or not pipeline_id:
            raise _http_error(400, "'pipeline' must be a pipeline id of the catalogue.")
        catalogue = PipelineCatalogue([Path(d) for d in spawner.catalogue_dirs])
        pipeline = catalogue.get(pipeline_id)
        if pipeline is None:
            raise _http_error(404, f"No pipeline '{pipeline_id}' in the catalogue.")
        config = self.run_settings()
        image = config.pipeline_images.get(pipeline_id) or str(getattr(spawner, "image", "") or "")
        result = await self.call(
            config.broker().submit(
                user_name,
                body.get("run_id"),
                pipeline,
                body.get("inputs", {}),
                spawner.readable_volumes(),
                default_container=image,
                time_limit=body.get("time_limit"),
            )
        )
        self.log.info("Broker: created run %s for %s", result["job"], user_name)
        self.set_status(201)
        self.reply(result)


class UserRunHandler(_RunsHandler):
    async def get(self, user_name: str, run_id: str):
        self.owner(user_name)
        self.reply(await self.call(self.run_settings().broker().status(user_name, run_id)))


class UserRunCancelHandler(_RunsHandler):
    async def post(self, user_name: str, run_id: str):
        self.owner(user_name)
        result = await self.call(self.run_settings().broker().cancel(user_name, run_id))
        self.log.info("Broker: cancelled run %s of %s", run_id, user_name)
        self.reply(result)


_RUNS = rf"users/(?P<user_name>{_SEGMENT})/runs"

#: Routes relative to the hub prefix: add them to ``c.JupyterHub.extra_handlers`` with the
#: volume routes of :mod:`datalabs_spawner.broker`.
default_handlers = [
    (rf"/{BROKER_PATH}{_RUNS}", UserRunsHandler),
    (rf"/{BROKER_PATH}{_RUNS}/(?P<run_id>{_SEGMENT})", UserRunHandler),
    (rf"/{BROKER_PATH}{_RUNS}/(?P<run_id>{_SEGMENT})/cancel", UserRunCancelHandler),
]
