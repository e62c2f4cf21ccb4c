"""The datalab catalogue and the `datalabs catalogue` command missions run in their CI."""

import json
import subprocess
import sys
from pathlib import Path

from datalabs_spawner.catalogue import Catalogue
from datalabs_spawner.cli import main
from tests.helpers import datalab_yaml, volume_yaml, write

REPO = Path(__file__).resolve().parents[2]


def test_datalab_fields_and_problems(tmp_path):
    write(
        tmp_path,
        "m/datalabs/good.yaml",
        datalab_yaml(
            "Good",
            """\
abstract: A lab
creator: Team
resources: {cpu_limit: 1.5, mem_limit: 2G}
default_volumes: [v, missing]
""",
        ),
    )
    write(tmp_path, "m/datalabs/desk.yaml", "title: Desk\nkind: desktop\nimage: x/y:1\n")
    write(tmp_path, "m/datalabs/typo.yaml", datalab_yaml("Typo", "imgae: x\n"))
    write(tmp_path, "m/datalabs/kind.yaml", "title: K\nkind: vm\nimage: x\n")
    write(tmp_path, "m/datalabs/mem.yaml", datalab_yaml("M", "resources: {mem_limit: lots}\n"))
    write(tmp_path, "m/volumes/v.yaml", volume_yaml("v"))
    cat = Catalogue([tmp_path])
    cat.refresh()
    assert list(cat.datalabs.entries) == ["good"]
    good = cat.datalabs.entries["good"]
    assert (good.mission, good.resources.cpu_limit, good.resources.mem_limit) == ("m", 1.5, "2G")
    found = [str(p) for p in cat.problems]
    assert (
        found[0]
        == "m/datalabs/desk.yaml: default_url: a desktop datalab must say which URL to open"
    )
    assert "m/datalabs/good.yaml: default_volumes.1: no volume 'missing' in the catalogue" in found
    assert "m/datalabs/kind.yaml: kind: 'vm' is not one of ['notebook', 'desktop', 'app']" in found
    assert any(
        p.startswith("m/datalabs/mem.yaml: resources.mem_limit: 'lots' does not match")
        for p in found
    )
    assert any(p.startswith("m/datalabs/typo.yaml: imgae: unknown field") for p in found)


def test_check_passes_on_the_demo_catalogue(capsys):
    assert main(["catalogue", "check", str(REPO / "config" / "catalogue")]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert "0 problem(s)" in err


def test_check_fails_and_lists_every_problem(tmp_path):
    write(tmp_path, "m/volumes/bad.yaml", "id: BAD\ntitle: x\n")
    write(tmp_path, "m/volumes/ok.yaml", volume_yaml("ok"))
    proc = subprocess.run(
        [sys.executable, "-m", "datalabs_spawner.cli", "catalogue", "check", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [
        "m/volumes/bad.yaml: id: 'BAD' does not match '^[a-z0-9]([a-z0-9-]{0,57}[a-z0-9])?$'",
        "m/volumes/bad.yaml: source: required field is missing",
    ]
    assert "1 volume(s), 0 pipeline(s), 2 problem(s)" in proc.stderr


def test_list_json_has_the_resolved_entries(capsys):
    assert main(["catalogue", "list", str(REPO / "config" / "catalogue"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    slugs = {d["slug"] for d in data["datalabs"]}
    assert {"planetary-lab", "astronomy-lab", "topcat"} <= slugs
    volumes = {v["id"]: v for v in data["volumes"]}
    assert volumes["rosetta-restricted"]["access"] == {
        "groups": ["rosetta-team"],
        "users": [],
        "embargo_until": "2031-01-01",
    }
    assert volumes["psa-rosetta"]["access"] == {"groups": [], "users": []}
    assert len({v["mission"] for v in data["volumes"]}) >= 3
    assert data["problems"] == []


def test_missing_directory_is_a_clear_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "datalabs_spawner.cli", "catalogue", "check", str(tmp_path / "no")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert f"not a directory: {tmp_path / 'no'}" in proc.stderr


def test_check_covers_pipelines_too(tmp_path):
    write(tmp_path, "m/volumes/ok.yaml", volume_yaml("ok"))
    write(tmp_path, "m/pipelines/broken.cwl", "cwlVersion: v1.2\nclass: Workflow\ninputs: [\n")
    proc = subprocess.run(
        [sys.executable, "-m", "datalabs_spawner.cli", "catalogue", "check", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stdout.startswith("m/pipelines/broken.cwl: (cwl): ")
    assert "1 volume(s), 0 pipeline(s), 1 problem(s)" in proc.stderr


def test_list_json_has_the_demo_pipelines(capsys):
    assert main(["catalogue", "list", str(REPO / "config" / "catalogue"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["pipelines"]) >= 3
    assert data["problems"] == []
