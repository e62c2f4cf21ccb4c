cwlVersion: v1.2
class: CommandLineTool
label: Count the bytes of a file
baseCommand: [wc, -c]
stdin: $(inputs.data.path)
inputs:
  data: {type: File}
outputs:
  count: stdout
stdout: count.txt
