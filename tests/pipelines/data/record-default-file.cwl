cwlVersion: v1.2
class: CommandLineTool
doc: |
  A record input whose default holds a File, handed back through cwl.output.json (as the CWL
  conformance test record_with_default does).
inputs:
  a_record:
    type:
      - "null"
      - type: record
        fields:
          animal: string
          file: File
    default:
      animal: whale
      file:
        class: File
        path: whale.txt
arguments: ['{"same_record": $(inputs.a_record)}']
baseCommand: echo
stdout: cwl.output.json
outputs:
  same_record:
    type:
      type: record
      fields:
        animal: string
        file: File
