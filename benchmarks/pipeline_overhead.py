"""Overhead of Datalabs pipeline runs, against plain cwltool measured in the same run.

1. Wall time of ``datalabs-pipeline run`` (our defaults: run store, step events, logs per step,
   provenance, per-user cache) divided by plain ``cwltool --no-container`` on the same 20-step
   workflow; medians of a few alternating repetitions. Target <= 1.05.
2. p99 latency of ``GET /datalabs/api/runs/<id>`` on a real jupyter server with 50 runs in the
   store while 4 run. Target <= 50 ms. The 4 runs differ in their inputs: identical runs of one
   user wait for each other (the executor's dispatch), and would leave one running, not 4.

3. One 1 GiB input on an archive volume (a folder named in ``$DATALABS_VOLUMES``, as in a
   session), read whole by a one-step tool: wall time of ``datalabs-pipeline run`` over plain
   cwltool (target <= 1.05; cwltool's own ``--provenance`` made it 2.6x by copying the input),
   and how much the run folder grows (target < 1 MiB: the input is named, never copied).

Prints ``runs_get_p99: ms=<n> target=50``, ``archive_run_folder: mib=<n> target=1``,
``archive_input_overhead: ratio=<r> target=1.05`` and, last,
``pipeline_overhead: ratio=<r> target=1.05``. With ``BENCH_SMOKE=1`` it runs on a tiny size
(2 light steps, a 4 MiB archive file, one round without warm-up, 20 requests) to show that it
starts and reaches its figures; those figures mean nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from _chains import chain_workflow  # beside this script

BIN = Path(sys.executable).parent
SMOKE = os.environ.get("BENCH_SMOKE") == "1"
REPS = 1 if SMOKE else int(os.environ.get("BENCH_REPS", "5"))
WARMUP = 0 if SMOKE else 1
STEPS = 2 if SMOKE else 20
#: Loop length of one step's job: ~1/3 s of CPU, a light science step (a smoke run needs none).
ITERATIONS = 10_000 if SMOKE else 1_000_000
REQUESTS = 20 if SMOKE else 500
ARCHIVE_MIB = 4 if SMOKE else 1024
LIVE = 4

STEP_TOOL = """cwlVersion: v1.2
class: CommandLineTool
doc: |
  One step of the benchmark workflow - a small numerical job on the previous step's table
  (about a third of a second of CPU, the scale of a light science step; with near-empty steps
  cwltool's own per-step cost dominates and the fixed cost of a run weighs more, see the docs).
requirements:
  InitialWorkDirRequirement:
    listing:
      - entryname: step.py
        entry: |
          import math, sys
          rows = [line.split(",") for line in open(sys.argv[1]).read().split()]
          seed = sum(float(r[1]) for r in rows) % 1000
          out = []
          for i in range(ITERATIONS):
              x = math.sin(seed + i * 0.001) * math.cos(i * 0.0007)
              if i % 10000 == 0:
                  out.append(f"{i},{x:.9f}")
          open("table.csv", "w").write("\\n".join(out) + "\\n")
baseCommand: [python3, step.py]
inputs:
  table: {type: File, inputBinding: {position: 1}}
outputs:
  table: {type: File, outputBinding: {glob: table.csv}}
"""


def write_workflow(folder: Path) -> tuple[Path, Path]:
    (folder / "step.cwl").write_text(STEP_TOOL.replace("ITERATIONS", str(ITERATIONS)))
    workflow = folder / "wf20.cwl"
    workflow.write_text(chain_workflow(STEPS))
    (folder / "seed.csv").write_text("0,1.5\n1,2.5\n")
    job = folder / "job.json"
    job.write_text(json.dumps({"table": {"class": "File", "path": str(folder / "seed.csv")}}))
    return workflow, job


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed:\n{done.stderr.decode()[-2000:]}")
    return elapsed


def paired_run(work: Path, rep: int, process: Path, job: Path, env: dict) -> tuple[float, float]:
    """One round: plain cwltool, then `datalabs-pipeline run`, on the same process and job."""
    plain = timed(
        [
            str(BIN / "cwltool"),
            "--no-container",
            "--quiet",
            "--outdir",
            str(work / f"plain-{rep}"),
            str(process),
            str(job),
        ],
        env,
    )
    ours = timed(
        [
            str(BIN / "datalabs-pipeline"),
            "run",
            "--quiet",
            "--outdir",
            str(work / f"ours-{rep}"),
            str(process),
            str(job),
        ],
        env,
    )
    return plain, ours


def overhead(work: Path) -> float:
    work.mkdir(parents=True, exist_ok=True)
    workflow, job = write_workflow(work)
    ours_times, plain_times = [], []
    for rep in range(REPS + WARMUP):  # a first round warms the page cache and is not counted
        home = work / f"store-{rep}"  # fresh store and cache: every step really runs
        env = dict(os.environ, DATALABS_PIPELINES_HOME=str(home))
        plain, ours = paired_run(work, rep, workflow, job, env)
        if rep >= WARMUP:
            plain_times.append(plain)
            ours_times.append(ours)
        print(
            f"  round {rep}: cwltool {plain:.2f} s, datalabs-pipeline run {ours:.2f} s"
            + ("" if rep >= WARMUP else " (warm-up)"),
            flush=True,
        )
    plain_median, ours_median = statistics.median(plain_times), statistics.median(ours_times)
    print(
        f"{STEPS}-step workflow: cwltool median {plain_median:.2f} s, "
        f"datalabs-pipeline run median {ours_median:.2f} s"
    )
    return ours_median / plain_median


COUNT_TOOL = """cwlVersion: v1.2
class: CommandLineTool
doc: Reads the whole input (counts its lines), as a step reading an archive file would.
baseCommand: [wc, -l]
stdin: $(inputs.data.path)
inputs:
  data: File
outputs:
  count: stdout
stdout: count.txt
"""


def _stored_bytes(folder: Path) -> int:
    """Bytes under ``folder``, each file counted once however many links it has."""
    seen, total = set(), 0
    for path in folder.rglob("*"):
        st = path.lstat()
        if path.is_file() and not path.is_symlink() and (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def archive_input(work: Path) -> tuple[float, float]:
    """(run wall over plain cwltool, largest run-folder growth in MiB) for one archive input."""
    volume = work / "archive" / "psa"
    volume.mkdir(parents=True)
    big = volume / "big.bin"
    with open(big, "wb") as f:
        block = os.urandom(1 << 20)
        for _ in range(ARCHIVE_MIB):
            f.write(block)
    tool = work / "count.cwl"
    tool.write_text(COUNT_TOOL)
    job = work / "job.json"
    job.write_text(json.dumps({"data": {"class": "File", "path": str(big)}}))
    volumes = json.dumps([{"id": "psa", "title": "PSA", "version": "1", "path": str(volume)}])
    ours_times, plain_times, growth = [], [], 0
    for rep in range(REPS + WARMUP):
        home = work / f"store-{rep}"
        env = dict(os.environ, DATALABS_PIPELINES_HOME=str(home), DATALABS_VOLUMES=volumes)
        plain, ours = paired_run(work, rep, tool, job, env)
        growth = max(growth, _stored_bytes(home / "runs"))
        if rep >= WARMUP:
            plain_times.append(plain)
            ours_times.append(ours)
        print(
            f"  archive round {rep}: cwltool {plain:.2f} s, datalabs-pipeline run {ours:.2f} s, "
            f"run folder {_stored_bytes(home / 'runs') / (1 << 20):.3f} MiB"
            + ("" if rep >= WARMUP else " (warm-up)"),
            flush=True,
        )
    plain_median, ours_median = statistics.median(plain_times), statistics.median(ours_times)
    print(
        f"{ARCHIVE_MIB} MiB archive input: cwltool median {plain_median:.2f} s, "
        f"datalabs-pipeline run median {ours_median:.2f} s"
    )
    return ours_median / plain_median, growth / (1 << 20)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def runs_get_p99(work: Path) -> float:
    from datalabs_pipelines.executors.local import cancel
    from datalabs_pipelines.runs import FAILED, SUCCESS, Run, RunStore, new_run_id
    from datalabs_pipelines.settings import default_user

    home = work / "api-store"
    catalogue = work / "catalogue" / "bench" / "pipelines"
    catalogue.mkdir(parents=True)
    (catalogue / "wait.cwl").write_text(
        "cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: sleep\n"
        "inputs: {seconds: {type: string, inputBinding: {position: 1}}}\noutputs: []\n"
    )
    user = default_user()
    store = RunStore(home / "runs.db")
    now = time.time()
    ids = []
    for i in range(50 - LIVE):  # finished runs with a few steps each, plus the live ones below
        run_id = new_run_id()
        store.add(
            Run(
                id=run_id,
                user=user,
                pipeline="bench/wait",
                pipeline_path="x",
                inputs={"seconds": "1"},
                state=SUCCESS if i % 5 else FAILED,
                created=now - 1000 + i,
                rundir=str(home / "runs" / run_id),
                outdir=str(home / "runs" / run_id / "outputs"),
                cwd="/",
                argv=[],
                detached=True,
                started=now - 999 + i,
                finished=now - 998 + i,
            )
        )
        for s in range(5):
            store.upsert_step(run_id, f"step{s}", state="success", started=now, finished=now)
        ids.append(run_id)

    port, token = _free_port(), "bench-token"
    config = work / "jupyter-config"
    config.mkdir()
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(config),
        JUPYTER_CONFIG_PATH=str(config),
        JUPYTER_RUNTIME_DIR=str(work / "runtime"),
    )
    env.pop("JUPYTERHUB_USER", None)
    (config / "jupyter_server_config.json").write_text(
        json.dumps(
            {
                "ServerApp": {
                    "jpserver_extensions": {"jupyterlab_ext": True},
                    "ip": "127.0.0.1",
                    "port": port,
                    "port_retries": 0,
                    "open_browser": False,
                    "allow_root": True,
                    "root_dir": str(work),
                },
                "IdentityProvider": {"token": token},
                "DatalabsExtension": {
                    "catalogue_dirs": [str(work / "catalogue")],
                    "pipelines_home": str(home),
                    "max_concurrent_runs": 4,
                },
            }
        )
    )
    log = open(work / "server.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server"], env=env, stdout=log, stderr=log
    )
    session = requests.Session()
    session.headers["Authorization"] = f"token {token}"
    base = f"http://127.0.0.1:{port}/datalabs/api"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if session.get(f"{base}/runs", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("jupyter server did not start; see " + str(work / "server.log"))
            time.sleep(0.2)

        def running() -> int:
            return sum(
                session.get(f"{base}/runs/{i}", timeout=10).json()["state"] == "running"
                for i in live
            )

        live = []
        for n in range(LIVE):
            # Different inputs (120 s, 121 s, ...): a run identical to one under way (same user,
            # pipeline and inputs) waits for it, so 4 identical runs would leave one running.
            r = session.post(
                f"{base}/runs",
                data=json.dumps({"pipeline": "bench/wait", "inputs": {"seconds": str(120 + n)}}),
                timeout=30,
            )
            r.raise_for_status()
            live.append(r.json()["id"])
        deadline = time.monotonic() + 60
        while running() < LIVE:
            if time.monotonic() > deadline:
                states = [session.get(f"{base}/runs/{i}", timeout=10).json()["state"] for i in live]
                raise SystemExit(f"the {LIVE} live runs did not all start in 60 s: {states}")
            time.sleep(0.2)
        targets = ids + live
        latencies = []
        for n in range(REQUESTS):
            run_id = targets[n % len(targets)]
            start = time.perf_counter()
            response = session.get(f"{base}/runs/{run_id}", timeout=10)
            latencies.append((time.perf_counter() - start) * 1000)
            response.raise_for_status()
        still = running()
        if still < LIVE:
            raise SystemExit(
                f"only {still} of the {LIVE} live runs were still running at the end: "
                "the p99 would not be the one with 4 runs running"
            )
        latencies.sort()
        p50 = latencies[len(latencies) // 2]
        p99 = latencies[max(int(len(latencies) * 0.99) - 1, 0)]
        print(
            f"GET runs/<id>: {len(latencies)} requests, 50 runs in the store, "
            f"{still} running: p50 {p50:.1f} ms, p99 {p99:.1f} ms"
        )
        return p99
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        for run in store.list(states=("queued", "running", "cancelling")):
            cancel(store, run.id, run.user, grace=2)


def main() -> int:
    if SMOKE:
        print("smoke run (BENCH_SMOKE=1): tiny sizes, the figures are not measurements")
    work = Path(tempfile.mkdtemp(prefix="datalabs-bench-"))
    try:
        p99 = runs_get_p99(work / "api")
        archive_ratio, growth = archive_input(work / "archive")
        ratio = overhead(work / "overhead")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"runs_get_p99: ms={p99:.1f} target=50")
    print(f"archive_run_folder: mib={growth:.3f} target=1")
    print(f"archive_input_overhead: ratio={archive_ratio:.3f} target=1.05")
    print(f"pipeline_overhead: ratio={ratio:.3f} target=1.05")
    return 0


if __name__ == "__main__":
    sys.exit(main())
