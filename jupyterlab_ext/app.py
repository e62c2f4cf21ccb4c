"""The Datalabs jupyter-server extension: the REST API under ``<base_url>/datalabs/api/``.

Each resource is a module of ``jupyterlab_ext.handlers`` with a ``default_handlers`` list of
``(pattern, handler class)`` relative to the API root; this app prefixes and registers them all,
and gives each module that has one a ``setup(app)`` and ``shutdown(app)`` hook for the state it
keeps (the storage of the session, the run store).
"""

from __future__ import annotations

import importlib

from jupyter_server.extension.application import ExtensionApp
from jupyter_server.utils import url_path_join
from traitlets import List, Unicode

API_ROOT = "/datalabs/api"


class DatalabsExtension(ExtensionApp):
    """Registers the handlers of every Datalabs REST resource."""

    name = "jupyterlab_ext"

    handler_modules = List(
        Unicode(),
        default_value=["volumes", "connections"],
        config=True,
        help="""
        Modules of ``jupyterlab_ext.handlers`` whose ``default_handlers`` are served under
        ``/datalabs/api/``. Default: every resource of the extension.
        """,
    )

    def _modules(self):
        return [
            importlib.import_module(f"jupyterlab_ext.handlers.{m}") for m in self.handler_modules
        ]

    def initialize_settings(self):
        for module in self._modules():
            setup = getattr(module, "setup", None)
            if setup:
                setup(self)

    def initialize_handlers(self):
        for module in self._modules():
            for pattern, handler, *rest in module.default_handlers:
                self.handlers.append((url_path_join(API_ROOT, pattern), handler, *rest))

    async def stop_extension(self):
        for module in self._modules():
            shutdown = getattr(module, "shutdown", None)
            if shutdown:
                await shutdown(self)
