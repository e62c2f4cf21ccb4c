"""Jobs are checked against the pipeline's inputs before anything starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datalabs_pipelines.catalogue import Catalogue
from datalabs_pipelines.launcher import JobRejected, Workspace, validate_job

DEMO = Path(__file__).resolve().parents[2] / "config" / "catalogue"


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue([DEMO])


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Workspace:
    home = tmp_path / "home"
    (home / "work").mkdir(parents=True)
    (home / "work" / "table.csv").write_text("ra,dec,magnitude\n1,2,3\n")
    archive = tmp_path / "archive" / "esasky-catalogue"  # mounted elsewhere, listed in env
    archive.mkdir(parents=True)
    (archive / "sources.csv").write_text("ra,dec,magnitude\n1,2,3\n")
    (tmp_path / "secret.csv").write_text("not yours\n")
    monkeypatch.setenv(
        "DATALABS_VOLUMES",
        json.dumps([{"id": "esasky-catalogue", "title": "ESASky", "path": str(archive)}]),
    )
    return Workspace.from_env(home)


def _problems(catalogue, workspace, pipeline, job):
    with pytest.raises(JobRejected) as err:
        validate_job(catalogue.get(pipeline), job, workspace)
    return {p.input: p.message for p in err.value.problems}, str(err.value)


def test_a_good_job_is_completed_with_absolute_paths_and_formats(catalogue, workspace):
    job = validate_job(
        catalogue.get("esasky/bright-sources"),
        {"catalogue": "work/table.csv", "magnitude_limit": 5},
        workspace,
    )
    assert job == {
        "catalogue": {
            "class": "File",
            "path": str(workspace.root / "work" / "table.csv"),
            "format": "http://edamontology.org/format_3752",
        },
        "magnitude_limit": 5,
    }


def test_archive_files_on_mounted_volumes_are_valid_inputs(catalogue, workspace):
    volume = workspace.volumes[0].path
    job = validate_job(
        catalogue.get("esasky/bright-sources"),
        {"catalogue": {"class": "File", "location": f"file://{volume}/sources.csv"}},
        workspace,
    )
    assert job["catalogue"]["path"] == str(volume / "sources.csv")


def test_missing_input_is_named(catalogue, workspace):
    problems, text = _problems(catalogue, workspace, "rosetta/csv-plot", {"x_column": "time"})
    assert set(problems) == {"table", "y_column"}
    assert problems["table"] == "missing (File required)"
    assert "input 'table'" in text


def test_wrong_type_is_named(catalogue, workspace):
    problems, _ = _problems(
        catalogue,
        workspace,
        "esasky/bright-sources",
        {"catalogue": "work/table.csv", "magnitude_limit": "bright"},
    )
    assert problems == {"magnitude_limit": "expected a number, got 'bright'"}


def test_file_not_found_is_named(catalogue, workspace):
    problems, _ = _problems(
        catalogue, workspace, "esasky/bright-sources", {"catalogue": "work/nope.csv"}
    )
    assert problems == {"catalogue": "file not found: 'work/nope.csv'"}


@pytest.mark.parametrize(
    "path",
    ["../secret.csv", "work/../../secret.csv", "/etc/passwd", "file:///etc/passwd"],
)
def test_paths_outside_workspace_and_volumes_are_refused(catalogue, workspace, path):
    problems, _ = _problems(catalogue, workspace, "esasky/bright-sources", {"catalogue": path})
    assert problems["catalogue"].endswith("is outside your workspace and mounted volumes")


def test_symlink_out_of_the_workspace_is_refused(catalogue, workspace, tmp_path):
    (workspace.root / "work" / "link.csv").symlink_to(tmp_path / "secret.csv")
    problems, _ = _problems(
        catalogue, workspace, "esasky/bright-sources", {"catalogue": "work/link.csv"}
    )
    assert "outside your workspace" in problems["catalogue"]


def test_remote_urls_and_unknown_inputs_are_refused(catalogue, workspace):
    problems, _ = _problems(
        catalogue,
        workspace,
        "esasky/bright-sources",
        {"catalogue": "https://example.org/x.csv", "magnitude": 3},
    )
    assert "not a local path" in problems["catalogue"]
    assert problems["magnitude"].startswith("not an input of this pipeline")
