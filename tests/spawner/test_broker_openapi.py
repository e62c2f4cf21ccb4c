"""The broker's OpenAPI description names every route the broker serves, and nothing else."""

import re
from pathlib import Path

import yaml

from datalabs_spawner.broker import default_handlers
from datalabs_spawner.run_broker import default_handlers as run_handlers
from datalabs_volumes.contract import BROKER_PATH

SPEC = Path(__file__).resolve().parents[2] / "docs" / "api" / "broker.openapi.yaml"


def test_every_broker_route_is_described_and_nothing_else():
    spec = yaml.safe_load(SPEC.read_text())
    assert spec["openapi"].startswith("3.")
    # The version in the URL and in the description's servers agree.
    assert spec["servers"][0]["url"] == "/hub/" + BROKER_PATH.rstrip("/")
    names = {"user_name": "user", "vid": "id", "name": "name", "run_id": "run_id"}
    served = {
        re.sub(
            r"\(\?P<(\w+)>\[\^/\]\+\)",
            lambda m: "{" + names[m[1]] + "}",
            pattern.removeprefix("/" + BROKER_PATH.rstrip("/")),
        )
        for pattern, *_ in default_handlers + run_handlers
    }
    assert set(spec["paths"]) == served
