"""The demo archive read through the libraries its users will use: pds4_tools for the PDS4
products, spiceypy for the SPICE kernels (numpy for both).

These packages are test requirements, imported at the top on purpose: a missing one fails the
module rather than skipping it. The stdlib-only checks are in test_sample_data.py.
"""

from __future__ import annotations

import csv
import logging
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pds4_tools
import pytest
import spiceypy

from tests.helpers import load_sample_data_generator

PDS = "{http://pds.nasa.gov/pds4/pds/v1}"


sample_data = load_sample_data_generator()


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> dict[str, Path]:
    return sample_data.make_sample_data(tmp_path_factory.mktemp("archive"))


@pytest.fixture
def bundle(archive) -> Path:
    return archive["psa-rosetta"] / "bundle_rosetta_demo"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _read(label: Path):
    # pds4_tools reports label problems through its logger and carries on, so listen to it.
    logger = logging.getLogger("PDS4ToolsLogger")
    heard = _Records()
    logger.addHandler(heard)
    try:
        structures = pds4_tools.read(str(label), lazy_load=False, quiet=True)
    finally:
        logger.removeHandler(heard)
    messages = [(r.levelname, r.getMessage()) for r in heard.records]
    assert any("Processing label" in m for _, m in messages), messages  # we did hear it
    assert not [m for m in heard.records if m.levelno >= logging.WARNING], messages
    return structures


def _statistics(label: Path) -> dict[str, float]:
    stats = ET.parse(label).getroot().find(f".//{PDS}Object_Statistics")
    return {child.tag.removeprefix(PDS): float(child.text) for child in stats}


def test_pds4_tools_reads_the_time_series_as_in_the_csv(bundle):
    label = next(bundle.glob("data_raw/timeseries/*.xml"))
    structures = _read(label)
    assert [s.type for s in structures] == ["Header", "Table_Delimited"]
    table = structures["timeseries"].data
    with label.with_suffix(".csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(table) == len(rows) == 720
    assert list(table.dtype.names) == list(rows[0])
    assert table["UTC"][0] == rows[0]["UTC"] and table["UTC"][-1] == rows[-1]["UTC"]
    for name in ("COMET_DISTANCE", "HELIOCENTRIC_DISTANCE", "SURFACE_TEMPERATURE"):
        assert table[name].dtype.kind == "f"
        np.testing.assert_allclose(table[name], [float(row[name]) for row in rows])
    assert structures["timeseries"].meta_data["Record_Delimited"]["fields"] == 4


@pytest.mark.parametrize(
    ("pattern", "dtype"),
    [("data_raw/images/*_raw.xml", np.uint16), ("data_calibrated/images/*_cal.xml", np.float32)],
)
def test_pds4_tools_reads_the_images(bundle, pattern, dtype):
    labels = sorted(bundle.glob(pattern))
    assert labels
    for label in labels:
        image = _read(label)["image"].data
        assert image.shape == (512, 512) and image.dtype == dtype
        stats = _statistics(label)
        assert image.max() == pytest.approx(stats["maximum"])
        assert image.min() == pytest.approx(stats["minimum"])
        assert image.mean(dtype=np.float64) == pytest.approx(stats["mean"])
        # Line 1 is the top: the nucleus is in the middle, the corners are dark sky.
        assert image[256, 200] > 3 * image[:16, :16].mean()


def test_calibration_coefficients_turn_the_raw_frame_into_the_calibrated_one(archive, bundle):
    # What a team member with access to the embargoed volume would redo.
    table = archive["rosetta-restricted"] / "navcam_demo_calibration.csv"
    with table.open(newline="") as handle:
        coefficients = {row["parameter"]: float(row["value"]) for row in csv.DictReader(handle)}
    raw = _read(next(bundle.glob("data_raw/images/*t120000_raw.xml")))["image"].data
    cal = _read(next(bundle.glob("data_calibrated/images/*_cal.xml")))["image"].data
    expected = (raw.astype(np.float64) - coefficients["bias"]) * coefficients["radiance_per_dn"]
    np.testing.assert_allclose(cal, expected.astype(np.float32), rtol=1e-6)


def test_pds4_tools_reads_the_collection_inventories(bundle):
    for label in sorted(bundle.glob("*/collection_*.xml")):
        inventory = _read(label)[0].data
        assert set(inventory["Member_Status"]) == {"P"}
        products = {
            ET.parse(p).getroot().findtext(f"{PDS}Identification_Area/{PDS}logical_identifier")
            for p in label.parent.rglob("*.xml")
            if p != label
        }
        assert {lidvid.removesuffix("::1.0") for lidvid in inventory["LIDVID_LID"]} == products


@pytest.fixture
def kernels(archive, monkeypatch):
    mk = archive["spice-juice"] / "kernels" / "mk"
    # The meta-kernel's paths are relative to the current directory, as SPICE wants it.
    monkeypatch.chdir(mk)
    spiceypy.kclear()
    spiceypy.furnsh("juice_demo.tm")
    yield mk
    spiceypy.kclear()


def test_spiceypy_furnishes_every_kernel_of_the_metakernel(kernels):
    loaded = {spiceypy.kdata(i, "ALL")[0] for i in range(spiceypy.ktotal("ALL"))}
    assert {Path(p).name for p in loaded} == {
        "juice_demo.tm",
        "naif0012.tls",
        "juice_demo_v01.tpc",
        "juice_demo_v01.tf",
        "juice_demo_ganymede_orbit_v01.bsp",  # spiceypy is importable, so the SPK was made
    }


def test_leapseconds_give_utc_to_et(kernels):
    # TDB - UTC is 32.184 s + TAI - UTC (37 s since 2017), plus a periodic term under 2 ms.
    et = spiceypy.str2et("2024-03-01T12:00:00")
    assert spiceypy.deltet(et, "ET") == pytest.approx(69.184, abs=2e-3)
    before = spiceypy.str2et("2016-12-31T12:00:00")
    assert spiceypy.deltet(before, "ET") == pytest.approx(68.184, abs=2e-3)
    # The 2016-12-31 leap second exists: 23:59:60 is a valid UTC time.
    leap = spiceypy.str2et("2016-12-31T23:59:60")
    assert spiceypy.str2et("2017-01-01T00:00:00") - leap == pytest.approx(1.0)
    assert spiceypy.et2utc(et, "ISOC", 0) == "2024-03-01T12:00:00"


def test_planetary_constants_and_frames(kernels):
    assert list(spiceypy.bodvrd("JUPITER", "RADII", 3)[1]) == [71492.0, 71492.0, 66854.0]
    assert list(spiceypy.bodvrd("GANYMEDE", "RADII", 3)[1]) == [2631.2] * 3
    assert spiceypy.bodn2c("JUICE_DEMO") == sample_data.JUICE_DEMO_CODE
    et = spiceypy.str2et("2034-12-20T06:00:00")
    rotation = spiceypy.pxform("J2000", "IAU_GANYMEDE", et)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    pole = np.array(spiceypy.radrec(1.0, np.radians(268.20), np.radians(64.57)))
    # Ganymede's pole (near J2000 at these rates) is IAU_GANYMEDE's Z axis.
    assert np.degrees(spiceypy.vsep(rotation @ pole, [0, 0, 1])) < 0.5


def test_orbit_spk_is_a_500_km_circle_in_the_orbit_frame(kernels):
    start = spiceypy.str2et(sample_data.ORBIT_START_UTC)
    cover = spiceypy.spkcov("../spk/juice_demo_ganymede_orbit_v01.bsp", sample_data.JUICE_DEMO_CODE)
    begin, end = spiceypy.wnfetd(cover, 0)
    assert begin == pytest.approx(start) and end == pytest.approx(start + 86400)
    for hours in (0, 5.5, 23.9):
        et = start + hours * 3600
        state, _ = spiceypy.spkezr("JUICE_DEMO", et, "J2000", "NONE", "GANYMEDE")
        position = np.array(state[:3])
        assert np.linalg.norm(position) == pytest.approx(2631.2 + 500.0, abs=1e-6)
        in_plane = spiceypy.pxform("J2000", "JUICE_DEMO_ORBIT", et) @ position
        assert abs(in_plane[2]) < 1e-6
        _, lon, lat = spiceypy.reclat(
            spiceypy.spkpos("JUICE_DEMO", et, "IAU_GANYMEDE", "NONE", "GANYMEDE")[0]
        )
        assert abs(np.degrees(lat)) <= sample_data.ORBIT_INCLINATION_DEG + 1
