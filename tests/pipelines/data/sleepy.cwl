cwlVersion: v1.2
class: Workflow
doc: A step that starts a grandchild in the background and then waits; for cancel tests.
inputs:
  marker: string
outputs: []
steps:
  wait:
    run:
      class: CommandLineTool
      baseCommand: [sh, -c, 'sleep "$0" & sleep "$0"; wait']
      inputs:
        marker: {type: string, inputBinding: {position: 1}}
      outputs: []
    in: {marker: marker}
    out: []
