cwlVersion: v1.2
class: CommandLineTool
label: Copy a file to the output (an output as large as the input)
baseCommand: cat
stdin: $(inputs.data.path)
inputs:
  data: {type: File}
outputs:
  copy: stdout
stdout: copy.bin
