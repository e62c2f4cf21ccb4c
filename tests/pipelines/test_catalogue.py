"""The pipeline catalogue: indexing, search by text and by accepted input, broken files."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from datalabs_pipelines.catalogue import Catalogue

DEMO = Path(__file__).resolve().parents[2] / "config" / "catalogue"


@pytest.fixture(scope="module")
def demo() -> Catalogue:
    return Catalogue([DEMO])


def test_demo_catalogue_lists_each_mission_pipeline_and_no_problem(demo):
    ids = [p.id for p in demo.pipelines()]
    assert ids == [
        "esasky/bright-sources",
        "juice/spice-time-and-radii",
        "rosetta/csv-plot",
        "rosetta/pds4-table-plot",
    ]
    assert demo.problems() == []


def test_pipeline_detail_has_schema_org_annotations_and_a_launch_form(demo):
    p = demo.get("rosetta/pds4-table-plot")
    assert p.cwl_class == "Workflow" and p.cwl_version == "v1.2"
    assert p.label == "Plot a table from a PDS4 product"
    assert "PDS4" in p.keywords and p.authors == ("Datalabs demo",)
    assert p.steps == ("extract", "draw")
    assert p.links == (("extract", "draw"),)
    assert p.to_json(detail=True)["links"] == [{"from": "extract", "to": "draw"}]
    form = {i["id"]: i for i in p.to_json(detail=True)["inputs"]}
    assert form["product"]["type"] == "File" and not form["product"]["optional"]
    assert form["product"]["format"] == ["http://edamontology.org/format_2332"]
    assert form["y_column"]["default"] == "SURFACE_TEMPERATURE" and form["y_column"]["optional"]
    assert [o["id"] for o in p.to_json(detail=True)["outputs"]] == ["table", "plot", "summary"]


def test_search_by_text_ranks_label_and_keyword_hits_first(demo):
    assert [p.id for p in demo.search("spice")] == ["juice/spice-time-and-radii"]
    assert [p.id for p in demo.search("plot table")][:2] == [
        "rosetta/csv-plot",
        "rosetta/pds4-table-plot",
    ]
    assert demo.search("no such thing anywhere") == []
    assert len(demo.search("")) == 4


@pytest.mark.parametrize(
    ("accepts", "expected"),
    [
        ("csv", ["esasky/bright-sources", "rosetta/csv-plot"]),
        ("http://edamontology.org/format_3752", ["esasky/bright-sources", "rosetta/csv-plot"]),
        ("format_2332", ["rosetta/pds4-table-plot"]),
        ("float", ["esasky/bright-sources"]),
        ("Directory", []),
    ],
)
def test_search_by_accepted_input_type_or_format(demo, accepts, expected):
    assert sorted(p.id for p in demo.search(accepts=accepts)) == expected


def test_broken_cwl_is_reported_and_skipped(tmp_path):
    mission = tmp_path / "cat" / "demo" / "pipelines"
    mission.mkdir(parents=True)
    shutil.copy(DEMO / "esasky/pipelines/bright-sources.cwl", mission / "good.cwl")
    (mission / "not-yaml.cwl").write_text("cwlVersion: v1.2\nclass: [unclosed\n")
    (mission / "bad-field.cwl").write_text(
        "cwlVersion: v1.2\nclass: CommandLineTool\ninputs: {x: {type: Fiel}}\noutputs: []\n"
    )
    (mission / "wrong-output.cwl").write_text(
        "cwlVersion: v1.2\nclass: Workflow\ninputs: []\n"
        "outputs: {s: {type: File, outputSource: s/o}}\n"
        "steps:\n  s:\n    run: good.cwl\n    in: {}\n    out: [o]\n"
    )
    (mission / "missing-step.cwl").write_text(
        "cwlVersion: v1.2\nclass: Workflow\ninputs: []\noutputs: []\n"
        "steps:\n  s: {run: nowhere.cwl, in: {}, out: []}\n"
    )
    catalogue = Catalogue([tmp_path / "cat"])

    assert [p.id for p in catalogue.pipelines()] == ["demo/good"]
    problems = {p.path.name: p.reason for p in catalogue.problems()}
    assert set(problems) == {
        "not-yaml.cwl",
        "bad-field.cwl",
        "missing-step.cwl",
        "wrong-output.cwl",
    }
    assert "Fiel" in problems["bad-field.cwl"]
    assert "nowhere.cwl" in problems["missing-step.cwl"]
    assert "does not correspond" in problems["wrong-output.cwl"]


def test_changes_are_picked_up_without_restart(tmp_path):
    mission = tmp_path / "m" / "pipelines"
    mission.mkdir(parents=True)
    target = mission / "p.cwl"
    source = (DEMO / "juice/pipelines/spice-time-and-radii.cwl").read_text()
    target.write_text(source)
    catalogue = Catalogue([tmp_path])
    assert catalogue.get("m/p").label.startswith("SPICE kernels")
    target.write_text(source.replace("label: SPICE kernels", "label: Renamed SPICE"))
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert catalogue.get("m/p").label.startswith("Renamed SPICE")
    target.unlink()
    assert catalogue.get("m/p") is None


@pytest.mark.parametrize("bad", ["../etc/passwd", "rosetta/../juice/x", "rosetta", "/abs/x", ""])
def test_malformed_pipeline_ids_find_nothing(demo, bad):
    assert demo.get(bad) is None


def test_an_eo_application_package_is_one_pipeline_named_by_its_workflow(tmp_path):
    from tests.pipelines.samples import APP_PACKAGE, two_workflow_package

    mission = tmp_path / "cat" / "eo" / "pipelines"
    mission.mkdir(parents=True)
    shutil.copy(APP_PACKAGE, mission / "water-bodies.cwl")
    (mission / "two-workflows.cwl").write_text(two_workflow_package())
    catalogue = Catalogue([tmp_path / "cat"])

    [p] = catalogue.pipelines()
    assert p.id == "eo/water-bodies" and p.cwl_class == "Workflow"
    assert p.uri == f"{mission.resolve() / 'water-bodies.cwl'}#water-bodies"
    assert p.label == "Water bodies detection"
    assert [(i.id, i.type) for i in p.inputs] == [
        ("stac_catalog", "Directory"),
        ("threshold", "float"),
    ]
    assert p.steps == ("node_items", "node_detect")
    # The package's schema.org metadata sits at the top of the document, outside the workflow.
    assert p.authors == ("Jane Doe",)
    assert [x.id for x in catalogue.search("water", accepts="Directory")] == ["eo/water-bodies"]
    [problem] = catalogue.problems()
    assert problem.path.name == "two-workflows.cwl"
    assert "water-bodies, water-bodies-twice" in problem.reason and "main" in problem.reason
