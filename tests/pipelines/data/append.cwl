cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, 'cat "$0"; echo "$1"']
inputs:
  prev: {type: File, inputBinding: {position: 1}}
  text: {type: string, inputBinding: {position: 2}}
outputs:
  out: stdout
stdout: out.txt
