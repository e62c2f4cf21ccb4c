cwlVersion: v1.2
class: CommandLineTool
label: Echo a text
baseCommand: echo
inputs:
  text: {type: string, inputBinding: {position: 1}}
outputs:
  out: stdout
stdout: out.txt
