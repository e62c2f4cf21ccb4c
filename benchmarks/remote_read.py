"""Reading a connection through the session's rclone mount, against rclone's own transfers.

A real ``rclone serve webdav`` on 127.0.0.1 serves a 256 MiB file and a folder of 10,000 files.
The session engine (``SessionRclone``, one ``rclone rcd``) mounts it as a user's connection is
mounted; the baselines are ``rclone copy`` of the same file and ``rclone lsf`` of the same
folder, in the same run, interleaved with the mounted runs so that machine noise hits both
alike. Every mounted run uses a fresh mount, so neither the kernel's page cache nor rclone's
directory cache serves it. Medians of the rounds. Last lines (the read ratio should reach its
target, the listing ratio stay below its own)::

    remote_read: ratio=<mount MB/s / rclone copy MB/s> target=0.8
    remote_list: ratio=<mount listing time / rclone lsf time> target=2

With ``BENCH_SMOKE=1``: a 4 MiB file, 20 entries, one round (it starts and reaches its figures;
the figures mean nothing).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datalabs_volumes.egress import NetworkPolicy  # noqa: E402
from datalabs_volumes.mount.local import rclone_binary  # noqa: E402
from datalabs_volumes.mount.rclone import SessionRclone  # noqa: E402
from datalabs_volumes.remotes import parse_networks, validate  # noqa: E402
from tests.servers import rclone_serve  # noqa: E402

SMOKE = os.environ.get("BENCH_SMOKE") == "1"
SIZE = 4 << 20 if SMOKE else 256 << 20
CHUNK = 4 << 20
ENTRIES = 20 if SMOKE else 10_000
ROUNDS = 1 if SMOKE else int(os.environ.get("BENCH_ROUNDS", "5"))
PASSWORD = "bench-password"


def read_all(path: Path) -> float:
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        view = memoryview(bytearray(CHUNK))
        while f.readinto(view):
            pass
    return time.perf_counter() - start


def list_all(path: Path) -> tuple[float, int]:
    start = time.perf_counter()
    with os.scandir(path) as it:
        n = sum(1 for _ in it)
    return time.perf_counter() - start, n


def rclone(env: dict[str, str], *args: str) -> float:
    start = time.perf_counter()
    subprocess.run([rclone_binary(), *args], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


async def main() -> None:
    if SMOKE:
        print("smoke run (BENCH_SMOKE=1): tiny sizes, the figures are not measurements")
    with tempfile.TemporaryDirectory(prefix="datalabs-bench-") as tmp:
        tmp = Path(tmp)
        served = tmp / "served"
        (served / "many").mkdir(parents=True)
        with open(served / "big.bin", "wb") as f:
            block = os.urandom(CHUNK)
            for _ in range(SIZE // CHUNK):
                f.write(block)
        for i in range(ENTRIES):
            (served / "many" / f"f{i:05d}.txt").touch()
        with rclone_serve(
            "webdav", served, tmp / "serve-state", PASSWORD, dir_cache_time=None
        ) as server:
            conn = validate(
                {"name": "bench", "backend": "webdav", "options": server.options(PASSWORD)},
                parse_networks(["127.0.0.1/32"]),
            )
            # The baseline's rclone gets the same remote, from a 0600 config made the same way.
            obscured = (
                subprocess.run(
                    [rclone_binary(), "obscure", "-"],
                    input=PASSWORD.encode(),
                    capture_output=True,
                    check=True,
                )
                .stdout.decode()
                .strip()
            )
            config = tmp / "rclone.conf"
            fd = os.open(config, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(
                    f"[bench]\ntype = webdav\nurl = {conn.options['url']}\nvendor = rclone\n"
                    f"user = {conn.options['user']}\npass = {obscured}\n"
                )
            env = dict(os.environ, RCLONE_CONFIG=str(config))
            engine = SessionRclone(
                tmp / "rcd", network_policy=NetworkPolicy.from_strings(["127.0.0.1/32"])
            )
            target = tmp / "data" / "bench"
            copies, reads, lsfs, lists = [], [], [], []
            try:
                for i in range(ROUNDS):
                    out = tmp / f"copy-{i}"
                    copies.append(rclone(env, "copy", "bench:big.bin", str(out)))
                    subprocess.run(["rm", "-rf", str(out)], check=True)
                    await engine.attach(conn, target)
                    reads.append(read_all(target / "big.bin"))
                    await engine.detach("bench")
                    lsfs.append(rclone(env, "lsf", "bench:many"))
                    await engine.attach(conn, target)
                    took, n = list_all(target / "many")
                    assert n == ENTRIES, n
                    lists.append(took)
                    await engine.detach("bench")
            finally:
                await engine.close()
    mib = SIZE / (1 << 20)
    copy_s, read_s = statistics.median(copies), statistics.median(reads)
    lsf_s, list_s = statistics.median(lsfs), statistics.median(lists)
    print(f"rclone copy of {mib:.0f} MiB: {copy_s:.2f} s ({mib / copy_s:.0f} MiB/s)")
    print(f"read through the mount: {read_s:.2f} s ({mib / read_s:.0f} MiB/s)")
    print(f"rclone lsf of {ENTRIES} entries: {lsf_s:.3f} s; mount listing: {list_s:.3f} s")
    print(f"remote_read: ratio={copy_s / read_s:.2f} target=0.8")
    print(f"remote_list: ratio={list_s / lsf_s:.2f} target=2")


if __name__ == "__main__":
    asyncio.run(main())
