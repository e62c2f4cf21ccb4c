"""The jupyter-server extension of Datalabs: the REST API under ``/datalabs/api/``.

Each REST resource is a module of :mod:`jupyterlab_ext.handlers` ending with its route table
(``default_handlers``; patterns either absolute or relative to ``/datalabs/api/``); this
application collects them, holds the pipeline services (catalogue, run store, executor) in
``settings["datalabs"]``, and calls a module's ``setup(app)`` / ``shutdown(app)`` hooks for the
state it keeps (the session's storage service).
"""

from __future__ import annotations

import asyncio
import importlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from jupyter_server.utils import url_path_join
from tornado.ioloop import PeriodicCallback
from traitlets import Bool, Dict, Enum, Float, Int, List, Unicode, default

from datalabs_pipelines.catalogue import Catalogue
from datalabs_pipelines.executors.kubernetes import CALRISSIAN_IMAGE, ArchiveVolume
from datalabs_pipelines.executors.kubernetes_executor import KubernetesExecutor, KubernetesSettings
from datalabs_pipelines.executors.local import LocalExecutor
from datalabs_pipelines.launcher import Workspace
from datalabs_pipelines.runs import ACTIVE_STATES, QUEUED
from datalabs_pipelines.settings import ENV_MAX_RUNS, Settings, default_home, default_user
from datalabs_volumes import contract

from .quota import WorkspaceQuota
from .storage import json_env_list

API_BASE = "datalabs/api"
#: Handler modules, in routing order; a module another part of Datalabs has not shipped yet is
#: simply not routed.
HANDLER_MODULES = ("pipelines", "runs", "volumes", "connections", "editor")
#: Where a pod finds the namespace it runs in (mounted with its service account token).
POD_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass
class PipelineServices:
    """What the pipeline handlers share."""

    catalogue: Catalogue
    executor: LocalExecutor | KubernetesExecutor
    workspace: Workspace
    executor_name: str = "local"
    #: The workspace size quota the hub set, if any (see quota.py).
    quota: WorkspaceQuota | None = None


class DatalabsExtension(ExtensionApp):
    """Datalabs REST API: pipeline catalogue and runs (plus data volumes when installed)."""

    name = "jupyterlab_ext"

    catalogue_dirs = List(
        Unicode(),
        config=True,
        help="""Catalogue folders to read pipelines from (``<dir>/<mission>/pipelines/*.cwl``).

        Default: the folders in ``$DATALABS_CATALOGUE_DIRS`` (a JSON list, as the Datalabs
        spawners set it), else ``$DATALABS_CATALOGUE`` (separated like PATH, handy in a
        terminal). Changes to the files are picked up without a restart.
        Example: ``c.DatalabsExtension.catalogue_dirs = ["/srv/datalabs/catalogue"]``.
        """,
    )

    @default("catalogue_dirs")
    def _default_catalogue_dirs(self) -> list[str]:
        from_spawner = json_env_list(contract.CATALOGUE_DIRS)
        if from_spawner:
            return from_spawner
        return [d for d in os.environ.get("DATALABS_CATALOGUE", "").split(os.pathsep) if d]

    pipelines_home = Unicode(
        config=True,
        help="""Folder of the run store: ``runs.db``, one folder per run (logs, events,
        provenance, outputs) and the per-user cwltool cache. Default:
        ``$DATALABS_PIPELINES_HOME`` (``~/pipeline-runs`` in a Datalabs session, see the spawners'
        ``pipeline_runs_dir``) or ``~/.local/share/datalabs/pipelines``, the same store the
        ``datalabs-pipeline`` command uses, so runs started in a terminal show up in the panel.
        """,
    )

    @default("pipelines_home")
    def _default_pipelines_home(self) -> str:
        return str(default_home())

    max_concurrent_runs = Int(
        config=True,
        help="""How many pipeline runs may execute at the same time; further runs wait in the
        queue (state ``queued``) and start in order as others end. Each run is a cwltool
        process plus its steps, so keep this near the session's CPU count. Default:
        ``$DATALABS_PIPELINES_MAX_RUNS`` (the hub's ``pipeline_runs_per_user``), else 4.""",
    )

    @default("max_concurrent_runs")
    def _default_max_concurrent_runs(self) -> int:
        return Settings.from_env().max_concurrent if os.environ.get(ENV_MAX_RUNS) else 4

    no_container = Bool(
        True,
        config=True,
        help="""Run tools directly on the host (cwltool ``--no-container``), ignoring
        DockerRequirement hints. The default for the embedded (one machine) mode, where sessions
        have no container engine. Set to False where cwltool may start containers.""",
    )

    provenance = Bool(
        True,
        config=True,
        help="""Record a Workflow Run RO-Crate per run, offered for download at
        ``runs/<id>/provenance``. It names every input file by reference (archive volume id,
        version, path on the volume, size, modification time) and describes the outputs where
        they are; no byte of an input is copied. (The Kubernetes executor still asks cwltool
        for its CWLProv bag.)""",
    )

    provenance_checksum_limit = Int(
        16 * 1024 * 1024,
        config=True,
        help="""Input files up to this many bytes get a SHA-1 checksum in a run's provenance;
        larger ones are named by volume, path, size and modification time only, since hashing a
        1 GiB archive file would double a short run's time. -1 hashes every input; 0 none.
        Default: 16 MiB.""",
    )

    cache = Bool(
        True,
        config=True,
        help="""Use a cwltool cache per user (``--cachedir``) so that a re-run, or a run with
        some inputs changed, reuses the steps whose inputs did not change.""",
    )

    cwltool_args = List(
        Unicode(),
        config=True,
        help="""Extra cwltool options added to every run, e.g. ``["--parallel"]`` or
        ``["--singularity"]``. Operator-controlled; users cannot add options.""",
    )

    executor = Enum(
        ["local", "kubernetes"],
        config=True,
        help="""Where runs execute. ``local``: a supervised cwltool process per run in the
        session (the embedded default). ``kubernetes``: a Calrissian Job per run (built by
        :func:`datalabs_pipelines.executors.kubernetes.make_calrissian_job`), created through
        the Kubernetes API and followed by the periodic check; configured by the ``k8s_*``
        options below. See docs/pipelines.md for what the cluster needs. Default:
        ``$DATALABS_PIPELINES_EXECUTOR`` (``kubernetes`` in a session the spawner gave the run
        claims, ``DatalabsKubeSpawner.run_work_claims``), else ``local``.""",
    )

    @default("executor")
    def _default_executor(self) -> str:
        chosen = os.environ.get(contract.PIPELINES_EXECUTOR, "")
        return chosen if chosen in ("local", "kubernetes") else "local"

    k8s_submit = Enum(
        ["broker", "api"],
        default_value="broker",
        config=True,
        help="""How the ``kubernetes`` executor makes its Jobs. ``broker`` (default): the hub's
        broker creates, follows and cancels them (``/hub/datalabs/v1/users/<user>/runs``),
        asked with the user's own hub token; this server needs no Kubernetes rights, and the
        broker checks the job against the volumes the user may read and runs it with the
        user's own run identity. ``api``: this server creates them through the Kubernetes API
        itself (outside a hub only: it needs a token allowed to create Jobs).""",
    )

    k8s_namespace = Unicode(
        config=True,
        help="""Namespace of the run Jobs (``executor = "kubernetes"``). Default: the namespace
        this server's pod runs in, else ``default``.""",
    )

    @default("k8s_namespace")
    def _default_k8s_namespace(self) -> str:
        try:
            return POD_NAMESPACE_FILE.read_text().strip() or "default"
        except OSError:
            return "default"

    k8s_service_account = Unicode(
        "calrissian",
        config=True,
        help="""Service account of the Calrissian pod; it needs a Role allowing pods (create,
        get, list, watch, delete) and pods/log (get) in ``k8s_namespace``. The server's own
        account needs jobs (create, get, delete) there.""",
    )

    k8s_calrissian_image = Unicode(
        CALRISSIAN_IMAGE,
        config=True,
        help="The Calrissian image the run Jobs start (cwltool on Kubernetes).",
    )

    k8s_input_claim = Unicode(
        "calrissian-input-data",
        config=True,
        help="""ReadWriteMany claim for each run's workflow and job files (mounted read-only in
        the Job). This server writes them through its own mount of it, ``k8s_input_dir``.""",
    )

    k8s_tmpout_claim = Unicode(
        "calrissian-tmpout",
        config=True,
        help="ReadWriteMany claim for the steps' scratch outputs.",
    )

    k8s_output_claim = Unicode(
        "calrissian-output-data",
        config=True,
        help="""ReadWriteMany claim for the runs' results (``<run id>/outputs``, ``output.json``,
        ``cwltool.log``, ``provenance``), read back through ``k8s_output_dir``.""",
    )

    k8s_input_dir = Unicode(
        "/calrissian/input-data",
        config=True,
        help="Where this server's pod mounts ``k8s_input_claim`` (read-write).",
    )

    k8s_output_dir = Unicode(
        "/calrissian/output-data",
        config=True,
        help="""Where this server's pod mounts ``k8s_output_claim``: a finished run's outputs
        and log are read from here.""",
    )

    k8s_archive_claims = Dict(
        value_trait=Unicode(),
        config=True,
        help="""PersistentVolumeClaim of each archive volume, by volume id, optionally with the
        volume's folder in it: ``{"psa-rosetta": "datalabs-archive/psa-rosetta"}`` (one archive
        claim holding ``local`` volumes) or ``{"spice": "spice-claim"}`` (the whole claim). A
        run gets read-only, at the same path as in the session, only the volumes its inputs lie
        on; an input on a volume with no claim here refuses the run before its Job is made.
        With ``k8s_submit = "broker"`` it is not needed: the broker mounts the volumes from
        the hub's catalogue, and inputs on any of the session's volumes are read in place.""",
    )

    k8s_default_container = Unicode(
        config=True,
        help="""The image of every step without a DockerRequirement (Calrissian's
        ``--default-container``). Default: the session's own image (``$JUPYTER_IMAGE_SPEC``,
        which KubeSpawner sets), so that a pipeline runs with the tools of the datalab it was
        launched from.""",
    )

    @default("k8s_default_container")
    def _default_container(self) -> str:
        return os.environ.get("JUPYTER_IMAGE_SPEC", "") or os.environ.get("JUPYTER_IMAGE", "")

    k8s_max_ram = Unicode(
        "8G",
        config=True,
        help="Memory all step pods of one run may use at once (Calrissian ``--max-ram``).",
    )

    k8s_max_cores = Int(
        4,
        config=True,
        help="Cores all step pods of one run may use at once (Calrissian ``--max-cores``).",
    )

    k8s_kubeconfig = Unicode(
        "",
        config=True,
        help="""A kubeconfig file for the Kubernetes API. Empty (default): the in-cluster
        configuration when running in a pod, else ``$KUBECONFIG`` or ``~/.kube/config``.""",
    )

    workspace_root = Unicode(
        config=True,
        help="""The user's workspace: relative input paths are taken from here, and inputs must
        lie here or on a mounted volume (``$DATALABS_VOLUMES``). Default: the server's root
        directory.""",
    )

    @default("workspace_root")
    def _default_workspace_root(self) -> str:
        return str(self.serverapp.root_dir) if self.serverapp else os.getcwd()

    user_catalogue_dir = Unicode(
        config=True,
        help="""The user's own pipeline catalogue folder, where the Pipeline Editor's "Publish"
        writes workflows (one packed, self-contained ``.cwl`` each). It must end in
        ``<mission>/pipelines``: its grandparent is searched like the other catalogue folders,
        with ``<mission>`` (by default the user name) as the first part of the pipeline ids, so a
        published workflow appears in ``GET pipelines`` and the Pipelines panel at once.
        Default: ``<workspace_root>/.datalabs/catalogue/<user>/pipelines``.
        Example: ``c.DatalabsExtension.user_catalogue_dir = "/home/jovyan/catalogue/me/pipelines"``.
        """,
    )

    @default("user_catalogue_dir")
    def _default_user_catalogue_dir(self) -> str:
        return os.path.join(
            self.workspace_root, ".datalabs", "catalogue", default_user(), "pipelines"
        )

    poll_interval = Float(
        2.0,
        config=True,
        help="""Seconds between checks that start queued runs and mark runs whose process
        vanished (the supervisors also start queued runs themselves when a run ends).""",
    )

    def initialize_settings(self) -> None:
        settings = Settings(
            home=Path(self.pipelines_home),
            user=default_user(),
            max_concurrent=self.max_concurrent_runs,
            no_container=self.no_container,
            provenance=self.provenance,
            cache=self.cache,
            checksum_limit=self.provenance_checksum_limit,
            cwltool_args=tuple(self.cwltool_args),
        )
        workspace = Workspace.from_env(self.workspace_root)
        executor: LocalExecutor | KubernetesExecutor
        if self.executor == "kubernetes":
            executor = KubernetesExecutor(settings, self._kubernetes_settings(workspace))
        else:
            executor = LocalExecutor(settings)
        services = PipelineServices(
            catalogue=Catalogue(
                [Path(d) for d in self.catalogue_dirs]
                + [Path(self.user_catalogue_dir).parent.parent],
                # The user's own pipelines and drafts are in the workspace: theirs to write.
                user_roots=[Path(workspace.root), Path(self.user_catalogue_dir).parent.parent],
                reference_roots=[Path(workspace.root), *(v.path for v in workspace.volumes)],
            ),
            executor=executor,
            workspace=workspace,
            executor_name=self.executor,
            quota=WorkspaceQuota.from_env(workspace.root),
        )
        if services.quota is not None:
            # Saves and uploads through JupyterLab are refused once the workspace is full.
            self.serverapp.contents_manager.register_pre_save_hook(services.quota.pre_save_hook)
        self.settings.update(
            {"datalabs": services, "datalabs_user_catalogue_dir": self.user_catalogue_dir}
        )
        self._services = services
        self._ticker: PeriodicCallback | None = None
        # Resources with state of their own (the session's storage) set it up here, once each.
        done = []
        for module in self._modules():
            hook = getattr(module, "setup", None)
            if hook and hook not in done:
                done.append(hook)
                hook(self)

    def _kubernetes_settings(self, workspace: Workspace) -> KubernetesSettings:
        archives = []
        for volume in workspace.volumes:
            claim = self.k8s_archive_claims.get(volume.id)
            if claim:
                claim, _, folder = claim.partition("/")
                archives.append(ArchiveVolume(volume.id, claim, str(volume.path), folder or None))
            elif self.k8s_submit == "broker":
                # The broker mounts the volume into the Job from its own catalogue (no claim
                # needed here); inputs on it are left in place, never copied to the input claim.
                archives.append(ArchiveVolume(volume.id, "", str(volume.path)))
            else:
                # Not an error: runs that do not read from it still work.
                self.log.warning(
                    "datalabs: volume %s has no claim in k8s_archive_claims; "
                    "Kubernetes runs cannot read it",
                    volume.id,
                )
        return KubernetesSettings(
            namespace=self.k8s_namespace,
            service_account=self.k8s_service_account,
            image=self.k8s_calrissian_image,
            input_claim=self.k8s_input_claim,
            tmpout_claim=self.k8s_tmpout_claim,
            output_claim=self.k8s_output_claim,
            input_dir=self.k8s_input_dir,
            output_dir=self.k8s_output_dir,
            archive_volumes=tuple(archives),
            max_ram=self.k8s_max_ram,
            max_cores=self.k8s_max_cores,
            provenance=self.provenance,
            default_container=self.k8s_default_container,
            broker_url=contract.broker_url() if self.k8s_submit == "broker" else "",
            broker_token=os.environ.get("JUPYTERHUB_API_TOKEN", ""),
            kubeconfig=self.k8s_kubeconfig,
        )

    def _modules(self) -> list[Any]:
        modules = []
        for name in HANDLER_MODULES:
            try:
                modules.append(importlib.import_module(f"jupyterlab_ext.handlers.{name}"))
            except ModuleNotFoundError as exc:
                if exc.name != f"jupyterlab_ext.handlers.{name}":
                    raise
        return modules

    def initialize_handlers(self) -> None:
        prefix = f"/{API_BASE}"
        for module in self._modules():
            for pattern, handler, *rest in getattr(module, "default_handlers", []):
                if not pattern.startswith(prefix):
                    pattern = url_path_join(prefix, pattern)
                self.handlers.append((pattern, handler, *rest))

    async def _tick(self) -> None:
        try:
            # Process checks and SQLite writes stay off the event loop.
            await asyncio.to_thread(self._services.executor.tick)
            if await asyncio.to_thread(self._runs_under_way):
                # A run under way is activity, so the hub's idle culler leaves the session
                # alone: jupyter-server counts every `*_last_activity` setting, and
                # jupyterhub-singleuser reports it to the hub.
                self.serverapp.web_app.settings["datalabs_pipelines_last_activity"] = datetime.now(
                    UTC
                )
        except Exception:  # noqa: BLE001 - a failed check is retried at the next tick
            self.log.exception("datalabs: checking pipeline runs failed")

    def _runs_under_way(self) -> bool:
        store = self._services.executor.store
        return bool(store.list(states=(QUEUED, *ACTIVE_STATES), limit=1))

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        # Once the event loop runs: find runs lost while the server was down, then keep watching.
        await self._tick()
        self._ticker = PeriodicCallback(self._tick, self.poll_interval * 1000)
        self._ticker.start()

    async def stop_extension(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()
        done = []
        for module in self._modules():
            hook = getattr(module, "shutdown", None)
            if hook and hook not in done:
                done.append(hook)
                await hook(self)
        # Runs go on without us (supervisors are independent processes, Jobs live in the
        # cluster) and the next server picks them up.
        self._services.executor.close()
