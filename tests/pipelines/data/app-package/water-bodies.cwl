# An Earth Observation application package in the style of the OGC Best Practice for EO
# Application Packages (OGC 20-089): one packed CWL document whose $graph holds the workflow,
# named after the application, and the command-line tools it runs.
cwlVersion: v1.2
$namespaces:
  s: https://schema.org/
s:softwareVersion: 1.0.0
s:author:
  - class: s:Person
    s:name: Jane Doe
    s:email: jane.doe@example.org
    s:affiliation: Example EO Lab
s:codeRepository: https://example.org/apps/water-bodies
$graph:
  - class: Workflow
    id: water-bodies
    label: Water bodies detection
    doc: Detects water bodies in the items of a STAC catalog with an NDWI threshold.
    requirements:
      ResourceRequirement:
        coresMax: 1
        ramMax: 512
    inputs:
      stac_catalog:
        type: Directory
        label: STAC catalog
        doc: A folder with a STAC catalog.json and the items it links to.
      threshold:
        type: float
        default: 0.2
        label: NDWI threshold
    outputs:
      - id: water_bodies
        type: Directory
        outputSource:
          - node_detect/results
    steps:
      node_items:
        run: "#stac-items"
        in:
          catalog: stac_catalog
        out:
          - items
      node_detect:
        run: "#detect-water"
        in:
          items: node_items/items
          threshold: threshold
        out:
          - results

  - class: CommandLineTool
    id: stac-items
    label: List the items of a STAC catalog
    requirements:
      ResourceRequirement:
        coresMax: 1
        ramMax: 256
    hints:
      DockerRequirement:
        dockerPull: docker.io/library/python:3.11-slim
    baseCommand: [python3, -c]
    arguments:
      - |
        import json, sys, pathlib
        root = pathlib.Path(sys.argv[1])
        catalog = json.loads((root / "catalog.json").read_text())
        for link in catalog.get("links", []):
            if link.get("rel") == "item":
                print(json.loads((root / link["href"]).read_text())["id"])
    inputs:
      catalog:
        type: Directory
        inputBinding:
          position: 1
    stdout: items.txt
    outputs:
      items:
        type: stdout

  - class: CommandLineTool
    id: detect-water
    label: Detect water bodies
    requirements:
      ResourceRequirement:
        coresMax: 1
        ramMax: 512
    hints:
      DockerRequirement:
        dockerPull: docker.io/library/python:3.11-slim
    baseCommand: [python3, -c]
    arguments:
      - |
        import json, sys, pathlib
        items = pathlib.Path(sys.argv[1]).read_text().split()
        out = pathlib.Path("results")
        out.mkdir()
        links = [{"rel": "item", "href": f"./{i}.json"} for i in items]
        for i in items:
            (out / f"{i}.json").write_text(json.dumps(
                {"type": "Feature", "id": i, "properties": {"ndwi_threshold": float(sys.argv[2])}}))
        (out / "catalog.json").write_text(json.dumps(
            {"type": "Catalog", "id": "water-bodies", "description": "Water bodies",
             "links": links}))
    inputs:
      items:
        type: File
        inputBinding:
          position: 1
      threshold:
        type: float
        inputBinding:
          position: 2
    outputs:
      results:
        type: Directory
        outputBinding:
          glob: results
