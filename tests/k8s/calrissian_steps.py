"""Build step pods with the real Calrissian (0.18.1, from PyPI) and Datalabs' fixes to it.

Run by the ``k8s`` tests with the Python of ``.venv-calrissian`` (``make calrissian-venv``:
Calrissian pins cwltool and kubernetes versions of its own, so it has a venv of its own), with
this repository on ``PYTHONPATH``. Reads one JSON object on stdin:

- ``pod``: the run Job's pod as the API server has it (Calrissian reads its own pod);
- ``env``: the Calrissian container's environment (labels, the run's ceiling);
- ``steps``: a list of ``{"name", "image", "outdir", "inputs": [[source, target]], "resources"}``;
- ``patched``: false to see what Calrissian builds without the fixes;

and prints the list of step pods, as Calrissian's ``create_kubernetes_runtime`` builds them:
the step's output folder (writable), an emptyDir ``/tmp``, each input file bound read-only.
"""

from __future__ import annotations

import json
import sys


class _Response:
    def __init__(self, data: object) -> None:
        self.data = json.dumps(data)


def main() -> None:
    request = json.load(sys.stdin)
    if request.get("patched", True):
        from datalabs_pipelines.executors import calrissian_entry

        calrissian_entry.install(request.get("env") or {})
    from calrissian.job import KubernetesPodBuilder, KubernetesVolumeBuilder
    from kubernetes.client import ApiClient

    pod = ApiClient().deserialize(_Response(request["pod"]), "V1Pod")
    built = []
    for step in request["steps"]:
        volumes = KubernetesVolumeBuilder()
        volumes.add_persistent_volume_entries_from_pod(pod)
        volumes.add_volume_binding(step["outdir"], "/var/spool/cwl", True)
        volumes.add_emptydir_volume("tmpdir")
        volumes.add_emptydir_volume_binding("tmpdir", "/tmp")
        for source, target in step["inputs"]:
            volumes.add_volume_binding(source, target, False)
        builder = KubernetesPodBuilder(
            step["name"],
            step["image"],
            {"HOME": "/var/spool/cwl", "TMPDIR": "/tmp"},
            volumes.volume_mounts,
            volumes.volumes,
            ["cat", *[target for _, target in step["inputs"]]],
            "/var/spool/cwl/out/stdout.txt",
            None,
            None,
            step.get("resources") or {},
            {},
            {},
            {"runAsUser": 1000, "runAsGroup": 100},
            None,
        )
        built.append(builder.build())
    json.dump(built, sys.stdout)


if __name__ == "__main__":
    main()
