"""The REST API of the jupyter-server extension, against a real server process."""

from __future__ import annotations

import io
import json
import os
import signal
import time
import zipfile
from datetime import datetime
from pathlib import Path

import psutil
import pytest
import requests

from ..helpers import check_run_crate

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

CSV = "ra,dec,magnitude,name\n10.68,41.27,3.4,M31\n83.82,-5.39,4.0,M42\n148.97,69.68,12.1,faint\n"


def _launch(server, user="alice", limit=5.0, name="sources.csv"):
    (server.root / name).write_text(CSV)
    response = server.post(
        "runs",
        {
            "pipeline": "esasky/bright-sources",
            "inputs": {"catalogue": name, "magnitude_limit": limit},
        },
        user=user,
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_unauthenticated_requests_are_refused(server):
    for path in ("pipelines", "runs", "runs/0123456789abcdef", "pipelines/esasky/bright-sources"):
        assert server.get(path, user=None).status_code == 403
    assert server.post("runs", {"pipeline": "esasky/bright-sources"}, user=None).status_code == 403


def test_search_and_describe_pipelines(server):
    found = server.get("pipelines", params={"q": "sky chart"}).json()
    assert [p["id"] for p in found["pipelines"]] == ["esasky/bright-sources"]
    assert found["problems"] == []
    by_format = server.get("pipelines", params={"accepts": "csv"}).json()["pipelines"]
    assert {p["id"] for p in by_format} == {"esasky/bright-sources", "rosetta/csv-plot"}

    detail = server.get("pipelines/rosetta/pds4-table-plot").json()
    assert detail["label"] == "Plot a table from a PDS4 product"
    assert [i["id"] for i in detail["inputs"]] == ["product", "x_column", "y_column"]
    assert detail["inputs"][0]["type_label"] == "File"

    missing = server.get("pipelines/rosetta/nothing")
    assert missing.status_code == 404 and "no pipeline" in missing.json()["message"]
    assert server.get("pipelines/..%2F..%2Fetc/passwd").status_code == 404


def test_launch_watch_log_and_provenance(server):
    run = _launch(server)
    assert run["state"] in ("queued", "running") and run["user"] == "alice"

    with requests.get(
        server.api(f"runs/{run['id']}/events"),
        headers={"Authorization": "token alice-token-0123456789"},
        stream=True,
        timeout=120,
    ) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        kinds = []
        for line in stream.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                kinds.append(line[7:])
            if line.startswith("data: ") and kinds[-1] == "end":
                assert json.loads(line[6:]) == {"state": "success"}
                break
    assert kinds[0] == "run" and "step" in kinds and kinds[-1] == "end"

    done = server.get(f"runs/{run['id']}").json()
    assert done["state"] == "success"
    assert [s["name"] for s in done["steps"]] == ["bright-sources.cwl"]
    assert done["outputs"]["sources"]["path"].startswith(done["outdir"])
    assert "Final process status is success" in server.get(f"runs/{run['id']}/log").text
    step_log = server.get(f"runs/{run['id']}/log", params={"step": "bright-sources.cwl"}).text
    assert "[job bright-sources.cwl]" in step_log

    listed = server.get("runs").json()["runs"]
    assert [r["id"] for r in listed] == [run["id"]]

    prov = server.get(f"runs/{run['id']}/provenance")
    assert prov.status_code == 200
    assert prov.headers["Content-Type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(prov.content)).namelist()
    assert names[0] == "ro-crate-metadata.json"
    assert {"workflow/bright-sources.cwl", "outputs/bright.csv", "cwltool.log"} <= set(names)


def test_bad_jobs_are_refused_with_the_input_named(server):
    (server.root / "sources.csv").write_text(CSV)
    cases = [
        ({}, "catalogue", "missing (File required)"),
        ({"catalogue": "nope.csv"}, "catalogue", "file not found: 'nope.csv'"),
        ({"catalogue": "../../etc/passwd"}, "catalogue", "outside your workspace"),
        ({"catalogue": "sources.csv", "magnitude_limit": "x"}, "magnitude_limit", "a number"),
        ({"catalogue": "sources.csv", "colour": 1}, "colour", "not an input"),
    ]
    for inputs, name, message in cases:
        response = server.post("runs", {"pipeline": "esasky/bright-sources", "inputs": inputs})
        assert response.status_code == 400, inputs
        body = response.json()
        assert any(p["input"] == name and message in p["message"] for p in body["problems"]), body
        assert f"input '{name}'" in body["message"]
    assert server.get("runs").json()["runs"] == []
    unknown = server.post("runs", {"pipeline": "esasky/none", "inputs": {}})
    assert unknown.status_code == 404
    assert server.post("runs", ["not", "an", "object"]).status_code == 400


def test_another_users_run_gives_404(server, wait_run):
    run = _launch(server, user="alice")
    for path in (
        f"runs/{run['id']}",
        f"runs/{run['id']}/log",
        f"runs/{run['id']}/events",
        f"runs/{run['id']}/provenance",
    ):
        response = server.get(path, user="bob")
        assert response.status_code == 404, path
        assert "no run" in response.json()["message"]
    assert server.post(f"runs/{run['id']}/cancel", user="bob").status_code == 404
    assert server.post(f"runs/{run['id']}/rerun", user="bob").status_code == 404
    assert server.get("runs", user="bob").json()["runs"] == []
    assert wait_run(server, run["id"])["state"] == "success"
    for bad in ("..%2F..%2Fetc", "0123456789abcdeg", "x" * 300):
        assert server.get(f"runs/{bad}").status_code == 404


def test_cancel_and_rerun_over_http(start_server, tmp_path, wait_run):
    slow = tmp_path / "catalogue" / "test" / "pipelines"
    slow.mkdir(parents=True)
    (slow / "wait.cwl").write_text(
        "cwlVersion: v1.2\nclass: CommandLineTool\nlabel: Wait\n"
        'baseCommand: [sh, -c, \'sleep "$0" & sleep "$0"; wait\']\n'
        "inputs: {seconds: {type: string, inputBinding: {position: 1}}}\noutputs: []\n"
    )
    server = start_server(
        catalogue_dirs=[str(REPO / "config" / "catalogue"), str(tmp_path / "catalogue")]
    )
    first = _launch(server)
    rerun = server.post(f"runs/{first['id']}/rerun")
    assert rerun.status_code == 201
    again = rerun.json()
    assert again["inputs"] == first["inputs"] and again["rerun_of"] == first["id"]
    assert wait_run(server, again["id"])["state"] == "success"

    waiting = server.post("runs", {"pipeline": "test/wait", "inputs": {"seconds": "3987.5"}})
    assert waiting.status_code == 201, waiting.text
    run_id = waiting.json()["id"]

    def sleepers():
        return [
            p
            for p in psutil.process_iter(["cmdline"])
            if "3987.5" in " ".join(p.info["cmdline"] or [])
        ]

    deadline = time.monotonic() + 60
    while len(sleepers()) < 3:
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.2)
    cancelled = server.post(f"runs/{run_id}/cancel").json()
    assert cancelled["state"] == "cancelled"
    assert cancelled["exit_reason"] == "cancelled by the user"
    deadline = time.monotonic() + 10
    while sleepers():
        assert time.monotonic() < deadline, "processes left behind after cancel"
        time.sleep(0.1)


def test_killed_server_restarts_and_shows_every_run(start_server, tmp_path, wait_run):
    server = start_server(max_concurrent_runs=1)
    (server.root / "slow.csv").write_text(CSV)
    quick = _launch(server)
    assert wait_run(server, quick["id"])["state"] == "success"
    # A workflow whose step sleeps, and one queued behind it (limit 1).
    slow_cwl = server.root / "slow.cwl"
    slow_cwl.write_text(
        "cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: [sleep, '4321.5']\n"
        "inputs: []\noutputs: []\n"
    )
    from datalabs_pipelines.executors.local import LocalExecutor, RunRequest
    from datalabs_pipelines.runs import RunStore
    from datalabs_pipelines.settings import Settings

    # Runs launched through the same store while the server is up (as the CLI would).
    executor = LocalExecutor(
        Settings(home=server.home, user="alice", max_concurrent=1),
        RunStore(server.home / "runs.db"),
    )
    lost = executor.submit(RunRequest(pipeline="slow.cwl", pipeline_path=str(slow_cwl)))
    queued = _launch(server)
    deadline = time.monotonic() + 60
    while not any(
        "4321.5" in " ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])
    ):
        assert time.monotonic() < deadline, "the slow step never started"
        time.sleep(0.2)

    server.kill()
    # The machine loses the slow run's processes while the server is down.
    slow = executor.store.get(lost.id)
    os.kill(slow.supervisor_pid, signal.SIGKILL)
    os.killpg(slow.pgid, signal.SIGKILL)

    restarted = start_server(max_concurrent_runs=1)
    runs = {r["id"]: r for r in restarted.get("runs").json()["runs"]}
    assert set(runs) == {quick["id"], lost.id, queued["id"]}
    assert runs[quick["id"]]["state"] == "success"
    lost_run = restarted.get(f"runs/{lost.id}").json()
    assert lost_run["state"] == "failed"
    assert "process disappeared" in lost_run["exit_reason"]
    # The slot is free again: the queued run starts and finishes.
    assert wait_run(restarted, queued["id"])["state"] == "success"
    executor.close()


def test_provenance_names_an_archive_input_without_copying_it(
    start_server, tmp_path, monkeypatch, wait_run
):
    tools = tmp_path / "catalogue" / "test" / "pipelines"
    tools.mkdir(parents=True)
    (tools / "count.cwl").write_text(
        "cwlVersion: v1.2\nclass: CommandLineTool\nlabel: Count bytes\n"
        "baseCommand: [wc, -c]\nstdin: $(inputs.data.path)\n"
        "inputs: {data: {type: File}}\noutputs: {count: stdout}\nstdout: count.txt\n"
    )
    volume = tmp_path / "archive" / "psa-rosetta"
    (volume / "orbit").mkdir(parents=True)
    big = volume / "orbit" / "frames.bin"
    with open(big, "wb") as f:
        for _ in range(50):
            f.write(os.urandom(1 << 20))
    # The session's attached volumes, as the spawner describes them.
    monkeypatch.setenv(
        "DATALABS_VOLUMES",
        json.dumps(
            [{"id": "psa-rosetta", "title": "Rosetta", "version": "2", "path": str(volume)}]
        ),
    )
    server = start_server(
        catalogue_dirs=[str(REPO / "config" / "catalogue"), str(tmp_path / "catalogue")]
    )
    started = server.post("runs", {"pipeline": "test/count", "inputs": {"data": str(big)}})
    assert started.status_code == 201, started.text
    run = wait_run(server, started.json()["id"])
    assert run["state"] == "success", run["exit_reason"]

    rundir = server.home / "runs" / run["id"]
    stored = sum(p.stat().st_size for p in rundir.rglob("*") if p.is_file())
    assert stored < 1 << 20  # the 50 MiB input is not in the run folder

    prov = server.get(f"runs/{run['id']}/provenance")
    assert prov.status_code == 200
    assert len(prov.content) < 1 << 20
    crate = tmp_path / "downloaded"
    zipfile.ZipFile(io.BytesIO(prov.content)).extractall(crate)
    entities = check_run_crate(crate)
    named = entities["file://" + str(big)]
    assert entities[named["isPartOf"]["@id"]]["identifier"] == "psa-rosetta"
    assert entities[named["isPartOf"]["@id"]]["version"] == "2"
    assert named["volumePath"] == "orbit/frames.bin"
    assert named["contentSize"] == str(50 << 20)
    assert datetime.fromisoformat(named["dateModified"]).timestamp() == pytest.approx(
        big.stat().st_mtime
    )
    assert (crate / "outputs" / "count.txt").read_text().strip() == str(50 << 20)
