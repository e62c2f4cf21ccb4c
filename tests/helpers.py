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
    # expect() has its own 5 s default, too short for a loaded 2-core CI machine.
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)
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


def check_run_crate(folder: Path) -> dict:
    """Check that ``folder`` is a Workflow Run RO-Crate and return its entities by ``@id``.

    The rules checked are those of RO-Crate 1.1 a reader relies on (metadata descriptor about
    the root, root ``Dataset`` with ``datePublished``, every ``hasPart`` in the crate present
    on disk, every reference resolving to an entity), the Workflow Run Crate's (a
    ``ComputationalWorkflow`` as ``mainEntity``, a ``CreateAction`` with it as ``instrument``),
    and that ro-crate-py (``rocrate``) reads the crate back with the same entities.
    """
    import json

    from rocrate.rocrate import ROCrate

    metadata = json.loads((folder / "ro-crate-metadata.json").read_text())
    assert metadata["@context"][0] == "https://w3id.org/ro/crate/1.1/context"
    entities = {e["@id"]: e for e in metadata["@graph"]}
    assert len(entities) == len(metadata["@graph"]), "duplicate @id"
    descriptor = entities["ro-crate-metadata.json"]
    assert descriptor["about"] == {"@id": "./"}
    assert {"@id": "https://w3id.org/ro/crate/1.1"} in descriptor["conformsTo"]
    root = entities["./"]
    assert root["@type"] == "Dataset" and root["datePublished"]
    profiles = {c["@id"] for c in root["conformsTo"]}
    assert "https://w3id.org/ro/wfrun/workflow/0.5" in profiles

    def refs(value):
        if isinstance(value, dict):
            if set(value) == {"@id"}:
                yield value["@id"]
            else:
                for v in value.values():
                    yield from refs(v)
        elif isinstance(value, list):
            for v in value:
                yield from refs(v)

    for entity in metadata["@graph"]:
        for key, value in entity.items():
            if key in ("conformsTo", "license", "actionStatus", "identifier", "url"):
                continue  # web vocabulary, not entities of the crate
            for ref in refs(value):
                assert ref in entities, f"{entity['@id']}.{key} -> {ref} has no entity"
    for part in root["hasPart"]:
        if "://" not in part["@id"]:  # others are named by reference, not in the crate
            assert (folder / part["@id"]).exists(), part
    workflow = entities[root["mainEntity"]["@id"]]
    assert "ComputationalWorkflow" in workflow["@type"]
    actions = [e for e in metadata["@graph"] if e["@type"] == "CreateAction"]
    assert len(actions) == 1 and actions[0]["instrument"] == {"@id": workflow["@id"]}

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ro-crate-py warns about what RO-Crate 1.1 requires
        crate = ROCrate(str(folder))
    assert crate.mainEntity is not None and crate.mainEntity.id == workflow["@id"]
    read_back = {e.id for e in crate.get_entities()} | {crate.root_dataset.id}
    assert {i.removeprefix("#") for i in entities} - {"ro-crate-metadata.json"} <= {
        i.removeprefix("#") for i in read_back
    } | {"ro-crate-metadata.json"}
    return entities
