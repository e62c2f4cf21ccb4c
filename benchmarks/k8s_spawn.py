"""Spawn time on the test cluster: DatalabsKubeSpawner with two archive volumes, against plain
KubeSpawner with no volumes, on the same real control plane in the same run.

The cluster is tests/cluster.py's (built by `make cluster`): a real kube-apiserver, scheduler
and controller-manager, and a kwok node that reports pods running without running containers.
So the figure is what Datalabs adds on the way from the hub's request to a running pod (reading
the catalogue, the access check, the volumes, the bigger pod spec), not a container's start.
Each spawn is timed from ``spawner.start()`` to its return (the pod is running), then stopped;
the two kinds alternate. Last line: ``k8s_spawn: ratio=<median ours / median plain>
target=1.10``. With ``BENCH_SMOKE=1``: one spawn of each, no warm-up (the figure means nothing).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kubernetes_asyncio.config import kube_config  # noqa: E402
from kubespawner import KubeSpawner  # noqa: E402

from datalabs_spawner.spawner import DatalabsKubeSpawner  # noqa: E402
from tests.cluster import running_cluster  # noqa: E402
from tests.helpers import datalab_yaml, write  # noqa: E402
from tests.k8s.conftest import kube_spawner  # noqa: E402
from tests.k8s_fixtures import _forget_kubespawner_clients  # noqa: E402

SMOKE = os.environ.get("BENCH_SMOKE") == "1"
ROUNDS = 1 if SMOKE else 25  # a spawn here takes ~0.15 s: many rounds for a stable median
NAMESPACE = "bench"


def catalogue(root: Path) -> Path:
    cat = root / "catalogue"
    write(cat, "rosetta/datalabs/planetary.yaml", datalab_yaml("Planetary", "default_url: /lab\n"))
    for vid in ("psa", "spice"):
        write(
            cat,
            f"rosetta/volumes/{vid}.yaml",
            f"id: {vid}\ntitle: {vid}\nsource: {{type: local, path: {vid}}}\n",
        )
    return cat


async def timed(make) -> float:
    s = make()
    start = time.perf_counter()
    await s.start()
    elapsed = time.perf_counter() - start
    await s.stop(now=True)
    return elapsed


async def measure(cat: Path) -> tuple[list[float], list[float]]:
    def ours():
        s = kube_spawner(
            DatalabsKubeSpawner,
            NAMESPACE,
            "alice",
            catalogue_dirs=[str(cat)],
            catalogue_refresh_seconds=0,
            archive_claim="datalabs-archive",
        )
        s.user_options = {"profile": "planetary", "volumes": ["psa", "spice"]}
        return s

    def plain():
        return kube_spawner(KubeSpawner, NAMESPACE, "bob")

    try:
        if not SMOKE:
            await timed(ours)  # warm-up: the API client, the reflectors, the catalogue
            await timed(plain)
        t_ours, t_plain = [], []
        for i in range(ROUNDS):
            # alternate which goes first, so that neither always meets a warmed cache
            order = [(t_ours, ours), (t_plain, plain)]
            for times, make in order if i % 2 else reversed(order):
                times.append(await timed(make))
        return t_ours, t_plain
    finally:
        await KubeSpawner._stop_all_reflectors()
        await _forget_kubespawner_clients()


def main() -> None:
    if SMOKE:
        print("smoke run (BENCH_SMOKE=1): tiny sizes, the figures are not measurements")
    with tempfile.TemporaryDirectory(prefix="datalabs-bench-") as tmp:
        root = Path(tmp)
        with running_cluster(root / "cluster") as cluster:
            cluster.apply(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
            )
            cluster.bound_volume(NAMESPACE, "datalabs-archive")
            kubeconfig = cluster.kubeconfig("admin", NAMESPACE)
            os.environ.pop("KUBERNETES_SERVICE_HOST", None)
            os.environ["KUBECONFIG"] = str(kubeconfig)
            # kubernetes_asyncio reads KUBECONFIG once, at import
            kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(kubeconfig)
            t_ours, t_plain = asyncio.run(measure(catalogue(root)))
    m_ours, m_plain = statistics.median(t_ours), statistics.median(t_plain)
    print(f"plain KubeSpawner, no volumes (baseline): median {m_plain:.3f} s over {ROUNDS}")
    print(f"DatalabsKubeSpawner with 2 volumes: median {m_ours:.3f} s over {ROUNDS}")
    print(f"k8s_spawn: ratio={m_ours / m_plain:.3f} target=1.10")


if __name__ == "__main__":
    main()
