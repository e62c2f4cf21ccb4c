cwlVersion: v1.2
class: CommandLineTool
label: Plot two columns of a CSV table
doc: |
  Draws column y against column x as an SVG line plot (written by hand: no plotting library
  needed) and writes min, max and mean of every numeric column to summary.json.
requirements:
  InitialWorkDirRequirement:
    listing:
      - entryname: plot.py
        entry: |
          import csv, json, sys
          from xml.sax.saxutils import escape

          path, x_name, y_name = sys.argv[1:4]
          with open(path, newline="", encoding="utf-8") as f:
              rows = list(csv.DictReader(f))
          if not rows:
              sys.exit("the table is empty")
          for name in (x_name, y_name):
              if name not in rows[0]:
                  sys.exit(f"no column {name!r}; columns: {', '.join(rows[0])}")

          def number(value):
              try:
                  return float(value)
              except ValueError:
                  return None

          summary = {}
          for name in rows[0]:
              values = [v for v in (number(r[name]) for r in rows) if v is not None]
              if values:
                  summary[name] = {"min": min(values), "max": max(values),
                                   "mean": sum(values) / len(values), "count": len(values)}
          with open("summary.json", "w", encoding="utf-8") as f:
              json.dump(summary, f, indent=2)

          points = [(number(r[x_name]), number(r[y_name])) for r in rows]
          points = [(x, y) for x, y in points if x is not None and y is not None]
          if not points:
              sys.exit(f"columns {x_name!r} and {y_name!r} hold no numbers")
          width, height, pad = 640, 400, 50
          xs, ys = [p[0] for p in points], [p[1] for p in points]
          x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
          y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1

          def sx(x):
              return pad + (x - x0) / (x1 - x0) * (width - 2 * pad)

          def sy(y):
              return height - pad - (y - y0) / (y1 - y0) * (height - 2 * pad)

          line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
          svg = f"""<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">
          <rect width="100%" height="100%" fill="white"/>
          <polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{line}"/>
          <line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="black"/>
          <line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="black"/>
          <text x="{width / 2}" y="{height - 10}" text-anchor="middle">{escape(x_name)} ({x0:g} to {x1:g})</text>
          <text x="15" y="{height / 2}" transform="rotate(-90 15 {height / 2})" text-anchor="middle">{escape(y_name)} ({y0:g} to {y1:g})</text>
          </svg>
          """
          with open("plot.svg", "w", encoding="utf-8") as f:
              f.write(svg)
          print(f"plotted {len(points)} points of {y_name} against {x_name}", file=sys.stderr)
baseCommand: [python3, plot.py]
inputs:
  table:
    type: File
    format: edam:format_3752
    inputBinding: {position: 1}
  x_column:
    type: string
    inputBinding: {position: 2}
  y_column:
    type: string
    inputBinding: {position: 3}
outputs:
  plot:
    type: File
    format: edam:format_3604
    outputBinding: {glob: plot.svg}
  summary:
    type: File
    format: edam:format_3464
    outputBinding: {glob: summary.json}
$namespaces:
  edam: http://edamontology.org/
