"""Per-user and machine-wide limits on pipeline runs, set by the operator on the hub.

The limits are enforced in the sessions (``datalabs_pipelines.executors.local`` and
``.slots``); the hub only tells each session what they are, through its environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from traitlets import Integer, TraitError, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from datalabs_pipelines.executors.memory import DEFAULT_PARENT, ENV_CGROUP, ENV_MEMORY_LIMIT
from datalabs_pipelines.executors.slots import ENV_MACHINE_RUNS, ENV_SLOTS_DIR, MachineSlots
from datalabs_pipelines.settings import ENV_MAX_RUNS, ENV_WORKSPACE_QUOTA


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class RunLimitsMixin(LoggingConfigurable):
    """Spawner mixin: the pipeline run limits, passed to the session as environment."""

    pipeline_runs_per_user = Integer(
        2,
        config=True,
        help="""
        How many pipeline runs one user may have executing at the same time; further runs
        wait in their queue (state ``queued``) and start in order as others end. Given to the
        session as ``DATALABS_PIPELINES_MAX_RUNS`` (the Pipelines panel and the
        ``datalabs-pipeline`` command both obey it). Default 2. Example:
        ``c.DatalabsLocalSpawner.pipeline_runs_per_user = 1``.
        """,
    )

    pipeline_runs_machine = Integer(
        config=True,
        help="""
        How many pipeline runs may execute at the same time on this machine, all users
        together: the sessions' runs share the same cores. A run beyond it waits (its events
        say "waiting for a free run slot") and starts when one ends; cancelling it while it
        waits closes it without starting it. Enforced with one lock file per slot in
        ``pipeline_run_slots_dir``, so a killed run never keeps its slot.

        Default: the number of CPU cores of the hub's machine. 0 means no machine-wide limit
        (only ``pipeline_runs_per_user``). Example: ``c.DatalabsLocalSpawner.pipeline_runs_machine
        = 4``.
        """,
    )

    pipeline_run_slots_dir = Unicode(
        "/var/lib/datalabs/run-slots",
        config=True,
        help="""
        Folder of the machine-wide run slots (one lock file per slot of
        ``pipeline_runs_machine``), created by the hub at each start; every session must see
        it (it only needs read access).
        """,
    )

    workspace_quota_bytes = Integer(
        0,
        config=True,
        help="""
        Size quota of each user's workspace, in bytes (0, the default: none). Once the
        workspace holds that much, saving or uploading in JupyterLab and launching pipeline
        runs are refused with a message telling the user their workspace is full and what to
        delete. Files a kernel, a terminal or a running pipeline writes directly are not
        stopped (that needs filesystem quotas) but are counted at the next check. Attached
        volumes under ``data/`` are not counted. Example: ``10 * 1024**3`` for 10 GiB.
        """,
    )

    pipeline_memory_limit = Integer(
        0,
        config=True,
        help="""
        Memory one pipeline run may use, in bytes: cwltool and all the run's steps together
        (0, the default: no limit but the machine's). Each run gets its own memory cgroup
        (under ``pipeline_memory_cgroup``) with this limit, so a step that needs more is killed
        by the kernel inside its own run rather than some other process on the machine, and
        the step and the run are marked failed with the reason "killed: out of memory". An
        unsandboxed session (root) makes the runs' cgroups itself; for a sandboxed one the hub
        delegates ``<pipeline_memory_cgroup>/<account>`` to the user's account, limited to
        ``pipeline_runs_per_user`` runs' worth (which the account cannot raise), and shows it
        in the sandbox. A run that cannot have its cgroup runs without the limit, and its
        events say why. cwltool itself holds about 100 MiB, so the limit must be at least
        128 MiB. Example:
        ``4 * 1024**3`` for 4 GiB.
        """,
    )

    pipeline_memory_cgroup = Unicode(
        DEFAULT_PARENT,
        config=True,
        help="""
        The parent memory cgroup under which each pipeline run gets its own
        (``<this>/run-<id>``) when ``pipeline_memory_limit`` is set; created when missing.
        The default is for cgroup v1 (``/sys/fs/cgroup/memory``); on cgroup v2 give a folder of
        the unified hierarchy whose ``cgroup.subtree_control`` enables ``memory``.
        """,
    )

    @validate("pipeline_memory_limit")
    def _check_memory_limit(self, proposal: dict[str, Any]) -> int:
        value = proposal["value"]
        if value != 0 and value < 128 * 2**20:
            raise TraitError(
                "pipeline_memory_limit must be 0 (no limit) or at least 128 MiB "
                f"({128 * 2**20} bytes), not {value}: cwltool alone holds about 100 MiB"
            )
        return value

    @validate("workspace_quota_bytes")
    def _check_quota(self, proposal: dict[str, Any]) -> int:
        if proposal["value"] < 0:
            raise TraitError(
                f"workspace_quota_bytes must be 0 (no quota) or more, not {proposal['value']}"
            )
        return proposal["value"]

    @default("pipeline_runs_machine")
    def _default_pipeline_runs_machine(self) -> int:
        return _cores()

    @validate("pipeline_runs_per_user")
    def _check_runs_per_user(self, proposal: dict[str, Any]) -> int:
        if proposal["value"] < 1:
            raise TraitError(f"pipeline_runs_per_user must be at least 1, not {proposal['value']}")
        return proposal["value"]

    @validate("pipeline_runs_machine")
    def _check_runs_machine(self, proposal: dict[str, Any]) -> int:
        if proposal["value"] < 0:
            raise TraitError(
                f"pipeline_runs_machine must be 0 (no limit) or more, not {proposal['value']}"
            )
        return proposal["value"]

    def run_limits_env(self) -> dict[str, str]:
        """The session's environment for the run limits (slot files created on the way)."""
        env = {ENV_MAX_RUNS: str(self.pipeline_runs_per_user)}
        if self.workspace_quota_bytes:
            env[ENV_WORKSPACE_QUOTA] = str(self.workspace_quota_bytes)
        if self.pipeline_memory_limit:
            env[ENV_MEMORY_LIMIT] = str(self.pipeline_memory_limit)
            env[ENV_CGROUP] = self.pipeline_memory_cgroup
        if self.pipeline_runs_machine:
            MachineSlots(Path(self.pipeline_run_slots_dir), self.pipeline_runs_machine).prepare()
            env[ENV_MACHINE_RUNS] = str(self.pipeline_runs_machine)
            env[ENV_SLOTS_DIR] = self.pipeline_run_slots_dir
        return env
