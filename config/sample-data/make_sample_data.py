#!/usr/bin/env python3
"""Generate the demo archive that the demo catalogue's hosted volumes point at.

Usage::

    python config/sample-data/make_sample_data.py OUTDIR

or, from Python (the folder name has a dash, so load it by path)::

    make_sample_data(Path("OUTDIR"))  # -> {"psa-rosetta": Path(...), ...}

It writes one folder per hosted volume under OUTDIR:

``psa-rosetta/``
    A Planetary-Science-Archive-like PDS4 bundle (``bundle_rosetta_demo``): a bundle label, a raw
    and a calibrated data collection with their inventories, a delimited time series (CSV), two
    raw 16-bit images and one calibrated 32-bit float image, each with its PDS4 label.
``spice-juice/``
    SPICE kernels in the usual ``kernels/<type>/`` tree: the leap-seconds table, a text PCK for
    Jupiter and Ganymede, a frames kernel and the meta-kernel ``kernels/mk/juice_demo.tm``. When
    ``spiceypy`` is importable it also writes a binary SPK with a synthetic orbit around Ganymede
    (see :func:`write_juice_orbit_spk`), and the meta-kernel lists it.
``esasky-catalogue/``
    An ESASky-like source catalogue of 500 synthetic sources, as CSV and as a VOTable 1.4.
``rosetta-restricted/``
    A small embargoed calibration dataset, for the volume access rules (group, embargo) to guard.

Everything is synthetic and derived from fixed seeds: a rerun produces the same bytes, leaves files
whose content has not changed untouched (so their mtimes too) and removes files it no longer makes
from these four folders. Only the standard library is needed; ``spiceypy`` is optional.
"""

from __future__ import annotations

import argparse
import array
import csv
import hashlib
import io
import math
import os
import random
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

Files = dict[str, bytes]
"""What a volume builder returns: POSIX path relative to the volume folder -> file content."""

SEED = 20140806  # Rosetta's arrival at 67P; any fixed value keeps reruns identical.

PDS_NS = "http://pds.nasa.gov/pds4/pds/v1"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
# Information model 1.20.0.0 is schema "1K00" (the second character counts from A = 10).
PDS_IM_VERSION = "1.20.0.0"
PDS_XSD = "https://pds.nasa.gov/pds4/pds/v1/PDS4_PDS_1K00.xsd"
PDS_SCH = "https://pds.nasa.gov/pds4/pds/v1/PDS4_PDS_1K00.sch"
# A fixed date rather than today's, so that labels do not change from one run to the next.
MODIFICATION_DATE = "2024-06-01"
BUNDLE = "bundle_rosetta_demo"
LID_PREFIX = "urn:esa:psa:rosetta_demo"

IMAGE_SIZE = 512
RAW_BIAS = 120  # DN of an unlit pixel: the calibration subtracts it.
RADIANCE_PER_DN = 2.5e-6  # W m-2 sr-1 nm-1 per DN, a made-up but plausible NAVCAM-like gain.

EMBARGO_UNTIL = "2031-01-01"  # as in config/catalogue/rosetta/volumes/rosetta-restricted.yaml

JUICE_DEMO_CODE = -28900  # Not JUICE's real NAIF code (-28): this orbit is invented.
JUICE_DEMO_ORBIT_FRAME = -28901
GANYMEDE_RADIUS_KM = 2631.2
GANYMEDE_GM = 9887.834  # km3 s-2
ORBIT_ALTITUDE_KM = 500.0  # as in JUICE's planned 500 km circular Ganymede orbit
ORBIT_INCLINATION_DEG = 86.0
ORBIT_NODE_DEG = 40.0
ORBIT_START_UTC = "2034-12-20T00:00:00"
ORBIT_HOURS = 24


# --------------------------------------------------------------------------------------------
# Writing volumes
# --------------------------------------------------------------------------------------------


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def write_volume(root: Path, files: Files) -> tuple[int, int]:
    """Make ``root`` hold exactly ``files``; return (file count, total bytes).

    Files whose content is already right are not rewritten, so a rerun keeps their mtimes and
    anything reading a mounted copy never sees a half-written file (new content goes through a
    temporary file and an atomic rename). Files under ``root`` that are not in ``files`` are
    removed: the folder is generated output, and stale products would break the inventories.
    """
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        target = root / rel
        if target.is_file() and target.read_bytes() == data:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; archive files are meant to be read.
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    wanted = {root / rel for rel in files}
    # Deepest first, so that folders emptied by the removal can go too.
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir():
            if not any(path.iterdir()):
                path.rmdir()
        elif path not in wanted:
            path.unlink()
    return len(files), sum(len(data) for data in files.values())


def _crlf(lines: list[str]) -> bytes:
    # PDS4 requires CR LF for delimited tables, inventories and described text.
    return "".join(line + "\r\n" for line in lines).encode("ascii")


# --------------------------------------------------------------------------------------------
# PDS4 labels
# --------------------------------------------------------------------------------------------


def _el(tag: str, *children: ET.Element, text: object = None, **attrs: str) -> ET.Element:
    element = ET.Element(tag, attrs)
    if text is not None:
        element.text = str(text)
    element.extend(children)
    return element


def _label(root_tag: str, *children: ET.Element) -> bytes:
    # Tags stay unqualified and the default namespace is written as a plain attribute: this
    # gives the conventional PDS4 look (no prefixes) without ElementTree's global registry.
    root = _el(
        root_tag,
        *children,
        **{"xmlns": PDS_NS, "xmlns:xsi": XSI_NS, "xsi:schemaLocation": f"{PDS_NS} {PDS_XSD}"},
    )
    ET.indent(root, space="  ")
    head = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<?xml-model href="{PDS_SCH}" schematypens="http://purl.oclc.org/dsdl/schematron"?>\n'
    )
    return (head + ET.tostring(root, encoding="unicode") + "\n").encode("utf-8")


def _identification_area(lid: str, title: str, product_class: str) -> ET.Element:
    return _el(
        "Identification_Area",
        _el("logical_identifier", text=lid),
        _el("version_id", text="1.0"),
        _el("title", text=title),
        _el("information_model_version", text=PDS_IM_VERSION),
        _el("product_class", text=product_class),
        _el(
            "Modification_History",
            _el(
                "Modification_Detail",
                _el("modification_date", text=MODIFICATION_DATE),
                _el("version_id", text="1.0"),
                _el("description", text="Synthetic product made for the Datalabs demo archive."),
            ),
        ),
    )


def _observation_area(start: str, stop: str, level: str, instrument: str) -> ET.Element:
    return _el(
        "Observation_Area",
        _el(
            "Time_Coordinates",
            _el("start_date_time", text=start),
            _el("stop_date_time", text=stop),
        ),
        _el(
            "Primary_Result_Summary",
            _el("purpose", text="Science"),
            _el("processing_level", text=level),
        ),
        _el(
            "Investigation_Area",
            _el("name", text="Rosetta"),
            _el("type", text="Mission"),
            _el(
                "Internal_Reference",
                _el("lid_reference", text="urn:esa:psa:context:investigation:mission.rosetta"),
                _el("reference_type", text="data_to_investigation"),
            ),
        ),
        _el(
            "Observing_System",
            _el(
                "Observing_System_Component", _el("name", text="Rosetta"), _el("type", text="Host")
            ),
            _el(
                "Observing_System_Component",
                _el("name", text=instrument),
                _el("type", text="Instrument"),
            ),
        ),
        _el(
            "Target_Identification",
            _el("name", text="67P/Churyumov-Gerasimenko"),
            _el("type", text="Comet"),
        ),
    )


def _file(name: str, data: bytes, records: int | None = None) -> ET.Element:
    children = [_el("file_name", text=name), _el("file_size", text=len(data), unit="byte")]
    if records is not None:
        children.append(_el("records", text=records))
    children.append(_el("md5_checksum", text=_md5(data)))
    return _el("File", *children)


def _delimited_fields(fields: list[dict[str, str]]) -> ET.Element:
    elements = []
    for number, field in enumerate(fields, start=1):
        children = [
            _el("name", text=field["name"]),
            _el("field_number", text=number),
            _el("data_type", text=field["data_type"]),
        ]
        if "max_length" in field:
            children.append(_el("maximum_field_length", text=field["max_length"], unit="byte"))
        if "unit" in field:
            children.append(_el("unit", text=field["unit"]))
        if "description" in field:
            children.append(_el("description", text=field["description"]))
        elements.append(_el("Field_Delimited", *children))
    return _el(
        "Record_Delimited",
        _el("fields", text=len(fields)),
        _el("groups", text=0),
        *elements,
    )


# --------------------------------------------------------------------------------------------
# psa-rosetta: synthetic data
# --------------------------------------------------------------------------------------------

TIMESERIES_FIELDS = [
    {
        "name": "UTC",
        "data_type": "ASCII_Date_Time_YMD_UTC",
        "description": "Time of the measurement (UTC).",
    },
    {
        "name": "COMET_DISTANCE",
        "data_type": "ASCII_Real",
        "unit": "km",
        "description": "Distance from the spacecraft to the nucleus centre.",
    },
    {
        "name": "HELIOCENTRIC_DISTANCE",
        "data_type": "ASCII_Real",
        "unit": "AU",
        "description": "Distance from the Sun to the nucleus.",
    },
    {
        "name": "SURFACE_TEMPERATURE",
        "data_type": "ASCII_Real",
        "unit": "K",
        "description": "Brightness temperature of the sub-spacecraft surface.",
    },
]


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def make_timeseries(rng: random.Random, start: datetime, hours: int) -> tuple[bytes, bytes, int]:
    """Return (header line, table rows, row count) of a Rosetta-like approach time series.

    The spacecraft closes in from ~100 km to ~30 km, the comet moves sunwards, and the surface
    temperature follows the 12.4 h rotation of the nucleus, plus instrument noise.
    """
    header = _crlf([",".join(field["name"] for field in TIMESERIES_FIELDS)])
    rows = []
    for hour in range(hours):
        days = hour / 24
        moment = start + timedelta(hours=hour)
        distance = 30 + 70 * math.exp(-days / 8) + 1.5 * math.sin(2 * math.pi * days / 3.5)
        helio = 3.60 - 0.0047 * days
        rotation = math.cos(2 * math.pi * hour / 12.4)
        temperature = (175 + 35 * rotation) * math.sqrt(3.6 / helio) + rng.gauss(0, 1.5)
        rows.append(f"{_iso(moment)},{distance:.3f},{helio:.5f},{temperature:.2f}")
    return header, _crlf(rows), len(rows)


# Two ellipsoids, nucleus-like: (centre x, centre y, semi-axis x, semi-axis y, semi-axis z)
# in units of the half image width.
_LOBES = ((-0.18, -0.12, 0.48, 0.34, 0.36), (0.24, 0.21, 0.28, 0.24, 0.30))


def render_nucleus(
    rng: random.Random, size: int, roll_deg: float, sun: tuple[float, float, float]
) -> list[int]:
    """Render a shaded two-lobed nucleus as ``size`` x ``size`` DN values (line-major, 12 bit).

    Pixels see the frontmost ellipsoid surface, lit with Lambert's law; read noise and shot noise
    come from ``rng``, so the image depends on the seed alone.
    """
    norm = math.sqrt(sum(c * c for c in sun))
    sx, sy, sz = (c / norm for c in sun)
    cos_r, sin_r = math.cos(math.radians(roll_deg)), math.sin(math.radians(roll_deg))
    pixels = []
    for line in range(size):
        y = 1 - 2 * (line + 0.5) / size
        for sample in range(size):
            x = 2 * (sample + 0.5) / size - 1
            xr, yr = cos_r * x + sin_r * y, -sin_r * x + cos_r * y
            best_z, shade = -1.0, 0.0
            for cx, cy, a, b, c in _LOBES:
                u, v = (xr - cx) / a, (yr - cy) / b
                q = 1 - u * u - v * v
                if q <= 0:
                    continue
                w = math.sqrt(q)
                if c * w > best_z:
                    nx, ny, nz = u / a, v / b, w / c
                    length = math.sqrt(nx * nx + ny * ny + nz * nz)
                    best_z = c * w
                    shade = max(0.0, (nx * sx + ny * sy + nz * sz) / length)
            signal = 3400 * shade
            noise = rng.gauss(0, 3 + 0.4 * math.sqrt(signal))
            pixels.append(min(4095, max(0, round(RAW_BIAS + signal + noise))))
    return pixels


def _little_endian(values: array.array) -> bytes:
    # array writes native order; PDS4 declares LSB, so swap on big-endian hosts.
    if sys.byteorder == "big":
        values = array.array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def _image_label(
    lid: str,
    title: str,
    file_name: str,
    data: bytes,
    observation: ET.Element,
    data_type: str,
    unit: str | None,
    stats: tuple[float, float, float],
) -> bytes:
    element_array = [_el("data_type", text=data_type)]
    if unit:
        element_array.append(_el("unit", text=unit))
    maximum, minimum, mean = stats
    return _label(
        "Product_Observational",
        _identification_area(lid, title, "Product_Observational"),
        observation,
        _el(
            "File_Area_Observational",
            _file(file_name, data),
            _el(
                "Array_2D_Image",
                _el("local_identifier", text="image"),
                _el("offset", text=0, unit="byte"),
                _el("axes", text=2),
                _el("axis_index_order", text="Last Index Fastest"),
                _el("description", text="Line 1 is the top of the image, sample 1 its left."),
                _el("Element_Array", *element_array),
                _el(
                    "Axis_Array",
                    _el("axis_name", text="Line"),
                    _el("elements", text=IMAGE_SIZE),
                    _el("sequence_number", text=1),
                ),
                _el(
                    "Axis_Array",
                    _el("axis_name", text="Sample"),
                    _el("elements", text=IMAGE_SIZE),
                    _el("sequence_number", text=2),
                ),
                _el(
                    "Object_Statistics",
                    _el("maximum", text=_g(maximum)),
                    _el("minimum", text=_g(minimum)),
                    _el("mean", text=_g(mean)),
                ),
            ),
        ),
    )


def _g(value: float) -> str:
    return f"{value:.9g}"


def _stats(values: array.array) -> tuple[float, float, float]:
    return max(values), min(values), math.fsum(values) / len(values)


def _collection(collection: str, members: list[str], title: str) -> Files:
    inventory_name = f"collection_{collection}_inventory.csv"
    inventory = _crlf([f"P,{lid}::1.0" for lid in members])
    label = _label(
        "Product_Collection",
        _identification_area(f"{LID_PREFIX}:{collection}", title, "Product_Collection"),
        _el("Collection", _el("collection_type", text="Data")),
        _el(
            "File_Area_Inventory",
            _file(inventory_name, inventory, records=len(members)),
            _el(
                "Inventory",
                _el("offset", text=0, unit="byte"),
                _el("parsing_standard_id", text="PDS DSV 1"),
                _el("records", text=len(members)),
                _el("record_delimiter", text="Carriage-Return Line-Feed"),
                _el("field_delimiter", text="Comma"),
                _delimited_fields(
                    [
                        {"name": "Member_Status", "data_type": "ASCII_String", "max_length": "1"},
                        {
                            "name": "LIDVID_LID",
                            "data_type": "ASCII_LIDVID_LID",
                            "max_length": "255",
                        },
                    ]
                ),
                _el("reference_type", text="inventory_has_member_product"),
            ),
        ),
    )
    return {
        f"{collection}/collection_{collection}.xml": label,
        f"{collection}/{inventory_name}": inventory,
    }


BUNDLE_README = """\
Rosetta demo bundle (synthetic)

This bundle imitates the layout of a PDS4 bundle in ESA's Planetary Science Archive.
Its data are invented: they look like Rosetta data but carry no science.

data_raw/timeseries/   approach time series (Table_Delimited, CSV)
data_raw/images/       two 512x512 raw frames of the nucleus (Array_2D_Image, UnsignedLSB2)
data_calibrated/images/ the first frame in radiance units (Array_2D_Image, IEEE754LSBSingle)

Each product is an XML label next to its data file. Read a product with, for example,
pds4_tools.read("data_raw/images/<name>.xml").
"""


def make_psa_rosetta() -> Files:
    """Build the ``psa-rosetta`` volume: a PDS4 bundle with a raw and a calibrated collection."""
    rng = random.Random(SEED)
    files: Files = {}
    members: dict[str, list[str]] = {"data_raw": [], "data_calibrated": []}

    # Time series: one sample an hour over the first 30 days at the comet.
    start = datetime(2014, 8, 6, tzinfo=UTC)
    hours = 30 * 24
    header, rows, records = make_timeseries(rng, start, hours)
    table = header + rows
    name = "ro_demo_miro_temperature_20140806"
    lid = f"{LID_PREFIX}:data_raw:{name}"
    stop = start + timedelta(hours=hours - 1)
    files[f"{BUNDLE}/data_raw/timeseries/{name}.csv"] = table
    files[f"{BUNDLE}/data_raw/timeseries/{name}.xml"] = _label(
        "Product_Observational",
        _identification_area(
            lid, "Rosetta demo: surface temperature during the approach", "Product_Observational"
        ),
        _observation_area(_iso(start), _iso(stop), "Raw", "MIRO (synthetic demo data)"),
        _el(
            "File_Area_Observational",
            _file(f"{name}.csv", table, records=records + 1),
            _el(
                "Header",
                _el("offset", text=0, unit="byte"),
                _el("object_length", text=len(header), unit="byte"),
                _el("parsing_standard_id", text="PDS DSV 1"),
                _el("description", text="The field names, in field order."),
            ),
            _el(
                "Table_Delimited",
                _el("local_identifier", text="timeseries"),
                _el("offset", text=len(header), unit="byte"),
                _el("parsing_standard_id", text="PDS DSV 1"),
                _el("description", text="One record an hour."),
                _el("records", text=records),
                _el("record_delimiter", text="Carriage-Return Line-Feed"),
                _el("field_delimiter", text="Comma"),
                _delimited_fields(TIMESERIES_FIELDS),
            ),
        ),
    )
    members["data_raw"].append(lid)

    # Two raw frames six hours apart (the nucleus has rolled and the light has moved), then the
    # first one calibrated, so that the raw and calibrated products describe the same scene.
    frames = [
        ("20140806t120000", 0.0, (-0.5, 0.4, 0.75)),
        ("20140806t180000", 35.0, (0.2, 0.6, 0.8)),
    ]
    raw_frames = []
    for stamp, roll, sun in frames:
        pixels = array.array("H", render_nucleus(rng, IMAGE_SIZE, roll, sun))
        raw_frames.append(pixels)
        data = _little_endian(pixels)
        name = f"ro_demo_navcam_{stamp}_raw"
        lid = f"{LID_PREFIX}:data_raw:{name}"
        moment = datetime.strptime(stamp, "%Y%m%dt%H%M%S").replace(tzinfo=UTC)
        files[f"{BUNDLE}/data_raw/images/{name}.img"] = data
        files[f"{BUNDLE}/data_raw/images/{name}.xml"] = _image_label(
            lid,
            f"Rosetta demo: raw navigation camera frame {stamp.upper()}",
            f"{name}.img",
            data,
            _observation_area(
                _iso(moment), _iso(moment + timedelta(seconds=1)), "Raw", "NAVCAM (synthetic)"
            ),
            "UnsignedLSB2",
            None,
            _stats(pixels),
        )
        members["data_raw"].append(lid)

    radiance = array.array("f", ((dn - RAW_BIAS) * RADIANCE_PER_DN for dn in raw_frames[0]))
    stamp = frames[0][0]
    moment = datetime.strptime(stamp, "%Y%m%dt%H%M%S").replace(tzinfo=UTC)
    data = _little_endian(radiance)
    name = f"ro_demo_navcam_{stamp}_cal"
    lid = f"{LID_PREFIX}:data_calibrated:{name}"
    files[f"{BUNDLE}/data_calibrated/images/{name}.img"] = data
    files[f"{BUNDLE}/data_calibrated/images/{name}.xml"] = _image_label(
        lid,
        f"Rosetta demo: calibrated navigation camera frame {stamp.upper()}",
        f"{name}.img",
        data,
        _observation_area(
            _iso(moment), _iso(moment + timedelta(seconds=1)), "Calibrated", "NAVCAM (synthetic)"
        ),
        "IEEE754LSBSingle",
        "W*m**-2*sr**-1*nm**-1",
        _stats(radiance),
    )
    members["data_calibrated"].append(lid)

    for collection, lids in members.items():
        title = f"Rosetta demo: {collection.replace('_', ' ')} collection"
        files.update({f"{BUNDLE}/{k}": v for k, v in _collection(collection, lids, title).items()})

    readme = _crlf(BUNDLE_README.splitlines())
    files[f"{BUNDLE}/readme.txt"] = readme
    files[f"{BUNDLE}/{BUNDLE}.xml"] = _label(
        "Product_Bundle",
        _identification_area(LID_PREFIX, "Rosetta demo bundle (synthetic)", "Product_Bundle"),
        _el(
            "Bundle",
            _el("bundle_type", text="Archive"),
            _el("description", text="Synthetic Rosetta-like products for the Datalabs demo."),
        ),
        _el(
            "File_Area_Text",
            _file("readme.txt", readme),
            _el(
                "Stream_Text",
                _el("offset", text=0, unit="byte"),
                _el("parsing_standard_id", text="7-Bit ASCII Text"),
                _el("record_delimiter", text="Carriage-Return Line-Feed"),
            ),
        ),
        *(
            _el(
                "Bundle_Member_Entry",
                _el("lid_reference", text=f"{LID_PREFIX}:{collection}"),
                _el("member_status", text="Primary"),
                _el("reference_type", text="bundle_has_data_collection"),
            )
            for collection in members
        ),
    )
    files["readme.txt"] = (
        "psa-rosetta: a demo volume in the manner of ESA's Planetary Science Archive.\n"
        f"The PDS4 bundle is in {BUNDLE}/ (start with {BUNDLE}/readme.txt).\n"
        "All products are synthetic.\n"
    ).encode()
    return files


# --------------------------------------------------------------------------------------------
# spice-juice
# --------------------------------------------------------------------------------------------

# TAI - UTC from 1972 on, as published by the IERS; 2017-01-01 is the latest leap second.
LEAP_SECONDS = [
    (10, "1972-JAN-1"), (11, "1972-JUL-1"), (12, "1973-JAN-1"), (13, "1974-JAN-1"),
    (14, "1975-JAN-1"), (15, "1976-JAN-1"), (16, "1977-JAN-1"), (17, "1978-JAN-1"),
    (18, "1979-JAN-1"), (19, "1980-JAN-1"), (20, "1981-JUL-1"), (21, "1982-JUL-1"),
    (22, "1983-JUL-1"), (23, "1985-JUL-1"), (24, "1988-JAN-1"), (25, "1990-JAN-1"),
    (26, "1991-JAN-1"), (27, "1992-JUL-1"), (28, "1993-JUL-1"), (29, "1994-JUL-1"),
    (30, "1996-JAN-1"), (31, "1997-JUL-1"), (32, "1999-JAN-1"), (33, "2006-JAN-1"),
    (34, "2009-JAN-1"), (35, "2012-JUL-1"), (36, "2015-JUL-1"), (37, "2017-JAN-1"),
]  # fmt: skip

LSK_NAME = "lsk/naif0012.tls"
PCK_NAME = "pck/juice_demo_v01.tpc"
FK_NAME = "fk/juice_demo_v01.tf"
SPK_NAME = "spk/juice_demo_ganymede_orbit_v01.bsp"
MK_NAME = "mk/juice_demo.tm"


def leapseconds_kernel() -> str:
    """Text of a leap-seconds kernel holding the same table as NAIF's naif0012.tls."""
    table = "\n".join(
        f"{'DELTET/DELTA_AT        = ( ' if i == 0 else ' ' * 27}{tai_utc},   @{date}"
        for i, (tai_utc, date) in enumerate(LEAP_SECONDS)
    )
    return f"""KPL/LSK

Leap seconds for the Datalabs demo archive
------------------------------------------

   The table below is the one in NAIF's naif0012.tls: TAI - UTC in seconds and the date from
   which it applies. The other constants define how SPICE turns TAI into TDB (ephemeris time).
   This copy was written by make_sample_data.py; when the IERS announces a new leap second,
   use NAIF's newer kernel instead.

\\begindata

DELTET/DELTA_T_A       =   32.184
DELTET/K               =    1.657D-3
DELTET/EB              =    1.671D-2
DELTET/M               = (  6.239996D0   1.99096871D-7 )

{table} )

\\begintext
"""


PCK_TEXT = """KPL/PCK

Planetary constants for the Datalabs JUICE demo
-----------------------------------------------

   Radii (km), GM (km3 s-2) and orientation of Jupiter (599) and Ganymede (503), after the IAU
   WGCCRE report values used in NAIF's generic PCKs. Simplified for the demo: the orientation
   models keep only their constant and linear terms (no nutation-precession series), which is
   good to a fraction of a degree, enough for plots and not for instrument pointing.

\\begindata

BODY599_RADII     = ( 71492.0   71492.0   66854.0 )
BODY599_GM        = ( 126686531.9 )
BODY599_POLE_RA   = ( 268.056595   -0.006499   0.0 )
BODY599_POLE_DEC  = (  64.495303    0.002413   0.0 )
BODY599_PM        = ( 284.95      870.5360000  0.0 )

BODY503_RADII     = ( 2631.2   2631.2   2631.2 )
BODY503_GM        = ( 9887.834 )
BODY503_POLE_RA   = ( 268.20   -0.009   0.0 )
BODY503_POLE_DEC  = (  64.57    0.003   0.0 )
BODY503_PM        = (  44.064  1305.0516   0.0 )

\\begintext
"""


def frames_kernel() -> str:
    """Text of the frames kernel: the demo spacecraft's name and its orbit-plane frame."""
    f = JUICE_DEMO_ORBIT_FRAME
    return f"""KPL/FK

Frames and names for the Datalabs JUICE demo
--------------------------------------------

   JUICE_DEMO ({JUICE_DEMO_CODE}) is an invented spacecraft on a circular
   {ORBIT_ALTITUDE_KM:.0f} km orbit around Ganymede (the SPK, when present, holds it). Its code is
   not JUICE's, so these kernels cannot be mistaken for mission kernels.

   JUICE_DEMO_ORBIT is fixed with respect to J2000: its Z axis is the orbit normal and its
   X axis points to the ascending node (node longitude {ORBIT_NODE_DEG} deg, inclination
   {ORBIT_INCLINATION_DEG} deg, both in J2000). SPICE reads TK frame angles as the rotation
   from this frame back to J2000, hence their minus signs.

\\begindata

NAIF_BODY_NAME          += ( 'JUICE_DEMO' )
NAIF_BODY_CODE          += ( {JUICE_DEMO_CODE} )

FRAME_JUICE_DEMO_ORBIT   = {f}
FRAME_{f}_NAME      = 'JUICE_DEMO_ORBIT'
FRAME_{f}_CLASS     = 4
FRAME_{f}_CLASS_ID  = {f}
FRAME_{f}_CENTER    = 503
TKFRAME_{f}_RELATIVE = 'J2000'
TKFRAME_{f}_SPEC     = 'ANGLES'
TKFRAME_{f}_UNITS    = 'DEGREES'
TKFRAME_{f}_AXES     = ( 3, 1, 3 )
TKFRAME_{f}_ANGLES   = ( {-ORBIT_NODE_DEG}, {-ORBIT_INCLINATION_DEG}, 0.0 )

\\begintext
"""


def meta_kernel(kernels: list[str]) -> str:
    """Text of ``juice_demo.tm``, loading ``kernels`` (paths relative to ``kernels/``)."""
    listing = "\n".join(f"                     '$KERNELS/{name}'" for name in kernels)
    return f"""KPL/MK

Meta-kernel for the Datalabs JUICE demo
---------------------------------------

   SPICE resolves relative paths against the current directory, not against this file, so
   change to this file's folder (kernels/mk) before loading it:

      os.chdir(".../kernels/mk"); spiceypy.furnsh("juice_demo.tm")

\\begindata

PATH_VALUES     = ( '..' )
PATH_SYMBOLS    = ( 'KERNELS' )
KERNELS_TO_LOAD = (
{listing}
                  )

\\begintext
"""


def write_juice_orbit_spk(path: Path, lsk: Path) -> None:
    """Write a type 5 (two-body) SPK for JUICE_DEMO on a circular orbit around Ganymede.

    Needs ``spiceypy``: :func:`make_spice_juice` calls it only when that imports. The states are
    in J2000, centred on Ganymede (503), one every 30 minutes over ``ORBIT_HOURS`` hours from
    ``ORBIT_START_UTC``; type 5 propagates between them with Ganymede's GM, which is exact for a
    two-body orbit. The leap-seconds kernel ``lsk`` is loaded for the conversion and unloaded
    afterwards, so the caller's kernel pool is left as it was.
    """
    import spiceypy

    spiceypy.furnsh(str(lsk))
    try:
        start = spiceypy.str2et(ORBIT_START_UTC)
    finally:
        spiceypy.unload(str(lsk))
    radius = GANYMEDE_RADIUS_KM + ORBIT_ALTITUDE_KM
    elements = [
        radius,  # periapsis radius
        0.0,  # eccentricity
        math.radians(ORBIT_INCLINATION_DEG),
        math.radians(ORBIT_NODE_DEG),
        0.0,  # argument of periapsis
        0.0,  # mean anomaly at epoch
        start,
        GANYMEDE_GM,
    ]
    epochs = [start + 1800.0 * k for k in range(ORBIT_HOURS * 2 + 1)]
    states = [spiceypy.conics(elements, et) for et in epochs]
    path.unlink(missing_ok=True)  # spkopn refuses to overwrite.
    handle = spiceypy.spkopn(str(path), "JUICE_DEMO ORBIT", 0)
    try:
        spiceypy.spkw05(
            handle,
            JUICE_DEMO_CODE,
            503,
            "J2000",
            epochs[0],
            epochs[-1],
            "JUICE_DEMO GANYMEDE 500 KM",
            GANYMEDE_GM,
            len(epochs),
            states,
            epochs,
        )
    finally:
        spiceypy.spkcls(handle)


def _spiceypy_available() -> bool:
    try:
        import spiceypy  # noqa: F401
    except ImportError:
        return False
    return True


def make_spice_juice(with_spk: bool | None = None) -> Files:
    """Build the ``spice-juice`` volume: text kernels, a meta-kernel and, optionally, an SPK.

    ``with_spk`` defaults to whether ``spiceypy`` can be imported; without it the SPK is left out
    and the meta-kernel lists the text kernels only.
    """
    if with_spk is None:
        with_spk = _spiceypy_available()
    files: Files = {
        f"kernels/{LSK_NAME}": leapseconds_kernel().encode("ascii"),
        f"kernels/{PCK_NAME}": PCK_TEXT.encode("ascii"),
        f"kernels/{FK_NAME}": frames_kernel().encode("ascii"),
    }
    loaded = [LSK_NAME, PCK_NAME, FK_NAME]
    if with_spk:
        with tempfile.TemporaryDirectory() as tmp:
            lsk = Path(tmp) / "leapseconds.tls"
            lsk.write_bytes(files[f"kernels/{LSK_NAME}"])
            spk = Path(tmp) / "orbit.bsp"
            write_juice_orbit_spk(spk, lsk)
            files[f"kernels/{SPK_NAME}"] = spk.read_bytes()
        loaded.append(SPK_NAME)
    files[f"kernels/{MK_NAME}"] = meta_kernel(loaded).encode("ascii")
    orbit = (
        f"kernels/{SPK_NAME}: JUICE_DEMO around Ganymede, {ORBIT_START_UTC} UTC + {ORBIT_HOURS} h"
        if with_spk
        else "(no SPK: spiceypy was not installed when this volume was generated)"
    )
    files["readme.txt"] = (
        "spice-juice: SPICE kernels for a JUICE-like demo (synthetic, not mission kernels).\n"
        f"kernels/{LSK_NAME}: leap seconds\n"
        f"kernels/{PCK_NAME}: Jupiter and Ganymede constants\n"
        f"kernels/{FK_NAME}: JUICE_DEMO name and orbit frame\n"
        f"{orbit}\n"
        f"kernels/{MK_NAME}: loads them all; cd to kernels/mk before furnsh.\n"
    ).encode()
    return files


# --------------------------------------------------------------------------------------------
# esasky-catalogue
# --------------------------------------------------------------------------------------------

CATALOGUE_ROWS = 500
# Centred on the Pleiades, so that the demo can overlay the sources on a real sky.
FIELD_RA, FIELD_DEC, FIELD_RADIUS = 56.75, 24.1167, 1.0


def _source_name(ra: float, dec: float) -> str:
    # IAU-style designation from the position, in the "Jhhmmss.ss+ddmmss.s" form.
    seconds = round(ra / 15 * 3600 * 100)
    h, rest = divmod(seconds, 360000)
    m, s = divmod(rest, 6000)
    sign = "+" if dec >= 0 else "-"
    arcsec = round(abs(dec) * 3600 * 10)
    d, rest = divmod(arcsec, 36000)
    dm, ds = divmod(rest, 600)
    return f"DLDEMO J{h:02d}{m:02d}{s / 100:05.2f}{sign}{d:02d}{dm:02d}{ds / 10:04.1f}"


def make_sources(rng: random.Random) -> list[tuple[str, float, float, float]]:
    """Return ``CATALOGUE_ROWS`` sources (name, ra, dec, mag), uniform over a 1-degree cap.

    Magnitudes follow a rising count towards the faint end, like a real field. Coordinates are
    rounded before naming, so the name matches the published position.
    """
    sources: dict[str, tuple[str, float, float, float]] = {}
    cos_max = math.cos(math.radians(FIELD_RADIUS))
    while len(sources) < CATALOGUE_ROWS:
        # Uniform on the sphere cap around the pole, then rotated to the field centre.
        z = 1 - rng.random() * (1 - cos_max)
        phi = 2 * math.pi * rng.random()
        r = math.sqrt(1 - z * z)
        x, y = r * math.cos(phi), r * math.sin(phi)
        dec0, ra0 = math.radians(FIELD_DEC), math.radians(FIELD_RA)
        # Tilt the pole down to the field's declination, then turn to its right ascension.
        xt = x * math.sin(dec0) + z * math.cos(dec0)
        zt = -x * math.cos(dec0) + z * math.sin(dec0)
        ra = round((math.degrees(math.atan2(y, xt) + ra0)) % 360, 6)
        dec = round(math.degrees(math.asin(max(-1.0, min(1.0, zt)))), 6)
        mag = round(16 + 2.5 * math.log10(1 + 99 * rng.random()), 2)
        name = _source_name(ra, dec)
        sources.setdefault(name, (name, ra, dec, mag))  # a clash would just draw again
    return sorted(sources.values(), key=lambda source: source[1])


def make_esasky_catalogue() -> Files:
    """Build the ``esasky-catalogue`` volume: the same 500 sources as CSV and as VOTable 1.4."""
    sources = make_sources(random.Random(SEED + 1))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["name", "ra", "dec", "mag"])
    writer.writerows((n, f"{ra:.6f}", f"{dec:.6f}", f"{mag:.2f}") for n, ra, dec, mag in sources)
    rows = "\n".join(
        f"        <TR><TD>{n}</TD><TD>{ra:.6f}</TD><TD>{dec:.6f}</TD><TD>{mag:.2f}</TD></TR>"
        for n, ra, dec, mag in sources
    )
    votable = f"""<?xml version="1.0" encoding="UTF-8"?>
<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.ivoa.net/xml/VOTable/v1.3 http://www.ivoa.net/xml/VOTable/VOTable-1.4.xsd">
  <DESCRIPTION>Datalabs demo: synthetic sources near the Pleiades (not real objects).</DESCRIPTION>
  <RESOURCE name="esasky_demo" type="results">
    <COOSYS ID="icrs" system="ICRS" epoch="J2000"/>
    <TABLE name="sources" nrows="{len(sources)}">
      <DESCRIPTION>Synthetic point sources: position and V magnitude.</DESCRIPTION>
      <FIELD name="name" ID="name" datatype="char" arraysize="*" ucd="meta.id;meta.main"/>
      <FIELD name="ra" ID="ra" datatype="double" unit="deg" ref="icrs"
        ucd="pos.eq.ra;meta.main"/>
      <FIELD name="dec" ID="dec" datatype="double" unit="deg" ref="icrs"
        ucd="pos.eq.dec;meta.main"/>
      <FIELD name="mag" ID="mag" datatype="float" unit="mag" ucd="phot.mag;em.opt.V"/>
      <DATA>
        <TABLEDATA>
{rows}
        </TABLEDATA>
      </DATA>
    </TABLE>
  </RESOURCE>
</VOTABLE>
"""
    return {
        "esasky_demo_sources.csv": text.getvalue().encode("ascii"),
        "esasky_demo_sources.vot": votable.encode("utf-8"),
        "readme.txt": (
            f"esasky-catalogue: {len(sources)} synthetic sources in a 1-degree field around the\n"
            "Pleiades, in CSV and in VOTable 1.4 (same rows, sorted by ra).\n"
        ).encode(),
    }


# --------------------------------------------------------------------------------------------
# rosetta-restricted
# --------------------------------------------------------------------------------------------


def make_rosetta_restricted() -> Files:
    """Build the ``rosetta-restricted`` volume: embargoed calibration data of the instrument team.

    ``navcam_demo_calibration.csv`` holds the coefficients that turned the raw frame of
    ``psa-rosetta`` into its calibrated product, so a team member can redo the calibration.
    """
    calibration = _crlf(
        [
            "parameter,value,unit,description",
            f"bias,{RAW_BIAS},DN,level of an unlit pixel; subtracted first",
            f"radiance_per_dn,{RADIANCE_PER_DN:g},W*m**-2*sr**-1*nm**-1,gain after the bias",
            "saturation,4095,DN,largest raw value (12-bit converter)",
        ]
    )
    rng = random.Random(SEED + 2)
    # Peaks at masses a comet's coma shows (H2O, CO, CO2, ...); the rest is background.
    peaks = {18: 9.0e5, 17: 2.1e5, 28: 1.4e5, 44: 1.1e5, 16: 6.0e4, 32: 3.5e4, 34: 8.0e3}
    lines = ["mass_per_charge,counts"]
    for mz in range(12, 101):
        counts = peaks.get(mz, 40.0) * (1 + rng.gauss(0, 0.03))
        lines.append(f"{mz},{max(0, round(counts))}")
    spectrum = _crlf(lines)
    readme = (
        "rosetta-restricted: embargoed calibration data of the instrument team (synthetic).\n"
        f"Proprietary period: readable by the rosetta-team group only, until {EMBARGO_UNTIL}.\n"
        "The Datalabs volume catalogue enforces this through the volume's access rules.\n"
        "navcam_demo_calibration.csv: coefficients behind psa-rosetta's calibrated frame\n"
        "rosina_demo_mass_spectrum_20160930.csv: a coma mass spectrum from the last day\n"
    ).encode()
    return {
        "EMBARGO": f"embargo-until: {EMBARGO_UNTIL}\n".encode(),
        "readme.txt": readme,
        "navcam_demo_calibration.csv": calibration,
        "rosina_demo_mass_spectrum_20160930.csv": spectrum,
    }


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------

VOLUMES: dict[str, Callable[[], Files]] = {
    "psa-rosetta": make_psa_rosetta,
    "spice-juice": make_spice_juice,
    "esasky-catalogue": make_esasky_catalogue,
    "rosetta-restricted": make_rosetta_restricted,
}


def make_sample_data(outdir: Path, report: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Write every demo volume under ``outdir``; return volume folder name -> its path.

    ``report``, when given, receives one line per volume (file count and size).
    """
    outdir = Path(outdir)
    written: dict[str, Path] = {}
    for name, build in VOLUMES.items():
        path = outdir / name
        count, size = write_volume(path, build())
        written[name] = path
        if report:
            report(f"{name}: {count} files, {size} bytes ({size / 2**20:.2f} MiB) in {path}")
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line: ``make_sample_data.py OUTDIR``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path, help="folder to write the volume folders into")
    args = parser.parse_args(argv)
    make_sample_data(args.outdir, report=print)
    return 0


if __name__ == "__main__":
    sys.exit(main())
