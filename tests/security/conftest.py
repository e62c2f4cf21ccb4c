"""Fixtures for the security tests: attacks made the way a user would make them.

- ``start_server``, ``wait_run``: as in ``tests/jupyterlab_ext/conftest.py`` (shared).
- ``server``: one real jupyter-server with the Datalabs extension and the demo pipeline
  catalogue (users ``alice`` and ``bob`` told apart by their tokens), one per module: the
  attacks it serves leave nothing behind (each is refused).
- ``http_server``: ``http_server(handler_fn, host="127.0.0.1")`` starts a tiny real HTTP server
  answering every request with ``handler_fn(method, path) -> (status, headers, body)``;
  ``.requests`` lists what it received. Stopped at the end of the test.
- ``reserved_port``: a free port on 127.0.0.1 that the ``guarded_lab`` session refuses, as the
  demo refuses the hub's API port.
- ``guarded_lab``: jupyter-server as alice (``tests/labserver.py``) with loopback
  ``127.0.0.1/32`` allowed, as in the demo, and ``reserved_port`` refused; one per module.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.helpers import free_port
from tests.jupyterlab_ext.conftest import server_starter, start_server, wait_run  # noqa: F401
from tests.labserver import running_lab

Answer = tuple[int, dict[str, str], bytes]


@dataclass
class HttpServer:
    url: str
    port: int
    requests: list[tuple[str, str]] = field(default_factory=list)


@pytest.fixture
def http_server() -> Iterator[Callable[..., HttpServer]]:
    started: list[ThreadingHTTPServer] = []

    def start(answer: Callable[[str, str], Answer], host: str = "127.0.0.1", port: int = 0):
        record = HttpServer("", 0)

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                record.requests.append((self.command, self.path))
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                status, headers, body = answer(self.command, self.path)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PROPFIND = do_HEAD = do_OPTIONS = do_PUT = do_POST = _any

            def log_message(self, *args) -> None:
                pass

        httpd = ThreadingHTTPServer((host, port), Handler)
        started.append(httpd)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        record.port = httpd.server_address[1]
        record.url = f"http://{host}:{record.port}"
        return record

    yield start
    for httpd in started:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with server_starter(tmp_path_factory.mktemp("pipelines-server")) as start:
        yield start()


@pytest.fixture(scope="module")
def reserved_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def guarded_lab(tmp_path_factory, reserved_port):
    state = tmp_path_factory.mktemp("guarded-lab")
    catalogue = state / "catalogue"
    (catalogue / "demo" / "volumes").mkdir(parents=True)
    archive = state / "archive"
    archive.mkdir()
    env = {"DATALABS_REFUSED_ENDPOINTS": json.dumps([f"127.0.0.1:{reserved_port}"])}
    with running_lab(state, catalogue, archive, user="alice", extra_env=env) as lab:
        yield lab
