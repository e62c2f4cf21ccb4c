"""The OpenAPI description in the repository names every route the extension serves."""

import re
from pathlib import Path

import yaml

from jupyterlab_ext.handlers import connections, volumes

SPEC = Path(__file__).resolve().parents[2] / "docs" / "api" / "storage.openapi.yaml"


def test_every_route_is_described_and_nothing_else():
    spec = yaml.safe_load(SPEC.read_text())
    assert spec["openapi"].startswith("3.")
    described = set(spec["paths"])
    served = {
        "/"
        + re.sub(
            r"\(\?P<(\w+)>\[\^/\]\+\)",
            lambda m: "{" + ("id" if m[1] == "vid" else m[1]) + "}",
            pattern,
        )
        for pattern, *_ in volumes.default_handlers + connections.default_handlers
    }
    assert described == served
