"""The prebuilt front end is served by the session's JupyterLab and its plugins start."""

import pytest

from tests.ui.conftest import open_lab

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_jupyterlab_lists_and_starts_the_datalabs_plugins(page, ui_lab):
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text))
    open_lab(page, ui_lab)
    listed = page.evaluate(
        "JSON.parse(document.getElementById('jupyter-config-data').textContent)"
        ".federated_extensions.map(e => e.name)"
    )
    assert "datalabs-jupyterlab" in listed
    # Each plugin says so in the console when JupyterLab activates it.
    page.wait_for_timeout(500)
    for part in ("data", "pipelines"):
        assert any(f"datalabs: {part} panel loaded" in m for m in messages), messages
