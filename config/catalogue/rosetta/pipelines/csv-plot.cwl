cwlVersion: v1.2
class: Workflow
label: Plot two columns of a CSV table
doc: Plots column y against column x of any CSV table and summarises its numeric columns.
$namespaces:
  s: https://schema.org/
  edam: http://edamontology.org/
s:keywords: [CSV, table, plot]
inputs:
  table:
    type: File
    format: edam:format_3752
    label: CSV table
  x_column: {type: string, label: X column}
  y_column: {type: string, label: Y column}
outputs:
  plot: {type: File, outputSource: draw/plot}
  summary: {type: File, outputSource: draw/summary}
steps:
  draw:
    run: tools/csv-plot.cwl
    in: {table: table, x_column: x_column, y_column: y_column}
    out: [plot, summary]
