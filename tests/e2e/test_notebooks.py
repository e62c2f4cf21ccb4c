"""The example notebooks run top to bottom inside a real session, with the volumes mounted.

alice starts the datalab through the hub; the notebook is the copy the spawner put in her
workspace, and its kernel is started by her session's own Jupyter server (so it has the
session's environment, home folder and mounts). nbclient then runs every cell in that kernel,
over the kernel's connection file. The figures the notebooks draw are saved for the README.
"""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import nbformat
import pytest
from jupyter_client.asynchronous import AsyncKernelClient
from nbclient import NotebookClient
from PIL import Image

from tests.e2e.conftest import ARTIFACTS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def connection_file(home: Path, kernel_id: str, timeout: float = 30) -> Path:
    """The connection file the session's server wrote for a kernel (under the user's home)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(home.glob(f".local/share/jupyter/runtime/kernel-{kernel_id}.json"))
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no connection file for kernel {kernel_id} under {home}")


async def run_in_session(hub, user: str, path: str) -> nbformat.NotebookNode:
    """Run the notebook at ``path`` (in the user's workspace) in a kernel of their session."""
    r = hub.server(user, "GET", f"api/contents/{path}")
    assert r.status_code == 200, r.text
    nb = nbformat.from_dict(r.json()["content"])
    folder = path.rpartition("/")[0]
    r = hub.server(user, "POST", "api/kernels", json={"name": "python3", "path": folder})
    assert r.status_code == 201, r.text
    kernel_id = r.json()["id"]
    kc = AsyncKernelClient()
    kc.load_connection_file(str(connection_file(hub.state / "workspaces" / user, kernel_id)))
    # No heartbeat (as tests/helpers.kernel_client): jupyter_client takes a first ping left
    # unanswered within 1 s for a dead kernel ("Kernel died before replying to kernel_info"),
    # and on a loaded machine a kernel in its sandbox starts slower; the deadlines hold instead.
    kc.start_channels(hb=False)
    try:
        await kc.wait_for_ready(timeout=60)
        client = NotebookClient(nb, timeout=180)
        client.kc = kc
        for index, cell in enumerate(nb.cells):
            await client.async_execute_cell(cell, index)
    finally:
        kc.stop_channels()
        hub.server(user, "DELETE", f"api/kernels/{kernel_id}")
    return nb


def figures(nb: nbformat.NotebookNode) -> list[Image.Image]:
    return [
        Image.open(io.BytesIO(base64.b64decode(out["data"]["image/png"])))
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if "image/png" in out.get("data", {})
    ]


def text_output(nb: nbformat.NotebookNode) -> str:
    return "".join(
        out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
    )


def assert_is_a_plot(image: Image.Image, min_size: tuple[int, int]) -> None:
    """A real figure: big enough and not blank (many colours, not one flat fill)."""
    assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1], image.size
    colours = image.convert("RGB").getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 100, f"only {len(colours)} colours: an empty figure?"


@pytest.mark.parametrize(
    ("datalab", "volumes", "notebook", "figure", "expected"),
    [
        (
            "juice-coverage",
            ["spice-juice"],
            "examples/juice-coverage/juice_coverage.ipynb",
            "juice-coverage.png",
            ["is covered from 2034 DEC 20 00:00:00 to 2034 DEC 21 00:00:00 UTC", "windows"],
        ),
        (
            "planetary-lab",
            ["psa-rosetta", "spice-juice"],
            "examples/planetary-lab/rosetta_pds4.ipynb",
            "rosetta-pds4.png",
            ["720 records from 2014-08-06", "(512, 512) float32"],
        ),
    ],
)
async def test_example_notebook_runs_in_a_session(
    demo_hub, datalab, volumes, notebook, figure, expected
):
    r = demo_hub.api("POST", "users/alice/server", json={"profile": datalab, "volumes": volumes})
    assert r.status_code in (201, 202), r.text
    try:
        demo_hub.wait_ready("alice")
        started = time.monotonic()
        nb = await run_in_session(demo_hub, "alice", notebook)
        took = time.monotonic() - started
    finally:
        demo_hub.stop_server("alice")
    out = text_output(nb)
    for text in expected:
        assert text in out, out
    # The notebook read its data from the session's mount (it prints where from).
    workspace = demo_hub.state / "workspaces" / "alice"
    assert f"{workspace / 'data' / volumes[0]}/" in out, out
    images = figures(nb)
    assert len(images) == 1, f"{len(images)} figures"
    assert_is_a_plot(images[0], (800, 400))
    # ... and saved it next to itself, in the workspace
    saved = workspace / Path(notebook).parent / figure.replace("-", "_")
    assert saved.is_file()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    images[0].save(ARTIFACTS / figure)
    nbformat.write(nb, ARTIFACTS / Path(notebook).name)
    print(f"{notebook}: ran in {took:.1f} s in alice's session")
