"""``datalabs-pipeline`` as a user runs it: the cwl-runner contract and run management."""

from __future__ import annotations

import json
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
