"""The notebook API: a real kernel started by the server attaches volumes and connections with
``from datalabs_volumes import volumes, connections``, through the server's REST API."""

from __future__ import annotations

import json

import pytest

from tests.helpers import kernel_client

pytestmark = pytest.mark.slow

CODE = """
import os
from datalabs_volumes import connections, volumes
out = {"key_in_kernel": "DATALABS_CREDENTIALS_KEY" in os.environ}
out["ids"] = [v["id"] for v in volumes.list()]
out["found"] = [v["id"] for v in volumes.search("TEAM")]
path = volumes.attach("open-data")
out["attached"] = [path, sorted(os.listdir(path))]
out["browse"] = [e["name"] for e in volumes.browse("team-data", "sub")]
try:
    volumes.attach("staff-data")
except volumes.DatalabsError as e:
    out["refused"] = [e.status, e.message]
connections.create("nb-dav", "webdav", url=URL, user=USER, pass_=PASSWORD)
out["test"] = connections.test("nb-dav")
mount = connections.attach("nb-dav")
out["read"] = open(os.path.join(mount, "hello.txt")).read()
out["listed"] = [c["name"] for c in connections.list() if c["attached"]]
connections.detach("nb-dav")
connections.delete("nb-dav")
volumes.detach("open-data")
out["after"] = sorted(os.listdir("data")) if os.path.isdir("data") else []
print("RESULT" + json.dumps(out))
"""


def run_in_kernel(lab, code: str, timeout: float = 120) -> str:
    r = lab.request("POST", "api/kernels", json={"name": "python3"})
    assert r.status_code == 201, r.text
    kid = r.json()["id"]
    connection = lab.state / "jupyter" / "runtime" / f"kernel-{kid}.json"
    try:
        with kernel_client(connection, timeout) as execute:
            return execute(code)
    finally:
        lab.request("DELETE", f"api/kernels/{kid}")


def test_a_notebook_attaches_what_the_panel_attaches(lab, serve):
    server = serve("webdav", password="notebook-password")
    opts = server.options("notebook-password")
    code = (
        f"URL, USER, PASSWORD = {opts['url']!r}, {opts['user']!r}, {opts['pass']!r}\n"
        "import json\n" + CODE
    )
    text = run_in_kernel(lab, code)
    result = json.loads(text.split("RESULT", 1)[1])
    assert result["key_in_kernel"] is False  # the credentials key never reaches user code
    assert result["ids"] == ["open-data", "team-data"]
    assert result["found"] == ["team-data"]
    assert result["attached"] == ["data/open-data", ["escape", "readme.txt", "sub"]]
    assert result["browse"] == ["table.csv"]
    assert result["refused"] == [
        403,
        "Volume 'staff-data' does not exist or you may not read it.",
    ]
    assert result["test"] is True
    assert result["read"] == "hello from webdav\n"
    assert result["listed"] == ["nb-dav"]
    assert result["after"] == []
