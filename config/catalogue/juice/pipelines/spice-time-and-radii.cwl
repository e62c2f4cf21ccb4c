cwlVersion: v1.2
class: CommandLineTool
label: SPICE kernels - leap seconds, TDB at an epoch, body radii
doc: |
  Reads a SPICE meta-kernel (.tm) and the text kernels it loads (found relative to the
  meta-kernel, read in place on the spice-juice volume): counts the leap seconds of the LSK,
  converts a UTC epoch to TDB seconds past J2000 (ET) with the LSK's constants, and lists the
  radii and mean radius of every body in the PCK. Pure Python, no SPICE library needed.
$namespaces:
  s: https://schema.org/
  edam: http://edamontology.org/
s:keywords: [SPICE, JUICE, kernels, leap seconds, time conversion, planetary constants]
s:author:
  - s:name: Datalabs demo
requirements:
  InitialWorkDirRequirement:
    listing:
      - entryname: spice_summary.py
        entry: |
          import json, math, os, re, sys
          from datetime import datetime, timezone

          meta_path, epoch = sys.argv[1], sys.argv[2]
          meta_dir = os.path.dirname(os.path.realpath(meta_path))

          def data_blocks(path):
              # Only text between \begindata and \begintext is kernel data.
              text, out, on = open(path, encoding="utf-8", errors="replace").read(), [], False
              for line in text.splitlines():
                  s = line.strip()
                  if s.startswith("\\begindata"):
                      on = True
                  elif s.startswith("\\begintext"):
                      on = False
                  elif on:
                      out.append(line)
              return "\n".join(out)

          def assignments(data):
              values = {}
              for m in re.finditer(r"([A-Z0-9_/]+)\s*\+?=\s*(\([^)]*\)|'[^']*'|\S+)", data, re.S):
                  name, raw = m.group(1), m.group(2)
                  raw = raw[1:-1] if raw.startswith("(") else raw
                  items = re.findall(r"'[^']*'|@[^\s,]+|[^\s,]+", raw)
                  values.setdefault(name, []).extend(
                      i.strip("'") if i.startswith("'") else i for i in items)
              return values

          meta = assignments(data_blocks(meta_path))
          symbols = dict(zip(meta.get("PATH_SYMBOLS", []), meta.get("PATH_VALUES", [])))
          kernels = []
          for k in meta.get("KERNELS_TO_LOAD", []):
              for sym, value in symbols.items():
                  k = k.replace("$" + sym, value)
              kernels.append(k if os.path.isabs(k) else os.path.normpath(os.path.join(meta_dir, k)))

          pool, loaded, missing = {}, [], []
          for k in kernels:
              if not os.path.exists(k):
                  missing.append(k)
                  continue
              if k.lower().endswith((".tls", ".tpc", ".tf", ".tsc", ".ti", ".tm")):
                  for name, values in assignments(data_blocks(k)).items():
                      pool[name] = values
              loaded.append(os.path.basename(k))

          def num(v):
              return float(v.replace("D", "E").replace("d", "e"))

          result = {"meta_kernel": os.path.basename(meta_path), "loaded": loaded,
                    "missing": missing}
          if "DELTET/DELTA_AT" in pool:
              pairs = pool["DELTET/DELTA_AT"]
              table = [(num(pairs[i]), pairs[i + 1].lstrip("@")) for i in range(0, len(pairs), 2)]
              result["leap_second_entries"] = len(table)
              when = datetime.fromisoformat(epoch.replace("Z", "+00:00"))
              if when.tzinfo is None:
                  when = when.replace(tzinfo=timezone.utc)
              j2000 = datetime(2000, 1, 1, 12, tzinfo=timezone.utc)
              utc_seconds = (when - j2000).total_seconds()
              delta_at = 0.0
              for value, date in table:
                  start = datetime.strptime(date, "%Y-%b-%d").replace(tzinfo=timezone.utc)
                  if when >= start:
                      delta_at = value
              dt_a = num(pool["DELTET/DELTA_T_A"][0])
              k = num(pool["DELTET/K"][0])
              eb = num(pool["DELTET/EB"][0])
              m0, m1 = (num(v) for v in pool["DELTET/M"])
              tai_seconds = utc_seconds + delta_at
              tt = tai_seconds + dt_a
              # TDB - TT periodic term, as in the LSK's own comments (one iteration is enough).
              m = m0 + m1 * tt
              et = tt + k * math.sin(m + eb * math.sin(m))
              result["epoch_utc"] = when.isoformat()
              result["tai_minus_utc_s"] = delta_at
              result["et_tdb_seconds_past_j2000"] = round(et, 6)
          radii = {}
          for name, values in pool.items():
              m = re.fullmatch(r"BODY(-?\d+)_RADII", name)
              if m and len(values) == 3:
                  r = [num(v) for v in values]
                  radii[m.group(1)] = {"radii_km": r, "mean_radius_km": round(sum(r) / 3, 6)}
          result["bodies"] = radii
          if not loaded:
              sys.exit("no kernel of the meta-kernel could be found")
          with open("spice_summary.json", "w", encoding="utf-8") as f:
              json.dump(result, f, indent=2)
baseCommand: [python3, spice_summary.py]
inputs:
  meta_kernel:
    type: File
    label: Meta-kernel (.tm)
    doc: A SPICE meta-kernel, e.g. data/spice-juice/.../juice_demo.tm
    inputBinding: {position: 1}
  epoch:
    type: string
    label: UTC epoch
    default: "2031-07-01T00:00:00"
    doc: ISO 8601 UTC time to convert to ephemeris time (TDB seconds past J2000).
    inputBinding: {position: 2}
outputs:
  summary:
    type: File
    format: edam:format_3464
    outputBinding: {glob: spice_summary.json}
