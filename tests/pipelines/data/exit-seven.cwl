cwlVersion: v1.2
class: CommandLineTool
doc: Succeeds with exit code 7 and reports the code it exited with.
baseCommand: [sh, -c, "exit 7"]
successCodes: [7]
inputs: []
outputs:
  code:
    type: int
    outputBinding:
      outputEval: $(runtime.exitCode)
