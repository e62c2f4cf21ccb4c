"""The demo archive generator, config/sample-data/make_sample_data.py, checked with the standard
library only: what a user opening the volumes would check by hand.

Reading through pds4_tools and spiceypy is in test_sample_data_readers.py.
"""

from __future__ import annotations

import array
import csv
import hashlib
import math
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.helpers import load_sample_data_generator

SCRIPT = Path(__file__).resolve().parents[1] / "config" / "sample-data" / "make_sample_data.py"
PDS = "{http://pds.nasa.gov/pds4/pds/v1}"
VOT = "{http://www.ivoa.net/xml/VOTable/v1.3}"
VOLUMES = {"psa-rosetta", "spice-juice", "esasky-catalogue", "rosetta-restricted"}
ELEMENT_SIZES = {"UnsignedLSB2": ("H", 2), "IEEE754LSBSingle": ("f", 4)}


sample_data = load_sample_data_generator()


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> dict[str, Path]:
    return sample_data.make_sample_data(tmp_path_factory.mktemp("archive"))


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _labels(archive: dict[str, Path]) -> list[Path]:
    labels = sorted(archive["psa-rosetta"].rglob("*.xml"))
    assert labels, "no PDS4 labels written"
    return labels


def _text(element: ET.Element, path: str) -> str:
    found = element.find(path)
    assert found is not None and found.text is not None, f"{path} missing"
    return found.text


# --- the whole archive ---------------------------------------------------------------------


def test_writes_the_four_volumes_small_enough(archive):
    assert set(archive) == VOLUMES
    total = 0
    for name, path in archive.items():
        assert path.is_dir() and path.name == name
        assert (path / "readme.txt").is_file(), f"{name} has no readme.txt"
        total += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    assert total < 20 * 2**20


def test_rerun_changes_nothing_and_removes_stale_files(archive, tmp_path):
    out = sample_data.make_sample_data(tmp_path)
    before = {name: _snapshot(path) for name, path in out.items()}
    stale = out["psa-rosetta"] / "bundle_rosetta_demo" / "data_raw" / "old" / "gone.xml"
    stale.parent.mkdir()
    stale.write_text("left over from an older recipe")

    # The rerun goes through the command line, as `make sample-data` does.
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )

    after = {name: _snapshot(path) for name, path in out.items()}
    assert after == before  # same bytes and untouched mtimes
    assert not stale.parent.exists()
    lines = done.stdout.strip().splitlines()
    assert len(lines) == len(VOLUMES)
    for line in lines:
        match = re.match(r"^([\w-]+): (\d+) files, (\d+) bytes \(.*MiB\) in (.+)$", line)
        assert match, line
        name, count, size, path = match.groups()
        assert name in VOLUMES and Path(path) == tmp_path / name
        assert int(count) == len(after[name])
        assert int(size) == sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
    # A run in another folder makes the very same bytes.
    hashes = {n: {f: h for f, (h, _) in s.items()} for n, s in after.items()}
    assert {n: {f: h for f, (h, _) in _snapshot(p).items()} for n, p in archive.items()} == hashes


# --- psa-rosetta ---------------------------------------------------------------------------


def test_labels_are_pds4_products(archive):
    roots = set()
    for label in _labels(archive):
        root = ET.parse(label).getroot()
        kind = root.tag.removeprefix(PDS)
        roots.add(kind)
        assert root.tag.startswith(PDS), label
        location = root.get("{http://www.w3.org/2001/XMLSchema-instance}schemaLocation", "")
        namespace, xsd = location.split()
        assert namespace == PDS[1:-1] and re.search(r"/PDS4_PDS_1\w00\.xsd$", xsd), label
        assert _text(root, f"{PDS}Identification_Area/{PDS}product_class") == kind
        lid = _text(root, f"{PDS}Identification_Area/{PDS}logical_identifier")
        assert lid.startswith("urn:esa:psa:rosetta_demo"), label
        if kind == "Product_Observational":
            for area in ("Identification_Area", "Observation_Area", "File_Area_Observational"):
                assert root.find(PDS + area) is not None, f"{label}: no {area}"
    assert roots == {"Product_Bundle", "Product_Collection", "Product_Observational"}


def test_every_label_points_at_a_file_of_the_declared_size_and_checksum(archive):
    for label in _labels(archive):
        files = ET.parse(label).getroot().findall(f".//{PDS}File")
        assert files, f"{label} describes no file"
        for file in files:
            data = (label.parent / _text(file, f"{PDS}file_name")).read_bytes()
            assert len(data) == int(_text(file, f"{PDS}file_size")), label
            assert hashlib.md5(data).hexdigest() == _text(file, f"{PDS}md5_checksum"), label
            if file.find(f"{PDS}records") is not None:
                assert data.count(b"\r\n") == int(_text(file, f"{PDS}records")), label


def test_delimited_tables_have_the_declared_records_and_fields(archive):
    tables = 0
    for label in _labels(archive):
        area = ET.parse(label).getroot()
        for table in area.findall(f".//{PDS}Table_Delimited") + area.findall(f".//{PDS}Inventory"):
            tables += 1
            data = (label.parent / _text(area, f".//{PDS}File/{PDS}file_name")).read_bytes()
            assert _text(table, f"{PDS}record_delimiter") == "Carriage-Return Line-Feed"
            body = data[int(_text(table, f"{PDS}offset")) :]
            assert body.endswith(b"\r\n") and b"\n" not in body.replace(b"\r\n", b""), label
            rows = list(csv.reader(body.decode("ascii").splitlines()))
            assert len(rows) == int(_text(table, f"{PDS}records")), label
            names = [f.text for f in table.iter(f"{PDS}name") if f.text]
            fields = int(_text(table, f"{PDS}Record_Delimited/{PDS}fields"))
            assert len(names) == fields, label
            assert all(len(row) == fields for row in rows), label
            header = area.find(f".//{PDS}Header")
            if header is not None:
                start = int(_text(header, f"{PDS}offset"))
                end = start + int(_text(header, f"{PDS}object_length"))
                assert end == int(_text(table, f"{PDS}offset")), label
                assert data[start:end].decode("ascii").strip().split(",") == names, label
    assert tables >= 3  # the time series and two inventories


def test_images_match_their_axes_type_and_statistics(archive):
    types = set()
    for label in _labels(archive):
        root = ET.parse(label).getroot()
        for image in root.findall(f".//{PDS}Array_2D_Image"):
            data_type = _text(image, f"{PDS}Element_Array/{PDS}data_type")
            types.add(data_type)
            typecode, size = ELEMENT_SIZES[data_type]
            axes = image.findall(f"{PDS}Axis_Array")
            assert int(_text(image, f"{PDS}axes")) == len(axes) == 2
            assert [_text(a, f"{PDS}sequence_number") for a in axes] == ["1", "2"]
            elements = math.prod(int(_text(a, f"{PDS}elements")) for a in axes)
            data = (label.parent / _text(root, f".//{PDS}File/{PDS}file_name")).read_bytes()
            assert len(data) == int(_text(image, f"{PDS}offset")) + elements * size, label
            values = array.array(typecode, data)
            if sys.byteorder == "big":
                values.byteswap()  # the labels say LSB
            stats = image.find(f"{PDS}Object_Statistics")
            assert float(_text(stats, f"{PDS}maximum")) == pytest.approx(max(values))
            assert float(_text(stats, f"{PDS}minimum")) == pytest.approx(min(values))
            assert float(_text(stats, f"{PDS}mean")) == pytest.approx(math.fsum(values) / elements)
    assert types == {"UnsignedLSB2", "IEEE754LSBSingle"}


def test_collections_list_their_products_and_the_bundle_its_collections(archive):
    bundle = archive["psa-rosetta"] / "bundle_rosetta_demo"
    lid = f"{PDS}Identification_Area/{PDS}logical_identifier"
    collections = sorted(bundle.glob("*/collection_*.xml"))
    assert [c.parent.name for c in collections] == ["data_calibrated", "data_raw"]
    for collection in collections:
        root = ET.parse(collection).getroot()
        inventory = collection.parent / _text(root, f".//{PDS}File/{PDS}file_name")
        listed = {
            line.split(",")[1].removesuffix("::1.0") for line in inventory.read_text().splitlines()
        }
        products = {
            _text(ET.parse(p).getroot(), lid)
            for p in collection.parent.rglob("*.xml")
            if p != collection
        }
        assert listed == products, collection
    members = {
        e.text for e in ET.parse(bundle / "bundle_rosetta_demo.xml").iter(f"{PDS}lid_reference")
    }
    assert members == {_text(ET.parse(c).getroot(), lid) for c in collections}


def test_timeseries_is_hourly_and_in_order(archive):
    table = next(archive["psa-rosetta"].rglob("data_raw/timeseries/*.csv"))
    rows = list(csv.DictReader(table.read_text().splitlines()))
    assert len(rows) == 720
    hours = [row["UTC"][:13] for row in rows]
    assert hours == sorted(set(hours))
    assert float(rows[0]["COMET_DISTANCE"]) > float(rows[-1]["COMET_DISTANCE"])
    assert all(100 < float(row["SURFACE_TEMPERATURE"]) < 300 for row in rows)


# --- esasky-catalogue ----------------------------------------------------------------------


def test_catalogue_csv_and_votable_hold_the_same_500_sources(archive):
    folder = archive["esasky-catalogue"]
    with (folder / "esasky_demo_sources.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["name", "ra", "dec", "mag"]
    rows = rows[1:]
    assert len(rows) == 500
    assert len({row[0] for row in rows}) == 500

    root = ET.parse(folder / "esasky_demo_sources.vot").getroot()
    assert root.tag == f"{VOT}VOTABLE" and root.get("version") == "1.4"
    table = root.find(f"{VOT}RESOURCE/{VOT}TABLE")
    fields = [f.get("name") for f in table.findall(f"{VOT}FIELD")]
    assert fields == ["name", "ra", "dec", "mag"]
    trs = table.findall(f"{VOT}DATA/{VOT}TABLEDATA/{VOT}TR")
    assert len(trs) == int(table.get("nrows")) == 500
    assert [[td.text for td in tr.findall(f"{VOT}TD")] for tr in trs] == rows


def test_catalogue_sources_lie_in_the_field(archive):
    with (archive["esasky-catalogue"] / "esasky_demo_sources.csv").open(newline="") as handle:
        sources = list(csv.DictReader(handle))
    ra0, dec0 = math.radians(sample_data.FIELD_RA), math.radians(sample_data.FIELD_DEC)
    for source in sources:
        ra, dec = math.radians(float(source["ra"])), math.radians(float(source["dec"]))
        cos_sep = math.sin(dec) * math.sin(dec0) + math.cos(dec) * math.cos(dec0) * math.cos(
            ra - ra0
        )
        assert math.degrees(math.acos(min(1.0, cos_sep))) <= 1.0 + 1e-6, source
        assert 16 <= float(source["mag"]) <= 21
        # The designation encodes the position: J hhmm... matches ra.
        hours = int(source["name"][8:10]) + int(source["name"][10:12]) / 60
        assert abs(hours * 15 - float(source["ra"])) < 0.25


# --- spice-juice ---------------------------------------------------------------------------


def _data_sections(text: str) -> str:
    return "".join(re.findall(r"\\begindata(.*?)(?:\\begintext|\Z)", text, flags=re.S))


def _metakernel_paths(mk: Path) -> list[Path]:
    data = _data_sections(mk.read_text())
    values = re.findall(r"'([^']*)'", re.search(r"PATH_VALUES\s*=\s*\((.*?)\)", data, re.S)[1])
    symbols = re.findall(r"'([^']*)'", re.search(r"PATH_SYMBOLS\s*=\s*\((.*?)\)", data, re.S)[1])
    listed = re.findall(r"'([^']*)'", re.search(r"KERNELS_TO_LOAD\s*=\s*\((.*?)\)", data, re.S)[1])
    paths = []
    for entry in listed:
        for symbol, value in zip(symbols, values, strict=True):
            entry = entry.replace(f"${symbol}", value)
        # SPICE takes relative paths from the current directory; the readme says to run from mk/.
        paths.append((mk.parent / entry).resolve())
    return paths


def test_metakernel_lists_every_kernel_and_nothing_missing(archive):
    kernels = archive["spice-juice"] / "kernels"
    mk = kernels / "mk" / "juice_demo.tm"
    paths = _metakernel_paths(mk)
    for path in paths:
        assert path.is_file(), f"{mk} lists {path}, which does not exist"
    on_disk = {p.resolve() for p in kernels.rglob("*") if p.is_file() and p != mk}
    assert set(paths) == on_disk
    kinds = {p.read_bytes()[:8] for p in paths}
    assert {b"KPL/LSK\n", b"KPL/PCK\n", b"KPL/FK\n\n"} <= kinds
    for path in paths:
        if path.suffix == ".bsp":
            assert path.read_bytes()[:8] == b"DAF/SPK "


def test_text_kernels_are_portable(archive):
    for kernel in (archive["spice-juice"] / "kernels").rglob("*"):
        if not kernel.is_file() or kernel.suffix == ".bsp":
            continue
        data = kernel.read_bytes()
        # Older toolkits reject tabs, CR and lines over 132 characters in text kernels.
        assert data.endswith(b"\n") and b"\r" not in data and b"\t" not in data, kernel
        assert all(len(line) <= 132 for line in data.decode("ascii").splitlines()), kernel
        assert "\\begindata" in data.decode("ascii"), kernel


def test_leapseconds_table_is_complete(archive):
    lsk = archive["spice-juice"] / "kernels" / "lsk" / "naif0012.tls"
    table = re.search(r"DELTET/DELTA_AT\s*=\s*\((.*?)\)", _data_sections(lsk.read_text()), re.S)
    entries = re.findall(r"(\d+),\s*@(\d{4}-[A-Z]{3}-1)", table[1])
    assert len(entries) == 28
    assert entries[0] == ("10", "1972-JAN-1") and entries[-1] == ("37", "2017-JAN-1")
    assert [int(n) for n, _ in entries] == list(range(10, 38))


def test_spice_volume_without_spiceypy_lists_text_kernels_only():
    files = sample_data.make_spice_juice(with_spk=False)
    assert not any(name.endswith(".bsp") for name in files)
    assert ".bsp" not in files["kernels/mk/juice_demo.tm"].decode()
    assert b"spiceypy was not installed" in files["readme.txt"]


# --- rosetta-restricted --------------------------------------------------------------------


def test_restricted_volume_states_its_embargo_and_calibration(archive):
    folder = archive["rosetta-restricted"]
    assert (folder / "EMBARGO").read_text().strip() == (
        f"embargo-until: {sample_data.EMBARGO_UNTIL}"
    )
    with (folder / "navcam_demo_calibration.csv").open(newline="") as handle:
        coefficients = {row["parameter"]: float(row["value"]) for row in csv.DictReader(handle)}
    assert coefficients["bias"] == sample_data.RAW_BIAS
    assert coefficients["radiance_per_dn"] == sample_data.RADIANCE_PER_DN
    with (folder / "rosina_demo_mass_spectrum_20160930.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["mass_per_charge"]) for r in rows] == list(range(12, 101))
    assert max(rows, key=lambda r: int(r["counts"]))["mass_per_charge"] == "18"  # water


def test_embargo_date_matches_the_demo_catalogue():
    entry = SCRIPT.parents[1] / "catalogue" / "rosetta" / "volumes" / "rosetta-restricted.yaml"
    assert f'embargo_until: "{sample_data.EMBARGO_UNTIL}"' in entry.read_text()
