"""The run store on its own: what several processes sharing it need."""

import subprocess
import sys
import time

# Each process waits for the same instant, then opens the store: as close together as two runs
# that cwltest (-j 2) or a user starts at once on a brand-new store.
OPEN_AT_ONCE = """
import sys, time
from datalabs_pipelines.runs import RunStore
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
store = RunStore(sys.argv[1])
"""


def test_processes_opening_a_new_store_together_all_succeed(tmp_path):
    for round_ in range(4):
        db = tmp_path / f"store-{round_}" / "runs.db"
        start = f"{time.time() + 1.0:.3f}"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", OPEN_AT_ONCE, str(db), start], stderr=subprocess.PIPE
            )
            for _ in range(6)
        ]
        errors = [p.communicate(timeout=60)[1].decode() for p in procs]
        assert [p.returncode for p in procs] == [0] * 6, [e for e in errors if e]
