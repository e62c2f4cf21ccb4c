"""Fixtures for the REST API tests: a real jupyter-server with the Datalabs extension.

- ``storage_catalogue``: a catalogue with three volumes (``open-data`` for everyone,
  ``team-data`` for the hub group ``team``, ``staff-data`` for ``staff``) and their archive
  folders, as ``(catalogue_dir, archive_dir)``.
- ``lab``: jupyter-server run as alice (member of ``team``) with the extension, on 127.0.0.1,
  one per test module (see ``tests/labserver.py``); stopped, and its mounts removed, at the end.
"""

from __future__ import annotations

import pytest

from tests.labserver import running_lab


@pytest.fixture(scope="module")
def storage_catalogue(tmp_path_factory):
    base = tmp_path_factory.mktemp("storage-catalogue")
    catalogue = base / "catalogue" / "demo" / "volumes"
    catalogue.mkdir(parents=True)
    archive = base / "archive"
    for vid, access in [("open-data", ""), ("team-data", "team"), ("staff-data", "staff")]:
        folder = archive / vid
        (folder / "sub").mkdir(parents=True)
        (folder / "readme.txt").write_text(f"{vid}\n")
        (folder / "sub" / "table.csv").write_text("x,y\n1,2\n")
        text = f"title: {vid}\nsource: {{type: local, path: {vid}}}\n"
        if access:
            text += f"access: {{groups: [{access}]}}\n"
        (catalogue / f"{vid}.yaml").write_text(text)
    # A link that leads out of the volume, for the traversal tests.
    (archive / "open-data" / "escape").symlink_to(archive / "staff-data")
    return base / "catalogue", archive


@pytest.fixture(scope="module")
def lab(tmp_path_factory, storage_catalogue):
    catalogue, archive = storage_catalogue
    state = tmp_path_factory.mktemp("lab")
    with running_lab(state, catalogue, archive, user="alice", groups=["team"]) as server:
        yield server
