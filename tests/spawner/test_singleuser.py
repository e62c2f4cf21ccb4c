"""``python -m datalabs_spawner.singleuser``: jupyterhub-singleuser without the costly import."""

import subprocess
import sys

PROBE = """
import runpy, sys
sys.argv = ["datalabs-singleuser", "--version"]
try:
    runpy.run_module("datalabs_spawner.singleuser", run_name="__main__")
except SystemExit:
    pass
import jsonschema, jupyter_server.serverapp  # what a session's server imports
print(sys.modules.get("rfc3987_syntax") is None)
# Formats the session's schemas use are still checked.
checker = jsonschema.FormatChecker()
print(checker.conforms("2026-12-03", "date"), checker.conforms("not a date", "date"))
"""


def test_the_session_server_starts_without_building_the_iri_grammar():
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    lines = out.stdout.strip().splitlines()
    assert lines[-2] == "True", out
    assert lines[-1] == "True False", out
