"""Read throughput of a 1 GiB archive file from inside a session's sandbox, against reading it
directly on the host.

The sandbox is the one ``DatalabsLocalSpawner.sandbox`` makes (bubblewrap, the user's own
system account, the volume bind-mounted read-only under ``data/`` by the same ``LocalMounter``),
built here from the same functions, so this measures what a notebook in a sandboxed session
sees. Each round starts one reader process on the host and one in the sandbox (the order
swapped every round), each timing only its own read of the whole file with 4 MiB reads, warm
(page cache), as a kernel re-reading archive files does. The figure is the median over the
rounds of each round's throughput ratio (sandboxed / direct).
Last line: ``sandbox_read: ratio=<sandboxed throughput / direct throughput> target=0.97``.
With ``BENCH_SMOKE=1``: an 8 MiB file, one round (the figure means nothing).
Needs root (accounts and mounts), like the sandbox itself.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datalabs_spawner.sandbox import (  # noqa: E402
    SandboxSpec,
    bwrap_argv,
    ensure_account,
    host_links,
    prepare_workspace,
)
from datalabs_spawner.spawner import python_env_paths  # noqa: E402
from datalabs_volumes.mount.local import LocalMounter  # noqa: E402

SMOKE = os.environ.get("BENCH_SMOKE") == "1"
SIZE = 8 << 20 if SMOKE else 1 << 30
CHUNK = 4 << 20
ROUNDS = 1 if SMOKE else 9
ACCOUNT_PREFIX = "dlbench-"

READER = f"""
import sys, time
start = time.perf_counter()
with open(sys.argv[1], "rb", buffering=0) as f:
    view = memoryview(bytearray({CHUNK}))
    while f.readinto(view):
        pass
print(time.perf_counter() - start)
"""


def timed(argv: list[str]) -> float:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise SystemExit(f"reader failed ({done.returncode}): {done.stderr.strip()}")
    return float(done.stdout.strip().splitlines()[-1])


async def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("sandbox_read needs root (a system account and a bind mount)")
    if SMOKE:
        print("smoke run (BENCH_SMOKE=1): tiny sizes, the figures are not measurements")
    with tempfile.TemporaryDirectory(prefix="datalabs-bench-") as tmp:
        archive = Path(tmp) / "archive" / "psa"
        archive.mkdir(parents=True)
        data = archive / "big.dat"
        with open(data, "wb") as f:
            block = os.urandom(CHUNK)
            for _ in range(SIZE // CHUNK):
                f.write(block)
        workspace = Path(tmp) / "workspaces" / "reader"
        account = await ensure_account("reader", ACCOUNT_PREFIX, str(workspace))
        mounter = LocalMounter("bind")
        target = workspace / "data" / "psa"
        try:
            prepare_workspace(str(workspace), account)
            await mounter.attach(archive, target)
            spec = SandboxSpec(
                account=account,
                workspace=str(workspace),
                read_only=tuple(python_env_paths()),
                links=host_links(),
            )
            inside = bwrap_argv(spec, [sys.executable, "-c", READER, str(target / "big.dat")])
            direct = [sys.executable, "-c", READER, str(data)]
            timed(direct)  # warm the page cache (and the interpreter's files)
            ratios, t_direct, t_inside = [], [], []
            for i in range(ROUNDS):
                pair = [direct, inside] if i % 2 == 0 else [inside, direct]
                times = {id(argv): timed(argv) for argv in pair}
                d, s = times[id(direct)], times[id(inside)]
                t_direct.append(d)
                t_inside.append(s)
                ratios.append(d / s)  # throughput ratio: same bytes, so time direct / time inside
        finally:
            await mounter.detach(target)
            if pwd.getpwnam(account.name).pw_gecos.startswith("Datalabs "):
                subprocess.run(["userdel", account.name], check=False, capture_output=True)
    mib = SIZE / (1 << 20)
    print(f"direct on the host (baseline): median {mib / statistics.median(t_direct):.0f} MiB/s")
    print(f"inside the sandbox: median {mib / statistics.median(t_inside):.0f} MiB/s")
    print(f"sandbox_read: ratio={statistics.median(ratios):.3f} target=0.97")


if __name__ == "__main__":
    asyncio.run(main())
