"""Small archive-like inputs written by the tests themselves (no dependency on the demo data
generator's file names): a PDS4 product with a delimited table, SPICE text kernels with a
meta-kernel, and a CSV source catalogue."""

from __future__ import annotations

from pathlib import Path

PDS4_LABEL = """<?xml version="1.0" encoding="UTF-8"?>
<Product_Observational xmlns="http://pds.nasa.gov/pds4/pds/v1">
  <Identification_Area>
    <logical_identifier>urn:esa:psa:demo:data:{name}</logical_identifier>
  </Identification_Area>
  <File_Area_Observational>
    <File><file_name>{name}.csv</file_name></File>
    <Table_Delimited>
      <offset unit="byte">0</offset>
      <records>{records}</records>
      <record_delimiter>Carriage-Return Line-Feed</record_delimiter>
      <field_delimiter>Comma</field_delimiter>
      <Record_Delimited>
        <fields>3</fields>
        <Field_Delimited><name>time</name><data_type>ASCII_Real</data_type></Field_Delimited>
        <Field_Delimited><name>distance</name><data_type>ASCII_Real</data_type></Field_Delimited>
        <Field_Delimited><name>temperature</name><data_type>ASCII_Real</data_type></Field_Delimited>
      </Record_Delimited>
    </Table_Delimited>
  </File_Area_Observational>
</Product_Observational>
"""

LSK = """KPL/LSK
Leap seconds kernel (shortened for tests).
\\begindata
DELTET/DELTA_T_A       =   32.184
DELTET/K               =    1.657D-3
DELTET/EB              =    1.671D-2
DELTET/M               = (  6.239996D0   1.99096871D-7 )
DELTET/DELTA_AT        = ( 10,   @1972-JAN-1
                           31,   @1997-JUL-1
                           32,   @1999-JAN-1
                           33,   @2006-JAN-1
                           37,   @2017-JAN-1 )
\\begintext
"""

PCK = """KPL/PCK
\\begindata
BODY399_RADII     = ( 6378.1366   6378.1366   6356.7519 )
BODY599_RADII     = ( 71492   71492   66854 )
\\begintext
"""

META = """KPL/MK
\\begindata
PATH_VALUES  = ( '.' )
PATH_SYMBOLS = ( 'KERNELS' )
KERNELS_TO_LOAD = ( '$KERNELS/lsk/test.tls',
                    '$KERNELS/pck/test.tpc' )
\\begintext
"""


def pds4_product(folder: Path, name: str = "temperature_series", records: int = 5) -> Path:
    """A PDS4 label and its CSV (with a header line); returns the label."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["time,distance,temperature"] + [
        f"{i * 60.0},{1000.0 - i * 10},{150.0 + i * 2.5}" for i in range(records)
    ]
    (folder / f"{name}.csv").write_text("\r\n".join(rows) + "\r\n")
    label = folder / f"{name}.xml"
    label.write_text(PDS4_LABEL.format(name=name, records=records))
    return label


def spice_kernels(folder: Path) -> Path:
    """LSK, PCK and a meta-kernel loading both; returns the meta-kernel."""
    (folder / "lsk").mkdir(parents=True, exist_ok=True)
    (folder / "pck").mkdir(parents=True, exist_ok=True)
    (folder / "lsk" / "test.tls").write_text(LSK)
    (folder / "pck" / "test.tpc").write_text(PCK)
    meta = folder / "test.tm"
    meta.write_text(META)
    return meta


def source_catalogue(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sources.csv"
    path.write_text(
        "ra,dec,magnitude,name\n"
        "10.68,41.27,3.4,M31\n"
        "83.82,-5.39,4.0,M42\n"
        "201.37,-43.02,6.8,Cen A\n"
        "148.97,69.68,12.1,faint one\n"
    )
    return path


# Small command-line tools the Pipeline Editor tests build workflows from.
COUNT = """\
cwlVersion: v1.2
class: CommandLineTool
label: Count lines
baseCommand: [wc, -l]
inputs:
  file: {type: File, inputBinding: {position: 1}}
stdout: count.txt
outputs:
  counted: {type: stdout}
"""

UPPER = """\
cwlVersion: v1.2
class: CommandLineTool
label: Upper case
baseCommand: [tr, a-z, A-Z]
stdin: $(inputs.text.path)
inputs:
  text: File
stdout: upper.txt
outputs:
  upper: {type: stdout}
"""

HEAD = """\
cwlVersion: v1.2
class: CommandLineTool
label: First lines
baseCommand: head
inputs:
  lines: {type: int, inputBinding: {prefix: -n, position: 1}}
  file: {type: File, inputBinding: {position: 2}}
stdout: head.txt
outputs:
  first: {type: stdout}
"""


#: An EO application package in the style of the OGC best practice (OGC 20-089): a packed
#: ``$graph`` whose workflow is named after the application (``water-bodies``, not ``main``),
#: with its CommandLineTools, a Directory input (a STAC catalog folder), ResourceRequirements and
#: schema.org metadata. ``APP_PACKAGE_CATALOG`` is a small STAC catalog to run it on.
APP_PACKAGE = Path(__file__).parent / "data" / "app-package" / "water-bodies.cwl"
APP_PACKAGE_CATALOG = APP_PACKAGE.parent / "catalog"


def two_workflow_package() -> str:
    """:data:`APP_PACKAGE` with a second Workflow (``water-bodies-twice``) in its ``$graph``,
    running the first one as a step: a package where the workflow to open must be chosen."""
    second = """\
  - class: Workflow
    id: water-bodies-twice
    requirements:
      SubworkflowFeatureRequirement: {}
    inputs:
      stac_catalog: Directory
    outputs:
      first:
        type: Directory
        outputSource: once/water_bodies
    steps:
      once:
        run: "#water-bodies"
        in:
          stac_catalog: stac_catalog
        out: [water_bodies]

"""
    text = APP_PACKAGE.read_text()
    first_tool = text.index("  - class: CommandLineTool")
    return text[:first_tool] + second + text[first_tool:]
