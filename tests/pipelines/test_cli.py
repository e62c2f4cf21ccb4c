"""``datalabs-pipeline`` as a user runs it: the cwl-runner contract and run management."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from datalabs_pipelines.runs import RunStore


def test_run_prints_the_output_object_and_exits_zero(cli, data_dir, tmp_path, settings):
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"a": "left", "b": "right"}))
    outdir = tmp_path / "out"

    done = cli("run", "--outdir", str(outdir), "--quiet", str(data_dir / "two-steps.cwl"), str(job))

    assert done.returncode == 0, done.stderr
    output = json.loads(done.stdout)
    result = Path(output["result"]["path"])
    assert result.parent == outdir and result.read_text() == "left\nright\n"
    # --quiet: nothing of cwltool's log on stderr, but the log is kept with the run.
    assert "[step first]" not in done.stderr
    runs = RunStore(settings.db_path).list(user="alice")
    assert [r.state for r in runs] == ["success"]
    assert "[step first] start" in (Path(runs[0].rundir) / "cwltool.log").read_text()


def test_the_same_run_twice_into_one_outdir_succeeds_both_times(cli, data_dir, tmp_path):
    """The first run's output file in ``--outdir`` is one file with its cache entry (outputs are
    stored once); the second run, a cache hit, copies that entry onto it, which cwltool refused
    ("... are the same file"), as it would have overwritten the cache through the link."""
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"a": "left", "b": "right"}))
    outdir = tmp_path / "out"
    for attempt in (1, 2):
        done = cli(
            "run", "--outdir", str(outdir), "--quiet", str(data_dir / "two-steps.cwl"), str(job)
        )
        assert done.returncode == 0, f"run {attempt}: {done.stderr}"
        result = Path(json.loads(done.stdout)["result"]["path"])
        assert result.read_text() == "left\nright\n", f"run {attempt}"


def test_run_without_quiet_shows_the_log(cli, data_dir):
    done = cli("run", str(data_dir / "echo.cwl"), "--text", "hi there")
    assert done.returncode == 0
    assert "Final process status is success" in done.stderr
    assert json.loads(done.stdout)["out"]["class"] == "File"


def test_unsupported_feature_exits_33(cli, data_dir):
    done = cli("run", "--quiet", str(data_dir / "needs-docker.cwl"))
    assert done.returncode == 33


def test_failure_exits_non_zero_and_status_tells_why(cli, data_dir):
    done = cli("run", "--quiet", str(data_dir / "fails.cwl"))
    assert done.returncode not in (0, 33)
    listing = cli("list")
    run_id = listing.stdout.split()[0]
    status = cli("status", "--json", run_id)
    data = json.loads(status.stdout)
    assert data["state"] == "failed"
    assert "cwltool exited with code" in data["exit_reason"]
    logs = cli("logs", run_id)
    assert "broken" in logs.stdout


def test_status_logs_rerun_cancel_of_unknown_or_foreign_runs(cli, settings):
    for command in ("status", "logs", "cancel", "rerun"):
        done = cli(command, "../../etc")
        assert done.returncode == 1
        assert "no run" in done.stderr


def test_rerun_and_step_logs(cli, data_dir, tmp_path, wait_for, settings):
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"a": "x", "b": "y"}))
    assert cli("run", "--quiet", str(data_dir / "two-steps.cwl"), str(job)).returncode == 0
    first_id = cli("list").stdout.split()[0]

    rerun = cli("rerun", first_id)
    assert rerun.returncode == 0
    new_id = rerun.stdout.strip()
    wait_for(
        lambda: json.loads(cli("status", "--json", new_id).stdout)["state"] == "success",
        what="the re-run",
    )
    status = json.loads(cli("status", "--json", new_id).stdout)
    assert status["inputs"] == {"a": "x", "b": "y"} and status["rerun_of"] == first_id
    step_log = cli("logs", "--step", "second", new_id).stdout
    assert "[job second]" in step_log and "[job first]" not in step_log


CATALOGUE = Path(__file__).resolve().parents[2] / "config" / "catalogue"


def test_search_and_run_by_catalogue_id(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("DATALABS_CATALOGUE", str(CATALOGUE))
    found = cli("search", "sky", "--accepts", "csv")
    assert found.returncode == 0
    assert found.stdout.split("\t")[0] == "esasky/bright-sources"

    (tmp_path / "cat.csv").write_text("ra,dec,magnitude,name\n1,2,3,a\n4,5,11,b\n")
    job = tmp_path / "job.json"
    job.write_text(
        json.dumps(
            {
                "catalogue": {
                    "class": "File",
                    "location": "cat.csv",
                    "format": "http://edamontology.org/format_3752",
                }
            }
        )
    )
    done = cli("run", "--quiet", "esasky/bright-sources", str(job), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "1 of 2 sources" in Path(json.loads(done.stdout)["report"]["path"]).read_text()
    status = json.loads(cli("status", "--json", cli("list").stdout.split()[0]).stdout)
    assert status["pipeline"] == "esasky/bright-sources"
    # The relative location was made absolute, so a re-run finds the file from anywhere.
    assert status["inputs"]["catalogue"]["location"] == str(tmp_path / "cat.csv")


# -- the same result as plain cwltool, on the first run and on every re-run -------------------

CWLTOOL = str(Path(sys.executable).parent / "cwltool")
CWL_RUNNER = str(Path(sys.executable).parent / "datalabs-cwl-runner")


def _plain_cwltool(tool: Path, outdir: Path) -> dict:
    done = subprocess.run(
        [CWLTOOL, "--no-container", "--quiet", "--outdir", str(outdir), str(tool)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _without_places(value):
    """An output object without the keys that name where its files were written."""
    if isinstance(value, dict):
        return {k: _without_places(v) for k, v in value.items() if k not in ("location", "path")}
    if isinstance(value, list):
        return [_without_places(v) for v in value]
    return value


def test_exit_code_output_is_the_tools_exit_code_on_every_run(cli, data_dir, tmp_path):
    # Once a job was cached, cwltool replayed it with runtime.exitCode == true (its cache does
    # not keep exit codes): the second run said {"code": true}.
    tool = data_dir / "exit-seven.cwl"
    expected = _plain_cwltool(tool, tmp_path / "plain")
    assert expected == {"code": 7}

    for attempt in range(2):
        done = cli("run", "--quiet", str(tool))
        assert done.returncode == 0, f"run {attempt + 1}: {done.stderr}"
        assert json.loads(done.stdout) == expected, f"run {attempt + 1}"


def test_a_record_default_file_passed_through_works_on_every_run(cli, data_dir, tmp_path):
    # The tool hands its input file back through cwl.output.json. The cached copy of that file
    # names the input where the first run staged it; cwltool's cache could not replay it, so
    # the second run failed ("must be within designated output directory ...").
    tool = data_dir / "record-default-file.cwl"
    expected = _plain_cwltool(tool, tmp_path / "plain")
    assert expected["same_record"]["file"]["size"] == (data_dir / "whale.txt").stat().st_size

    for attempt in range(3):
        done = cli("run", "--quiet", "--outdir", str(tmp_path / f"out{attempt}"), str(tool))
        assert done.returncode == 0, f"run {attempt + 1}: {done.stderr}"
        output = json.loads(done.stdout)
        assert _without_places(output) == _without_places(expected), f"run {attempt + 1}"
        returned = Path(output["same_record"]["file"]["path"])
        assert returned.read_text() == (data_dir / "whale.txt").read_text()


def test_cwl_runner_takes_the_process_first(data_dir, tmp_path, settings):
    """``datalabs-cwl-runner`` is called as cwl-runner is: options, PROCESS, JOB."""
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"text": "from a job"}))
    outdir = tmp_path / "out"

    done = subprocess.run(
        [CWL_RUNNER, f"--outdir={outdir}", "--quiet", str(data_dir / "echo.cwl"), str(job)],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    out = Path(json.loads(done.stdout)["out"]["path"])
    assert out.parent == outdir and out.read_text() == "from a job\n"
    runs = RunStore(settings.db_path).list(user="alice")
    assert [(r.pipeline, r.state) for r in runs] == [("echo.cwl", "success")]

    usage = subprocess.run([CWL_RUNNER], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "datalabs-cwl-runner: missing PIPELINE" in usage.stderr
    version = subprocess.run([CWL_RUNNER, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("datalabs-cwl-runner ")


def test_run_an_eo_application_package_by_catalogue_id(cli, tmp_path, monkeypatch):
    """A packed package whose workflow is ``#water-bodies`` runs by its catalogue id."""
    import shutil

    from tests.pipelines.samples import APP_PACKAGE, APP_PACKAGE_CATALOG

    mission = tmp_path / "cat" / "eo" / "pipelines"
    mission.mkdir(parents=True)
    shutil.copy(APP_PACKAGE, mission / "water-bodies.cwl")
    monkeypatch.setenv("DATALABS_CATALOGUE", str(tmp_path / "cat"))
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"stac_catalog": {"class": "Directory", "path": "catalog"}}))
    shutil.copytree(APP_PACKAGE_CATALOG, tmp_path / "catalog")
    done = cli("run", "--quiet", "eo/water-bodies", str(job), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = Path(json.loads(done.stdout)["water_bodies"]["path"])
    assert sorted(p.name for p in result.iterdir()) == [
        "S2A_10TFK_20210713.json",
        "S2B_10TFK_20210718.json",
        "catalog.json",
    ]


#: Packages the foreground process of ``datalabs-pipeline run`` has no use for: cwltool (and
#: what it brings) runs in its own process, a JSON job needs no YAML parser, the slot claim reads
#: ``/proc`` itself. Each one cost every run 10-100 ms of start-up (issue 11's benchmark: the
#: wall time of a run over plain cwltool's).
_NOT_IN_THE_FOREGROUND = ("cwltool", "schema_salad", "ruamel", "rdflib", "prov", "yaml", "psutil")


def test_the_foreground_run_process_does_not_import_cwltool_or_yaml(data_dir, tmp_path, settings):
    """A real run through the CLI's own entry point; the modules of that process are listed
    after it (the run's outputs, steps and provenance are there as usual)."""
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"a": "left", "b": "right"}))
    listing = tmp_path / "modules.json"
    script = (
        "import json, sys\n"
        "from datalabs_pipelines.cli import main\n"
        "code = main(sys.argv[2:])\n"
        "open(sys.argv[1], 'w').write(json.dumps(sorted(sys.modules)))\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(listing),
            "run",
            "--quiet",
            "--outdir",
            str(tmp_path / "out"),
            str(data_dir / "two-steps.cwl"),
            str(job),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )

    assert done.returncode == 0, done.stderr
    assert Path(json.loads(done.stdout)["result"]["path"]).read_text() == "left\nright\n"
    run = RunStore(settings.db_path).list(user="alice")[0]
    assert run.state == "success" and (Path(run.rundir) / "ro-crate-metadata.json").is_file()
    loaded = json.loads(listing.read_text())
    assert [m for m in loaded if m.split(".")[0] in _NOT_IN_THE_FOREGROUND] == []
    assert "datalabs_pipelines.catalogue" not in loaded  # a path, not a catalogue id, was run
