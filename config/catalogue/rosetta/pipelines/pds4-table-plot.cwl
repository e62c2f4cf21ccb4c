cwlVersion: v1.2
class: Workflow
label: Plot a table from a PDS4 product
doc: |
  Extracts the delimited table of a PDS4 product (PSA archive) and plots one column against
  another, with a statistical summary of every numeric column. Pick the product's .xml label
  from the psa-rosetta volume; its data file is read in place.
$namespaces:
  s: https://schema.org/
  edam: http://edamontology.org/
s:keywords: [PDS4, PSA, Rosetta, table, plot, time series]
s:author:
  - s:name: Datalabs demo
inputs:
  product:
    type: File
    label: PDS4 label
    doc: The .xml label of a product with a Table_Delimited (e.g. under data/psa-rosetta).
    format: edam:format_2332
  x_column:
    type: string
    default: COMET_DISTANCE
    label: X column
  y_column:
    type: string
    default: SURFACE_TEMPERATURE
    label: Y column
outputs:
  table:
    type: File
    outputSource: extract/table
  plot:
    type: File
    outputSource: draw/plot
  summary:
    type: File
    outputSource: draw/summary
steps:
  extract:
    run: tools/pds4-extract-table.cwl
    in: {product: product}
    out: [table, description]
  draw:
    run: tools/csv-plot.cwl
    in:
      table: extract/table
      x_column: x_column
      y_column: y_column
    out: [plot, summary]
