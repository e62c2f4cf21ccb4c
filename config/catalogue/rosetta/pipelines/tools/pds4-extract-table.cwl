cwlVersion: v1.2
class: CommandLineTool
label: Extract the delimited table of a PDS4 product
doc: |
  Reads a PDS4 label (XML), finds its Table_Delimited and the data file it describes (next to
  the label, read in place), and writes the table as CSV with the field names from the label.
requirements:
  InitialWorkDirRequirement:
    listing:
      - entryname: extract.py
        entry: |
          import csv, json, os, sys
          import xml.etree.ElementTree as ET

          label_path = sys.argv[1]
          tree = ET.parse(label_path)

          def local(tag):
              return tag.rsplit("}", 1)[-1]

          def find(node, name):
              return [e for e in node.iter() if local(e.tag) == name]

          def text(node, name, default=None):
              found = find(node, name)
              return found[0].text.strip() if found and found[0].text else default

          areas = find(tree.getroot(), "File_Area_Observational")
          if not areas:
              sys.exit("the label has no File_Area_Observational")
          for area in areas:
              tables = find(area, "Table_Delimited")
              if tables:
                  break
          else:
              sys.exit("the label describes no Table_Delimited")
          table = tables[0]
          file_name = text(area, "file_name")
          names = [text(f, "name") for f in find(table, "Field_Delimited")]
          delimiters = {"comma": ",", "horizontal tab": "\t", "semicolon": ";", "vertical bar": "|"}
          delimiter = delimiters.get(text(table, "field_delimiter", "Comma").lower(), ",")
          offset = int(text(table, "offset", "0"))
          # The data file sits next to the label on the archive volume: follow the staged link.
          data_path = os.path.join(os.path.dirname(os.path.realpath(label_path)), file_name)
          with open(data_path, newline="", encoding="utf-8") as f:
              f.seek(offset)
              rows = [r for r in csv.reader(f, delimiter=delimiter) if r]
          if rows and [c.strip().lower() for c in rows[0]] == [n.lower() for n in names]:
              rows = rows[1:]
          with open("table.csv", "w", newline="", encoding="utf-8") as out:
              writer = csv.writer(out)
              writer.writerow(names)
              writer.writerows([c.strip() for c in r] for r in rows)
          with open("table.json", "w", encoding="utf-8") as out:
              json.dump({"label": os.path.basename(label_path), "data_file": file_name,
                         "fields": names, "records": len(rows)}, out, indent=2)
baseCommand: [python3, extract.py]
inputs:
  product:
    type: File
    doc: The PDS4 label (.xml) of a product with a delimited table.
    inputBinding: {position: 1}
outputs:
  table:
    type: File
    format: edam:format_3752
    outputBinding: {glob: table.csv}
  description:
    type: File
    outputBinding: {glob: table.json}
$namespaces:
  edam: http://edamontology.org/
