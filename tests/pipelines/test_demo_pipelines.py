"""The demo catalogue's pipelines run without containers on archive-like inputs read in place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import load_sample_data_generator

from .samples import pds4_product, source_catalogue, spice_kernels

CATALOGUE = Path(__file__).resolve().parents[2] / "config" / "catalogue"
CSV = "http://edamontology.org/format_3752"
XML = "http://edamontology.org/format_2332"


@pytest.fixture(scope="module")
def demo_psa(tmp_path_factory):
    """The psa-rosetta volume of the demo archive, as make_sample_data.py writes it."""
    out = tmp_path_factory.mktemp("demo-archive")
    load_sample_data_generator().make_sample_data(out)
    return out / "psa-rosetta"


def _run(cli, tmp_path, pipeline: str, job: dict) -> dict:
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(job))
    done = cli("run", "--quiet", "--outdir", str(tmp_path / "out"), pipeline, str(job_file))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.slow
def test_pds4_table_plot_reads_the_product_in_place(cli, tmp_path):
    label = pds4_product(tmp_path / "volume" / "data" / "orbit")
    out = _run(
        cli,
        tmp_path,
        str(CATALOGUE / "rosetta/pipelines/pds4-table-plot.cwl"),
        {
            "product": {"class": "File", "path": str(label), "format": XML},
            "x_column": "time",
            "y_column": "temperature",
        },
    )
    table = Path(out["table"]["path"]).read_text().splitlines()
    assert table[0] == "time,distance,temperature" and len(table) == 6
    summary = json.loads(Path(out["summary"]["path"]).read_text())
    assert summary["temperature"] == {"min": 150.0, "max": 160.0, "mean": 155.0, "count": 5}
    svg = Path(out["plot"]["path"]).read_text()
    assert svg.startswith("<svg") and "<polyline" in svg and "temperature" in svg


@pytest.mark.slow
def test_pds4_table_plot_defaults_fit_the_demo_archive_product(cli, tmp_path, demo_psa):
    """Launched with nothing but the demo MIRO product, the pipeline plots its columns."""
    label = next(demo_psa.rglob("ro_demo_miro_temperature_*.xml"))
    out = _run(
        cli,
        tmp_path,
        str(CATALOGUE / "rosetta/pipelines/pds4-table-plot.cwl"),
        {"product": {"class": "File", "path": str(label), "format": XML}},
    )
    summary = json.loads(Path(out["summary"]["path"]).read_text())
    assert {"COMET_DISTANCE", "SURFACE_TEMPERATURE"} <= set(summary)
    svg = Path(out["plot"]["path"]).read_text()
    assert "<polyline" in svg and "SURFACE_TEMPERATURE" in svg


@pytest.mark.slow
def test_spice_pipeline_converts_utc_to_et_and_reads_radii(cli, tmp_path):
    meta = spice_kernels(tmp_path / "spice")
    out = _run(
        cli,
        tmp_path,
        str(CATALOGUE / "juice/pipelines/spice-time-and-radii.cwl"),
        {"meta_kernel": {"class": "File", "path": str(meta)}, "epoch": "2000-01-01T12:00:00"},
    )
    summary = json.loads(Path(out["summary"]["path"]).read_text())
    assert summary["loaded"] == ["test.tls", "test.tpc"] and summary["missing"] == []
    # ET at J2000 noon UTC is 64.184 s (32 leap seconds + 32.184) minus a periodic term.
    assert summary["et_tdb_seconds_past_j2000"] == pytest.approx(64.1839, abs=1e-3)
    assert summary["bodies"]["399"]["mean_radius_km"] == pytest.approx(6371.0084, abs=1e-3)


@pytest.mark.slow
def test_bright_sources_filters_and_sorts(cli, tmp_path):
    catalogue = source_catalogue(tmp_path / "esasky")
    out = _run(
        cli,
        tmp_path,
        str(CATALOGUE / "esasky/pipelines/bright-sources.cwl"),
        {
            "catalogue": {"class": "File", "path": str(catalogue), "format": CSV},
            "magnitude_limit": 7.0,
        },
    )
    rows = Path(out["sources"]["path"]).read_text().splitlines()
    assert [r.split(",")[3] for r in rows[1:]] == ["M31", "M42", "Cen A"]
    assert "3 of 4 sources" in Path(out["report"]["path"]).read_text()
    assert Path(out["chart"]["path"]).read_text().count("<circle") == 3
