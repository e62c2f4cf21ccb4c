"""Small helpers shared by the tests: writing catalogue trees, free ports, the browser."""

from __future__ import annotations

import contextlib
import socket
import textwrap
from pathlib import Path


def write(root: Path, rel: str, text: str) -> Path:
    """Write a catalogue file (dedented) under ``root`` and return its path."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def volume_yaml(vid: str, path: str | None = None, extra: str = "") -> str:
    return (
        f"id: {vid}\ntitle: Volume {vid}\nsource:\n  type: local\n  path: {path or vid}\n" + extra
    )


def datalab_yaml(title: str = "Lab", extra: str = "") -> str:
    return f"title: {title}\nkind: notebook\nimage: example/lab:1\n" + extra


def form_inputs(html: str) -> list[dict[str, str | None]]:
    """The <input> elements of an HTML form, as attribute dicts."""
    from html.parser import HTMLParser

    found: list[dict[str, str | None]] = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "input":
                found.append(dict(attrs))

    Parser().feed(html)
    return found


def checked(html: str, name: str) -> list[str]:
    """Values of the checked inputs named ``name``."""
    return [i["value"] for i in form_inputs(html) if i.get("name") == name and "checked" in i]


def offered(html: str, name: str) -> list[str]:
    return [i["value"] for i in form_inputs(html) if i.get("name") == name]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_sample_data_generator():
    """``config/sample-data/make_sample_data.py`` as a module (its folder name has a dash)."""
    import importlib.util
    import sys

    script = Path(__file__).resolve().parents[1] / "config" / "sample-data" / "make_sample_data.py"
    spec = importlib.util.spec_from_file_location("make_sample_data", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


#: How the workplace's Chromium runs headless as root: no sandbox, no background network calls
#: (this machine's closed network refuses them, many at a time).
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch_chromium(playwright):
    """Debian's Chromium (no browser download here), headless, as CHROMIUM_ARGS say."""
    return playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)


@contextlib.contextmanager
def browser_page(browser, last_screenshot: Path):
    """A fresh 1280x860 page with 30 s timeouts; what it showed last is saved as
    ``last_screenshot``, for whoever reads a failure."""
    last_screenshot.parent.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page
    finally:
        page.screenshot(path=str(last_screenshot))
        context.close()


def generated_volumes(count: int, missions: int = 40) -> list:
    """``count`` catalogue volumes over ``missions`` missions ("Mission <i % missions>"), each
    with a description naming its orbit (``i * 7``), for tests and benchmarks of big lists."""
    from datalabs_volumes.models import Volume, VolumeSource

    return [
        Volume(
            id=f"vol-{i:05d}",
            title=f"Volume {i}",
            mission=f"Mission {i % missions}",
            source=VolumeSource(type="local", path=f"/archive/{i}"),
            description=f"Level 2 products, orbit {i * 7}",
        )
        for i in range(count)
    ]


def spawn_page(path: Path, form_html: str) -> Path:
    """Write the spawn form as JupyterHub's spawn page holds it: inside ``form#spawn_form``."""
    path.write_text(f'<!doctype html><form id="spawn_form">{form_html}</form>', encoding="utf-8")
    return path


@contextlib.contextmanager
def kernel_client(connection_file: Path, timeout: float = 120):
    """A client of a running kernel (its connection file given), through the Jupyter kernel
    protocol; yields ``execute(code) -> what it printed`` (a kernel error fails the test).

    No heartbeat: jupyter_client takes a first ping unanswered within 1 s for a dead kernel,
    and on a loaded machine a kernel takes longer to start (a UI-less test failed so once);
    ``wait_for_ready``'s own deadline holds instead."""
    import time

    from jupyter_client import BlockingKernelClient

    client = BlockingKernelClient()
    client.load_connection_file(str(connection_file))
    client.start_channels(hb=False)

    def execute(code: str) -> str:
        msg_id = client.execute(code)
        out = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = client.get_iopub_msg(timeout=timeout)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind == "error":
                raise AssertionError("\n".join(content["traceback"]))
            elif kind == "status" and content["execution_state"] == "idle":
                return "".join(out)
        raise AssertionError("the kernel did not finish")

    try:
        client.wait_for_ready(timeout=60)
        yield execute
    finally:
        client.stop_channels()
