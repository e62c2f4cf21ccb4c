cwlVersion: v1.2
class: CommandLineTool
label: Bright sources of a source catalogue
doc: |
  Keeps the sources of a CSV catalogue (ra, dec, magnitude, name) brighter than a magnitude
  limit, sorted brightest first, and draws them on an SVG sky chart (RA/Dec, size by magnitude).
$namespaces:
  s: https://schema.org/
  edam: http://edamontology.org/
s:keywords: [ESASky, catalogue, sources, magnitude, sky chart]
s:author:
  - s:name: Datalabs demo
requirements:
  InitialWorkDirRequirement:
    listing:
      - entryname: bright.py
        entry: |
          import csv, sys
          from xml.sax.saxutils import escape

          path, limit = sys.argv[1], float(sys.argv[2])
          with open(path, newline="", encoding="utf-8") as f:
              rows = list(csv.DictReader(f))
          columns = {c.lower(): c for c in (rows[0] if rows else {})}
          missing = [c for c in ("ra", "dec", "magnitude") if c not in columns]
          if missing:
              sys.exit(f"missing columns: {', '.join(missing)}")
          ra, dec, mag = columns["ra"], columns["dec"], columns["magnitude"]
          bright = sorted((r for r in rows if float(r[mag]) <= limit), key=lambda r: float(r[mag]))
          with open("bright.csv", "w", newline="", encoding="utf-8") as f:
              writer = csv.DictWriter(f, fieldnames=list(rows[0]))
              writer.writeheader()
              writer.writerows(bright)
          w, h = 720, 360
          dots = []
          for r in bright:
              x = (360 - float(r[ra])) / 360 * w
              y = (90 - float(r[dec])) / 180 * h
              size = max(1.0, 6 - float(r[mag]) / 2)
              title = escape(r.get(columns.get("name", ""), "") or "")
              dots.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{size:.1f}" fill="white">'
                          f"<title>{title}</title></circle>")
          with open("sky.svg", "w", encoding="utf-8") as f:
              f.write(f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}">'
                      f'<rect width="100%" height="100%" fill="#001"/>{"".join(dots)}</svg>\n')
          print(f"{len(bright)} of {len(rows)} sources brighter than magnitude {limit:g}")
baseCommand: [python3, bright.py]
stdout: report.txt
inputs:
  catalogue:
    type: File
    format: edam:format_3752
    label: Source catalogue (CSV)
    doc: A CSV with columns ra, dec, magnitude (and name), e.g. from data/esasky-catalogue.
    inputBinding: {position: 1}
  magnitude_limit:
    type: float
    default: 10.0
    label: Faintest magnitude kept
    inputBinding: {position: 2}
outputs:
  sources:
    type: File
    format: edam:format_3752
    outputBinding: {glob: bright.csv}
  chart:
    type: File
    format: edam:format_3604
    outputBinding: {glob: sky.svg}
  report:
    type: stdout
