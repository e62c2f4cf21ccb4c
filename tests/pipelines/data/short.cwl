cwlVersion: v1.2
class: CommandLineTool
doc: Sleeps a little, then writes its input; for concurrency tests.
baseCommand: [sh, -c, 'sleep "$0"; echo "$1"']
inputs:
  seconds: {type: string, inputBinding: {position: 1}}
  text: {type: string, inputBinding: {position: 2}}
outputs:
  out: stdout
