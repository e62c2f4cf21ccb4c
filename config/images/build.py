#!/usr/bin/env python3
"""Build the Datalabs container images without Docker (``make images``).

No Docker engine and no registry exist where the project is tested, so images are made here
from Debian packages and PyPI and handed to containerd as OCI layout archives:

1. **base** (one layer, shared by every Python image): ``debootstrap --variant=minbase bookworm``
   from the Debian mirror with Python, ``tini`` and CA certificates; apt's caches, docs and locales
   removed; the Docker Stacks user ``jovyan`` (uid 1000, home ``/home/jovyan``) added.
2. **one layer per image**: the base mounted read-only under an overlayfs; in a chroot of the
   merged tree a venv at ``/opt/datalabs/venv`` gets the image's PyPI packages and, where the
   recipe says so, the ``datalabs`` wheel built from this checkout; files are copied in. The
   overlay's upper folder is the layer (whiteouts turned into OCI ``.wh.`` entries).
3. **pause**: the pod sandbox's process (``pause/pause.go``, a static Go binary) alone in a layer,
   containerd's ``sandbox_image`` on the test kubelet.

Each image is described by ``config/images/<name>/image.toml`` (name, debian, npm, pip,
datalabs, copy, env, cmd, user). Results are cached outside the repository
(``DATALABS_IMAGES_DIR``, default ``/var/cache/datalabs-images``) under a key hashed from
everything that goes in (recipe, base key, wheel, copied files), so an unchanged image is not
rebuilt. ``--import SOCKET`` loads the archives into a containerd (``ctr -n k8s.io images
import``).

Needs root (chroot, mounts), ``debootstrap``, ``go``, ``npm`` (for recipes with npm packages)
and the package indexes (Debian, PyPI, npm). Only the standard library is used, so the system
``python3`` can run it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE = Path(os.environ.get("DATALABS_IMAGES_DIR", "/var/cache/datalabs-images"))
MIRROR = os.environ.get("DATALABS_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
#: Debian packages of the base layer: Python with venv, tini as PID 1 (reaps the kernels' and
#: terminals' children), CA certificates for pip inside the chroot.
BASE_PACKAGES = ("python3", "python3-venv", "tini", "ca-certificates")
#: Bumped when the base recipe below changes in a way the package list does not show.
BASE_RECIPE_VERSION = "1"
PAUSE_NAME = "datalabs/pause:1.0"
#: Every image the builder knows: the folders with an ``image.toml``, and pause.
RECIPES = sorted(p.parent.name for p in HERE.glob("*/image.toml"))


def log(message: str) -> None:
    print(f"make images: {message}", flush=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _copied(path: Path) -> bool:
    """Whether a file under a recipe's ``copy`` folder goes into the image (no bytecode)."""
    return path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"


def tree_digest(paths: list[Path]) -> str:
    """A digest of files' relative names, modes and contents (not their times)."""
    h = hashlib.sha256()
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if _copied(p))
        for p in files:
            h.update(str(p.relative_to(REPO)).encode() + b"\0")
            h.update(oct(p.stat().st_mode & 0o777).encode())
            h.update(sha256_file(p).encode())
    return h.hexdigest()


def run(argv: list[str], **kwargs) -> None:
    """Run a command we built ourselves (never a shell string); fail naming it."""
    result = subprocess.run(argv, **kwargs)
    if result.returncode != 0:
        raise SystemExit(f"make images: `{' '.join(argv)}` failed ({result.returncode})")


# --- layers and OCI layouts -------------------------------------------------------------------


def _whiteout_name(path: Path) -> str | None:
    """The OCI whiteout file for an overlayfs whiteout (a 0/0 character device), or None."""
    st = path.lstat()
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        return f".wh.{path.name}"
    return None


def write_layer(root: Path, out: Path, exclude: tuple[str, ...] = ()) -> None:
    """Write the tree under ``root`` as an uncompressed layer tar (numeric owners, sorted names).

    An overlayfs upper folder is a valid ``root``: its whiteouts become ``.wh.<name>`` files and
    its opaque folders get ``.wh..wh..opq``. ``exclude`` names folders whose content is left out
    (kept as empty folders), such as ``dev``: the runtime makes ``/dev`` itself."""
    tmp = out.with_suffix(".partial")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:

        def add(path: Path, arcname: str) -> None:
            wh = _whiteout_name(path)
            if wh is not None:
                info = tarfile.TarInfo(str(Path(arcname).parent / wh).removeprefix("./"))
                info.mtime = int(time.time())
                tar.addfile(info)
                return
            info = tar.gettarinfo(str(path), arcname)
            info.uname = info.gname = ""
            if info.isreg():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
            if info.isdir():
                with contextlib.suppress(OSError):
                    if os.getxattr(path, "trusted.overlay.opaque") == b"y":
                        opq = tarfile.TarInfo(f"{arcname}/.wh..wh..opq")
                        tar.addfile(opq)

        def walk(folder: Path, prefix: str) -> None:
            for entry in sorted(os.scandir(folder), key=lambda e: e.name):
                path = Path(entry.path)
                arcname = f"{prefix}{entry.name}"
                add(path, arcname)
                if entry.is_dir(follow_symlinks=False) and arcname not in exclude:
                    walk(path, arcname + "/")

        walk(root, "")
    tmp.rename(out)


def write_oci_archive(
    out: Path, name: str, layers: list[Path], config: dict, created: str = "2025-01-01T00:00:00Z"
) -> None:
    """An OCI image layout, as a tar, holding ``layers`` (uncompressed tars) and ``config``.

    ``io.containerd.image.name`` carries the full reference so that ``ctr images import`` names
    the image ``docker.io/<name>``, which is what Kubernetes asks for when a pod says ``<name>``."""
    layer_digests = [sha256_file(p) for p in layers]
    image_config = {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for d in layer_digests]},
        "history": [{"created": created, "created_by": "config/images/build.py"} for _ in layers],
    }
    config_bytes = json.dumps(image_config, sort_keys=True).encode()
    config_digest = hashlib.sha256(config_bytes).hexdigest()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": f"sha256:{config_digest}",
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": f"sha256:{d}",
                "size": p.stat().st_size,
            }
            for d, p in zip(layer_digests, layers, strict=True)
        ],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    manifest_digest = hashlib.sha256(manifest_bytes).hexdigest()
    repository, _, tag = name.rpartition(":")
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": f"sha256:{manifest_digest}",
                "size": len(manifest_bytes),
                "annotations": {
                    "io.containerd.image.name": f"docker.io/{repository}:{tag}",
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }
    tmp = out.with_suffix(".partial")
    with tarfile.open(tmp, "w") as tar:

        def add_bytes(arcname: str, data: bytes) -> None:
            info = tarfile.TarInfo(arcname)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))

        add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add_bytes("index.json", json.dumps(index).encode())
        add_bytes(f"blobs/sha256/{config_digest}", config_bytes)
        add_bytes(f"blobs/sha256/{manifest_digest}", manifest_bytes)
        seen = set()
        for digest, path in zip(layer_digests, layers, strict=True):
            if digest not in seen:
                seen.add(digest)
                tar.add(str(path), f"blobs/sha256/{digest}")
    tmp.rename(out)


# --- the base layer ---------------------------------------------------------------------------


def base_key() -> str:
    return hashlib.sha256(
        json.dumps([SUITE, MIRROR, BASE_PACKAGES, BASE_RECIPE_VERSION]).encode()
    ).hexdigest()[:16]


def build_base() -> tuple[Path, Path]:
    """The debootstrapped root filesystem and its layer tar, built once per :func:`base_key`."""
    folder = CACHE / f"base-{base_key()}"
    rootfs, layer = folder / "rootfs", folder / "layer.tar"
    if layer.exists():
        return rootfs, layer
    for tool in ("debootstrap", "chroot"):
        if not shutil.which(tool):
            raise SystemExit(f"make images: `{tool}` is missing (apt-get install debootstrap)")
    start = time.monotonic()
    log(f"debootstrap {SUITE} (minbase) with {', '.join(BASE_PACKAGES)} from {MIRROR}")
    done = folder / "debootstrap.done"
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        _debootstrap(rootfs, folder / "debootstrap.log")
        done.touch()
    _tidy_base(rootfs)
    write_layer(rootfs, layer, exclude=("dev", "proc", "sys"))
    log(f"base layer built in {time.monotonic() - start:.0f} s ({layer.stat().st_size >> 20} MiB)")
    return rootfs, layer


def _debootstrap(rootfs: Path, log_file: Path) -> None:
    with open(log_file, "wb") as out:
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                SUITE,
                str(rootfs),
                MIRROR,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _tidy_base(rootfs: Path) -> None:
    """Trim the debootstrapped tree to what a container needs and add the image user."""
    # what a container never needs: downloaded .debs, package lists, docs, translations
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
        for child in (rootfs / junk).glob("*"):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            elif child.name != "lock":
                child.unlink()
    for child in (rootfs / "usr/share/locale").glob("*"):
        if child.is_dir():
            shutil.rmtree(child)
    # the Docker Stacks user, so that the catalogue's images run as uid 1000 as the Dockerfiles'
    if b"jovyan:" not in (rootfs / "etc/passwd").read_bytes():
        run(["chroot", str(rootfs), "useradd", "--uid", "1000", "--create-home", "jovyan"])
    # the runtime writes its own resolv.conf; the build host's must not ship in the image
    (rootfs / "etc/resolv.conf").write_text("")


# --- one image from its recipe ----------------------------------------------------------------


@contextlib.contextmanager
def overlay(lower: Path, work: Path) -> Iterator[tuple[Path, Path]]:
    """``lower`` under an overlayfs; yields (merged, upper); always unmounted."""
    upper, scratch, merged = work / "upper", work / "scratch", work / "merged"
    for d in (upper, scratch, merged):
        d.mkdir(parents=True)
    run(
        [
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={lower},upperdir={upper},workdir={scratch}",
            str(merged),
        ]
    )
    mounted = [merged]
    try:
        yield merged, upper
    finally:
        for m in reversed(mounted):
            subprocess.run(["umount", str(m)], check=False)


def host_ca_bundle() -> str:
    """The CA bundle the build host's pip trusts (``PIP_CERT``, else Debian's bundle)."""
    return os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt"


def npm_install(merged: Path, packages: list[str]) -> None:
    """Install npm ``packages`` (pinned, pure JavaScript) globally into the image under
    ``/usr/local`` (commands in ``/usr/local/bin``), for the image's own Node.js.

    npm runs on the build host, not in the chroot: Debian's ``npm`` package depends on
    ``node-gyp`` and with it a compiler toolchain and some 300 ``node-*`` packages, minutes of
    downloads for a tool the image never runs. The host's npm (what ``make labextension`` uses)
    writes the package tree into the merged root instead; install scripts are not run (they
    would run on the host), so only packages without native parts belong here. The image's
    Node.js comes from the recipe's Debian packages (``nodejs``)."""
    npm = shutil.which("npm")
    if not npm:
        raise SystemExit(
            "make images: `npm` is missing (Node.js with npm, as for the lab extension)"
        )
    if not (merged / "usr/bin/node").exists():
        raise SystemExit(
            "make images: a recipe with `npm` packages needs `nodejs` in its `debian` list"
        )
    cache = CACHE / "npm-cache"
    cache.mkdir(exist_ok=True)
    run(
        [
            npm,
            "install",
            "--global",
            f"--prefix={merged / 'usr/local'}",
            f"--cache={cache}",
            "--omit=dev",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--no-update-notifier",
            "--loglevel=error",
            *packages,
        ],
        stdout=subprocess.DEVNULL,
    )


def datalabs_wheel(out: Path) -> Path:
    """The datalabs wheel built from this checkout (the lab extension must be built already)."""
    if not (REPO / "jupyterlab_ext/labextension/static/style.js").exists():
        raise SystemExit(
            "make images: the lab extension is not built (jupyterlab_ext/labextension): "
            "run `make labextension` first"
        )
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("datalabs-*.whl"):
        old.unlink()
    run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(REPO)],
        stdout=subprocess.DEVNULL,
    )
    (wheel,) = out.glob("datalabs-*.whl")
    return wheel


def wheel_digest(wheel: Path) -> str:
    """A digest of what the wheel installs: its files' names and contents, with the metadata's
    headers (dependencies) but not its long description (the README), and without the RECORD,
    so that editing the README does not rebuild every image."""
    h = hashlib.sha256()
    with zipfile.ZipFile(wheel) as z:
        for name in sorted(z.namelist()):
            data = z.read(name)
            if name.endswith(".dist-info/RECORD"):
                continue
            if name.endswith(".dist-info/METADATA"):
                data = data.split(b"\n\n", 1)[0]
            h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


def image_key(recipe: dict, wheel: Path | None) -> str:
    copied = [REPO / src for src, _ in recipe.get("copy", [])]
    # the builder itself too: how it makes a layer is part of what the image is
    parts = [
        base_key(),
        sha256_file(Path(__file__)),
        json.dumps(recipe, sort_keys=True),
        tree_digest(copied),
    ]
    if wheel is not None:
        parts.append(wheel_digest(wheel))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def build_image(name: str, wheelhouse: Path) -> Path:
    """The OCI archive of ``config/images/<name>``, built unless cached."""
    recipe = tomllib.loads((HERE / name / "image.toml").read_text())
    wheel = datalabs_wheel(wheelhouse) if recipe.get("datalabs") else None
    key = image_key(recipe, wheel)
    folder = CACHE / "images" / name
    archive = folder / f"{key}.oci.tar"
    if archive.exists():
        log(f"{recipe['name']}: cached ({archive})")
        return archive
    rootfs, base_layer = build_base()
    start = time.monotonic()
    log(f"{recipe['name']}: building")
    work = CACHE / "work" / f"{name}-{key}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        with overlay(rootfs, work) as (merged, upper):
            env = [
                "env",
                "-i",
                "PATH=/usr/local/bin:/usr/bin:/bin",
                "HOME=/root",
                "LANG=C.UTF-8",
                "PIP_DISABLE_PIP_VERSION_CHECK=1",
            ]
            venv = "/opt/datalabs/venv"
            # name resolution inside the chroot for apt and pip; emptied again below
            shutil.copy2("/etc/resolv.conf", merged / "etc/resolv.conf")
            debian = list(recipe.get("debian", []))
            if debian:
                # Debian packages of this image alone (the mirror is plain http; apt checks
                # the archive's signatures); the package lists go again afterwards
                apt_env = [*env, "DEBIAN_FRONTEND=noninteractive"]
                run(["chroot", str(merged), *apt_env, "apt-get", "update", "-qq"])
                run(
                    [
                        "chroot",
                        str(merged),
                        *apt_env,
                        "apt-get",
                        "install",
                        "-y",
                        "-qq",
                        "--no-install-recommends",
                        *debian,
                    ],
                    stdout=subprocess.DEVNULL,
                )
                run(["chroot", str(merged), *apt_env, "apt-get", "clean"])
                for junk in ("var/lib/apt/lists", "var/cache/apt", "var/log"):
                    for child in (merged / junk).glob("*"):
                        if child.is_file() and child.name != "lock":
                            child.unlink()
                        elif child.is_dir() and child.name != "partial":
                            shutil.rmtree(child)
            npm_packages = list(recipe.get("npm", []))
            if npm_packages:
                npm_install(merged, npm_packages)
            run(["chroot", str(merged), *env, "python3", "-m", "venv", venv])
            packages = list(recipe.get("pip", [])) or ["pip"]
            if wheel is not None:
                (merged / "tmp/wheels").mkdir()
                shutil.copy2(wheel, merged / "tmp/wheels" / wheel.name)
                packages.insert(0, f"/tmp/wheels/{wheel.name}")
            # pip runs inside the chroot so that it picks packages for the image's Python
            # (Debian's 3.11.2, which some releases refuse), with the build host's CA bundle
            # (PyPI may sit behind a TLS proxy) for this step only, and a download cache kept
            # outside the image.
            shutil.copy2(host_ca_bundle(), merged / "tmp/host-ca.crt")
            pip_cache = CACHE / "pip-cache"
            pip_cache.mkdir(exist_ok=True)
            (merged / "tmp/pip-cache").mkdir()
            run(["mount", "--bind", str(pip_cache), str(merged / "tmp/pip-cache")])
            try:
                run(
                    [
                        "chroot",
                        str(merged),
                        *env,
                        "PIP_CERT=/tmp/host-ca.crt",
                        "PIP_CACHE_DIR=/tmp/pip-cache",
                        f"PIP_DEFAULT_TIMEOUT={os.environ.get('PIP_DEFAULT_TIMEOUT', '60')}",
                        f"{venv}/bin/pip",
                        "install",
                        "-q",
                        *packages,
                    ]
                )
            finally:
                subprocess.run(["umount", str(merged / "tmp/pip-cache")], check=False)
                (merged / "etc/resolv.conf").write_text("")
            for src, dst in recipe.get("copy", []):
                target = merged / dst.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                if (REPO / src).is_dir():
                    shutil.copytree(
                        REPO / src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
                    )
                else:
                    shutil.copy2(REPO / src, target)
                for p in [target, *target.rglob("*")]:
                    os.chown(p, 0, 0, follow_symlinks=False)
            # what pip and Python leave behind outside the venv
            for junk in ("root/.cache", "tmp"):
                for child in (merged / junk).glob("*"):
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        # the base's own (empty) resolv.conf stays; no copy of it in this layer
        (upper / "etc/resolv.conf").unlink(missing_ok=True)
        layer = work / "layer.tar"
        write_layer(upper, layer)
        user = str(recipe.get("user", 1000))
        env_list = {
            "PATH": f"{venv}/bin:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": "/home/jovyan",
            **recipe.get("env", {}),
        }
        config = {
            "User": user,
            "Env": [f"{k}={v}" for k, v in env_list.items()],
            "Entrypoint": ["tini", "-g", "--"],
            "Cmd": recipe.get("cmd", ["python3"]),
            "WorkingDir": "/home/jovyan" if user != "0" else "/",
        }
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.oci.tar"):
            old.unlink()
        write_oci_archive(archive, recipe["name"], [base_layer, layer], config)
        (folder / "name").write_text(recipe["name"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(
        f"{recipe['name']}: built in {time.monotonic() - start:.0f} s, "
        f"{archive.stat().st_size >> 20} MiB ({archive})"
    )
    return archive


def build_pause() -> Path:
    """The sandbox image: the static ``pause`` binary alone."""
    source = HERE / "pause" / "pause.go"
    key = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    folder = CACHE / "images" / "pause"
    archive = folder / f"{key}.oci.tar"
    if archive.exists():
        log(f"{PAUSE_NAME}: cached ({archive})")
        return archive
    go = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")
    if not go:
        raise SystemExit("make images: `go` is missing; the pause image is built from pause.go")
    work = CACHE / "work" / f"pause-{key}"
    shutil.rmtree(work, ignore_errors=True)
    (work / "root").mkdir(parents=True)
    try:
        env = {**os.environ, "CGO_ENABLED": "0", "GO111MODULE": "off"}
        env.setdefault("GOCACHE", str(CACHE / "go-build"))
        run([go, "build", "-ldflags=-s -w", "-o", str(work / "root/pause"), str(source)], env=env)
        layer = work / "layer.tar"
        write_layer(work / "root", layer)
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.oci.tar"):
            old.unlink()
        config = {"User": "65535", "Entrypoint": ["/pause"], "Env": ["PATH=/"]}
        write_oci_archive(archive, PAUSE_NAME, [layer], config)
        (folder / "name").write_text(PAUSE_NAME)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"{PAUSE_NAME}: built ({archive})")
    return archive


def built_archives() -> dict[str, Path]:
    """Image name -> newest built archive, for what is in the cache now (used by the tests)."""
    found = {}
    for folder in sorted((CACHE / "images").glob("*")):
        archives = sorted(folder.glob("*.oci.tar"), key=lambda p: p.stat().st_mtime)
        if archives and (folder / "name").exists():
            found[(folder / "name").read_text().strip()] = archives[-1]
    return found


def import_archives(socket: Path, archives: list[Path]) -> None:
    """Load ``archives`` into the containerd at ``socket`` (CRI's ``k8s.io`` namespace)."""
    for archive in archives:
        run(
            ["ctr", "--address", str(socket), "-n", "k8s.io", "images", "import", str(archive)],
            stdout=subprocess.DEVNULL,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="*", help=f"which to build (default: all of {RECIPES})")
    parser.add_argument("--import", dest="socket", type=Path, help="containerd socket to load into")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("make images: needs root (debootstrap, chroot and overlay mounts)")
    unknown = set(args.images) - set(RECIPES) - {"pause"}
    if unknown:
        raise SystemExit(f"make images: no recipe config/images/<name>/image.toml for {unknown}")
    CACHE.mkdir(parents=True, exist_ok=True)
    # A folder of this build's own: builds from several checkouts share the cache, and with one
    # wheel folder for all, another build's wheel replaced ours between its key and its install
    # (an image whose key named this checkout held another checkout's code; seen here).
    wheelhouse = Path(tempfile.mkdtemp(prefix="wheel-", dir=CACHE))
    archives = [build_pause()]
    try:
        for name in args.images or RECIPES:
            if name != "pause":
                archives.append(build_image(name, wheelhouse))
    finally:
        shutil.rmtree(wheelhouse, ignore_errors=True)
    if args.socket:
        import_archives(args.socket, archives)
    return 0


if __name__ == "__main__":
    sys.exit(main())
