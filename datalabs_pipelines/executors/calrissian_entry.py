"""Calrissian as the run Job starts it (``python3 -m`` this module).

Calrissian 0.18.1 (PyPI) with the fixes its step pods need on a Datalabs cluster, applied to
its own builders before its ``main`` runs (same arguments as the ``calrissian`` command):

- **Unique volume names.** Calrissian names a step pod's volume after the claim it comes
  from, so two archive volumes of one claim (several ``local`` volumes in the archive claim)
  become two volumes of the same name, which the API server refuses. The step pod keeps the
  name of the Calrissian pod's own volume instead (``archive-<volume id>``, ``input-data``...).
- **Each volume once.** The Calrissian pod may mount one volume at two paths (the input
  claim: the user's folder and the broker's job folder); the step pod declares it once.
- **The deepest mount wins.** Calrissian takes the first mount whose path is a string prefix
  of a file, so ``/data/psa`` could take ``/data/psa-rosetta/x``: the file's mount is the
  deepest one that contains it as a path.
- **Every step's log.** Calrissian follows a step pod's log only once its watch sees the
  container running; a step that ends before that (a short tool, a busy node) left an empty log
  (seen on the test cluster's kubelet: the demo pipeline's step log was empty). Its log is then
  read whole when the step ends, before Calrissian deletes the pod.
- **Restricted pods with the run's labels and limits**
  (:func:`~datalabs_pipelines.executors.kubernetes.restrict_step_pod`): Pod Security
  "restricted", no API token, the labels in ``DATALABS_STEP_LABELS`` and the step's name
  (``datalabs.io/step``), requests and limits from
  the step's ``ResourceRequirement`` under the run's ceiling (``DATALABS_STEP_MAX_CORES``,
  ``DATALABS_STEP_MAX_RAM``), on the run's nodes (``DATALABS_STEP_PLACEMENT``: node selector
  and tolerations, the Job pod's own).

Imports nothing but Calrissian, the standard library and the pure Kubernetes module, so that the
Calrissian image only needs this package installed with ``--no-deps``.
"""

from __future__ import annotations

import json
import os
import posixpath
import sys
from typing import Any

from datalabs_pipelines.executors.kubernetes import (
    ENV_MAX_CORES,
    ENV_MAX_RAM,
    ENV_PLACEMENT,
    ENV_STEP_LABELS,
    STEP_LABEL,
    label_value,
    mebibytes,
    restrict_step_pod,
    step_resources,
)


def _mounted_claims(pod: Any) -> list[tuple[str, str | None, str, str, bool]]:
    """``(mount path, subPath, volume name, claim, read only)`` of each claim the first
    container of ``pod`` (a ``V1Pod``) mounts."""
    claims = {}
    for volume in pod.spec.volumes or []:
        if volume.persistent_volume_claim:
            source = volume.persistent_volume_claim
            claims[volume.name] = (source.claim_name, bool(source.read_only))
    out = []
    for mount in pod.spec.containers[0].volume_mounts or []:
        if mount.name in claims:
            claim, read_only = claims[mount.name]
            out.append((mount.mount_path, mount.sub_path, mount.name, claim, read_only))
    return out


def install(environ: dict[str, str] | None = None) -> None:
    """Patch Calrissian's volume and pod builders (idempotent)."""
    from calrissian import job as calrissian_job
    from calrissian import k8s as calrissian_k8s

    env = os.environ if environ is None else environ
    builder_cls = calrissian_job.KubernetesVolumeBuilder
    pod_cls = calrissian_job.KubernetesPodBuilder
    if getattr(builder_cls, "_datalabs", False):
        return

    def add_persistent_volume_entries_from_pod(self, pod):
        for mount_path, sub_path, name, claim, read_only in _mounted_claims(pod):
            entry = {
                "prefix": mount_path,
                "subPath": sub_path,
                "volume": {
                    "name": name,
                    "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only},
                },
            }
            self.persistent_volume_entries[mount_path] = entry
            # One pod volume may be mounted twice (the input claim: the user's folder and the
            # broker's job folder); the step pod declares it once.
            if all(v.get("name") != name for v in self.volumes):
                self.volumes.append(entry["volume"])

    def find_persistent_volume(self, source):
        source = posixpath.normpath(source)
        best = None
        for prefix, entry in self.persistent_volume_entries.items():
            root = posixpath.normpath(prefix)
            if source == root or source.startswith(root.rstrip("/") + "/"):
                if best is None or len(root) > len(posixpath.normpath(best["prefix"])):
                    best = entry
        return best

    def calculate_subpath(source, prefix, parent_sub_path):
        rest = posixpath.relpath(posixpath.normpath(source), posixpath.normpath(prefix))
        parts = [p for p in (parent_sub_path or "", "" if rest == "." else rest) if p]
        return "/".join(p.strip("/") for p in parts)

    labels = json.loads(env.get(ENV_STEP_LABELS) or "{}")
    max_cores = float(env.get(ENV_MAX_CORES) or 0) or None
    max_ram = mebibytes(env[ENV_MAX_RAM]) if env.get(ENV_MAX_RAM) else None
    placement = json.loads(env.get(ENV_PLACEMENT) or "{}")
    original_build = pod_cls.build

    def build(self):
        resources = None
        if max_cores is not None and max_ram is not None:
            resources = step_resources(dict(self.resources or {}), max_cores, max_ram)
        step_labels = {**labels, STEP_LABEL: label_value(str(self.name))}
        return restrict_step_pod(original_build(self), step_labels, resources, placement)

    client_cls = calrissian_k8s.KubernetesClient
    original_completion = client_cls._handle_completion

    def _handle_completion(self, state, container):
        if not self.tool_log and self.pod is not None:
            name = self.pod.metadata.name
            try:
                text = self.core_api_instance.read_namespaced_pod_log(name, self.namespace)
            except Exception:  # noqa: BLE001 - the step's result matters more than its log
                text = ""
            for line in (text or "").splitlines():
                self.tool_log.append(self.format_log_entry(name, line))
        return original_completion(self, state, container)

    client_cls._handle_completion = _handle_completion
    builder_cls.add_persistent_volume_entries_from_pod = add_persistent_volume_entries_from_pod
    builder_cls.find_persistent_volume = find_persistent_volume
    builder_cls.calculate_subpath = staticmethod(calculate_subpath)
    pod_cls.build = build
    builder_cls._datalabs = True


def make_log_folders(argv: list[str]) -> None:
    """Make the folders of the ``--stdout`` and ``--stderr`` files of Calrissian's arguments.

    Calrissian tees its output into them with ``tee`` processes started before cwltool makes
    the run's output folder, where they lie: ``tee`` cannot open them, and a run that ends
    ``success`` leaves no ``output.json`` (its output object) and no ``cwltool.log`` (seen on
    the test cluster's kubelet node)."""
    for i, arg in enumerate(argv):
        for option in ("--stdout", "--stderr"):
            value = None
            if arg == option and i + 1 < len(argv):
                value = argv[i + 1]
            elif arg.startswith(f"{option}="):
                value = arg.split("=", 1)[1]
            if value and posixpath.dirname(value):
                os.makedirs(posixpath.dirname(value), exist_ok=True)


def main() -> None:
    install()
    make_log_folders(sys.argv[1:])
    from calrissian.main import main as calrissian_main

    sys.exit(calrissian_main())


if __name__ == "__main__":
    main()
