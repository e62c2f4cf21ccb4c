"""A 10-step pipeline as a cluster run, against the same pipeline with the local executor,
measured in the same run; and where the cluster run's time goes.

The cluster run takes the path of a user's run on the test cluster (tests/k8s/kubelet_runs.py):
:meth:`RunBroker.submit` checks the job, stages it into the input claim and creates the
Calrissian Job; the real kubelet node (tests/kubelet_node.py: kubelet, containerd, runc) runs
the Job's pod (the Calrissian image) and Calrissian creates each step's pod (the planetary-lab
image) through the real API server. It is timed from ``submit()`` to the Job's ``Complete``
condition (polled every 0.2 s). The local run is ``datalabs-pipeline run`` (the local
executor: cwltool with the run store, step events, logs per step) of the same workflow and job
on this machine. The workflow is a chain of 10 light steps (a small table through Python, as
the demo pipelines' steps are), so the figure is mostly what running a step as a pod costs.

Breakdown of the cluster run, from the pods' own timestamps (whole seconds, as the API server
keeps them; the Job's pod and every step pod are seen by a watch, deleted ones included):
``submit`` (the broker's checks, staging of the pipeline and the job, the Job's creation, timed
here), ``job pod start`` (Job pod created -> its container started), ``calrissian start``
(container started -> first step pod created: cwltool loading and validating), ``step pod
start`` (each step pod created -> its container started: scheduling, sandbox, image),
``step run`` (container started -> finished), ``between steps`` (Calrissian collecting a
step's outputs, deleting its pod and making the next), ``end`` (last step -> Job Complete).

Last line: ``cluster_pipeline: ratio=<median cluster / median local> target=3``. With
``BENCH_SMOKE=1``: a 2-step workflow, one round of each (it starts and reaches its figure;
the figure means nothing). Needs root (the kubelet node, hostPath claims), the cluster's
binaries (``make cluster``), the images (``make images``); it stops with what is missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _chains import chain_workflow  # noqa: E402  (beside this script)

from datalabs_pipelines.catalogue import load_pipeline  # noqa: E402
from datalabs_pipelines.executors.kubernetes import (  # noqa: E402
    CALRISSIAN_IMAGE,
    RUN_LABEL,
    STEP_LABEL,
)
from datalabs_volumes.access import Who, readable  # noqa: E402
from datalabs_volumes.models import Volume, VolumeSource  # noqa: E402

SMOKE = os.environ.get("BENCH_SMOKE") == "1"
STEPS = 2 if SMOKE else 10
REPS = 1 if SMOKE else int(os.environ.get("BENCH_REPS", "3"))
BIN = Path(sys.executable).parent
LAB_IMAGE = "datalabs/planetary-lab:1.0"
USER = "alice"

STEP_TOOL = """cwlVersion: v1.2
class: CommandLineTool
doc: One step of the benchmark pipeline - the running mean of the previous step's table.
requirements:
  InitialWorkDirRequirement:
    listing:
      - entryname: step.py
        entry: |
          import sys
          rows = [line.split(",") for line in open(sys.argv[1]).read().split()]
          total, out = 0.0, []
          for i, (t, v) in enumerate(rows, 1):
              total += float(v)
              out.append(f"{t},{total / i:.6f}")
          open("table.csv", "w").write("\\n".join(out) + "\\n")
baseCommand: [python3, step.py]
inputs:
  table: {type: File, inputBinding: {position: 1}}
outputs:
  table: {type: File, outputBinding: {glob: table.csv}}
"""


def write_workflow(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "step.cwl").write_text(STEP_TOOL)
    workflow = folder / "chain.cwl"
    workflow.write_text(chain_workflow(STEPS, f"A chain of {STEPS} steps"))
    return workflow


def run_local(workflow: Path, table: Path, work: Path, rep: int) -> float:
    job = work / f"local-job-{rep}.json"
    job.write_text(json.dumps({"table": {"class": "File", "path": str(table)}}))
    # A store of its own each round: the per-user step cache would replay the steps (a cluster
    # run has no cache), which made one local round 1.6 s against 6.7 and 8.3.
    env = dict(os.environ, DATALABS_PIPELINES_HOME=str(work / f"home-{rep}"))
    cmd = [str(BIN / "datalabs-pipeline"), "run", "--quiet", "--outdir", str(work / f"local-{rep}")]
    start = time.perf_counter()
    done = subprocess.run([*cmd, str(workflow), str(job)], env=env, capture_output=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"datalabs-pipeline run failed:\n{done.stderr.decode()[-2000:]}")
    return elapsed


def _t(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def breakdown(pods: list[dict], submitted: float, completed: float) -> dict[str, float]:
    """Where the run's time went, from its pods' timestamps (see the module's docstring)."""
    from tests.k8s.kubelet_runs import pod_times

    job = [p for p in pods if STEP_LABEL not in p["metadata"]["labels"]]
    steps = [p for p in pods if STEP_LABEL in p["metadata"]["labels"]]
    if len(job) != 1 or len(steps) != STEPS:
        raise SystemExit(
            f"expected 1 Job pod and {STEPS} step pods, saw "
            f"{sorted(p['metadata']['name'] for p in pods)}"
        )
    jt = pod_times(job[0])
    st = sorted((pod_times(p) for p in steps), key=lambda t: t["created"])
    missing = [t for t in [jt, *st] if not {"created", "started"} <= set(t)]
    if missing or any("finished" not in t for t in st):
        raise SystemExit(f"pods without start or end times: {missing or st}")
    step_start = sum(_t(t["started"]) - _t(t["created"]) for t in st)
    step_run = sum(_t(t["finished"]) - _t(t["started"]) for t in st)
    between = sum(_t(b["created"]) - _t(a["finished"]) for a, b in zip(st, st[1:], strict=False))
    return {
        "job pod start": _t(jt["started"]) - _t(jt["created"]),
        "calrissian start": _t(st[0]["created"]) - _t(jt["started"]),
        "step pod start": step_start,
        "step run": step_run,
        "between steps": between,
        "end": completed - _t(st[-1]["finished"]),
        "(submit)": submitted,
    }


async def run_cluster(runs, pipeline, rep: int) -> tuple[float, dict[str, float]]:
    from tests.k8s.kubelet_runs import RunPods, diagnosis

    run_id = f"be0c{rep:04x}{int(time.time()):08x}"
    watch = RunPods(runs.cluster, runs.namespace, f"{RUN_LABEL}={run_id}", timeout=900)
    volume = Volume("bench", "Bench", "Bench", VolumeSource("local", path="bench"))
    inputs = {"table": {"class": "File", "path": "/data/bench/seed.csv"}}
    try:
        start = time.perf_counter()
        await runs.broker.submit(
            USER, run_id, pipeline, inputs, readable({"bench": volume}, Who(USER)), LAB_IMAGE, 900
        )
        submitted = time.perf_counter() - start
        end = None
        while end is None:
            end = runs.job_end(run_id)
            if end is None:
                if time.perf_counter() - start > 900:
                    raise SystemExit("the cluster run did not end in 900 s")
                await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - start
        completed = time.time()
        if end != "Complete":
            raise SystemExit(
                "the cluster run failed:\n"
                + diagnosis(runs.cluster, runs.namespace, run_id, runs.outputs(USER, run_id))
            )
        # Calrissian deletes each step pod when it is done: wait until the watch saw each end.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pods = list(watch.pods.values())
            if len(pods) == STEPS + 1:
                break
            await asyncio.sleep(0.2)
        parts = breakdown(list(watch.pods.values()), submitted, completed)
    finally:
        watch.close()
    return elapsed, parts


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("cluster_pipeline needs root (the kubelet node and hostPath claims)")
    from tests.cluster import missing_binaries, running_cluster
    from tests.k8s.kubelet_runs import KubeletRuns
    from tests.kubelet_node import running_kubelet_node

    if missing_binaries():
        raise SystemExit(f"cluster_pipeline needs the cluster (make cluster): {missing_binaries()}")
    if SMOKE:
        print("smoke run (BENCH_SMOKE=1): 2 steps, one round, the figures are not measurements")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        root = Path(tmp)
        workflow = write_workflow(root / "pipeline")
        table = root / "archive" / "bench" / "seed.csv"
        table.parent.mkdir(parents=True)
        table.write_text("".join(f"{i},{(i * 37) % 101}\n" for i in range(200)))
        os.chmod(root, 0o755)
        pipeline = load_pipeline(workflow, "bench")
        with running_cluster(root / "cluster") as cluster:
            with running_kubelet_node(cluster, images=(LAB_IMAGE, CALRISSIAN_IMAGE)):
                runs = KubeletRuns(cluster, root / "archive", root / "work", max_time_limit=900)
                runs.user_folders(USER)
                try:
                    local, remote, parts = [], [], []
                    for rep in range(REPS):
                        local.append(run_local(workflow, table, root, rep))
                        took, where = asyncio.run(run_cluster(runs, pipeline, rep))
                        remote.append(took)
                        parts.append(where)
                        print(
                            f"  round {rep}: local {local[-1]:.1f} s, cluster {took:.1f} s "
                            f"({', '.join(f'{k} {v:.1f}' for k, v in where.items())})",
                            flush=True,
                        )
                finally:
                    runs.close()
    local_m, remote_m = statistics.median(local), statistics.median(remote)
    print(
        f"{STEPS} steps: local executor median {local_m:.1f} s, cluster run median {remote_m:.1f} s"
    )
    print("where the cluster run's time goes (medians, s):")
    for key in parts[0]:
        print(f"  {key:17} {statistics.median(p[key] for p in parts):6.1f}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"cluster_pipeline: ratio={remote_m / local_m:.3f} target=3")


if __name__ == "__main__":
    main()
