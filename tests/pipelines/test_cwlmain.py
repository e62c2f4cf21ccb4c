"""cwltool as the local executor runs it (``datalabs_pipelines.cwlmain``): archive files are
keyed for the cache without being hashed; every other file is hashed as cwltool does."""

from __future__ import annotations

import hashlib
import json

from cwltool.process import compute_checksums
from cwltool.stdfsaccess import StdFsAccess

from datalabs_pipelines.cwlmain import ENV_UNHASHED_ROOTS, is_under, roots_from_env, skipping_roots


def test_roots_come_from_a_json_list_and_anything_else_means_none(tmp_path):
    assert roots_from_env({ENV_UNHASHED_ROOTS: json.dumps([str(tmp_path)])}) == [str(tmp_path)]
    for bad in ("", "not json", '{"a": 1}', "[1, null]"):
        assert roots_from_env({ENV_UNHASHED_ROOTS: bad}) == []
    assert roots_from_env({}) == []


def test_a_look_alike_folder_or_a_link_out_is_not_under_the_root(tmp_path):
    root = tmp_path / "psa"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "psa-restricted").mkdir()
    (root / "out").symlink_to(tmp_path / "psa-restricted")
    assert is_under(str(root / "sub" / "x"), [str(root)])
    assert is_under(str(root), [str(root)])
    assert not is_under(str(tmp_path / "psa-restricted" / "x"), [str(root)])
    assert not is_under(str(root / "out" / "x"), [str(root)])


def test_files_outside_the_roots_are_still_hashed(tmp_path):
    archive, workspace = tmp_path / "archive", tmp_path / "workspace"
    archive.mkdir()
    workspace.mkdir()
    (archive / "a.bin").write_bytes(b"archive")
    (workspace / "w.bin").write_bytes(b"workspace")
    checksums = skipping_roots(compute_checksums, [str(archive)])
    fs = StdFsAccess(str(tmp_path))
    on_archive = {"class": "File", "location": (archive / "a.bin").as_uri()}
    in_workspace = {"class": "File", "location": (workspace / "w.bin").as_uri()}
    checksums(fs, on_archive)
    checksums(fs, in_workspace)
    assert "checksum" not in on_archive
    assert in_workspace["checksum"] == "sha1$" + hashlib.sha1(b"workspace").hexdigest()
