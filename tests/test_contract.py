"""The hub<->session contract (``datalabs_volumes.contract``): named once, used by both sides."""

from __future__ import annotations

import re
from pathlib import Path

from datalabs_pipelines import launcher, settings
from datalabs_spawner import desktop_session
from datalabs_volumes import contract

REPO = Path(__file__).resolve().parents[1]


def test_the_pipeline_library_reads_the_names_the_contract_gives():
    # datalabs_pipelines imports nothing of ours; it names its own variables, which must agree.
    assert settings.ENV_HOME == contract.PIPELINES_HOME
    assert launcher.ENV_VOLUMES == contract.VOLUMES
    assert desktop_session.COMMAND_ENV == contract.DESKTOP_COMMAND
    assert desktop_session.WM_ENV == contract.DESKTOP_WM


def test_the_spawner_and_the_session_spell_no_contract_name_themselves():
    names = {v for k, v in vars(contract).items() if k.isupper() and str(v).startswith("DATALABS_")}
    literal = re.compile(r"""["'](DATALABS_[A-Z_]+)["']""")
    spelled = []
    for path in [
        REPO / "datalabs_spawner" / "spawner.py",
        REPO / "datalabs_volumes" / "session.py",
        REPO / "datalabs_volumes" / "client.py",
        *(REPO / "jupyterlab_ext").rglob("*.py"),
    ]:
        for name in literal.findall(path.read_text()):
            if name in names:
                spelled.append(f"{path.relative_to(REPO)}: {name}")
    assert spelled == []


def test_the_broker_url_comes_from_the_spawner_or_the_hub_api_url():
    assert contract.broker_url({"DATALABS_BROKER_URL": "http://hub:8081/hub/datalabs/v1"}) == (
        "http://hub:8081/hub/datalabs/v1/"
    )
    hub = {"JUPYTERHUB_API_URL": "http://127.0.0.1:8081/prefix/hub/api"}
    assert contract.broker_url(hub) == "http://127.0.0.1:8081/prefix/hub/datalabs/v1/"
    assert contract.broker_url({}) == ""


def test_a_json_list_that_is_not_one_reads_as_empty():
    assert contract.json_list("X", {"X": '["a", 1]'}) == ["a", "1"]
    assert contract.json_list("X", {"X": "{"}) == []
    assert contract.json_list("X", {"X": '{"a": 1}'}) == []
    assert contract.json_list("X", {}) == []
